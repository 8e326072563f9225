"""SORT and THREAD (RFC 5256), with DISPLAYFROM/DISPLAYTO (RFC 5957) and ESORT (RFC 5267).

    C: a UID SORT RETURN (MIN MAX COUNT) (REVERSE DATE SUBJECT) UTF-8 UNSEEN
    C: b THREAD REFERENCES UTF-8 SINCE 1-Jan-2024

The search part is SEARCH's own (:func:`~mailstead.proto.imap.search.parse_search`
and its matcher); the keys come from the messages' summaries
(:mod:`~mailstead.proto.imap.summary`), which the index keeps, so a second
SORT of a large mailbox reads no file. Ties, whatever the criteria, go by
sequence number (RFC 5256 §3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailstead.proto.imap.context import ArgumentError, Context, Reply, no
from mailstead.proto.imap.message_commands import matching
from mailstead.proto.imap.search import (
    All,
    BadCharset,
    SearchQuery,
    SearchSyntaxError,
    parse_search,
)
from mailstead.proto.imap.storage import MessageLike
from mailstead.proto.imap.summary import Summary, summaries_for
from mailstead.proto.imap.thread import Item, ordered_subject, references
from mailstead.proto.imap.tokens import Atom, ParenList, Token
from mailstead.proto.imap.view import SelectedView

__all__ = ["SORT_KEYS", "THREAD_ALGORITHMS", "Criterion", "parse_criteria", "sort", "thread"]

# RFC 5256 §3 and RFC 5957 §3: what each key compares. None: from the record.
_Field = Callable[[Summary], str | float]
_SUMMARY_KEYS: dict[str, _Field] = {
    "CC": lambda s: s.cc,
    "DATE": lambda s: s.sent,
    "FROM": lambda s: s.from_,
    "SUBJECT": lambda s: s.subject,
    "TO": lambda s: s.to,
    "DISPLAYFROM": lambda s: s.display_from,
    "DISPLAYTO": lambda s: s.display_to,
}
SORT_KEYS = frozenset({"ARRIVAL", "SIZE", *_SUMMARY_KEYS})
THREAD_ALGORITHMS = {"ORDEREDSUBJECT": ordered_subject, "REFERENCES": references}
MAX_CRITERIA = 32


@dataclass(frozen=True, slots=True)
class Criterion:
    """One sort key, perhaps after REVERSE."""

    key: str
    reverse: bool = False


def _word(token: Token) -> str:
    return token.value.upper() if isinstance(token, Atom) else ""


def parse_criteria(token: Token) -> tuple[Criterion, ...]:
    """RFC 5256 §4 ``sort-criteria``: ``(`` [REVERSE] key ... ``)``."""
    if not isinstance(token, ParenList) or not token.items:
        raise ArgumentError("SORT needs a parenthesized list of sort criteria")
    if len(token.items) > MAX_CRITERIA:
        raise ArgumentError("Too many sort criteria")
    out: list[Criterion] = []
    reverse = False
    for item in token.items:
        word = _word(item)
        if word == "REVERSE" and not reverse:
            reverse = True
            continue
        if word not in SORT_KEYS:
            raise ArgumentError("Unknown sort criterion")
        out.append(Criterion(word, reverse))
        reverse = False
    if reverse:
        raise ArgumentError("REVERSE must be followed by a sort key")
    return tuple(out)


def _query(ctx: Context, head: list[Token], rest: Sequence[Token]) -> SearchQuery:
    """SEARCH's parser on ``[RETURN (...)] CHARSET <charset> <keys>``."""
    if not rest:
        raise ArgumentError("Missing charset")
    tokens = (*head, Atom("CHARSET"), *rest)
    return parse_search(tokens, uid_mode=ctx.command.uid)


def _matching(ctx: Context, view: SelectedView, query: SearchQuery) -> list[tuple[int, int]]:
    """(sequence number, UID) of every message the search program matches."""
    uids = view.uids
    if isinstance(query.program, All):
        return [(seq, uid) for seq, uid in enumerate(uids, 1) if view.record(uid) is not None]
    rev1 = not ctx.session.rev2
    return list(
        matching(
            view.mailbox,
            uids,
            view.record,
            query,
            flags=lambda msg: view.shown_flags(msg, rev1=rev1),
            saved=ctx.session_saved(),
        )
    )


def _sorted(
    found: list[tuple[int, int]],
    criteria: Sequence[Criterion],
    records: Callable[[int], MessageLike | None],
    summaries: dict[int, Summary],
) -> list[tuple[int, int]]:
    """``found`` (in sequence order) sorted: one stable pass per criterion, last first."""
    rows = list(found)
    for criterion in reversed(criteria):
        name = criterion.key
        key: Callable[[tuple[int, int]], str | float | int]
        if name == "ARRIVAL":

            def key(row: tuple[int, int]) -> float:
                msg = records(row[1])
                return msg.internaldate if msg is not None else 0.0

        elif name == "SIZE":

            def key(row: tuple[int, int]) -> int:
                msg = records(row[1])
                return msg.size if msg is not None else 0

        else:
            field = _SUMMARY_KEYS[name]

            def key(row: tuple[int, int], field: _Field = field) -> str | float:
                return field(summaries[row[1]])

        # Python's sort is stable also with reverse=True: ties keep the
        # order of the later criteria, and in the end the sequence order.
        rows.sort(key=key, reverse=criterion.reverse)
    return rows


def _sequence_set_in_order(numbers: Sequence[int]) -> bytes:
    """RFC 5267 §4.2 ALL: the numbers in sort order; ascending runs as ranges."""
    parts: list[bytes] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(b"%d" % numbers[i] if i == j else b"%d:%d" % (numbers[i], numbers[j]))
        i = j + 1
    return b",".join(parts)


def _esort(ctx: Context, numbers: Sequence[int], options: frozenset[str]) -> bytes:
    """RFC 5267 §4.2: ESEARCH for SORT; MIN and MAX are the first and last in sort order."""
    tag = ctx.command.tag.replace("\\", "\\\\").replace('"', '\\"')
    out = [b'ESEARCH (TAG "%s")' % tag.encode("ascii", "replace")]
    if ctx.command.uid:
        out.append(b"UID")
    if numbers and "MIN" in options:
        out.append(b"MIN %d" % numbers[0])
    if numbers and "MAX" in options:
        out.append(b"MAX %d" % numbers[-1])
    if "COUNT" in options:
        out.append(b"COUNT %d" % len(numbers))
    if numbers and "ALL" in options:
        out.append(b"ALL " + _sequence_set_in_order(numbers))
    return b" ".join(out)


def _view(ctx: Context) -> SelectedView:
    view = ctx.session.view
    if view is None:
        raise ArgumentError("No mailbox selected")
    return view


def sort(ctx: Context) -> Reply:
    """SORT / UID SORT (RFC 5256 §3), RETURN options as RFC 5267 §4.2 ESORT."""
    view = _view(ctx)
    args = list(ctx.command.args)
    head: list[Token] = []
    if args and _word(args[0]) == "RETURN":  # RFC 5267 §4.2
        if len(args) < 2:
            raise ArgumentError("RETURN needs options")
        head, args = args[:2], args[2:]
    if not args:
        raise ArgumentError("SORT needs sort criteria")
    criteria = parse_criteria(args[0])
    try:
        query = _query(ctx, head, args[1:])
    except BadCharset:
        return no("Only UTF-8 is supported", b"BADCHARSET (UTF-8)")
    except SearchSyntaxError as exc:
        raise ArgumentError(str(exc)) from None
    found = _matching(ctx, view, query)
    summaries: dict[int, Summary] = {}
    if any(c.key in _SUMMARY_KEYS for c in criteria):
        summaries = summaries_for(view.mailbox, [uid for _, uid in found])
        found = [row for row in found if row[1] in summaries]  # else unreadable now
    rows = _sorted(found, criteria, view.record, summaries)
    uid_mode = ctx.command.uid
    numbers = [uid if uid_mode else seq for seq, uid in rows]
    if query.saves:  # RFC 5182 §2.4: SAVE in SORT's RETURN, with ESORT
        options = query.return_options or frozenset()
        uids = [uid for _, uid in rows]
        if uids and options & {"MIN", "MAX"} and not options & {"ALL", "COUNT"}:
            ends = {uids[0]} if "MIN" in options else set()
            uids = sorted(ends | ({uids[-1]} if "MAX" in options else set()))
        ctx.session_save(sorted(uids))
    if query.return_options is None:
        ctx.untagged(b"SORT" + b"".join(b" %d" % n for n in numbers))
    elif query.return_options != {"SAVE"}:
        ctx.untagged(_esort(ctx, numbers, query.return_options))
    # RFC 9051 §7.5.1: no EXPUNGE while numbers are out (UID SORT may).
    return Reply(b"OK", b"SORT completed", b"", ctx.command.uid)


def thread(ctx: Context) -> Reply:
    """THREAD / UID THREAD (RFC 5256 §3): ``* THREAD (2)(3 6 (4 23)(44 7 96))``."""
    view = _view(ctx)
    args = ctx.command.args
    if not args:
        raise ArgumentError("THREAD needs an algorithm")
    algorithm = THREAD_ALGORITHMS.get(_word(args[0]))
    if algorithm is None:
        raise ArgumentError("Unknown threading algorithm")
    try:
        query = _query(ctx, [], args[1:])
    except BadCharset:
        return no("Only UTF-8 is supported", b"BADCHARSET (UTF-8)")
    except SearchSyntaxError as exc:
        raise ArgumentError(str(exc)) from None
    found = _matching(ctx, view, query)
    summaries = summaries_for(view.mailbox, [uid for _, uid in found])
    uid_mode = ctx.command.uid
    items = [
        Item(uid if uid_mode else seq, seq, summaries[uid])
        for seq, uid in found
        if uid in summaries
    ]
    body = algorithm(items)
    ctx.untagged(b"THREAD " + body if body else b"THREAD")
    return Reply(b"OK", b"THREAD completed", b"", ctx.command.uid)
