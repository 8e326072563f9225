"""``mailstead log --queue-id ID``: one message's lines, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mailstead.cli.log import log

RECEIVED = "time=1 session=sA ip=192.0.2.1 queue_id=Q1 msg=received"
SENT = (
    "time=2 session=o1 queue_id=Q1 to=<b@x.test> relay=mx.x.test[192.0.2.9]:25 status=sent msg=ok"
)


def config(tmp_path: Path, table: str = "") -> Path:
    path = tmp_path / "mailstead.toml"
    path.write_text(f'data_dir = "var"\ndomains = ["example.test"]\n[log]\n{table}')
    return path


def run(path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(log, list(args), obj=path)
    return result.exit_code, result.stdout, result.stderr


def test_prints_the_lines_of_one_message(tmp_path: Path) -> None:
    path = config(tmp_path)
    (tmp_path / "var" / "log").mkdir(parents=True)
    (tmp_path / "var" / "log" / "mailstead.log").write_text(
        f"{RECEIVED}\ntime=1 session=sB queue_id=Q2 msg=received\n{SENT}\n"
    )
    assert run(path, "--queue-id", "Q1") == (0, f"{RECEIVED}\n{SENT}\n", "")


def test_says_in_one_line_what_is_missing(tmp_path: Path) -> None:
    log_file = tmp_path / "var" / "log" / "mailstead.log"
    path = config(tmp_path)
    assert run(path, "--queue-id", "Q1") == (
        1,
        "",
        f"mailstead: no log file at {log_file}: has `mailstead serve` run?\n",
    )
    log_file.parent.mkdir(parents=True)
    log_file.write_text(f"{RECEIVED}\n")
    assert run(path, "--queue-id", "Q9") == (
        1,
        "",
        f"mailstead: no line about Q9 in {log_file} or its rotated copies\n",
    )
    assert run(config(tmp_path, "file = false"), "--queue-id", "Q1")[2] == (
        "mailstead: [log] file = false: serve keeps no log file to read (see journalctl)\n"
    )
