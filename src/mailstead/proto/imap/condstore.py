"""CONDSTORE and QRESYNC (RFC 7162): modification sequences on the wire.

The index gives every change to a mailbox (a new message, a flag change, an
expunge) the mailbox's next modseq, and logs expunges with theirs
(``store/index.py``); a modseq never goes backwards while the UIDVALIDITY
stays the same. This module turns that into the protocol:

* enabling (§3.1: ``ENABLE CONDSTORE`` and the CONDSTORE enabling commands;
  §3.2.3: ``ENABLE QRESYNC``, which enables CONDSTORE too). Once enabled, a
  session's views put ``UID`` and ``MODSEQ`` in every unsolicited FETCH and,
  with QRESYNC, ``VANISHED`` in place of EXPUNGE (``view.py``);
* the SELECT/EXAMINE parameters ``CONDSTORE`` and ``QRESYNC`` (§3.1.8,
  §3.2.5) and what a QRESYNC SELECT answers: ``VANISHED (EARLIER)`` and a
  FETCH of each message changed since the client's modseq;
* FETCH's ``CHANGEDSINCE`` and ``VANISHED`` modifiers (§3.1.4.1, §3.2.6) and
  STORE's ``UNCHANGEDSINCE`` (§3.1.3).

``[NOMODSEQ]`` (§3.1.2.2) is never sent: both mailbox formats keep a modseq
per message in the index, for every mailbox (docs/specifications.md).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from mailstead.proto.imap.context import ArgumentError, Context, Session, atom
from mailstead.proto.imap.fetch import MODSEQ, FetchItem, FetchRequest
from mailstead.proto.imap.sequence import SequenceSet, SequenceSetError, format_ranges
from mailstead.proto.imap.storage import MailboxLike
from mailstead.proto.imap.tokens import Atom, ParenList, Token
from mailstead.proto.imap.view import SelectedView, flag_list

__all__ = [
    "FetchModifiers",
    "QresyncParams",
    "SelectParams",
    "after_select",
    "enable",
    "enable_by_command",
    "fetch_modifiers",
    "highestmodseq_code",
    "parse_select_params",
    "uid_ranges",
    "unchanged_since",
    "vanished_earlier",
    "with_modseq",
]

MAX_MODSEQ = 2**63 - 1  # RFC 7162 §7 mod-sequence-value: 63 bits
MAX_SEQ_MATCH = 10_000  # pairs of QRESYNC seq-match data looked at; more are ignored
_MODSEQ_ITEM = FetchItem(MODSEQ, b"MODSEQ ")


def mod_sequence(token: Token, what: str, *, zero: bool = False) -> int:
    """A mod-sequence-value (``zero``: mod-sequence-valzer) from an atom."""
    text = token.value if isinstance(token, Atom) else ""
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_MODSEQ:
        raise ArgumentError(f"{what} needs a mod-sequence")
    value = int(text)
    if value == 0 and not zero:
        raise ArgumentError(f"{what} needs a nonzero mod-sequence")
    return value


# -- enabling (§3.1, §3.2.3) ---------------------------------------------------------


def enable(session: Session, out: list[bytes], *, qresync: bool = False) -> list[str]:
    """Turn CONDSTORE (and QRESYNC) on; the extension names newly enabled.

    §3.1: the first CONDSTORE enabling command while a mailbox is selected
    is answered with the mailbox's HIGHESTMODSEQ.
    """
    names = []
    if qresync and not session.qresync:
        session.qresync = True
        names.append("QRESYNC")
    first = not session.condstore
    if first:
        session.condstore = True
        if not qresync:
            names.append("CONDSTORE")
    view = session.view
    if view is not None:
        view.condstore = True
        view.qresync = session.qresync
        if first:
            out.append(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % view.modseq_told)
    return names


def enable_by_command(ctx: Context) -> None:
    """A CONDSTORE enabling command (§3.1) is running."""
    if not ctx.session.condstore:
        enable(ctx.session, ctx.out)


def highestmodseq_code(ctx: Context, mailbox: MailboxLike) -> bytes:
    """``HIGHESTMODSEQ n`` for the tagged OK of EXPUNGE and MOVE once CONDSTORE
    is on (a client need not wait for a FETCH to learn the modseq of an expunge)."""
    view = ctx.session.view
    if not ctx.session.condstore or view is None:
        return b""
    mailbox.refresh()  # the expunge's own modseq (the updates after tell the rest)
    view.reply_tells_modseq = True  # no untagged HIGHESTMODSEQ besides it
    return b"HIGHESTMODSEQ %d" % mailbox.highestmodseq


# -- SELECT / EXAMINE (§3.1.8, §3.2.5) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class QresyncParams:
    """``QRESYNC (uidvalidity modseq [known-uids] [(known-seqs known-uids)])``."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class SelectParams:
    """The parameters of one SELECT or EXAMINE (RFC 4466 §2.1)."""

    condstore: bool = False
    qresync: QresyncParams | None = None


def _uid_set(token: Token, what: str) -> SequenceSet:
    try:
        numbers = SequenceSet.parse(atom(token, what))
    except SequenceSetError as exc:
        raise ArgumentError(f"Invalid {what}") from exc
    if numbers.is_saved:
        raise ArgumentError(f"$ is not a {what}")
    return numbers


def _qresync(token: Token) -> QresyncParams:
    if not isinstance(token, ParenList) or not 2 <= len(token.items) <= 4:
        raise ArgumentError("QRESYNC needs (uidvalidity modseq [known-uids] [seq-match])")
    first, second, *rest = token.items
    text = first.value if isinstance(first, Atom) else ""
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 2**32:
        raise ArgumentError("QRESYNC needs a UIDVALIDITY")
    params = QresyncParams(int(text), mod_sequence(second, "QRESYNC"))
    if rest and not isinstance(rest[0], ParenList):
        params = QresyncParams(params.uidvalidity, params.modseq, _uid_set(rest.pop(0), "UID set"))
    if rest:
        match = rest.pop(0)
        if rest or not isinstance(match, ParenList) or len(match.items) != 2:
            raise ArgumentError("QRESYNC seq-match data is (sequence-set uid-set)")
        pair = (_uid_set(match.items[0], "sequence set"), _uid_set(match.items[1], "UID set"))
        params = QresyncParams(params.uidvalidity, params.modseq, params.known_uids, pair)
    return params


def parse_select_params(ctx: Context, args: tuple[Token, ...]) -> SelectParams:
    """The optional parameter list after SELECT/EXAMINE's mailbox name."""
    if not args:
        return SelectParams()
    if len(args) != 1 or not isinstance(args[0], ParenList):
        raise ArgumentError("SELECT parameters go in one parenthesized list")
    items = list(args[0].items)
    condstore = False
    qresync: QresyncParams | None = None
    while items:
        name = atom(items.pop(0), "a SELECT parameter").upper()
        if name == "CONDSTORE":
            condstore = True
        elif name == "QRESYNC":
            if not ctx.session.qresync:  # §3.2.5: BAD before ENABLE QRESYNC
                raise ArgumentError("QRESYNC must be enabled first")
            if not items:
                raise ArgumentError("QRESYNC needs its parameters")
            qresync = _qresync(items.pop(0))
        else:
            raise ArgumentError(f"Unknown SELECT parameter {name[:40]}")
    return SelectParams(condstore, qresync)


def after_select(ctx: Context, view: SelectedView, params: SelectParams) -> None:
    """What SELECT/EXAMINE adds: HIGHESTMODSEQ (§3.1.2.1: every mailbox keeps
    modseqs, so on every SELECT, as clients that saw CONDSTORE expect) and,
    for a QRESYNC with the mailbox's UIDVALIDITY, the changes since (§3.2.5)."""
    session = ctx.session
    if params.condstore or params.qresync is not None:
        session.condstore = True  # §3.1: SELECT (CONDSTORE) is an enabling command
    view.condstore = session.condstore
    view.qresync = session.qresync
    mailbox = view.mailbox
    ctx.untagged(b"OK [HIGHESTMODSEQ %d] Highest" % view.modseq_told)
    qresync = params.qresync
    if qresync is None or qresync.uidvalidity != mailbox.uidvalidity:
        return  # §3.2.5: a UIDVALIDITY that changed means a full resynchronisation
    largest = max(mailbox.uidnext - 1, 1)
    wanted = qresync.known_uids.resolve(largest) if qresync.known_uids else [(1, largest)]
    if qresync.seq_match is not None:
        wanted = _after_matching(view, wanted, qresync.seq_match, largest)
    gone = vanished_earlier(mailbox, view.uids, qresync.modseq, wanted)
    if gone:
        ctx.untagged(b"VANISHED (EARLIER) " + format_ranges(gone).encode())
    known = qresync.known_uids
    since = qresync.modseq
    rev1 = not session.rev2
    messages = mailbox.messages
    for seq, uid in enumerate(view.uids, 1):
        msg = messages.get(uid)
        if msg is None or msg.modseq <= since:
            continue
        if known is not None and not known.contains(uid, largest):
            continue
        flags = flag_list(view.shown_flags(msg, rev1=rev1))
        ctx.untagged(b"%d FETCH (UID %d FLAGS %s MODSEQ (%d))" % (seq, uid, flags, msg.modseq))


def _after_matching(
    view: SelectedView,
    wanted: list[tuple[int, int]],
    seq_match: tuple[SequenceSet, SequenceSet],
    largest: int,
) -> list[tuple[int, int]]:
    """§3.2.5.2: ``wanted`` above the last of the client's (sequence number, UID)
    pairs that still hold, below which the client knows every expunge."""
    seqs = _numbers(seq_match[0], max(len(view), 1))
    uids = _numbers(seq_match[1], largest)
    if seqs is None or uids is None or len(seqs) != len(uids):
        return wanted  # too many to look at, or not pairs: only an optimisation
    floor = 0
    for seq, uid in zip(seqs, uids, strict=True):
        if seq > len(view) or view.uids[seq - 1] != uid:
            break
        floor = uid
    return [(max(a, floor + 1), b) for a, b in wanted if b > floor]


def _numbers(numbers: SequenceSet, largest: int) -> list[int] | None:
    ranges = numbers.resolve(largest)
    if sum(b - a + 1 for a, b in ranges) > MAX_SEQ_MATCH:
        return None
    return [n for a, b in ranges for n in range(a, b + 1)]


# -- VANISHED (EARLIER) (§3.2.5, §3.2.6) ----------------------------------------------


def vanished_earlier(
    mailbox: MailboxLike, present: list[int], since: int, wanted: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """UID ranges within ``wanted`` expunged after modseq ``since``.

    From the index's expunge log when it reaches back that far; otherwise
    every UID of ``wanted`` not in ``present`` (sorted), which §3.2.5 allows:
    a client ignores UIDs it does not have. Never a UID of ``present`` (the
    session's numbering): an expunge the session has not told yet, or one
    committed since it last looked, comes as EXPUNGE/VANISHED in its turn.
    """
    if not wanted:
        return []
    gone = mailbox.expunged_since(since)
    if gone is not None:
        starts = [a for a, _ in wanted]
        found = []
        for uid in gone:
            i = bisect.bisect_right(starts, uid) - 1
            j = bisect.bisect_left(present, uid)
            numbered = j < len(present) and present[j] == uid
            if i >= 0 and uid <= wanted[i][1] and not numbered:
                found.append((uid, uid))
        return found
    absent: list[tuple[int, int]] = []
    for a, b in wanted:
        start = a
        for uid in present[bisect.bisect_left(present, a) : bisect.bisect_right(present, b)]:
            if uid > start:
                absent.append((start, uid - 1))
            start = uid + 1
        if start <= b:
            absent.append((start, b))
    return absent


def uid_ranges(ctx: Context, view: SelectedView, token: Token) -> list[tuple[int, int]]:
    """The UID ranges a UID command's set names, ``*`` being the last UID given
    out (so a VANISHED may name expunged UIDs above every present one)."""
    numbers = _uid_set(token, "UID set") if atom(token, "a UID set") != "$" else None
    if numbers is None:  # RFC 5182 $
        saved = ctx.session.saved or []
        return SequenceSet.of(saved).resolve(max(saved, default=0))
    if numbers.uses_star:
        return numbers.resolve(max(view.mailbox.uidnext - 1, view.uids[-1] if view.uids else 0))
    return numbers.resolve(max(max(a, b) for a, b in numbers.ranges))


# -- FETCH modifiers (§3.1.4.1, §3.2.6) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchModifiers:
    """FETCH ``(CHANGEDSINCE m [VANISHED])``; None: not given."""

    changed_since: int | None = None
    vanished: bool = False


def fetch_modifiers(ctx: Context, token: Token) -> FetchModifiers:
    if not isinstance(token, ParenList) or not token.items:
        raise ArgumentError("FETCH modifiers go in one parenthesized list")
    items = list(token.items)
    changed_since: int | None = None
    vanished = False
    while items:
        name = atom(items.pop(0), "a FETCH modifier").upper()
        if name == "CHANGEDSINCE" and items:
            changed_since = mod_sequence(items.pop(0), "CHANGEDSINCE", zero=True)
        elif name == "VANISHED":
            # §3.2.6: only in UID FETCH, after ENABLE QRESYNC, with CHANGEDSINCE.
            if not ctx.command.uid:
                raise ArgumentError("VANISHED is for UID FETCH")
            if not ctx.session.qresync:
                raise ArgumentError("QRESYNC must be enabled first")
            vanished = True
        else:
            raise ArgumentError(f"Unknown FETCH modifier {name[:40]}")
    if vanished and changed_since is None:
        raise ArgumentError("VANISHED needs CHANGEDSINCE")
    enable_by_command(ctx)
    return FetchModifiers(changed_since, vanished)


def with_modseq(request: FetchRequest) -> FetchRequest:
    """``request`` with the MODSEQ item (CHANGEDSINCE implies it, §3.1.4.1)."""
    if any(item.kind == MODSEQ for item in request.items):
        return request
    return FetchRequest.of([*request.items, _MODSEQ_ITEM])


# -- STORE (§3.1.3) --------------------------------------------------------------------


def unchanged_since(ctx: Context, token: ParenList) -> int:
    """STORE's ``(UNCHANGEDSINCE m)``: the modseq a message may not have passed."""
    items = token.items
    if len(items) != 2 or atom(items[0], "a STORE modifier").upper() != "UNCHANGEDSINCE":
        raise ArgumentError("The STORE modifier is (UNCHANGEDSINCE mod-sequence)")
    value = mod_sequence(items[1], "UNCHANGEDSINCE", zero=True)
    enable_by_command(ctx)
    return value
