"""COMPRESS=DEFLATE (RFC 4978) in the protocol engine, as C:/S: transcripts.

The engine only answers and says so (``StartCompression``); the session
(net/imap_session.py) does the DEFLATE, so these transcripts stay readable:
what follows the OK here is what the session would inflate and deflate.
tests/net/test_deflate.py and tests/e2e/test_imap_compress.py cover the rest.
"""

from __future__ import annotations

from pathlib import Path

from mailstead.proto.imap.events import StartCompression
from tests.proto.imap.imap_transcript import IMAPTranscript, authed


def test_compress_deflate_then_a_second_compress(root: Path) -> None:
    # RFC 4978 §3 example; a second COMPRESS: NO [COMPRESSIONACTIVE] (RFC 5530 §3).
    t = authed(root)
    t.run("""
        C: a COMPRESS DEFLATE
        S: a OK DEFLATE active
        C: b COMPRESS DEFLATE
        S: b NO [COMPRESSIONACTIVE] DEFLATE is active already
        C: c NOOP
        S: c OK NOOP completed
    """)
    assert t.events[-1] == StartCompression(b"")


def test_what_follows_compress_is_handed_to_the_session(root: Path) -> None:
    # Compressed bytes the client sent behind the command are not parsed as
    # commands: the session inflates them first.
    t = authed(root)
    assert t.feed(b"a compress deflate\r\n\x4a\x4c\x4e\x02\x00") == b"a OK DEFLATE active\r\n"
    assert t.events[-1] == StartCompression(b"\x4a\x4c\x4e\x02\x00")


def test_compress_needs_a_login_and_a_known_mechanism(root: Path) -> None:
    caps = _greeting_caps(root)
    IMAPTranscript(root).run(f"""
        S: * OK [CAPABILITY {caps}] mx.example.test IMAP4rev2 ready
        C: a COMPRESS DEFLATE
        S: a BAD Log in first
    """)
    authed(root).run("""
        C: a COMPRESS GZIP
        S: a BAD Unknown compression mechanism
        C: b COMPRESS
        S: b BAD COMPRESS needs a mechanism name
        C: c COMPRESS DEFLATE DEFLATE
        S: c BAD COMPRESS needs a mechanism name
    """)


def test_capability_names_compress_deflate(root: Path) -> None:
    assert " COMPRESS=DEFLATE " in authed(root).say("a CAPABILITY")


def _greeting_caps(root: Path) -> str:
    said = IMAPTranscript(root).output().decode()
    return said.split("[CAPABILITY ", 1)[1].split("]", 1)[0]
