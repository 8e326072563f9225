"""`mailstead queue list/show`: the text layouts (golden files) and the --json shapes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.mta.envelope import Attempt, QueuedRecipient
from mailstead.mta.queue import Queue
from tests.cli import json_shapes
from tests.cli.golden_files import assert_golden
from tests.cli.runner import run

NOW = 1_765_130_400.0  # 2025-12-07T18:00:00Z
MSG = (
    b"From: alice@example.test\r\nTo: list@remote.test\r\nSubject: minutes\r\n\r\n"
    b"Line one.\r\nLine two, caf\xc3\xa9.\r\n"
)
ID_A, ID_B, ID_C, ID_D = (f"0005F{n}" + "0" * 18 for n in "ABCD")
GREYLIST = "451 4.7.1 <list@remote.test>: greylisted, please try again in 300 seconds"
LONG = (
    "connect to mx1.slow.example[192.0.2.55]:25: Connection timed out; "
    + "then mx2.slow.example[192.0.2.56]:25 said: 421-4.7.0 "
    + "this server is very busy and gives a very long reason " * 3
)


@pytest.fixture(autouse=True)
def utc_now(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Arrival times print in local time: make it UTC, and freeze the clock."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(time, "time", lambda: NOW)
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def queue(config: Path) -> Iterator[Queue]:
    with Queue(load_config(config).data_dir) as q:
        yield q


def _fill(queue: Queue) -> None:
    """A: new, due now. B: twelve recipients, two reasons and two not yet
    tried. C: a held bounce. D: deferred after a long reason."""
    queue.enqueue(
        "alice@example.test",
        [QueuedRecipient("bob@remote.test")],
        [MSG],
        received_at=NOW - 30,
        queue_id=ID_A,
    )
    many = [f"member{n:02d}@lists.remote.test" for n in range(12)]
    queue.enqueue(
        "newsletter-bounces+very-long-tag@example.test",
        [QueuedRecipient(a) for a in many],
        [MSG * 20],
        received_at=NOW - 7200,
        queue_id=ID_B,
    )
    queue.record(
        ID_B,
        [Attempt(a, "deferred", GREYLIST, NOW + 300) for a in many[:6]]
        + [Attempt(a, "deferred", "421 4.3.2 too many connections", NOW + 600) for a in many[6:9]]
        + [Attempt(many[9], "delivered")],
    )
    queue.enqueue(
        "",
        [QueuedRecipient("postmaster@remote.test")],
        [MSG],
        received_at=NOW - 3 * 86400,
        queue_id=ID_C,
    )
    queue.hold([ID_C], NOW - 3600)
    queue.enqueue(
        "carol@example.test",
        [QueuedRecipient("dave@slow.example")],
        [MSG],
        received_at=NOW - 600,
        queue_id=ID_D,
    )
    queue.record(ID_D, [Attempt("dave@slow.example", "deferred", LONG, NOW + 900)])


def test_list_layout(config: Path, queue: Queue) -> None:
    _fill(queue)
    result = run(config, "queue", "list")
    assert result.exit_code == 0, result.output
    assert_golden("queue_list.txt", result.stdout)
    assert result.stderr == (
        "mailstead: warning: no server is running; nothing in the queue is being delivered\n"
    )
    # Reasons wrap at 78 columns; only a long sender at the end of its
    # message's line passes 80, never broken, so that it can be copied whole.
    for line in result.stdout.splitlines():
        assert len(line) <= 78 or line.endswith(" newsletter-bounces+very-long-tag@example.test")


def test_list_filtered_layout(config: Path, queue: Queue) -> None:
    _fill(queue)
    result = run(config, "queue", "list", "--state", "deferred", "--to-domain", "slow.example")
    assert_golden("queue_list_filtered.txt", result.stdout)
    none = run(config, "queue", "list", "--from", "nobody@example.test")
    assert (none.exit_code, none.stdout) == (0, "No queued message matches\n")


def test_empty_queue_layout(config: Path) -> None:
    result = run(config, "queue", "list")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "Mail queue is empty\n", "")


def test_show_layout(config: Path, queue: Queue) -> None:
    _fill(queue)
    assert_golden("queue_show.txt", run(config, "queue", "show", ID_C).stdout)
    assert_golden("queue_show_body.txt", run(config, "queue", "show", ID_A, "--body").stdout)


def test_list_json_matches_the_documented_shape(config: Path, queue: Queue) -> None:
    _fill(queue)
    listed = json.loads(run(config, "queue", "list", "--json").stdout)
    json_shapes.check(listed, json_shapes.QUEUE_LIST)
    assert [(m["id"], m["state"]) for m in listed] == [
        (ID_C, "held"),
        (ID_B, "active"),  # two recipients not yet tried
        (ID_D, "deferred"),
        (ID_A, "active"),
    ]
    assert listed[0]["held_at"] == "2025-12-07T17:00:00Z"
    held = json.loads(run(config, "queue", "list", "--json", "--state", "held").stdout)
    assert [m["id"] for m in held] == [ID_C]


def test_show_json_matches_the_documented_shape(config: Path, queue: Queue) -> None:
    _fill(queue)
    shown = json.loads(run(config, "queue", "show", ID_A, "--json").stdout)
    json_shapes.check(shown, json_shapes.QUEUE_SHOW)
    assert shown["headers"][-1] == "Subject: minutes"
    with_body = json.loads(run(config, "queue", "show", ID_A, "--json", "--body").stdout)
    json_shapes.check(with_body, json_shapes.QUEUE_SHOW_BODY)
    assert with_body["body"] == "Line one.\r\nLine two, café.\r\n"
