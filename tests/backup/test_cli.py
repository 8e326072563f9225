"""``mailstead backup`` / ``restore`` as an operator runs them: one line per outcome."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner, Result

from mailstead.backup.manifest import DATA_DIR
from mailstead.backup.serving import holder_of
from mailstead.cli.backup import backup, restore
from tests.backup.conftest import MBOX
from tests.e2e.harness import free_port


def write_config(root: Path, imap_port: int = 0) -> Path:
    """A config whose data directory is ``root/var``; only IMAP listens, on ``imap_port``."""
    root.mkdir(exist_ok=True)
    path = root / "mailstead.toml"
    none = "\n".join(
        f"{role} = []" for role in ("smtp", "submission", "submissions", "imaps", "pop3", "pop3s")
    )
    path.write_text(
        'hostname = "mx.example.test"\ndata_dir = "var"\ndomains = ["example.test"]\n'
        f'[listen]\n{none}\nimap = ["127.0.0.1:{imap_port}"]\n'
    )
    return path


def run(command: click.Command, config: Path, *args: str) -> Result:
    # The commands read --config from the root group's context object.
    return CliRunner().invoke(command, list(args), obj=config)


def test_backup_then_restore(data_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path)  # its data_dir is the fixture's var/
    result = run(backup, config, str(tmp_path / "bk"))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"backed up {data_dir} to {tmp_path / 'bk'}: ")
    other = write_config(tmp_path / "new")
    result = run(restore, other, str(tmp_path / "bk"))
    assert result.exit_code == 0, result.output
    assert f"into {tmp_path / 'new' / 'var'}\n" in result.output
    assert (tmp_path / "new/var" / MBOX).read_bytes() == (data_dir / MBOX).read_bytes()
    result = run(restore, other, str(tmp_path / "bk"))
    assert result.exit_code == 1
    assert result.output == (
        f"mailstead: {tmp_path / 'new/var'}: not empty; pass --force to replace it (kept aside)\n"
    )
    result = run(restore, other, "--force", str(tmp_path / "bk"))
    assert result.exit_code == 0, result.output
    assert "the former data directory is now " in result.output


def test_a_corrupt_backup_is_one_line(data_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert run(backup, config, str(tmp_path / "bk")).exit_code == 0
    copied = tmp_path / "bk" / DATA_DIR / MBOX
    copied.write_bytes(copied.read_bytes().replace(b"body", b"bodY"))
    result = run(restore, write_config(tmp_path / "new"), str(tmp_path / "bk"))
    assert result.exit_code == 1
    assert result.output == (
        f"mailstead: {copied}: checksum mismatch (SHA-256 differs from the manifest)\n"
    )


def test_backup_errors_are_one_line(tmp_path: Path) -> None:
    result = run(backup, write_config(tmp_path), str(tmp_path / "bk"))
    assert result.exit_code == 1
    assert result.output == f"mailstead: {tmp_path / 'var'}: no data directory to back up\n"
    result = run(restore, write_config(tmp_path), str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert "manifest.json: missing: not a backup, or one that was interrupted" in result.output


def test_restore_refuses_while_a_listener_answers(data_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert run(backup, config, str(tmp_path / "bk")).exit_code == 0
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        result = run(restore, write_config(tmp_path / "new", port), str(tmp_path / "bk"))
    assert result.exit_code == 1
    assert result.output == (
        f"mailstead: {tmp_path / 'new/var'}: a server seems to be using it"
        f" (listen.imap 127.0.0.1:{port} accepts connections); stop it first\n"
    )


def test_restore_refuses_while_a_process_holds_the_data_dir(data_dir: Path, tmp_path: Path) -> None:
    held = data_dir / "queue.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", f"import sys; f = open({str(held)!r}); sys.stdin.read()"],
        stdin=subprocess.PIPE,
    )
    try:
        assert child.stdin is not None
        for _ in range(200):
            found = holder_of(data_dir)
            if found:
                break
            subprocess.run(["sleep", "0.02"], check=True)
        assert found == f"process {child.pid} has {held} open"
        result = run(restore, write_config(tmp_path), "--force", str(tmp_path / "bk"))
        assert result.exit_code == 1
        assert f"(process {child.pid} has {held} open); stop it first" in result.output
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(10)
