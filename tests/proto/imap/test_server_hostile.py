"""Hostile and broken input to the IMAP server: one line each, the server stays bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailstead.limits import IMAPLimits
from tests.proto.imap.imap_transcript import (
    MESSAGES,
    PLAIN,
    WHEN,
    IMAPTranscript,
    created,
    deliver,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "home" / "Maildir"
    deliver(root, *MESSAGES, when=WHEN)
    return root


def fresh(root: Path, limits: IMAPLimits | None = None, *, plain: bool = False) -> IMAPTranscript:
    t = IMAPTranscript(
        root, PLAIN if plain else IMAPTranscript(root).server.settings, limits=limits
    )
    assert t.output().startswith(b"* OK [CAPABILITY ")
    return t


def selected(root: Path, limits: IMAPLimits | None = None) -> IMAPTranscript:
    return IMAPTranscript(root, limits=limits).login().select()


def test_huge_literal_before_login_is_bye_and_nothing_is_buffered(root: Path) -> None:
    t = fresh(root, plain=True)
    assert t.feed(b"a LOGIN {4294967295}\r\n") == b"* BYE Literal too large\r\n"
    assert t.closed
    assert t.feed(b"x" * 100_000) == b""
    assert not t.server._parser._buf  # nothing kept for an anonymous peer


def test_huge_non_synchronising_literal_before_login_is_bye(root: Path) -> None:
    t = fresh(root)
    assert t.feed(b"a LOGIN {4294967295+}\r\nxxxx") == b"* BYE Literal too large\r\n"
    assert t.closed


def test_append_over_the_limit_is_toobig_without_a_continuation(root: Path) -> None:
    t = IMAPTranscript(root, limits=IMAPLimits(append_limit=100)).login()
    assert t.say("a APPEND INBOX {101}") == (
        "a NO [TOOBIG] Literal too large; the limit is 100 octets\r\n"
    )
    assert t.say("b APPEND INBOX {100}") == "+ Ready for literal data\r\n"


def test_non_synchronising_append_over_the_limit_is_counted_down(root: Path) -> None:
    t = IMAPTranscript(root, limits=IMAPLimits(append_limit=100)).login()
    assert t.feed(b"a APPEND INBOX {101+}\r\n" + b"x" * 101 + b"\r\nb NOOP\r\n") == (
        b"a NO [TOOBIG] Literal too large; the limit is 100 octets\r\nb OK NOOP completed\r\n"
    )
    assert IMAPTranscript(root).uidvalidity() and not list((root / "cur").iterdir())


BAD_NAMES = ["../x", "INBOX/../../x", "/etc", "~bob", "a//b", "..", ".hidden", "a/./b", "x/"]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize(
    "command",
    [
        "CREATE {}",
        "SELECT {}",
        "EXAMINE {}",
        "DELETE {}",
        "RENAME INBOX {}",
        "RENAME {} Ok",
        "STATUS {} (MESSAGES)",
        "SUBSCRIBE {}",
        "APPEND {} {{1+}}\r\nx",
    ],
)
def test_hostile_mailbox_names_are_refused(root: Path, name: str, command: str) -> None:
    t = IMAPTranscript(root).login()
    before = sorted(str(p) for p in root.parent.parent.rglob("*"))
    line = "c " + command.format(f'"{name}"')
    said = t.say(line)
    if command.startswith("CREATE") and name == "x/":
        # RFC 9051 §6.3.4: a trailing separator only says children will follow.
        assert created(said, "c")
        return
    assert said.startswith("c NO [CANNOT] ") or said.startswith("c BAD "), said
    after = sorted(str(p) for p in root.parent.parent.rglob("*"))
    assert after == before
    assert not (root.parent / "x").exists() and not (root.parent.parent / "x").exists()


def test_copy_to_a_hostile_name_is_refused(root: Path) -> None:
    t = selected(root)
    assert t.say('c COPY 1 "../x"').startswith("c NO [CANNOT] ")
    assert t.say('c MOVE 1 "/etc"').startswith("c NO [CANNOT] ")
    assert sorted(p.name for p in root.parent.iterdir()) == ["Maildir"]


def test_twenty_bad_commands_end_the_session(root: Path) -> None:
    t = IMAPTranscript(root).login()
    for i in range(19):
        assert t.say(f"x{i} FROB") == f"x{i} BAD Unknown command FROB\r\n"
    assert t.say("x19 FROB") == "x19 BAD Unknown command FROB\r\n* BYE Too many bad commands\r\n"
    assert t.closed


def test_bad_commands_before_login_count_too(root: Path) -> None:
    t = fresh(root, IMAPLimits(errors_per_session=3))
    assert t.feed(b"\x01\r\n(\r\nx FROB\r\n") == (
        b"* BAD Invalid tag\r\n* BAD Invalid tag\r\nx BAD Unknown command FROB\r\n"
        b"* BYE Too many bad commands\r\n"
    )


def test_deep_nesting_is_bad(root: Path) -> None:
    t = selected(root)
    assert t.say("a SEARCH " + "(" * 40 + "ALL" + ")" * 40) == "a BAD Lists nested too deeply\r\n"
    assert t.say("b NOOP") == "b OK NOOP completed\r\n"


def test_overlong_line_is_bad_and_the_session_goes_on(root: Path) -> None:
    t = IMAPTranscript(root, limits=IMAPLimits(command_line=200)).login()
    assert t.feed(b"a NOOP " + b"x" * 300 + b"\r\n") == b"a BAD Line too long\r\n"
    assert t.feed(b"b NOOP " + b"y" * 5000) == b"b BAD Line too long\r\n"
    assert t.feed(b"y" * 5000) == b""
    assert t.feed(b"\r\nc NOOP\r\n") == b"c OK NOOP completed\r\n"


def test_fetch_past_the_end_is_bad(root: Path) -> None:
    t = selected(root)
    assert t.say("a FETCH 4 FLAGS") == "a BAD Message sequence number out of range\r\n"
    assert t.say("b FETCH 1:99 FLAGS") == "b BAD Message sequence number out of range\r\n"
    assert t.say("c STORE 0 +FLAGS (\\Seen)").startswith("c BAD ")
    # UIDs that do not exist are simply not there (RFC 9051 §6.4.9).
    assert t.say("d UID FETCH 99 FLAGS") == "d OK FETCH completed\r\n"


def test_store_in_examine_is_read_only(root: Path) -> None:
    t = IMAPTranscript(root).login()
    t.say("a EXAMINE INBOX")
    assert t.say("b STORE 1 +FLAGS (\\Seen)") == "b NO [READ-ONLY] Mailbox is read-only\r\n"
    assert t.say("c EXPUNGE") == "c NO [READ-ONLY] Mailbox is read-only\r\n"
    assert t.say("d UID EXPUNGE 1") == "d NO [READ-ONLY] Mailbox is read-only\r\n"
    assert [p.name.endswith(":2,") for p in (root / "new").iterdir()] == [False] * 3


def test_sasl_response_too_long_is_refused(root: Path) -> None:
    t = fresh(root, IMAPLimits(sasl_line=100))
    assert t.say("a AUTHENTICATE PLAIN") == "+ \r\n"
    assert t.feed(b"A" * 500 + b"\r\n") == b"a BAD Response too long\r\n"
    assert t.say("b NOOP") == "b OK NOOP completed\r\n"


def test_garbage_sasl_response_is_bad(root: Path) -> None:
    t = fresh(root)
    t.say("a AUTHENTICATE PLAIN")
    said = t.say("!!!not base64!!!")
    assert said.startswith("a BAD "), said
    assert not t.server.authenticated


def test_too_many_mailboxes_is_limit(root: Path) -> None:
    t = IMAPTranscript(root, limits=IMAPLimits(mailboxes_per_account=3)).login()
    assert created(t.say("a CREATE One"), "a")
    assert created(t.say("b CREATE Two"), "b")
    assert t.say("c CREATE Three") == "c NO [LIMIT] Too many mailboxes\r\n"


def test_keyword_flood_is_limit(root: Path) -> None:
    # Maildir has 26 keyword letters a folder (dovecot-keywords).
    t = selected(root)
    flags = " ".join(f"$k{i}" for i in range(26))
    # RFC 3501 §7.2.6: the new keywords are announced (FLAGS, PERMANENTFLAGS).
    assert t.say(f"a STORE 1 +FLAGS.SILENT ({flags})").endswith("a OK STORE completed\r\n")
    assert t.say("b STORE 1 +FLAGS.SILENT ($one-too-many)") == (
        "b NO [LIMIT] Too many keywords in this mailbox\r\n"
    )


def test_a_symlinked_folder_is_not_followed_out(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "cur").mkdir(parents=True)
    (outside / "new").mkdir()
    (outside / "tmp").mkdir()
    os.symlink(outside, root / ".Link")
    t = IMAPTranscript(root).login()
    said = t.say("a DELETE Link")
    assert outside.exists(), said
