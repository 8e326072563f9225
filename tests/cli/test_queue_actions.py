"""`mailstead queue flush|delete|hold|release`: several ids, --all, or the filters."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.mta.envelope import Attempt, QueuedRecipient
from mailstead.mta.queue import Queue
from tests.cli.runner import run

FAR = 4_000_000_000.0


@pytest.fixture
def queue(config: Path) -> Iterator[Queue]:
    with Queue(load_config(config).data_dir) as q:
        yield q


def _queued(queue: Queue, sender: str, rcpt: str, *, age: float = 0.0) -> str:
    qid = queue.enqueue(
        sender, [QueuedRecipient(rcpt)], [b"Subject: x\r\n\r\nx\r\n"], received_at=time.time() - age
    )
    queue.record(qid, [Attempt(rcpt, "deferred", "451 4.3.0 later", FAR)])
    return qid


def _states(config: Path) -> dict[str, str]:
    listed = json.loads(run(config, "queue", "list", "--json").stdout)
    return {m["id"]: m["state"] for m in listed}


@pytest.mark.parametrize("action", ["delete", "hold", "release"])
def test_an_action_without_ids_all_or_filter_is_refused_in_one_line(
    config: Path, queue: Queue, action: str
) -> None:
    qid = _queued(queue, "a@example.test", "b@remote.test")
    result = run(config, "queue", action)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"mailstead: say which messages: ids, --all or a filter (mailstead queue {action} --help)\n"
    )
    assert _states(config) == {qid: "deferred"}


def test_ids_and_all_together_are_refused(config: Path, queue: Queue) -> None:
    qid = _queued(queue, "a@example.test", "b@remote.test")
    result = run(config, "queue", "delete", qid, "--all")
    assert (result.exit_code, result.stderr) == (2, "mailstead: give ids or --all, not both\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--older-than", "soon"), "'soon' is not a duration like 30m, 1h or 2d"),
        (("--to-domain", "a..b"), "'a..b' is not a domain name"),
    ],
)
def test_bad_filters_are_one_line(config: Path, args: tuple[str, ...], message: str) -> None:
    for command in ("list", "delete"):
        result = run(config, "queue", command, *args)
        assert (result.exit_code, result.stderr) == (2, f"mailstead: {message}\n")


def test_delete_several_ids(config: Path, queue: Queue) -> None:
    a = _queued(queue, "a@example.test", "b@remote.test")
    b = _queued(queue, "a@example.test", "c@remote.test")
    c = _queued(queue, "a@example.test", "d@remote.test")
    result = run(config, "queue", "delete", a, c.lower())
    assert (result.exit_code, result.stdout) == (0, "deleted 2 queued message(s)\n")
    assert _states(config) == {b: "deferred"}


def test_an_unknown_id_among_several_changes_nothing(config: Path, queue: Queue) -> None:
    a = _queued(queue, "a@example.test", "b@remote.test")
    result = run(config, "queue", "hold", a, "0" * 24)
    assert result.exit_code == 1
    assert result.stderr == f"mailstead: no queued message '{'0' * 24}'\n"
    assert _states(config) == {a: "deferred"}


def test_filters_select_what_an_action_touches(config: Path, queue: Queue) -> None:
    old_bounce = _queued(queue, "", "x@remote.test", age=2 * 86400)
    new_bounce = _queued(queue, "", "y@remote.test")
    mine = _queued(queue, "alice@example.test", "z@slow.test", age=2 * 86400)
    result = run(config, "queue", "delete", "--from", "<>", "--older-than", "1d")
    assert (result.exit_code, result.stdout) == (0, f"deleted queued message {old_bounce}\n")
    assert _states(config) == {new_bounce: "deferred", mine: "deferred"}

    assert run(config, "queue", "hold", "--to-domain", "slow.test").stdout == (
        f"held queued message {mine}\n"
    )
    assert _states(config) == {new_bounce: "deferred", mine: "held"}
    listed = run(config, "queue", "list", "--state", "held").stdout.splitlines()
    assert listed[1].startswith(f"{mine}! ")
    # Held mail is left alone by flush, and by hold again.
    assert run(config, "queue", "flush", "--all").stdout.startswith("1 deferred recipient(s)")
    assert _states(config) == {new_bounce: "active", mine: "held"}
    assert run(config, "queue", "hold", "--all").stdout == (
        "held 1 queued message(s); 1 already held or gone\n"
    )
    assert run(config, "queue", "release", "--all").stdout == "released 2 queued message(s)\n"
    assert _states(config) == {new_bounce: "active", mine: "deferred"}
    assert run(config, "queue", "flush", mine).stdout.startswith("1 deferred recipient(s)")
    assert _states(config) == {new_bounce: "active", mine: "active"}


def test_delete_all(config: Path, queue: Queue) -> None:
    for rcpt in ("a@remote.test", "b@remote.test", "c@remote.test"):
        _queued(queue, "a@example.test", rcpt)
    assert run(config, "queue", "delete", "--all").stdout == "deleted 3 queued message(s)\n"
    assert run(config, "queue", "list").stdout == "Mail queue is empty\n"
