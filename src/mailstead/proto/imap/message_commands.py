"""Commands on the messages of the selected mailbox (RFC 9051 §6.4).

FETCH, STORE, SEARCH, COPY, MOVE (RFC 6851), EXPUNGE, UID EXPUNGE
(RFC 4315), CLOSE, UNSELECT (RFC 3691) and rev1's CHECK. The ``UID``
prefix (§6.4.9) switches the numbers a command takes and returns.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence

from mailstead.proto.imap import condstore
from mailstead.proto.imap.context import ArgumentError, Context, Reply, atom, no, ok
from mailstead.proto.imap.fetch import MODSEQ, parse_fetch, render_fetch
from mailstead.proto.imap.mailbox_commands import parse_flags
from mailstead.proto.imap.message import ParsedMessage, UnknownCTE
from mailstead.proto.imap.search import BadCharset, SearchQuery, format_search, parse_search
from mailstead.proto.imap.search_match import HeaderKey, walk
from mailstead.proto.imap.search_plan import text_candidates
from mailstead.proto.imap.sequence import STAR, SequenceSet, format_ranges, format_set
from mailstead.proto.imap.storage import (
    MailboxError,
    MailboxLike,
    MessageLike,
    Staged,
    copy_steps,
)
from mailstead.proto.imap.tokens import ParenList, Token
from mailstead.proto.imap.view import RECENT, SelectedView, flag_list


def to_crlf(data: bytes) -> bytes:
    """The message with CRLF line ends, as IMAP presents it (RFC 9051 §2.3.4)."""
    if b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    return data.replace(b"\n", b"\r\n")


class _Source:
    """One stored message as FETCH and SEARCH see it; content is read on first use."""

    __slots__ = (
        "_flags",
        "_mailbox",
        "_msg",
        "_parsed",
        "_raw",
        "max_seq",
        "max_uid",
        "saved",
        "seq",
    )
    internaldate_offset = 0
    # Set by SEARCH only (SearchTarget).
    seq: int
    max_seq: int
    max_uid: int
    saved: frozenset[int] | None

    def __init__(
        self, mailbox: MailboxLike, msg: MessageLike, flags: tuple[str, ...] | None = None
    ) -> None:
        self._mailbox = mailbox
        self._msg = msg
        self._flags = msg.flags if flags is None else flags  # with \Recent for rev1
        self._raw: bytes | None = None
        self._parsed: ParsedMessage | None = None

    @property
    def uid(self) -> int:
        return self._msg.uid

    @property
    def flags(self) -> tuple[str, ...]:
        return self._flags

    @property
    def internaldate(self) -> float:
        return self._msg.internaldate

    @property
    def size(self) -> int:
        return self._msg.size

    @property
    def modseq(self) -> int:
        return self._msg.modseq

    def message_bytes(self) -> bytes:
        if self._raw is None:
            self._raw = to_crlf(self._mailbox.read(self._msg.uid))
        return self._raw

    def header_bytes(self) -> bytes:
        raw = self.message_bytes()
        end = raw.find(b"\r\n\r\n")
        return raw if end < 0 else raw[: end + 4]

    def message(self) -> ParsedMessage:
        if self._parsed is None:
            self._parsed = ParsedMessage(self.message_bytes())
        return self._parsed

    def cached(self, item: str) -> bytes | None:
        return self._mailbox.cached(self._msg.uid, item)

    def remember(self, item: str, value: bytes) -> None:
        self._mailbox.remember(self._msg.uid, item, value)


class _SummarySource(_Source):
    """A message whose header, for SEARCH, is just the summary fields, remembered.

    A search on SUBJECT, FROM, TO, CC, BCC or the SENT* dates reads no other
    field, so the mailbox keeps those lines of each message once read and a
    second search reads no files (as Dovecot's cache file does).
    """

    __slots__ = ()

    def header_bytes(self) -> bytes:
        cache = self._mailbox.header_summaries
        summary = cache.get(self._msg.uid)
        if summary is None:
            summary = cache[self._msg.uid] = summary_fields(super().header_bytes())
        return summary


SUMMARY_FIELDS = frozenset({"subject", "from", "to", "cc", "bcc", "date"})


def summary_fields(header: bytes) -> bytes:
    """The lines (with continuations) of the :data:`SUMMARY_FIELDS` in ``header``."""
    keep: list[bytes] = []
    taking = False
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if taking:
                keep.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        taking = name.decode("latin-1") in SUMMARY_FIELDS and b":" in line
        if taking:
            keep.append(line)
    return b"\r\n".join(keep) + b"\r\n\r\n"


def _summary_enough(query: SearchQuery) -> bool:
    """Whether the summary fields answer every header question of ``query``."""
    if query.needs_body:
        return False
    return all(
        not isinstance(key, HeaderKey) or key.name.lower() in SUMMARY_FIELDS
        for key in walk(query.program)
    )


def matching(
    mailbox: MailboxLike,
    uids: Sequence[int],
    record: Callable[[int], MessageLike | None],
    query: SearchQuery,
    *,
    flags: Callable[[MessageLike], tuple[str, ...]] | None = None,
    saved: Collection[int] | None = None,
) -> Iterator[tuple[int, int]]:
    """``(seq, uid)`` of the messages among ``uids`` (numbered from 1) that ``query``
    matches: what SEARCH, SORT/THREAD and ``mailstead mailbox search`` answer.

    ``record(uid)`` is the message as the caller sees it (None: gone),
    ``flags`` the flags it shows (``\\Recent`` for rev1), ``saved`` the
    ``$`` of RFC 5182. The full-text index narrows the candidates, the
    matcher decides (search_plan.py); a message whose file went away while
    searching is no match.
    """
    saved_set = frozenset(saved) if saved is not None else None
    max_seq, max_uid = len(uids), (uids[-1] if uids else 0)
    source = _SummarySource if query.needs_headers and _summary_enough(query) else _Source
    narrowed = text_candidates(mailbox, query.program)
    present = mailbox.messages
    for seq, uid in enumerate(uids, 1):
        if narrowed is not None and uid not in narrowed and uid in present:
            continue
        msg = record(uid)
        if msg is None:
            continue
        target = source(mailbox, msg, None if flags is None else flags(msg))
        target.seq = seq
        target.max_seq = max_seq
        target.max_uid = max_uid
        target.saved = saved_set
        try:
            if query.matches(target):
                yield seq, uid
        except FileNotFoundError:
            continue


def _view(ctx: Context) -> SelectedView:
    view = ctx.session.view
    if view is None:
        raise ArgumentError("No mailbox selected")
    return view


def _may_expunge(ctx: Context) -> bool:
    """RFC 9051 §7.5.1: no EXPUNGE while answering FETCH, STORE or SEARCH; their UID
    forms may carry one (RFC 3501 §7.4.1 note), as the client's numbers are UIDs."""
    return ctx.command.uid


def _positions(ctx: Context, view: SelectedView, token: Token) -> list[int]:
    """0-based positions in the view named by a sequence set or UID set."""
    seqset = SequenceSet.parse(atom(token, "a sequence set"))
    if seqset.is_saved:  # RFC 5182: $ is the last saved search result (UIDs)
        saved = ctx.session_saved()
        seqset = SequenceSet.of(saved) if saved else SequenceSet(())
        if not saved:
            return []
        return seqset.select(view.uids)
    if ctx.command.uid:
        return seqset.select(view.uids)
    count = len(view)
    for first, last in seqset.ranges:
        for n in (first, last):
            if n != STAR and n > count:
                raise ArgumentError("Message sequence number out of range")
    return [i - 1 for a, b in seqset.resolve(count) for i in range(a, b + 1)]


# -- FETCH (RFC 9051 §6.4.5) -------------------------------------------------------


def fetch(ctx: Context) -> Reply:
    view = _view(ctx)
    args = ctx.args(2)
    positions = _positions(ctx, view, args[0])
    items = args[1:]
    modifiers = condstore.FetchModifiers()
    if len(items) == 2 and isinstance(items[1], ParenList):  # RFC 4466 §2.4 modifiers
        modifiers = condstore.fetch_modifiers(ctx, items[1])
        items = items[:1]
    request = parse_fetch(tuple(items))
    mailbox = view.mailbox
    messages = mailbox.messages
    uids = view.uids
    since = modifiers.changed_since
    if since is not None:  # RFC 7162 §3.1.4.1: only what changed, with MODSEQ
        request = condstore.with_modseq(request)
        positions = [p for p in positions if (m := view.record(uids[p])) and m.modseq > since]
        if modifiers.vanished:  # §3.2.6: first the UIDs of the set expunged since
            wanted = condstore.uid_ranges(ctx, view, args[0])
            gone = condstore.vanished_earlier(mailbox, uids, since, wanted)
            if gone:
                ctx.untagged(b"VANISHED (EARLIER) " + format_ranges(gone).encode())
    elif any(item.kind == MODSEQ for item in request.items):
        condstore.enable_by_command(ctx)  # §3.1: FETCH MODSEQ enables CONDSTORE
    newly_seen: set[int] = set()
    if request.sets_seen and not view.readonly:
        unseen = [
            uids[p]
            for p in positions
            if uids[p] in messages and "\\Seen" not in messages[uids[p]].flags
        ]
        if unseen:
            newly_seen = set(mailbox.store(unseen, ["\\Seen"], "+"))
            for uid in newly_seen:
                view.note_own_change(uid)
    include_uid = ctx.command.uid
    utf8 = ctx.session.utf8
    out = ctx.out
    kept = mailbox.retained
    if request.wants_flags or newly_seen:
        out += view.announce_keywords()
    recent = view.recent if not ctx.session.rev2 else ()
    seen_modseq = view.modseq_seen
    # RFC 7162 §3.1: once CONDSTORE is on, a FETCH that sets \Seen tells UID and MODSEQ.
    seen_request = condstore.with_modseq(request) if ctx.session.condstore else request
    missing = False
    for p in positions:
        uid = uids[p]
        # view.record, inlined: FETCH 1:* of a large mailbox calls it per message.
        msg = messages.get(uid) or kept.get(uid)
        if msg is None:
            missing = True  # expunged long ago; the EXPUNGE is still pending
            continue
        if msg.modseq > seen_modseq and (request.wants_flags or uid in newly_seen):
            view.own_changes[uid] = msg.modseq  # shown here: no unsolicited FETCH after
        try:
            just_seen = uid in newly_seen
            out.append(
                render_fetch(
                    seen_request if just_seen else request,
                    _Source(mailbox, msg, (*msg.flags, RECENT) if uid in recent else None),
                    seq=p + 1,
                    include_uid=include_uid or (just_seen and ctx.session.condstore),
                    add_flags=just_seen,
                    utf8=utf8,
                )
            )
        except UnknownCTE:
            return Reply(
                b"NO", b"Unknown content transfer encoding", b"UNKNOWN-CTE", _may_expunge(ctx)
            )
        except FileNotFoundError:
            missing = True  # its file is gone too (another program removed it)
    # RFC 2180 §4.1.3: only data that is really gone is refused.
    if missing and not include_uid:
        return Reply(b"NO", b"Some messages were expunged", b"EXPUNGEISSUED", _may_expunge(ctx))
    return Reply(b"OK", b"FETCH completed", b"", _may_expunge(ctx))


# -- STORE (RFC 9051 §6.4.6) -------------------------------------------------------


def store(ctx: Context) -> Reply:
    view = _view(ctx)
    set_token, item_token, *flag_tokens = ctx.args(3)
    since: int | None = None
    if isinstance(item_token, ParenList):  # RFC 7162 §3.1.3 (UNCHANGEDSINCE m)
        since = condstore.unchanged_since(ctx, item_token)
        if not flag_tokens:
            raise ArgumentError("STORE needs an item after its modifiers")
        item_token, *flag_tokens = flag_tokens
    item = atom(item_token, "a STORE item").upper()
    silent = item.endswith(".SILENT")
    base = item.removesuffix(".SILENT")
    modes = {"FLAGS": "=", "+FLAGS": "+", "-FLAGS": "-"}
    if base not in modes:
        raise ArgumentError(f"Unknown STORE item {item}")
    if len(flag_tokens) == 1 and isinstance(flag_tokens[0], ParenList):
        flags = parse_flags(flag_tokens[0])
    else:
        flags = parse_flags(ParenList(tuple(flag_tokens)))
    positions = _positions(ctx, view, set_token)
    if view.readonly:
        return no("Mailbox is read-only", b"READ-ONLY")
    mailbox = view.mailbox
    uids = [view.uids[p] for p in positions]
    try:
        changed = set(mailbox.store(uids, flags, modes[base], unchanged_since=since))
    except MailboxError as exc:
        return no(exc.text, exc.code.encode())
    for uid in changed:
        view.note_own_change(uid)
    # RFC 3501 §7.2.6: a keyword new to the mailbox is announced.
    ctx.out += view.announce_keywords()
    messages = mailbox.messages
    # RFC 7162 §3.1.3: the messages that failed the UNCHANGEDSINCE test (their
    # modseq was past it, whether or not the store would have changed them),
    # and those expunged elsewhere that the client still numbers.
    modified: set[int] = set()
    if since is not None:
        for p in positions:
            found = messages.get(view.uids[p])
            if found is None or (found.uid not in changed and found.modseq > since):
                modified.add(p)
    condstore_on = ctx.session.condstore
    rev1 = not ctx.session.rev2
    for p in positions:
        msg = messages.get(view.uids[p])
        if msg is None or p in modified:
            continue
        # RFC 7162 §3.1: with CONDSTORE on, UID and MODSEQ always, and even
        # .SILENT tells the new MODSEQ of what it changed.
        uid_part = b"UID %d " % msg.uid if ctx.command.uid or condstore_on else b""
        modseq_part = b" MODSEQ (%d)" % msg.modseq if condstore_on else b""
        if not silent:
            shown = flag_list(view.shown_flags(msg, rev1=rev1))
            ctx.untagged(b"%d FETCH (%sFLAGS %s%s)" % (p + 1, uid_part, shown, modseq_part))
        elif condstore_on and msg.uid in changed:
            ctx.untagged(b"%d FETCH (%sMODSEQ (%d))" % (p + 1, uid_part, msg.modseq))
    if modified:
        numbers = sorted(view.uids[p] if ctx.command.uid else p + 1 for p in modified)
        code = b"MODIFIED " + format_set(numbers).encode()
        return Reply(b"OK", b"Conditional STORE failed", code, _may_expunge(ctx))
    return Reply(b"OK", b"STORE completed", b"", _may_expunge(ctx))


# -- SEARCH (RFC 9051 §6.4.4, RFC 4731, RFC 5182) ---------------------------------


def search(ctx: Context) -> Reply:
    view = _view(ctx)
    try:
        query = parse_search(ctx.command.args, uid_mode=ctx.command.uid)
    except BadCharset:
        return no("Only UTF-8 is supported", b"BADCHARSET (UTF-8)")
    saved = ctx.session_saved()
    rev1 = not ctx.session.rev2  # RFC 3501 §6.4.4 RECENT, NEW, OLD
    hits: list[int] = []
    hit_uids: list[int] = []
    # RFC 2180 §4.3: a message expunged elsewhere is still searched (view.record).
    for seq, uid in matching(
        view.mailbox,
        view.uids,
        view.record,
        query,
        flags=lambda msg: view.shown_flags(msg, rev1=rev1),
        saved=saved,
    ):
        hits.append(uid if ctx.command.uid else seq)
        hit_uids.append(uid)
    if query.saves:  # RFC 5182 §2.4
        ctx.session_save(query.to_save(hit_uids))
    modseq = None
    if query.uses_modseq:  # RFC 7162 §3.1.5: enables CONDSTORE, tells the highest MODSEQ
        condstore.enable_by_command(ctx)
        modseq = _highest_modseq(view, hit_uids, query.return_options)
    # RFC 9051 §6.4.4: an IMAP4rev2 session gets ESEARCH even without RETURN.
    ctx.out.append(
        format_search(
            hits,
            query,
            tag=ctx.command.tag,
            uid_mode=ctx.command.uid,
            esearch=ctx.session.rev2,
            modseq=modseq,
        )
    )
    return Reply(b"OK", b"SEARCH completed", b"", _may_expunge(ctx))


def _highest_modseq(
    view: SelectedView, hit_uids: list[int], options: frozenset[str] | None
) -> int | None:
    """RFC 7162 §3.1.5: the highest MODSEQ of the messages returned (with only
    MIN and/or MAX, of just those, RFC 4731 §3.1)."""
    if options and not options & {"ALL", "COUNT"} and options & {"MIN", "MAX"} and hit_uids:
        hit_uids = [hit_uids[0]] * ("MIN" in options) + [hit_uids[-1]] * ("MAX" in options)
    found = [msg.modseq for uid in hit_uids if (msg := view.record(uid)) is not None]
    return max(found, default=None)


# -- COPY / MOVE (RFC 9051 §6.4.7, §6.4.8; RFC 4315 COPYUID) ------------------------


def _copy(ctx: Context, move: bool) -> Reply:
    view = _view(ctx)
    set_token, name_token = ctx.args(2, 2)
    positions = _positions(ctx, view, set_token)
    try:
        name = ctx.mailbox_name(name_token)
    except ValueError as exc:
        return no(str(exc), b"CANNOT")
    account = ctx.account
    if not account.exists(name):
        return no("Mailbox does not exist", b"TRYCREATE")
    if move and view.readonly:
        return no("Mailbox is read-only", b"READ-ONLY")
    uids = [view.uids[p] for p in positions]
    return ctx.finish_later(_copy_steps(ctx, view.mailbox, name, uids, move))


def _copy_steps(
    ctx: Context, source: MailboxLike, name: str, uids: list[int], move: bool
) -> Staged[Reply]:
    """COPY's storage work, its fsyncs off the event loop; then MOVE's expunge."""
    try:
        dest = ctx.account.mailbox(name)
        dest.refresh()  # earlier deliveries get their UIDs first, as for APPEND
        # RFC 4315 §3: COPYUID once the copies and their UIDs are durable.
        pairs = yield from copy_steps(source, uids, dest)
    except MailboxError as exc:
        return no(exc.text, exc.code.encode())
    code = b""
    if pairs:
        code = b"COPYUID %d %s %s" % (
            dest.uidvalidity,
            _uid_list([a for a, _ in pairs]),
            _uid_list([b for _, b in pairs]),
        )
    if not move:
        return ok("COPY completed", code)
    if code:
        # RFC 6851 §4.3: COPYUID goes in an untagged OK before the expunges.
        ctx.untagged(b"OK [" + code + b"] Moved")
    source.expunge([a for a, _ in pairs])
    return ok("MOVE completed", condstore.highestmodseq_code(ctx, source))


def _uid_list(uids: Sequence[int]) -> bytes:
    # COPYUID pairs the two sets element by element, so keep the order.
    return (
        ",".join(str(u) for u in uids).encode()
        if uids != sorted(uids)
        else format_set(uids).encode()
    )


def copy(ctx: Context) -> Reply:
    return _copy(ctx, move=False)


def move(ctx: Context) -> Reply:
    return _copy(ctx, move=True)


# -- EXPUNGE / CLOSE / UNSELECT (RFC 9051 §6.4.3, §6.4.1, §6.4.2) --------------------


def expunge(ctx: Context) -> Reply:
    view = _view(ctx)
    if view.readonly:
        return no("Mailbox is read-only", b"READ-ONLY")
    candidates = view.mailbox.messages
    wanted: set[int] | None = None
    if ctx.command.uid:  # RFC 4315 §2.1 UID EXPUNGE
        (set_token,) = ctx.args(1, 1)
        wanted = {view.uids[p] for p in _positions(ctx, view, set_token)}
    else:
        ctx.args(0, 0)
    doomed = [
        uid
        for uid in view.uids
        if uid in candidates
        and "\\Deleted" in candidates[uid].flags
        and (wanted is None or uid in wanted)
    ]
    view.mailbox.expunge(doomed)
    return ok("EXPUNGE completed", condstore.highestmodseq_code(ctx, view.mailbox))


def close(ctx: Context) -> Reply:
    view = _view(ctx)
    ctx.args(0, 0)
    if not view.readonly:
        messages = view.mailbox.messages
        view.mailbox.expunge(
            [u for u in view.uids if u in messages and "\\Deleted" in messages[u].flags]
        )
    ctx.session.view = None
    return ok("CLOSE completed")


def unselect(ctx: Context) -> Reply:
    _view(ctx)
    ctx.args(0, 0)
    ctx.session.view = None
    return ok("UNSELECT completed")


def check(ctx: Context) -> Reply:
    _view(ctx)
    return ok("CHECK completed")
