"""What SORT, THREAD and OBJECTID read of each message, worked out once and kept.

A :class:`Summary` holds every sort key of RFC 5256 §3 and RFC 5957 (sent
date, base subject, first From/To/Cc mailbox, display names), the threading
fields (Message-ID, References/In-Reply-To) and the RFC 8474 EMAILID and
THREADID. It is made from the message the first time a command needs it and
stored in the account index (``summaries`` table, schema 4), so sorting
100,000 messages again reads no file and parses no header: the mailbox's
summaries come back in one query, and stay in memory with the mailbox.

    summaries = summaries_for(mailbox, uids)   # {uid: Summary}
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

from mailstead.proto.imap.base_subject import base_subject, casemap
from mailstead.proto.imap.mime_words import decode_words
from mailstead.proto.imap.mimeheader import parse_addresses
from mailstead.proto.imap.search_match import body_offset, parse_fields
from mailstead.proto.imap.storage import MailboxLike

__all__ = [
    "Summary",
    "email_id",
    "message_ids",
    "summaries_for",
    "summarise",
    "thread_id",
    "threading_ids",
]

MAX_REFERENCES = 100
"""Message-IDs of one References field kept (the last ones: the nearest ancestors)."""
MAX_ID = 250  # octets of one Message-ID kept (RFC 8474 objectid is at most 255)

_SEP = "\x1e"  # between the fields of a stored summary
_VERSION = "1"
# RFC 5322 §3.6.4 msg-id, leniently: "<" something "@" something ">".
_MSG_ID = re.compile(rb"<([^<>\s]+@[^<>\s]+)>")
_CONTROL = re.compile(r"[\x00-\x1f]")
# The usual first address, ``Name <local@host>`` or ``local@host``, without
# quotes, comments or groups: read without the full RFC 5322 parser (which
# costs 40% of a summary). Anything else goes to parse_addresses.
# Folding white space is RFC 5322's (§3.2.2: SP, HTAB, CR LF), not what
# the regex module's \s also counts (VT, FF), which the parser keeps as text.
_WSP = rb"[ \t\r\n]"
_PLAIN = rb'[^"<>,:;()\\@\[\] \t\r\n]+'
_SIMPLE_ADDRESS = re.compile(
    _WSP + rb'*(?:([^"<>,:;()\\@\[\]]*?)' + _WSP + rb"*<(" + _PLAIN + rb")@(" + _PLAIN + rb")>"
    rb"|(" + _PLAIN + rb")@(" + _PLAIN + rb"))" + _WSP + rb"*(?:,|$)"
)


@dataclass(frozen=True, slots=True)
class Summary:
    """One message's sort keys and threading fields (strings already case-mapped)."""

    sent: float  # RFC 5256 §2.2 sent date, POSIX seconds (the internal date if none)
    subject: str  # RFC 5256 §2.1 base subject, case-mapped
    reply: bool  # the subject said Re/Fwd (THREAD=REFERENCES step 5)
    from_: str  # addr-mailbox of the first From address, case-mapped
    to: str
    cc: str
    display_from: str  # RFC 5957 §3 display name (or address), case-mapped
    display_to: str
    message_id: str  # "" when missing or invalid
    parents: tuple[str, ...]  # References (else In-Reply-To), oldest first
    email_id: str  # RFC 8474 §5.1

    @property
    def thread_id(self) -> str:
        """RFC 8474 §5.2 THREADID: the same for every message of one thread root."""
        return thread_id(self.parents, self.message_id, self.email_id)

    def encode(self) -> bytes:
        fields = (
            _VERSION,
            repr(self.sent),
            self.subject,
            "1" if self.reply else "",
            self.from_,
            self.to,
            self.cc,
            self.display_from,
            self.display_to,
            self.message_id,
            " ".join(self.parents),
            self.email_id,
        )
        return _SEP.join(fields).encode("utf-8", "surrogatepass")

    @classmethod
    def decode(cls, data: bytes) -> Summary | None:
        fields = data.decode("utf-8", "surrogatepass").split(_SEP)
        if len(fields) != 12 or fields[0] != _VERSION:
            return None  # from another version: made again
        _, sent, subject, reply, from_, to, cc, dfrom, dto, mid, parents, eid = fields
        return cls(
            float(sent), subject, bool(reply), from_, to, cc, dfrom, dto, mid,
            tuple(parents.split()), eid,
        )  # fmt: skip


def email_id(message: bytes) -> str:
    """RFC 8474 §5.1 EMAILID: a digest of the content (CRLF line ends).

    The same content has the same EMAILID wherever it is: a COPY or MOVE
    keeps it, as §5.1 requires, and so does an identical APPEND (allowed).
    """
    return "M" + hashlib.sha256(message).hexdigest()[:24]


def thread_id(parents: tuple[str, ...], message_id: str, email: str) -> str:
    """RFC 8474 §5.2 THREADID: a digest of the thread's root Message-ID.

    The root is the first of References (the thread's start), else the
    message's own Message-ID, so it depends on the message alone: the same
    in every mailbox and for every copy. Without any ID the message is a
    thread of its own.
    """
    root = parents[0] if parents else message_id
    if not root:
        return "T" + email[1:]
    return "T" + hashlib.sha256(root.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _text(value: bytes) -> str:
    return _CONTROL.sub(" ", decode_words(value, latin1=True))


def _first_address(fields: dict[bytes, list[bytes]], name: bytes) -> tuple[str, str]:
    """(addr-mailbox, RFC 5957 display) of the first address of field ``name``."""
    values = fields.get(name)
    if not values:
        return "", ""
    simple = _SIMPLE_ADDRESS.match(values[0])
    if simple is not None:
        phrase, local, host, bare_local, bare_host = simple.groups()
        if bare_local is not None:
            local, host, phrase = bare_local, bare_host, b""
        shown = " ".join(_text(phrase).split()) if phrase else ""
        return _text(local), shown or f"{_text(local)}@{_text(host)}"
    for display, _adl, mailbox, host in parse_addresses(values[0]):
        if host is None or mailbox is None:
            continue  # a group's start or end
        local = _text(mailbox)
        # RFC 5957 §3: the display name, else the address as addr-mailbox@addr-host.
        shown = _text(display).strip() if display else ""
        return local, shown or f"{local}@{_text(host)}"
    return "", ""


def _sent(fields: dict[bytes, list[bytes]], internaldate: float) -> float:
    """RFC 5256 §2.2: the Date field in UTC, else the internal date."""
    values = fields.get(b"date")
    if values:
        parsed = email.utils.parsedate_tz(values[0].decode("latin-1"))
        if parsed is not None and 1 <= parsed[0] <= 9999:
            try:
                return float(email.utils.mktime_tz(parsed))
            except (OverflowError, ValueError):
                pass
    return internaldate


def message_ids(value: bytes) -> list[str]:
    """The msg-ids (without the angle brackets) of a field value, in order."""
    return [m.decode("latin-1")[:MAX_ID] for m in _MSG_ID.findall(value)]


def threading_ids(fields: dict[bytes, list[bytes]]) -> tuple[str, tuple[str, ...]]:
    """The Message-ID ("" if none) and the parents: RFC 5256 §3 REFERENCES
    step 1A takes References, else the first Message-ID of In-Reply-To."""
    own = message_ids(fields.get(b"message-id", [b""])[0])
    parents = message_ids(b" ".join(fields.get(b"references", [])))[-MAX_REFERENCES:]
    if not parents:
        parents = message_ids(fields.get(b"in-reply-to", [b""])[0])[:1]
    return (own[0] if own else ""), tuple(parents)


def summarise(message: bytes, internaldate: float) -> Summary:
    """The summary of one message (bytes with CRLF line ends)."""
    fields = parse_fields(message[: body_offset(message)])
    subject = base_subject(fields.get(b"subject", [b""])[0])
    from_, display_from = _first_address(fields, b"from")
    to, display_to = _first_address(fields, b"to")
    cc, _ = _first_address(fields, b"cc")
    own, parents = threading_ids(fields)
    return Summary(
        sent=_sent(fields, internaldate),
        subject=casemap(subject.text),
        reply=subject.reply,
        from_=casemap(from_),
        to=casemap(to),
        cc=casemap(cc),
        display_from=casemap(display_from),
        display_to=casemap(display_to),
        message_id=own,
        parents=parents,
        email_id=email_id(message),
    )


def _crlf(data: bytes) -> bytes:
    if b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    return data.replace(b"\n", b"\r\n")


# Decoded summaries per open mailbox object (it lives as long as the process
# keeps the mailbox); the index holds them across processes and restarts.
_MEMORY: weakref.WeakKeyDictionary[MailboxLike, tuple[int, dict[int, Summary]]] = (
    weakref.WeakKeyDictionary()
)


def summaries_for(mailbox: MailboxLike, uids: Iterable[int]) -> dict[int, Summary]:
    """The summary of each of ``uids`` that can still be read.

    From memory, else from the index (all of the mailbox's in one query),
    else made from the message and saved to the index in one batch.
    """
    held = _MEMORY.get(mailbox)
    if held is None or held[0] != mailbox.uidvalidity:
        known: dict[int, Summary] = {}
        for uid, data in mailbox.summaries().items():
            summary = Summary.decode(data)
            if summary is not None:
                known[uid] = summary
        held = (mailbox.uidvalidity, known)
        _MEMORY[mailbox] = held
    known = held[1]
    out: dict[int, Summary] = {}
    made: dict[int, bytes] = {}
    messages = mailbox.messages
    for uid in uids:
        summary = known.get(uid)
        if summary is None:
            msg = messages.get(uid) or mailbox.retained.get(uid)
            if msg is None:
                continue
            try:
                data = mailbox.read(uid)
            except FileNotFoundError:
                continue
            summary = known[uid] = summarise(_crlf(data), msg.internaldate)
            made[uid] = summary.encode()
        out[uid] = summary
    if made:
        mailbox.save_summaries(made)
    return out
