"""IDLE and DONE, changes reported while idling, and the autologout, byte for byte."""

from __future__ import annotations

from pathlib import Path

from mailstead.limits import IMAPLimits
from tests.proto.imap.imap_transcript import IMAPTranscript, deliver, selected


def test_idle_and_done(root: Path) -> None:
    t = selected(root)
    t.run("""
        C: a IDLE
        S: + idling
        C: DONE
        S: a OK IDLE terminated
        C: b IDLE
        S: + idling
        C: nonsense
        S: b BAD Expected DONE
        C: c NOOP
        S: c OK NOOP completed
    """)
    assert not t.idling


def test_idle_reports_a_delivery_on_poll(root: Path) -> None:
    # The session polls every idle_poll_interval; 0 makes every poll look.
    t = IMAPTranscript(root, limits=IMAPLimits(idle_poll_interval=0.0)).login()
    t.select(enable_rev2=True)
    t.run("""
        C: a IDLE
        S: + idling
    """)
    assert t.idling
    deliver(root, b"Subject: new\n\nhi\n")
    t.server.poll()
    assert t.server.data_to_send() == b"* 4 EXISTS\r\n"
    t.server.poll()
    assert t.server.data_to_send() == b""
    t.run("""
        C: DONE
        S: a OK IDLE terminated
    """)


def test_timeout_says_bye(root: Path) -> None:
    t = selected(root)
    t.server.timeout()
    assert t.output() == b"* BYE Autologout; idle for too long\r\n"
    assert t.closed
