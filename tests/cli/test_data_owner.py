"""Commands run by root on a served data directory work as its owner.

After `init --system` the data directory belongs to the ``[run]`` account
and the server runs as that account. A command root runs there must not
leave files only root can write: `dns-records` once made the DKIM key
directory root's, and every worker then failed to start. Each command runs
in its own process, since switching the user cannot be undone.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs commands as root")


@pytest.fixture
def served_dir() -> Iterator[Path]:
    """A checkout-style config whose data directory belongs to ``nobody``."""
    top = Path(tempfile.mkdtemp(prefix="mailstead-owner-", dir="/tmp"))
    top.chmod(0o755)
    config = top / "mailstead.toml"
    _mailstead(config, "init", "--domain", "example.test", "--hostname", "mail.example.test")
    nobody = pwd.getpwnam("nobody")
    for path in [top / "var", *(top / "var").rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
    # The config stays root's and readable, as /etc/mailstead/mailstead.toml is.
    yield config
    shutil.rmtree(top)


def _mailstead(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "mailstead", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def _owners(root: Path) -> set[str]:
    return {pwd.getpwuid(path.lstat().st_uid).pw_name for path in [root, *root.rglob("*")]}


def test_dns_records_makes_the_dkim_keys_the_owners(served_dir: Path) -> None:
    _mailstead(served_dir, "dns-records", "example.test")
    keys = served_dir.parent / "var" / "dkim"
    assert any(keys.rglob("*.pem")) or any(keys.rglob("*"))
    assert _owners(keys) == {"nobody"}


def test_user_add_leaves_every_file_the_owners(served_dir: Path) -> None:
    _mailstead(served_dir, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    _mailstead(served_dir, "alias", "add", "postmaster@example.test", "alice@example.test")
    assert _owners(served_dir.parent / "var") == {"nobody"}
