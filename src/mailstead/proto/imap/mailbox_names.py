"""Mailbox names as clients send them: decoding, validation, LIST patterns.

The hierarchy separator is "/" (RFC 9051 §5.1.1); the store maps
``Work/Projects`` onto Maildir++ ``.Work.Projects`` and escapes a "." inside
a component, so "." is allowed here but a component may not start with it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from mailstead.proto.imap.utf7 import decode_mutf7, encode_mutf7

SEPARATOR = "/"
MAX_NAME_BYTES = 255
MAX_LEVELS = 16
_INBOX = "INBOX"


class MailboxNameError(ValueError):
    """A mailbox name the server refuses; the message is safe to show the client."""


def _canonical_inbox(name: str) -> str:
    """RFC 9051 §5.1: "INBOX" is case-insensitive, also as the first level."""
    head, sep, rest = name.partition(SEPARATOR)
    return _INBOX + sep + rest if head.upper() == _INBOX else name


def normalise_mailbox_name(raw: bytes, *, utf8: bool) -> str:
    """The name a client sent, decoded and checked; ``MailboxNameError`` if unusable.

    ``utf8``: IMAP4rev2 or UTF8=ACCEPT is on, names are UTF-8 (RFC 9051
    §5.1, RFC 6855 §3); else they are modified UTF-7 (RFC 3501 §5.1.3).
    """
    try:
        name = raw.decode("utf-8") if utf8 else decode_mutf7(raw.decode("ascii"))
    except ValueError:
        encoding = "UTF-8" if utf8 else "modified UTF-7"
        raise MailboxNameError(f"Mailbox name is not valid {encoding}") from None
    _check(name)
    return _canonical_inbox(name)


def _check(name: str) -> None:
    if not name:
        raise MailboxNameError("Empty mailbox name")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise MailboxNameError("Mailbox name too long")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        raise MailboxNameError("Control character in mailbox name")
    if "%" in name or "*" in name:  # RFC 9051 §5.1: wildcards are not name characters
        raise MailboxNameError("Wildcard in mailbox name")
    if "\\" in name:
        raise MailboxNameError("Backslash in mailbox name")
    if name.startswith("~"):  # RFC 9051 §5.1.2: "~user" names another account
        raise MailboxNameError("Mailbox name may not start with ~")
    if name.startswith(SEPARATOR) or name.endswith(SEPARATOR):
        raise MailboxNameError("Mailbox name may not start or end with /")
    parts = name.split(SEPARATOR)
    if len(parts) > MAX_LEVELS:
        raise MailboxNameError("Mailbox hierarchy too deep")
    for part in parts:
        if not part:
            raise MailboxNameError("Empty level in mailbox name")
        if part in (".", ".."):
            raise MailboxNameError("Mailbox name may not contain . or .. levels")
        if part.startswith("."):  # "." is the Maildir++ separator on disk
            raise MailboxNameError("Mailbox level may not start with .")


def encode_mailbox_name(name: str, *, utf8: bool) -> bytes:
    """``name`` as it goes into a response, before quoting (see :mod:`encode`)."""
    return name.encode("utf-8") if utf8 else encode_mutf7(name).encode("ascii")


def list_pattern(reference: str, pattern: str) -> Callable[[str], bool]:
    """A matcher for LIST ``reference pattern`` (RFC 9051 §6.3.9).

    The reference and the pattern are joined (simple concatenation, as the
    RFC's examples do). "*" matches anything, "%" anything but "/". "INBOX"
    as a first level matches case-insensitively; other characters exactly.
    The match runs an NFA over the pattern, at most ``len(name) x
    len(pattern)`` steps, so hostile patterns cannot backtrack for long.
    """
    joined = reference + pattern
    # Collapse runs of wildcards: any "*" in a run makes it "*", else it is "%".
    items: list[str] = []
    for ch in joined:
        if ch in "*%" and items and items[-1] in ("*", "%"):
            items[-1] = "*" if "*" in (ch, items[-1]) else "%"
        else:
            items.append(ch)
    literals = sum(1 for ch in items if ch not in "*%")
    return lambda name: _match(items, literals, name)


def _match(items: list[str], literals: int, name: str) -> bool:
    if literals > len(name):
        return False
    inbox = name == _INBOX or name.startswith(_INBOX + SEPARATOR)
    count = len(items)

    def close(states: set[int]) -> set[int]:
        # A wildcard may match nothing: being before it is being after it too.
        todo = list(states)
        while todo:
            i = todo.pop()
            if i < count and items[i] in "*%" and i + 1 not in states:
                states.add(i + 1)
                todo.append(i + 1)
        return states

    states = close({0})
    for pos, ch in enumerate(name):
        fold = inbox and pos < 5
        step: set[int] = set()
        for i in states:
            if i == count:
                continue
            item = items[i]
            if item == "*" or (item == "%" and ch != SEPARATOR):
                step.add(i)  # the wildcard eats ch and may eat more
            elif item == ch or (fold and item.upper() == ch):
                step.add(i + 1)
        if not step:
            return False
        states = close(step)
    return count in states
