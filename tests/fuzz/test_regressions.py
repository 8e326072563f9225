"""Defects the fuzz tests found, one line each, so they stay fixed."""

from __future__ import annotations

from pathlib import Path

from tests.proto.imap.imap_transcript import IMAPTranscript
from tests.proto.pop3.transcript import Transcript as POP3Transcript
from tests.proto.smtp.transcript import SUBMISSIONS
from tests.proto.smtp.transcript import Transcript as SMTPTranscript


def test_pop3_list_and_uidl_end_in_a_dot_when_every_message_is_deleted() -> None:
    # A piece of the lazy listing with no live line was taken for its end.
    assert (
        POP3Transcript()
        .login()
        .feed(b"DELE 1\r\nDELE 2\r\nDELE 3\r\nLIST\r\nUIDL\r\n")
        .endswith(b"+OK 0 messages (0 octets)\r\n.\r\n+OK Unique-ID listing follows\r\n.\r\n")
    )


def test_imap_autologout_after_logout_says_nothing(tmp_path: Path) -> None:
    # timeout() on a closed connection said a second "* BYE" after LOGOUT's.
    t = IMAPTranscript(tmp_path / "Maildir")
    assert t.feed(b"a LOGOUT\r\n").endswith(b"a OK LOGOUT completed\r\n")
    t.server.timeout()
    assert t.server.data_to_send() == b""


def test_smtp_auth_mechanism_names_are_ascii() -> None:
    # "PLAıN".upper() == "PLAIN": the dotless i selected PLAIN (cf. verbs in smtp/server.py).
    assert SMTPTranscript(SUBMISSIONS).handshake().feed(b"AUTH PLA\xc4\xb1N\r\n") == (
        b"504 5.5.4 Unrecognized authentication type\r\n"
    )


def test_pop3_auth_mechanism_names_are_ascii() -> None:
    assert (
        POP3Transcript()
        .feed(b"AUTH PLA\xc4\xb1N\r\n")
        .endswith(b"-ERR Unrecognized authentication type\r\n")
    )
