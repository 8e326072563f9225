"""`mailstead init --system`: /etc/mailstead, /var/lib/mailstead, the user, the unit.

Everything goes into a temporary tree with ``--root``, where no user is
made; ``systemd-analyze verify`` checks the unit inside that tree.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailstead.cli import main
from mailstead.config import load_config
from tests.tools import require

SYSTEM = ["init", "--system", "--domain", "example.org", "--hostname", "mail.example.org"]


def _init(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*SYSTEM, *args])
    return result.exit_code, result.output


def test_dry_run_prints_everything_and_writes_nothing(tmp_path: Path) -> None:
    code, out = _init("--root", str(tmp_path), "--dry-run")
    assert code == 0, out
    assert list(tmp_path.iterdir()) == []
    lines = out.splitlines()
    assert f"would write {tmp_path}/etc/mailstead/mailstead.toml (mode 0640):" in lines
    assert (
        '    smtp        = ["0.0.0.0:25"]        # MTA: from other servers, local recipients only'
        in lines
    )
    assert f"would create directory {tmp_path}/var/lib/mailstead (mode 0700)" in lines
    assert f"would write {tmp_path}/etc/systemd/system/mailstead.service (mode 0644):" in lines
    assert "    Type=notify" in lines
    assert "    AmbientCapabilities=CAP_NET_BIND_SERVICE" in lines
    assert any(
        line.startswith("note: no user made under --root; in the image run: useradd")
        for line in lines
    )


def test_writes_config_data_dir_and_unit_into_the_tree(tmp_path: Path) -> None:
    code, out = _init("--root", str(tmp_path))
    assert code == 0, out
    config_file = tmp_path / "etc/mailstead/mailstead.toml"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o640
    config = load_config(config_file)
    assert config.hostname == "mail.example.org"
    assert config.domains == ("example.org",)
    assert config.data_dir == Path("/var/lib/mailstead")
    assert config.listen.smtp == (("0.0.0.0", 25),)
    assert config.listen.submission == (("0.0.0.0", 587),)
    assert config.listen.submissions == (("0.0.0.0", 465),)
    assert config.listen.imap == (("0.0.0.0", 143),)
    assert config.listen.imaps == (("0.0.0.0", 993),)
    assert config.listen.pop3 == (("0.0.0.0", 110),)
    assert config.listen.pop3s == (("0.0.0.0", 995),)
    assert (config.run.user, config.run.group, config.run.allow_root) == (
        "mailstead",
        "mailstead",
        False,
    )
    data = tmp_path / "var/lib/mailstead"
    for path, mode in [
        (data, 0o700),
        (data / "mail", 0o700),
        (data / "tls/key.pem", 0o600),
        (data / "directory.sqlite3", 0o600),
    ]:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    unit = (tmp_path / "etc/systemd/system/mailstead.service").read_text()
    for line in [
        "Type=notify",
        f"ExecStart={sys.executable} -m mailstead --config /etc/mailstead/mailstead.toml serve",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=mailstead",
        "Group=mailstead",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/mailstead",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "Restart=on-failure",
        "TimeoutStopSec=45s",  # shutdown_timeout (30 s) and a margin
    ]:
        assert line in unit.splitlines(), line
    again_code, again = _init("--root", str(tmp_path))
    assert again_code == 0, again
    assert f"kept {config_file} (exists)" in again.splitlines()
    assert f"kept {tmp_path}/etc/systemd/system/mailstead.service (exists)" in again.splitlines()


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = require("systemd-analyze")
    code, out = _init("--root", str(tmp_path))
    assert code == 0, out
    # The tree needs what verify looks up: the units the service depends on,
    # and an executable at each command's path.
    units = Path("/usr/lib/systemd/system")
    shutil.copytree(units, tmp_path / units.relative_to("/"), symlinks=True)
    for program in (sys.executable, "/bin/kill"):
        stub = tmp_path / Path(program).relative_to("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    unit = tmp_path / "etc/systemd/system/mailstead.service"
    run = subprocess.run(
        [analyze, "verify", f"--root={tmp_path}", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


def test_system_needs_domain_and_hostname(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", "--system", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == "mailstead: init --system needs --domain and --hostname\n"


def test_root_and_dry_run_go_with_system(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "m.toml"), "init", "--dry-run"])
    assert result.exit_code == 1
    assert result.output == "mailstead: --root and --dry-run go with --system\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="creates a system user")
def test_on_this_host_the_user_is_made_and_given_the_data(tmp_path: Path) -> None:
    """Without --root: useradd and chown, in a mount namespace where /etc and
    /var/lib are overlays, so the host keeps its users and files."""
    unshare = require("unshare")
    for name in ("etc", "etc-work", "lib", "lib-work"):
        (tmp_path / name).mkdir()
    script = (
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={tmp_path}/etc,"
        f"workdir={tmp_path}/etc-work /etc"
        f" && mount -t overlay overlay -o lowerdir=/var/lib,upperdir={tmp_path}/lib,"
        f"workdir={tmp_path}/lib-work /var/lib"
        ' && "$@" && stat -c "%U:%G %a %n" /var/lib/mailstead /etc/mailstead/mailstead.toml'
    )
    namespace = [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    run = subprocess.run(
        [*namespace, sys.executable, "-m", "mailstead", *SYSTEM],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("ran useradd --system --user-group") for line in lines), lines
    assert "gave /var/lib/mailstead to mailstead:mailstead" in lines
    assert "next: systemctl daemon-reload && systemctl enable --now mailstead" in lines
    assert lines[-2:] == [
        "mailstead:mailstead 700 /var/lib/mailstead",
        "root:mailstead 640 /etc/mailstead/mailstead.toml",
    ]
    assert "mailstead:" in (tmp_path / "etc/passwd").read_text()


def test_plain_init_says_when_the_hostname_falls_back_to_localhost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mailstead.cli.init.default_hostname", lambda: "localhost")
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "m.toml"), "init"])
    assert result.exit_code == 0
    assert (
        'mailstead: warning: this host has no fully qualified name; hostname = "localhost",'
        " and other servers refuse mail from it: pass --hostname\n" in result.output
    )
    assert load_config(tmp_path / "m.toml").hostname == "localhost"
