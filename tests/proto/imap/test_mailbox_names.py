"""Mailbox names from clients: decoded, checked, and matched against LIST patterns."""

from __future__ import annotations

import time

import pytest

from mailstead.proto.imap.mailbox_names import (
    MailboxNameError,
    encode_mailbox_name,
    list_pattern,
    normalise_mailbox_name,
)


@pytest.mark.parametrize(
    ("raw", "utf8", "name"),
    [
        (b"INBOX", False, "INBOX"),
        (b"inbox", False, "INBOX"),
        (b"InBoX/sub", True, "INBOX/sub"),
        (b"Inboxes", False, "Inboxes"),
        (b"Work/Projects", False, "Work/Projects"),
        (b"Work/v1.2", False, "Work/v1.2"),  # a "." inside a level is fine
        (b"Entw&APw-rfe", False, "Entwürfe"),
        ("Entwürfe".encode(), True, "Entwürfe"),
        (b"Entw&APw-rfe", True, "Entw&APw-rfe"),  # UTF-8 mode takes "&" literally
        (b"Tom &- Jerry", False, "Tom & Jerry"),
        (("a/" * 15 + "a").encode(), False, "a/" * 15 + "a"),
        (b"x" * 255, True, "x" * 255),
    ],
)
def test_valid_names(raw: bytes, utf8: bool, name: str) -> None:
    assert normalise_mailbox_name(raw, utf8=utf8) == name


@pytest.mark.parametrize(
    ("raw", "utf8"),
    [
        (b"", False),
        (b"/etc", False),
        (b"Work/", False),
        (b"Work//x", False),
        (b"..", False),
        (b"Work/../../bob", False),
        (b"./x", False),
        (b".hidden", False),
        (b"Work/.x", False),
        (b"~bob", False),
        (b"~bob/INBOX", True),
        (b"a\0b", True),
        (b"a\rb", True),
        (b"a\nb", True),
        (b"a&AAk-b", False),  # a TAB, encoded
        ("a\u0085b".encode(), True),  # a C1 control
        (b"a\\b", False),
        (b"a%", False),
        (b"a*", False),
        (b"x" * 256, True),
        ("é".encode() * 128, True),  # 256 bytes
        (("a/" * 16 + "a").encode(), False),  # 17 levels
        (b"\xff", True),  # not UTF-8
        ("Entwürfe".encode(), False),  # 8-bit is not modified UTF-7
        (b"&AGE-", False),  # non-canonical modified UTF-7
        (b"&Jjo", False),
    ],
)
def test_invalid_names(raw: bytes, utf8: bool) -> None:
    with pytest.raises(MailboxNameError):
        normalise_mailbox_name(raw, utf8=utf8)


def test_encode_for_responses() -> None:
    assert encode_mailbox_name("Entwürfe/&", utf8=False) == b"Entw&APw-rfe/&-"
    assert encode_mailbox_name("Entwürfe/&", utf8=True) == "Entwürfe/&".encode()


NAMES = ["INBOX", "INBOX/Sub", "INBOX/Sub/Deep", "Work", "Work/Projects", "Work/a/b", "Inboxes"]


@pytest.mark.parametrize(
    ("reference", "pattern", "matches"),
    [
        ("", "*", NAMES),
        ("", "%", ["INBOX", "Work", "Inboxes"]),
        ("", "inbox", ["INBOX"]),
        ("", "InBox/%", ["INBOX/Sub"]),
        ("", "inb*", ["INBOX", "INBOX/Sub", "INBOX/Sub/Deep"]),
        ("", "Inb*", ["INBOX", "INBOX/Sub", "INBOX/Sub/Deep", "Inboxes"]),
        ("Work/", "%", ["Work/Projects"]),
        ("Work/", "*", ["Work/Projects", "Work/a/b"]),
        ("Work", "/%", ["Work/Projects"]),
        ("", "work", []),  # only INBOX is case-insensitive
        ("", "%/%", ["INBOX/Sub", "Work/Projects"]),
        ("", "*b", ["INBOX/Sub", "Work/a/b"]),
        ("", "W%k", ["Work"]),
        ("", "", []),
    ],
)
def test_list_patterns(reference: str, pattern: str, matches: list[str]) -> None:
    match = list_pattern(reference, pattern)
    assert [n for n in NAMES if match(n)] == matches


@pytest.mark.parametrize(
    "pattern",
    ["%*" * 50 + "a", "*a" * 100 + "*b", "%a" * 100 + "%b", "*%" * 100 + "x" * 200],
)
def test_hostile_patterns_stay_fast(pattern: str) -> None:
    match = list_pattern("", pattern)
    start = time.perf_counter()
    for name in ("a" * 254 + "c", "a/" * 127 + "a", "a" * 255):
        match(name)
    assert time.perf_counter() - start < 0.5
