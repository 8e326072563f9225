"""Local submission (``mailstead send``): a message handed in on the command line.

It goes through exactly the rules of the MSA listener, without the network:
a :class:`~mailstead.mta.receiver.Receiver` in :attr:`Role.MSA` sees a
:class:`Peer` authenticated as the local user who owns ``--from`` and runs
one :class:`~mailstead.mta.receiver.Delivery`: MAIL FROM (``start``), each
RCPT TO (``add_rcpt``), then ``body`` and ``commit``. Local mailboxes get
the message at once, remote recipients go to the durable queue, where the
running server's outbound loop finds it within its poll interval. Nothing
is stored unless every recipient is accepted, as an SMTP client that aborts
on the first refused RCPT would do.

The message is built by :mod:`mailstead.message.compose`; a ``--template``
is rendered by :mod:`mailstead.templates.pipeline` (the command line does
that), and an ``--html`` file's text part is derived by
:mod:`mailstead.templates.text`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from mailstead.directory import Directory
from mailstead.limits import SMTPLimits
from mailstead.message.compose import Body, ComposeError, check_addresses
from mailstead.mta.receiver import Committed, Delivery, Peer, Receiver, Refused
from mailstead.proto.smtp.events import MailParams, RcptParams
from mailstead.templates.text import html_to_text

__all__ = ["SubmitError", "load_body", "owning_user", "submit"]

# The trace headers of a local submission: Received "from localhost ([127.0.0.1])".
_LOCAL_PEER_IP = "127.0.0.1"
_LOCAL_PEER_HELO = "localhost"


class SubmitError(Exception):
    """The message was not submitted; the text is one line for the operator.

    ``kind`` says whose fault it is, for callers that map it to an exit
    status (``sendmail``'s sysexits): ``"data"`` (the message or an address
    is malformed or too large), ``"sender"``, ``"recipient"`` (refused for
    good), ``"temporary"`` (try again later).
    """

    def __init__(self, text: str, kind: str = "data") -> None:
        super().__init__(text)
        self.kind = kind


def _read_text(path: Path) -> str:
    data = path.read_bytes()  # OSError: the caller reports "<file>: <reason>"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmitError(f"{path}: not UTF-8 text") from None


def load_body(text: str | None, html_file: Path | None) -> Body:
    """The body ``--text`` and ``--html`` describe; the text part is derived from HTML if absent."""
    html_text = _read_text(html_file) if html_file is not None else None
    if text is None and html_text is None:
        raise SubmitError("give a body: --text, --html or --template")
    if text is None and html_text is not None:
        text = html_to_text(html_text)
    return Body(text=text, html=html_text)


def owning_user(directory: Directory, sender: str) -> str | None:
    """The local user who may send as ``sender``: its own address, or an alias of it."""
    resolution = directory.resolve(sender)
    if resolution is None:
        return None
    for user in resolution.mailboxes:
        if directory.may_send_as(user, sender):
            return user
    return None


def submit(
    receiver: Receiver,
    sender: str,
    recipients: Sequence[str],
    content: bytes,
    *,
    limits: SMTPLimits | None = None,
    on_routed: Callable[[str], None] | None = None,
    trusted: bool = False,
) -> Committed:
    """Hand ``content`` (CRLF) from ``sender`` to ``recipients`` through the MSA rules.

    ``on_routed`` is called after each recipient was accepted (progress).
    Raises :class:`SubmitError` if the sender is not a local user's, any
    recipient is refused (then nothing is stored), or the commit fails.

    ``trusted`` (``sendmail``): the caller could write the queue itself, so
    it may name any sender, as with Postfix's sendmail; the message is then
    submitted as if that sender had logged in (its Received field says
    ESMTPA, and the webhook events name the sender as the user).
    """
    limits = limits or receiver.limits
    try:
        check_addresses(sender, recipients)
    except ComposeError as exc:
        raise SubmitError(str(exc)) from None
    unique = list(dict.fromkeys(recipients))
    if not unique:
        raise SubmitError("give at least one --to")
    if len(unique) > limits.recipients_per_message:
        raise SubmitError(f"too many recipients (at most {limits.recipients_per_message})", "data")
    if len(content) > limits.message_size:
        raise SubmitError(f"message too large (at most {limits.message_size} bytes)")
    user = owning_user(receiver.directory, sender)
    if user is None and not trusted:
        raise SubmitError(f"{sender}: not a local user", "sender")
    # A trusted caller's message is submitted under the name of its
    # sender, even one no local user owns (root@host from cron).
    peer = Peer(ip=_LOCAL_PEER_IP, helo=_LOCAL_PEER_HELO, tls=False, user=user or sender)
    utf8 = not all(a.isascii() for a in (sender, *unique))
    params = MailParams(size=len(content), smtputf8=utf8)
    if user is None:
        # RFC 6409 §6.1's ownership check is for logins over the network;
        # this caller could write the queue itself.
        delivery = Delivery(receiver, peer, sender, params)
    else:
        try:
            delivery = receiver.start(peer, sender, params)
        except Refused as refused:  # RFC 6409 §6.1
            raise SubmitError(f"{sender}: {refused}", _kind(refused, "sender")) from None
    for rcpt in unique:
        try:
            delivery.add_rcpt(rcpt, RcptParams())
        except Refused as refused:
            raise SubmitError(
                f"{rcpt}: {refused}; nothing sent", _kind(refused, "recipient")
            ) from None
        if on_routed is not None:
            on_routed(rcpt)
    try:
        delivery.body(content)
        return delivery.commit()
    except Refused as refused:
        delivery.abort()
        cause = f" ({refused.cause})" if refused.cause else ""
        raise SubmitError(f"not accepted: {refused}{cause}", _kind(refused, "data")) from None


def _kind(refused: Refused, permanent: str) -> str:
    """``permanent`` for a 5xx reply, "temporary" for a 4xx."""
    return "temporary" if 400 <= refused.reply.code < 500 else permanent
