"""`mailstead init --system` and /usr/sbin/sendmail: ours is installed, another MTA's is kept."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from mailstead.cli import main

BASE = ["init", "--system", "--domain", "example.test", "--hostname", "mail.example.test"]


def init(root: Path, *extra: str) -> Result:
    return CliRunner().invoke(main, [*BASE, "--root", str(root), *extra])


def test_installs_a_wrapper_running_this_python_with_the_system_config(tmp_path: Path) -> None:
    result = init(tmp_path)
    assert result.exit_code == 0, result.output
    path = tmp_path / "usr/sbin/sendmail"
    assert f"wrote {path} (mode 0755)\n" in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert path.read_text() == (
        "#!/bin/sh\n"
        "# Installed by `mailstead init --system`: Mailstead's sendmail interface.\n"
        "# Reads a message on standard input (sendmail -t -i ...); see docs/cli.md.\n"
        f"exec {sys.executable} -m mailstead --config /etc/mailstead/mailstead.toml"
        ' sendmail "$@"\n'
    )
    again = init(tmp_path)
    assert f"kept {path} (Mailstead's)\n" in again.stdout


def test_another_mtas_sendmail_is_kept_unless_replace_is_asked(tmp_path: Path) -> None:
    other = tmp_path / "usr/sbin/sendmail"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"\x7fELF postfix's sendmail")
    result = init(tmp_path)
    assert result.exit_code == 0, result.output
    assert other.read_bytes() == b"\x7fELF postfix's sendmail"
    assert (
        f"note: kept {other}: another MTA's sendmail; pass --replace-sendmail to put"
        f" Mailstead's there (the old one is kept as sendmail.before-mailstead)\n"
    ) in result.stdout

    dry = init(tmp_path, "--replace-sendmail", "--dry-run")
    assert f"would rename {other} to {other}.before-mailstead\n" in dry.stdout
    assert other.read_bytes() == b"\x7fELF postfix's sendmail"

    replaced = init(tmp_path, "--replace-sendmail")
    assert replaced.exit_code == 0, replaced.output
    assert f"renamed {other} to {other}.before-mailstead\n" in replaced.stdout
    assert (tmp_path / "usr/sbin/sendmail.before-mailstead").read_bytes().startswith(b"\x7fELF")
    assert "mailstead" in other.read_text()


def test_a_symlink_is_another_mtas(tmp_path: Path) -> None:
    link = tmp_path / "usr/sbin/sendmail"
    link.parent.mkdir(parents=True)
    os.symlink("../lib/sendmail", link)
    init(tmp_path)
    assert os.readlink(link) == "../lib/sendmail"


def test_a_left_over_backup_stops_a_replace(tmp_path: Path) -> None:
    sbin = tmp_path / "usr/sbin"
    sbin.mkdir(parents=True)
    (sbin / "sendmail").write_text("exim")
    (sbin / "sendmail.before-mailstead").write_text("older")
    result = init(tmp_path, "--replace-sendmail")
    assert result.exit_code == 1
    assert result.stderr == (
        f"mailstead: {sbin}/sendmail.before-mailstead exists: move it away before"
        " --replace-sendmail\n"
    )
    assert (sbin / "sendmail").read_text() == "exim"


def test_dry_run_and_no_sendmail_write_nothing(tmp_path: Path) -> None:
    dry = init(tmp_path, "--dry-run")
    assert f"would write {tmp_path}/usr/sbin/sendmail (mode 0755):\n" in dry.stdout
    assert not (tmp_path / "usr/sbin/sendmail").exists()
    skipped = init(tmp_path, "--no-sendmail")
    assert skipped.exit_code == 0 and "usr/sbin/sendmail" not in skipped.stdout
    assert not (tmp_path / "usr/sbin/sendmail").exists()


def test_replace_sendmail_goes_with_system(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--config", str(tmp_path / "m.toml"), "init", "--replace-sendmail"]
    )
    assert (result.exit_code, result.stderr) == (
        1,
        "mailstead: --replace-sendmail goes with --system\n",
    )
