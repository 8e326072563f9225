"""Commands on mailboxes as a whole (RFC 9051 §6.3): SELECT … APPEND.

LIST follows RFC 5258 (LIST-EXTENDED) with the RFC 6154 special-use and
RFC 5819 STATUS return options; the hierarchy separator is ``/``.
"""

from __future__ import annotations

import calendar
import logging
import re

from mailstead.proto.imap import condstore
from mailstead.proto.imap.context import (
    ArgumentError,
    Context,
    NameRefused,
    Reply,
    atom,
    no,
    ok,
    text,
)
from mailstead.proto.imap.encode import quoted_or_literal
from mailstead.proto.imap.mailbox_names import (
    MailboxNameError,
    encode_mailbox_name,
    list_pattern,
)
from mailstead.proto.imap.objectid import mailbox_id
from mailstead.proto.imap.storage import MailboxError, MailboxLike, Staged, append_steps
from mailstead.proto.imap.tokens import Atom, ParenList, String, Token
from mailstead.proto.imap.view import DEFINED_FLAGS, SYSTEM_FLAGS, SelectedView, flag_list

INBOX = "INBOX"
log = logging.getLogger("mailstead.imap")


def _error(exc: Exception) -> Reply:
    if isinstance(exc, MailboxError):
        return no(exc.text, exc.code.encode())
    # OSError: the store could not do it (disk full, permissions, or a race
    # that is a bug): the operator gets the traceback, the client a code.
    log.error("mailbox command failed in the store", exc_info=exc)
    return no("Cannot do that now", b"UNAVAILABLE")


def _name(ctx: Context, token: Token) -> str:
    try:
        return ctx.mailbox_name(token)
    except MailboxNameError as exc:
        raise NameRefused(str(exc) or "Invalid mailbox name") from exc


def _quote_name(ctx: Context, name: str) -> bytes:
    return quoted_or_literal(
        encode_mailbox_name(name, utf8=ctx.session.utf8), utf8=ctx.session.utf8
    )


# -- SELECT / EXAMINE (RFC 9051 §6.3.2, §6.3.3) -----------------------------------


def _select(ctx: Context, readonly: bool) -> Reply:
    arg, *rest = ctx.args(1, 2)
    params = condstore.parse_select_params(ctx, tuple(rest))  # RFC 7162 §3.1.8, §3.2.5
    if ctx.session.view is not None:
        ctx.session.view = None
        ctx.untagged(b"OK [CLOSED] Previous mailbox closed")
    name = _name(ctx, arg)
    try:
        mailbox = ctx.account.mailbox(name)
        mailbox.refresh()
    except (MailboxError, OSError) as exc:
        return _error(exc)
    # RFC 3501 §2.3.2: EXAMINE sees \Recent without taking it.
    recent = mailbox.recent_uids() if readonly else mailbox.take_new()
    view = SelectedView(mailbox, readonly=readonly)
    view.recent.update(recent)
    ctx.session.view = view
    flags = (*DEFINED_FLAGS, *mailbox.keyword_names())
    ctx.untagged(b"FLAGS " + flag_list(flags))
    permanent = flag_list((*flags, "\\*")) if not readonly else b"()"
    ctx.untagged(b"OK [PERMANENTFLAGS " + permanent + b"] Flags permitted")
    ctx.untagged(b"%d EXISTS" % len(view))
    if not ctx.session.rev2:
        ctx.untagged(b"%d RECENT" % len(recent))
        unseen = next(
            (
                i
                for i, uid in enumerate(view.uids, 1)
                if "\\Seen" not in mailbox.messages[uid].flags
            ),
            None,
        )
        if unseen is not None:
            ctx.untagged(b"OK [UNSEEN %d] First unseen" % unseen)
    ctx.untagged(b"OK [UIDVALIDITY %d] UIDs valid" % mailbox.uidvalidity)
    ctx.untagged(b"OK [UIDNEXT %d] Predicted next UID" % mailbox.uidnext)
    # RFC 8474 §4.1: the mailbox's MAILBOXID in every SELECT and EXAMINE.
    ctx.untagged(b"OK [MAILBOXID (" + mailbox_id(mailbox.uidvalidity) + b")] Ok")
    if ctx.session.rev2:
        ctx.untagged(b'LIST () "/" ' + _quote_name(ctx, name))
    condstore.after_select(ctx, view, params)
    code = b"READ-ONLY" if readonly else b"READ-WRITE"
    return ok(("EXAMINE" if readonly else "SELECT") + " completed", code)


def select(ctx: Context) -> Reply:
    return _select(ctx, readonly=False)


def examine(ctx: Context) -> Reply:
    return _select(ctx, readonly=True)


# -- CREATE / DELETE / RENAME / SUBSCRIBE (RFC 9051 §6.3.4–§6.3.8) ----------------


def create(ctx: Context) -> Reply:
    (arg,) = ctx.args(1, 2)[:1]
    # §6.3.4: a trailing separator only says children will follow.
    if isinstance(arg, (Atom, String)):
        raw = arg.value
        if isinstance(raw, str) and raw.endswith("/") and len(raw) > 1:
            arg = Atom(raw[:-1])
        elif isinstance(raw, bytes) and raw.endswith(b"/") and len(raw) > 1:
            arg = String(raw[:-1])
    name = _name(ctx, arg)
    if name == INBOX:
        return no("INBOX always exists", b"ALREADYEXISTS")
    if len(ctx.account.names()) >= ctx.limits.mailboxes_per_account:
        return no("Too many mailboxes", b"LIMIT")
    try:
        ctx.account.create(name)
        created = ctx.account.mailbox(name).uidvalidity
    except (MailboxError, OSError) as exc:
        return _error(exc)
    # RFC 8474 §4.1: CREATE's OK carries the new mailbox's MAILBOXID.
    return ok("CREATE completed", b"MAILBOXID (" + mailbox_id(created) + b")")


def delete(ctx: Context) -> Reply:
    (arg,) = ctx.args(1, 1)
    name = _name(ctx, arg)
    view = ctx.session.view
    if view is not None and view.mailbox.name == name:
        ctx.session.view = None
    try:
        ctx.account.delete(name)
    except (MailboxError, OSError) as exc:
        return _error(exc)
    return ok("DELETE completed")


def rename(ctx: Context) -> Reply:
    old_arg, new_arg = ctx.args(2, 2)
    old, new = _name(ctx, old_arg), _name(ctx, new_arg)
    view = ctx.session.view
    # Renaming INBOX keeps it (RFC 9051 §6.3.6), so its view stays selected.
    if (
        view is not None
        and old != INBOX
        and (view.mailbox.name == old or view.mailbox.name.startswith(old + "/"))
    ):
        ctx.session.view = None
    try:
        ctx.account.rename(old, new)
    except (MailboxError, OSError) as exc:
        return _error(exc)
    return ok("RENAME completed")


def subscribe(ctx: Context) -> Reply:
    (arg,) = ctx.args(1, 1)
    name = _name(ctx, arg)
    if not ctx.account.exists(name):
        return no("Mailbox does not exist", b"NONEXISTENT")
    ctx.account.set_subscribed(name, True)
    return ok("SUBSCRIBE completed")


def unsubscribe(ctx: Context) -> Reply:
    (arg,) = ctx.args(1, 1)
    ctx.account.set_subscribed(_name(ctx, arg), False)
    return ok("UNSUBSCRIBE completed")


# -- LIST / LSUB (RFC 9051 §6.3.9, RFC 5258, RFC 6154, RFC 5819) ------------------

_SELECTION = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_RETURNS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})


def _words(token: Token, allowed: frozenset[str], what: str) -> list[str]:
    if not isinstance(token, ParenList):
        raise ArgumentError(f"Expected a list of {what}")
    words = []
    for item in token.items:
        word = atom(item, what).upper()
        if word not in allowed:
            raise ArgumentError(f"Unknown {what} {word}")
        words.append(word)
    return words


def _patterns(token: Token) -> list[str]:
    items = token.items if isinstance(token, ParenList) else (token,)
    return [text(item) for item in items]


def list_(ctx: Context, *, lsub: bool = False) -> Reply:
    args = list(ctx.args(2))
    selection: list[str] = []
    if not lsub and isinstance(args[0], ParenList):
        selection = _words(args.pop(0), _SELECTION, "selection option")
    if len(args) < 2:
        raise ArgumentError("LIST needs a reference and a pattern")
    reference = text(args[0])
    patterns = _patterns(args[1])
    returns: list[str] = []
    status_items: list[str] = []
    rest = args[2:]
    if rest:
        if len(rest) != 2 or atom(rest[0], "RETURN").upper() != "RETURN" or lsub:
            raise ArgumentError("Unexpected LIST arguments")
        ret = rest[1]
        if not isinstance(ret, ParenList):
            raise ArgumentError("Expected return options")
        items = list(ret.items)
        while items:
            word = atom(items.pop(0), "return option").upper()
            if word not in _RETURNS:
                raise ArgumentError(f"Unknown return option {word}")
            if word == "STATUS":
                if not items or not isinstance(items[0], ParenList):
                    raise ArgumentError("STATUS needs a list of items")
                status_items = _status_items(items.pop(0))
            returns.append(word)
    # RFC 5258 §3: RECURSIVEMATCH alone, or only with REMOTE, is a syntax error.
    if "RECURSIVEMATCH" in selection and set(selection) <= {"RECURSIVEMATCH", "REMOTE"}:
        raise ArgumentError("RECURSIVEMATCH needs another selection option")
    verb = b"LSUB" if lsub else b"LIST"
    # RFC 9051 §6.3.9: an empty pattern asks for the separator and root.
    if patterns == [""]:
        ctx.untagged(verb + b' (\\Noselect) "/" ""')
        return ok(f"{verb.decode()} completed")
    existing = ctx.account.names()
    exists = set(existing)
    subscribed = ctx.account.subscriptions()
    subscribed_only = lsub or "SUBSCRIBED" in selection
    # Parents that do not exist themselves but have children. Subscriptions
    # count only when listing them: a plain LIST shows what exists
    # (RFC 9051 §6.3.9; RFC 5258 §3.4 for the SUBSCRIBED selection).
    known = exists | subscribed if subscribed_only else exists
    # Patterns are in the session's encoding (modified UTF-7 before UTF8=ACCEPT,
    # RFC 3501 §5.1.3), so names are matched as the client would spell them.
    utf8 = ctx.session.utf8
    matchers = [list_pattern(reference, p) for p in patterns]

    def matched(name: str) -> bool:
        spelled = name if utf8 else encode_mailbox_name(name, utf8=False).decode("ascii")
        return any(m(spelled) for m in matchers)

    # Subscribed names no pattern reaches: their parents may be listed for them.
    unreached = [s for s in subscribed if "/" in s and not matched(s)]

    def unmatched_subscribed_child(name: str) -> bool:
        prefix = name + "/"
        return any(s.startswith(prefix) for s in unreached)

    # Computed once: asking each name about every other one was quadratic
    # (LIST-STATUS over 200 folders spent half its time there).
    parents = _ancestors(exists)
    for name in sorted(known | _ancestors(known), key=_order):
        if not matched(name):
            continue
        attrs: list[str] = []
        # RFC 5258 §3.5: CHILDINFO tells of a descendant that meets the selection
        # criteria but is not listed itself, because no pattern matches it.
        child_info = (
            "RECURSIVEMATCH" in selection
            and "SUBSCRIBED" in selection
            and unmatched_subscribed_child(name)
        )
        if subscribed_only and name not in subscribed:
            if lsub and "%" in reference + patterns[0] and unmatched_subscribed_child(name):
                # RFC 3501 §6.3.9: "%" lists the unsubscribed parent of a
                # subscribed name it does not reach, flagged \Noselect.
                attrs.append("\\Noselect")
            elif not child_info:
                continue
        if name not in exists and not lsub:
            attrs.append("\\NonExistent")
        has_children = name in parents
        if has_children and not lsub:
            attrs.append("\\HasChildren")
        elif not lsub and name in exists:
            # RFC 5258 §5.3 shows a subscribed name that is gone as just
            # (\NonExistent \Subscribed): no children attribute.
            attrs.append("\\HasNoChildren")
        if name in subscribed and (subscribed_only or "SUBSCRIBED" in returns) and not lsub:
            attrs.append("\\Subscribed")
        use = ctx.account.special_use(name)
        if use and not lsub:
            attrs.append(use)
        if "SPECIAL-USE" in selection and not use:
            continue
        line = verb + b" (" + " ".join(attrs).encode() + b') "/" ' + _quote_name(ctx, name)
        if child_info:
            line += b' ("CHILDINFO" ("SUBSCRIBED"))'
        ctx.untagged(line)
        if status_items and name in exists:
            _status_line(ctx, name, status_items)
    return ok(f"{verb.decode()} completed")


def _ancestors(names: set[str]) -> set[str]:
    """Every proper ancestor of ``names`` (``a/b/c`` → ``a``, ``a/b``)."""
    found: set[str] = set()
    for name in names:
        parts = name.split("/")
        found.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return found


def _order(name: str) -> tuple[int, str]:
    return (0 if name == INBOX else 1, name)


def list_cmd(ctx: Context) -> Reply:
    return list_(ctx)


def lsub(ctx: Context) -> Reply:
    return list_(ctx, lsub=True)


# -- STATUS (RFC 9051 §6.3.11) -----------------------------------------------------

_STATUS_ITEMS = frozenset(
    {
        "MESSAGES",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "DELETED-STORAGE",  # RFC 9208 §4.1.4
        "SIZE",
        "RECENT",
        "HIGHESTMODSEQ",
        "MAILBOXID",
    }
)


def _status_items(token: Token) -> list[str]:
    items = _words(token, _STATUS_ITEMS, "status item")
    if not items:
        raise ArgumentError("STATUS needs at least one item")
    return items


def _status_values(mailbox: MailboxLike, items: list[str]) -> bytes:
    msgs = mailbox.messages
    values = []
    for item in items:
        if item == "MAILBOXID":  # RFC 8474 §4.1
            values.append(b"MAILBOXID (" + mailbox_id(mailbox.uidvalidity) + b")")
            continue
        if item == "MESSAGES":
            value = len(msgs)
        elif item == "UIDNEXT":
            value = mailbox.uidnext
        elif item == "UIDVALIDITY":
            value = mailbox.uidvalidity
        elif item == "UNSEEN":
            value = sum(1 for m in msgs.values() if "\\Seen" not in m.flags)
        elif item == "DELETED":
            value = sum(1 for m in msgs.values() if "\\Deleted" in m.flags)
        elif item == "DELETED-STORAGE":
            # RFC 9208 §4.1.4, in STORAGE's unit (§5.1: 1024 octets), rounded up.
            octets = sum(m.size for m in msgs.values() if "\\Deleted" in m.flags)
            value = -(-octets // 1024)
        elif item == "SIZE":
            value = sum(m.size for m in msgs.values())
        elif item == "HIGHESTMODSEQ":  # RFC 7162 §3.1.6
            value = mailbox.highestmodseq
        else:  # RECENT (RFC 3501 §6.3.10): what the next SELECT would take
            value = len(mailbox.recent_uids())
        values.append(b"%s %d" % (item.encode(), value))
    return b"(" + b" ".join(values) + b")"


def _status_line(ctx: Context, name: str, items: list[str]) -> None:
    mailbox = ctx.account.mailbox(name)
    mailbox.refresh()
    ctx.untagged(b"STATUS " + _quote_name(ctx, name) + b" " + _status_values(mailbox, items))


def status(ctx: Context) -> Reply:
    arg, items = ctx.args(2, 2)
    name = _name(ctx, arg)
    wanted = _status_items(items)
    if "HIGHESTMODSEQ" in wanted:  # RFC 7162 §3.1: a CONDSTORE enabling command
        condstore.enable_by_command(ctx)
    try:
        _status_line(ctx, name, wanted)
    except (MailboxError, OSError) as exc:
        return _error(exc)
    return ok("STATUS completed")


# -- APPEND (RFC 9051 §6.3.12, RFC 4315 APPENDUID) ----------------------------------

_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DATE_TIME = re.compile(
    r"\A ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z"
)


def parse_date_time(value: str) -> float:
    """RFC 9051 ``date-time`` (``"17-Jul-1996 02:44:25 -0700"``) as POSIX seconds."""
    m = _DATE_TIME.match(value)
    if m is None or m.group(2).upper() not in _MONTHS:
        raise ArgumentError("Invalid date-time")
    day, _, year, hh, mm, ss, sign, zh, zm = m.groups()
    month = _MONTHS[m.group(2).upper()]
    # A date that does not exist (31-Feb) is refused, not rolled over into
    # the next month; a leap second (60) is allowed as RFC 5322 §3.3 does.
    if not (
        1 <= int(day) <= calendar.monthrange(int(year), month)[1]
        and int(hh) < 24
        and int(mm) < 60
        and int(ss) < 61
    ):
        raise ArgumentError("Invalid date-time")
    try:
        ts = calendar.timegm((int(year), month, int(day), int(hh), int(mm), int(ss), 0, 0, 0))
    except (ValueError, OverflowError) as exc:
        raise ArgumentError("Invalid date-time") from exc
    offset = (int(zh) * 60 + int(zm)) * 60
    return float(ts - offset if sign == "+" else ts + offset)


def parse_flags(token: Token) -> list[str]:
    if not isinstance(token, ParenList):
        token = ParenList((token,))
    flags = []
    for item in token.items:
        flag = atom(item, "a flag")
        if flag.startswith("\\"):
            match = next((f for f in SYSTEM_FLAGS if f.upper() == flag.upper()), None)
            if match is None:
                raise ArgumentError(f"Unknown system flag {flag}")
            flag = match
        elif not flag or any(c in flag for c in '(){%*"\\]') or not flag.isascii():
            raise ArgumentError("Invalid keyword")
        flags.append(flag)
    return flags


def append(ctx: Context) -> Reply:
    args = list(ctx.args(2, 4))
    name = _name(ctx, args.pop(0))
    message = args.pop()
    flags: list[str] = []
    internaldate: float | None = None
    if args and isinstance(args[0], ParenList):
        flags = parse_flags(args.pop(0))
    if args:
        internaldate = parse_date_time(text(args.pop(0)))
    if args or not isinstance(message, String):
        raise ArgumentError("APPEND needs a message literal")
    if not message.value:
        return no("Empty message")
    if not ctx.account.exists(name):
        return no("Mailbox does not exist", b"TRYCREATE")
    return ctx.finish_later(_append(ctx, name, message.value, flags, internaldate))


def _append(
    ctx: Context, name: str, data: bytes, flags: list[str], internaldate: float | None
) -> Staged[Reply]:
    """APPEND's storage work; the file's write and fsyncs run off the event loop."""
    try:
        mailbox = ctx.account.mailbox(name)
        # Mail delivered since the last look gets its UIDs first, so that
        # UIDs follow arrival order (DESIGN.md §2).
        mailbox.refresh()
        # RFC 9051 §6.3.12 / RFC 4315 §3: the OK (and its APPENDUID) once the
        # message and its UID are durable (docs/durability.md).
        uid = yield from append_steps(mailbox, data, flags, internaldate)
    except (MailboxError, OSError) as exc:
        return _error(exc)
    return ok("APPEND completed", b"APPENDUID %d %d" % (mailbox.uidvalidity, uid))
