"""`mailstead queue …`: the outbound queue as an operator sees it (DESIGN.md §3)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailstead.cli import main
from mailstead.config import load_config
from mailstead.mta.envelope import Attempt, QueuedRecipient
from mailstead.mta.queue import Queue

MSG = (
    b"Received: from laptop ([192.0.2.8])\r\n"
    b"\tby mail.example.test (Mailstead) with ESMTPSA id X;\r\n"
    b"\tMon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"From: alice@example.test\r\n"
    b"To: bob@remote.test\r\n"
    b"Subject: quarterly numbers\r\n"
    b"\r\n"
    b"SECRET BODY TEXT\r\n"
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mailstead.toml"
    result = CliRunner().invoke(
        main,
        ["--config", str(path), "init", "--domain", "example.test", "--hostname", "mail.test"],
    )
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def queue(config: Path) -> Iterator[Queue]:
    with Queue(load_config(config).data_dir) as q:
        yield q


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def _fill(queue: Queue) -> tuple[str, str]:
    """Two messages: one with a deferred and a delivered recipient, one pending."""
    first = queue.enqueue(
        "alice@example.test",
        [QueuedRecipient("bob@remote.test"), QueuedRecipient("carol@remote.test")],
        [MSG],
        received_at=1_700_000_000.0,
    )
    queue.record(
        first,
        [
            Attempt(
                "bob@remote.test",
                "deferred",
                "451 4.7.1 greylisted, try later",
                next_attempt=4_000_000_000.0,
            ),
            Attempt("carol@remote.test", "delivered"),
        ],
    )
    second = queue.enqueue(
        "", [QueuedRecipient("dave@remote.test")], [MSG], received_at=1_700_000_060.0
    )
    return first, second


def test_list_json_has_a_stable_shape(config: Path, queue: Queue) -> None:
    first, second = _fill(queue)
    result = run(config, "queue", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {
            "id": first,
            "state": "deferred",
            "sender": "alice@example.test",
            "received_at": "2023-11-14T22:13:20Z",
            "held_at": None,
            "size": len(MSG),
            "recipients": [
                {
                    "address": "bob@remote.test",
                    "state": "deferred",
                    "attempts": 1,
                    "next_attempt": "2096-10-02T07:06:40Z",
                    "last_error": "451 4.7.1 greylisted, try later",
                },
                {
                    "address": "carol@remote.test",
                    "state": "delivered",
                    "attempts": 1,
                    "next_attempt": None,
                    "last_error": None,
                },
            ],
        },
        {
            "id": second,
            "state": "active",
            "sender": "",
            "received_at": "2023-11-14T22:14:20Z",
            "held_at": None,
            "size": len(MSG),
            "recipients": [
                {
                    "address": "dave@remote.test",
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt": "2023-11-14T22:14:20Z",
                    "last_error": None,
                }
            ],
        },
    ]


def test_list_text_is_a_mailq_layout(config: Path, queue: Queue) -> None:
    first, second = _fill(queue)
    lines = run(config, "queue", "list").stdout.splitlines()
    assert lines[0].startswith("-Queue ID-")
    assert lines[1].startswith(f"{first}  ")  # deferred: no marker
    assert lines[1].endswith(" alice@example.test")
    assert f" {len(MSG)} " in lines[1]
    assert lines[2] == "  (451 4.7.1 greylisted, try later)"
    assert lines[3].strip() == "bob@remote.test"
    assert "carol" not in "\n".join(lines)  # delivered: no longer open
    assert lines[5].startswith(f"{second}* ")  # due now: being delivered
    assert lines[5].endswith(" MAILER-DAEMON")
    assert lines[-1] == "-- 1 KiB in 2 messages"


def test_empty_queue(config: Path) -> None:
    assert run(config, "queue", "list").stdout == "Mail queue is empty\n"
    assert run(config, "queue", "list", "--json").stdout == "[]\n"


def test_show_prints_envelope_status_and_headers_not_the_body(config: Path, queue: Queue) -> None:
    first, _ = _fill(queue)
    result = run(config, "queue", "show", first.lower())  # ids are case-insensitive
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"id:       {first}\n" in out
    assert "state:    deferred\n" in out
    assert "sender:   <alice@example.test>\n" in out
    assert "received: 2023-11-14T22:13:20Z (" in out
    assert f"size:     {len(MSG)} bytes\n" in out
    assert "  bob@remote.test deferred, 1 attempt(s), next in " in out
    assert "  carol@remote.test delivered, 1 attempt(s)\n" in out
    assert "headers:\n  Received: from laptop ([192.0.2.8])\n" in out
    assert "  Subject: quarterly numbers\n" in out
    assert "SECRET BODY TEXT" not in out


def test_remote_text_cannot_drive_the_terminal(config: Path, queue: Queue) -> None:
    qid = queue.enqueue(
        "alice@example.test",
        [QueuedRecipient("bob@remote.test")],
        [b"Subject: \x1b[2Jgotcha\r\n\r\nbody\r\n"],
        received_at=time.time(),
    )
    queue.record(qid, [Attempt("bob@remote.test", "deferred", "550 \x1b]0;owned\x07", 1.0)])
    for args in (("list",), ("show", qid)):
        out = run(config, "queue", *args).stdout
        assert "\x1b" not in out and "\x07" not in out
        assert "\\x1b" in out


def test_delete_removes_row_and_file(config: Path, queue: Queue) -> None:
    first, second = _fill(queue)
    path = queue.get(first)
    assert path is not None and path.path.exists()
    result = run(config, "queue", "delete", first)
    assert (result.exit_code, result.stdout) == (0, f"deleted queued message {first}\n")
    assert not path.path.exists()
    assert [m["id"] for m in json.loads(run(config, "queue", "list", "--json").stdout)] == [second]
    again = run(config, "queue", "delete", first)
    assert again.exit_code == 1
    assert again.stderr == f"mailstead: no queued message '{first}'\n"


def test_flush_makes_deferred_recipients_due(config: Path, queue: Queue) -> None:
    first, _ = _fill(queue)
    before = time.time()
    result = run(config, "queue", "flush")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "1 deferred recipient(s) due now; no server is running: they go when it starts\n"
    )
    message = queue.get(first)
    assert message is not None
    bob = next(r for r in message.recipients if r.address == "bob@remote.test")
    assert before <= bob.next_attempt <= time.time()
    assert [m.id for m in queue.due(time.time())][:1] == [first]


HOSTILE_IDS = [
    "",
    "nonsense",
    "../../../etc/passwd",
    "msg/../../queue.sqlite3",
    "0" * 24,  # well-formed, not queued
    "0" * 23 + "\n",
    "x\r\ny",
    "' OR 1=1 --",
    "%s%s%n",
    "\x1b[2J",
    "A" * 10_000,
]


@pytest.mark.parametrize("command", ["show", "delete"])
@pytest.mark.parametrize("queue_id", HOSTILE_IDS)
def test_unknown_or_hostile_ids_are_one_line_errors(
    config: Path, queue: Queue, command: str, queue_id: str
) -> None:
    first, second = _fill(queue)
    result = run(config, "queue", command, queue_id)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("mailstead: no queued message ")
    assert result.stderr.count("\n") == 1
    assert "\x1b" not in result.stderr
    assert {m.id for m in queue.list()} == {first, second}


def test_queue_commands_need_a_config(tmp_path: Path) -> None:
    result = run(tmp_path / "absent.toml", "queue", "list")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "run `mailstead init`" in result.stderr
