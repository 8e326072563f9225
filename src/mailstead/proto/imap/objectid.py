"""OBJECTID (RFC 8474) and PREVIEW (RFC 8970) as FETCH and STATUS see them.

* MAILBOXID (§4): ``F`` and the mailbox's UIDVALIDITY in hex. The index
  hands UIDVALIDITY out from a counter that only grows, per account, so no
  two mailboxes ever share it, a RENAME keeps it (§4.2: the ID must survive
  a rename), and a mailbox deleted and made again gets a new one.
* EMAILID (§5.1) and THREADID (§5.2): see :mod:`~mailstead.proto.imap.summary`;
  a digest of the content and of the thread's root Message-ID, so a COPY or
  MOVE keeps both, as §5.1 requires.
* PREVIEW: :mod:`~mailstead.proto.imap.preview`, computed at the first FETCH
  and kept in the index's cache. ``PREVIEW (LAZY)`` is answered the same
  way (§3.1 lets the server compute it when asked; ours costs one read).

Each value is kept in the per-message cache (``FetchSource.remember``), so
a second FETCH of them reads no file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mailstead.proto.imap.encode import quoted_or_literal
from mailstead.proto.imap.message import ParsedMessage
from mailstead.proto.imap.preview import preview
from mailstead.proto.imap.search_match import body_offset, parse_fields
from mailstead.proto.imap.summary import email_id, thread_id, threading_ids
from mailstead.proto.imap.tokens import Atom, Token

__all__ = [
    "EMAILID",
    "OBJECT_ITEMS",
    "PREVIEW",
    "THREADID",
    "fetch_value",
    "mailbox_id",
    "preview_modifiers",
]

EMAILID = "EMAILID"
THREADID = "THREADID"
PREVIEW = "PREVIEW"
OBJECT_ITEMS = frozenset({EMAILID, THREADID, PREVIEW})


def preview_modifiers(items: Sequence[Token]) -> bool:
    """Whether ``items`` are valid RFC 8970 §3.1 PREVIEW modifiers (only LAZY exists)."""
    return bool(items) and all(isinstance(i, Atom) and i.value.upper() == "LAZY" for i in items)


def mailbox_id(uidvalidity: int) -> bytes:
    """RFC 8474 §4 MAILBOXID of the mailbox with this UIDVALIDITY."""
    return b"F%08x" % uidvalidity


def _thread_id(data: bytes) -> str:
    own, parents = threading_ids(parse_fields(data[: body_offset(data)]))
    return thread_id(parents, own, email_id(data))


def fetch_value(
    kind: str,
    cached: Callable[[str], bytes | None],
    remember: Callable[[str, bytes], None],
    message: Callable[[], ParsedMessage],
    utf8: bool,
) -> bytes:
    """The response value of EMAILID, THREADID or PREVIEW, from the cache when there."""
    value = cached(kind)
    if value is None:
        data = message().data
        if kind == EMAILID:
            value = email_id(data).encode()
        elif kind == THREADID:
            value = _thread_id(data).encode()
        else:
            value = preview(message()).encode("utf-8")
        remember(kind, value)
    if kind == PREVIEW:
        # RFC 8970 §3.1: UTF-8 text in an nstring (a literal unless UTF-8 is on).
        return quoted_or_literal(value, utf8=utf8)
    return b"(" + value + b")"  # RFC 8474 §7: "EMAILID" SP "(" objectid ")"
