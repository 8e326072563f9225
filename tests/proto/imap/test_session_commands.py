"""NAMESPACE, ID, ENABLE, NOOP, LOGOUT and misused UID prefixes, byte for byte."""

from __future__ import annotations

from pathlib import Path

from tests.proto.imap.imap_transcript import authed

# -- NAMESPACE, ID, ENABLE, NOOP, LOGOUT, UID misuse (RFC 9051 §6.1, §6.3) -----------------


def test_session_commands(root: Path) -> None:
    authed(root).run("""
        C: a NAMESPACE
        S: * NAMESPACE (("" "/")) NIL NIL
        S: a OK NAMESPACE completed
        C: b ID ("name" "test-client" "version" "1")
        S: * ID ("name" "Mailstead")
        S: b OK ID completed
        C: c ENABLE UTF8=ACCEPT X-UNKNOWN
        S: * ENABLED UTF8=ACCEPT
        S: c OK ENABLE completed
        C: d NOOP
        S: d OK NOOP completed
        C: e CHECK
        S: e BAD No mailbox selected
        C: f UID NOOP
        S: f BAD UID NOOP is not a command
        C: g UID SELECT INBOX
        S: g BAD UID SELECT is not a command
        C: h LOGOUT
        S: * BYE Logging out
        S: h OK LOGOUT completed
    """)
