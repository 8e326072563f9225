"""The line formats: logfmt and JSON, the context every line carries, hostile text."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailstead import logs
from tests.logs.capture import captured

log = logging.getLogger("mailstead.test")
# The time and pid differ from run to run: the rest is compared byte for byte.
STAMP = re.compile(r"^time=\S+ level=(\w+) pid=\d+ ")


def shown(lines: list[str]) -> list[str]:
    return [STAMP.sub(r"level=\1 ", line) for line in lines]


def test_a_line_carries_the_session_the_peer_and_the_message() -> None:
    async def session() -> None:
        logs.new_session("192.0.2.7", "s")
        logs.SESSION.set("s0123456789")  # a fixed id, for the transcript
        log.info("connect", extra=logs.fields(protocol="smtp"))
        with logs.queue_id("0123ABCD"):
            log.info("received", extra=logs.fields(**{"from": "<a@b.test>", "size": 120}))
        log.info("disconnect")

    with captured() as out:
        asyncio.run(session())
        log.info("outside any session")
    assert shown(out.lines) == [
        "level=info logger=mailstead.test session=s0123456789 ip=192.0.2.7 protocol=smtp"
        " msg=connect",
        "level=info logger=mailstead.test session=s0123456789 ip=192.0.2.7"
        " queue_id=0123ABCD from=<a@b.test> size=120 msg=received",
        "level=info logger=mailstead.test session=s0123456789 ip=192.0.2.7 msg=disconnect",
        'level=info logger=mailstead.test msg="outside any session"',
    ]


def test_each_session_task_keeps_its_own_names() -> None:
    async def one(ip: str) -> None:
        logs.new_session(ip)
        await asyncio.sleep(0)  # the other session runs in between
        log.info("hello")

    async def both() -> None:
        await asyncio.gather(one("192.0.2.1"), one("192.0.2.2"))

    with captured() as out:
        asyncio.run(both())
    sessions = [logs.parse_line(line) for line in out.lines]
    assert [s and s["ip"] for s in sessions] == ["192.0.2.1", "192.0.2.2"]
    assert sessions[0] and sessions[1] and sessions[0]["session"] != sessions[1]["session"]


def test_work_in_the_thread_pool_carries_the_context() -> None:
    async def session() -> None:
        logs.new_session("192.0.2.9", "s")
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as pool:
            await loop.run_in_executor(pool, logs.carry(deliver))
            # What the thread set stays in the thread's copy.
            assert logs.QUEUE_ID.get() is None

    def deliver() -> None:
        logs.set_queue_id("QID1")
        log.info("stored")

    with captured() as out:
        asyncio.run(session())
    (line,) = out.lines
    parsed = logs.parse_line(line)
    assert parsed is not None
    assert (parsed["ip"], parsed["queue_id"], parsed["msg"]) == ("192.0.2.9", "QID1", "stored")


def test_a_lines_own_queue_id_wins_over_the_context() -> None:
    with captured() as out, logs.queue_id("CONTEXT"):
        log.info("sent", extra=logs.fields(queue_id="OWN", to="<b@x.test>"))
    assert "queue_id=OWN to=<b@x.test> msg=sent" in out.text
    assert "CONTEXT" not in out.text


@pytest.mark.parametrize(
    "hostile",
    [
        "a\r\nlevel=error msg=forged",
        'quote " and = and \\',
        "nul\x00 del\x7f c1\x85 ls\u2028 tag\U000e0041",
        "",
    ],
)
def test_no_peer_text_can_start_a_line_or_break_a_value(hostile: str) -> None:
    for fmt in logs.FORMATS:
        with captured(fmt) as out:
            log.info(hostile, extra=logs.fields(helo=hostile))
        (line,) = out.lines
        assert line.isprintable()
        parsed = logs.parse_line(line)
        assert parsed is not None
        assert (parsed["helo"], parsed["msg"]) == (hostile, hostile)


def test_json_has_the_same_keys() -> None:
    with captured("json") as out, logs.queue_id("Q9"):
        log.warning("deferred", extra=logs.fields(to="<b@x.test>", dsn="4.4.1"))
    data = json.loads(out.text)
    assert list(data) == ["time", "level", "pid", "logger", "queue_id", "to", "dsn", "msg"]
    assert (data["level"], data["queue_id"], data["msg"]) == ("warning", "Q9", "deferred")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["time"])


def test_a_traceback_stays_on_one_line() -> None:
    with captured() as out:
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("storing failed")
    (line,) = out.lines
    parsed = logs.parse_line(line)
    assert parsed is not None and parsed["msg"] == "storing failed"
    assert parsed["error"].startswith("Traceback") and "ValueError: boom" in parsed["error"]


def test_lines_of_other_shapes_are_not_parsed() -> None:
    assert logs.parse_line("2026-12-07 mailstead[12] hello") is None
    assert logs.parse_line('key="unterminated') is None
    assert logs.parse_line("[1, 2]") is None
