"""QUOTA (RFC 9208): one quota root per account, with the STORAGE and MESSAGE resources.

Every mailbox of an account shares one quota root, named ``""`` (as Dovecot
and Cyrus name a user's root); its limits are the user's, set by the
administrator with ``mailstead user quota`` (the session gets them through
``Session.quota``), and its usage is what the account's index counts
(store/usage_columns.py). SETQUOTA is refused: QUOTASET is not offered
(RFC 9208 §4.1.3). A resource without a limit is left out of the QUOTA
response; a user with no limit at all has no quota root.

APPEND and COPY that would take the account past a limit are refused with
``NO [OVERQUOTA]`` before anything is written (RFC 9208 §4.3.1). MOVE
within one account changes no usage (the root is the whole account), so it
is never refused for quota. STATUS DELETED and DELETED-STORAGE, which the
two resources require (§4.1.4, §5.1, §5.2), are in mailbox_commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailstead.proto.errors import RemoteProtocolError
from mailstead.proto.imap import mailbox_commands as mc
from mailstead.proto.imap import message_commands as msg
from mailstead.proto.imap.context import Context, Reply, no, ok
from mailstead.proto.imap.encode import astring
from mailstead.proto.imap.mailbox_names import encode_mailbox_name
from mailstead.proto.imap.quota_limits import CountsUsage, Limits, Usage
from mailstead.proto.imap.tokens import String

__all__ = [
    "CAPABILITIES",
    "ROOT",
    "append",
    "copy",
    "getquota",
    "getquotaroot",
    "setquota",
]

# RFC 9208 §1, §5.1, §5.2: the extension and the two resources it offers.
CAPABILITIES = "QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE"
ROOT = ""


@dataclass(frozen=True, slots=True)
class _Root:
    limits: Limits
    usage: Usage

    def resources(self) -> bytes:
        """``STORAGE used limit MESSAGE used limit`` (RFC 9208 §5.1: STORAGE in KiB)."""
        parts = []
        if self.limits.storage is not None:
            used_kib = -(-self.usage.octets // 1024)  # rounded up: never under-reported
            parts.append(b"STORAGE %d %d" % (used_kib, self.limits.storage // 1024))
        if self.limits.messages is not None:
            parts.append(b"MESSAGE %d %d" % (self.usage.messages, self.limits.messages))
        return b" ".join(parts)

    def room_for(self, octets: int, messages: int) -> bool:
        storage, count = self.limits.storage, self.limits.messages
        if storage is not None and self.usage.octets + octets > storage:
            return False
        return count is None or self.usage.messages + messages <= count


def _root(ctx: Context) -> _Root | None:
    """The user's quota root, or None when there is none (no limit, or no source)."""
    lookup = ctx.session.quota
    account = ctx.session.account
    if lookup is None or not isinstance(account, CountsUsage):
        return None
    limits = lookup(ctx.session.user)
    if limits.storage is None and limits.messages is None:
        return None
    return _Root(limits, account.quota_usage())


def _quota_line(ctx: Context, root: _Root) -> None:
    ctx.untagged(b'QUOTA "" (' + root.resources() + b")")


# -- commands (RFC 9208 §4.1) -------------------------------------------------------


def getquotaroot(ctx: Context) -> Reply:
    """RFC 9208 §4.1.2: the mailbox's roots, then each root's QUOTA."""
    (name_token,) = ctx.args(1, 1)
    try:
        name = ctx.mailbox_name(name_token)
    except ValueError as exc:
        return no(str(exc), b"CANNOT")
    if not ctx.account.exists(name):
        return no("Mailbox does not exist", b"NONEXISTENT")
    root = _root(ctx)
    # Spelled as LIST spells it: modified UTF-7 unless UTF8=ACCEPT (RFC 6855).
    mailbox = astring(encode_mailbox_name(name, utf8=ctx.session.utf8), utf8=ctx.session.utf8)
    if root is None:
        ctx.untagged(b"QUOTAROOT " + mailbox)
        return ok("GETQUOTAROOT completed")
    ctx.untagged(b"QUOTAROOT " + mailbox + b' ""')
    _quota_line(ctx, root)
    return ok("GETQUOTAROOT completed")


def getquota(ctx: Context) -> Reply:
    """RFC 9208 §4.1.1: one root's resources."""
    (root_token,) = ctx.args(1, 1)
    root = _root(ctx)
    if root is None or not isinstance(root_token, String) or root_token.value != ROOT.encode():
        return no("No such quota root", b"NONEXISTENT")
    _quota_line(ctx, root)
    return ok("GETQUOTA completed")


def setquota(ctx: Context) -> Reply:
    """RFC 9208 §4.1.3: limits are the administrator's (``mailstead user quota``)."""
    ctx.args(2, 2)
    return no("Quotas are set by the administrator", b"NOPERM")


# -- the guards in front of APPEND and COPY (RFC 9208 §4.3.1) ------------------------

_OVER = "Quota exceeded"


def append(ctx: Context) -> Reply:
    """APPEND, refused with ``[OVERQUOTA]`` when the message would not fit."""
    args = ctx.command.args
    root = _root(ctx)
    message = args[-1] if len(args) >= 2 else None
    fits = (
        root is None
        or not isinstance(message, String)
        or root.room_for(_crlf_size(message.value), 1)
    )
    if not fits:
        return no(_OVER, b"OVERQUOTA")
    return mc.append(ctx)


def copy(ctx: Context) -> Reply:
    """COPY (and UID COPY), refused with ``[OVERQUOTA]`` when the copies would not fit."""
    root = _root(ctx)
    view = ctx.session.view
    if root is not None and view is not None and len(ctx.command.args) == 2:
        try:
            positions = msg._positions(ctx, view, ctx.command.args[0])
        except RemoteProtocolError:
            positions = []  # COPY itself answers the bad set
        messages = view.mailbox.messages
        uids = [view.uids[p] for p in positions if view.uids[p] in messages]
        octets = sum(messages[uid].size for uid in uids)
        if uids and not root.room_for(octets, len(uids)):
            return no(_OVER, b"OVERQUOTA")
    return msg.copy(ctx)


def _crlf_size(data: bytes) -> int:
    """RFC822.SIZE of an appended message, as the index will count it."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")
