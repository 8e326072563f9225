"""The outbound engine's log: Postfix's delivery lines, and failures in words."""

from __future__ import annotations

import re

from tests.logs.capture import captured
from tests.mta.test_outbound import World, in_loop, reports, wire, world

__all__ = ["wire", "world"]  # the fixtures, used by name

# A line without its time and pid, which differ from run to run.
STAMP = re.compile(r"^time=\S+ level=\w+ pid=\d+ logger=\S+ session=o[0-9a-f]{10} ")


def lines(text: str, *parts: str) -> list[str]:
    return [STAMP.sub("", line) for line in text.splitlines() if all(p in line for p in parts)]


@in_loop
async def test_each_recipient_gets_a_postfix_delivery_line(world: World) -> None:
    world.mx("127.0.0.1", rcpt={"gone@solo.test": "550 5.1.1 No such user"})
    qid = world.send("bob@solo.test", "gone@solo.test")
    with captured() as out:
        await world.run_once()
    assert lines(out.text, f"queue_id={qid}", "relay=") == [
        f"ip=127.0.0.1 queue_id={qid} to=<bob@solo.test> relay=mx.solo.test[127.0.0.1]:25"
        ' delay=0.00 dsn=2.0.0 status=sent msg="250 2.0.0 Queued"',
        f"ip=127.0.0.1 queue_id={qid} to=<gone@solo.test> relay=mx.solo.test[127.0.0.1]:25"
        ' delay=0.00 dsn=5.1.1 status=bounced msg="mx.solo.test [127.0.0.1] said:'
        ' 550 5.1.1 No such user"',
    ]


@in_loop
async def test_a_domain_that_does_not_exist_says_so_as_postfix_does(world: World) -> None:
    qid = world.send("bob@nowhere.test")
    with captured() as out:
        await world.run_once()
    (line,) = lines(out.text, f"queue_id={qid}")
    assert line == (
        f"queue_id={qid} to=<bob@nowhere.test> relay=none delay=0.00 dsn=5.1.2 status=bounced"
        ' msg="550 5.1.2 Host or domain name not found. Name service error for'
        ' name=nowhere.test type=MX: Host not found"'
    )


@in_loop
async def test_a_refused_connection_reads_as_postfix_writes_it(wire: World) -> None:
    qid = wire.send("bob@other.test")  # nothing listens on 127.0.0.2 nor 127.0.0.3
    with captured() as out:
        await wire.run_once()
    port = wire.port
    assert lines(out.text, "Connection refused") == [
        f"ip=127.0.0.2 relay=mx1.other.test[127.0.0.2]:{port}"
        f' msg="connect to mx1.other.test[127.0.0.2]:{port}: Connection refused"',
        f"ip=127.0.0.3 relay=mx2.other.test[127.0.0.3]:{port}"
        f' msg="connect to mx2.other.test[127.0.0.3]:{port}: Connection refused"',
        f"ip=127.0.0.3 queue_id={qid} to=<bob@other.test> relay=none delay=0.00 dsn=4.4.1"
        f' status=deferred msg="451 4.4.1 connect to mx2.other.test[127.0.0.3]:{port}:'
        ' Connection refused"',
    ]
    bob = wire.recipient(qid, "bob@other.test")
    assert bob.last_error == (
        f"451 4.4.1 connect to mx2.other.test[127.0.0.3]:{port}: Connection refused"
    )


@in_loop
async def test_a_bounce_says_why_in_words_with_a_diagnostic_code(world: World) -> None:
    world.send("bob@nowhere.test")
    await world.run_until_idle()
    (bounce,) = reports(world)
    # RFC 3464 §2.3.6: no host answered, so the diagnostic is ours, in words.
    unfolded = re.sub(r"\r?\n[ \t]+", " ", bounce.status)  # RFC 5322 §2.2.3
    assert (
        "Diagnostic-Code: X-Mailstead; Host or domain name not found. Name service error"
        " for name=nowhere.test type=MX: Host not found"
    ) in unfolded
    human = bounce.message.get_body(("plain",))
    assert human is not None
    assert "<bob@nowhere.test>: Host or domain name not found." in human.get_content()
