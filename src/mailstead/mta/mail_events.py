"""The events of mail handling, built once for the receiver and the outbound MTA.

Each function returns one :class:`~mailstead.events.Event`; its ``data``
is the documented payload (docs/webhooks.md). Callers ask the sink whether
anyone ``wants`` the type before building one: message.received parses
the message, which costs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mailstead.events import Event, domain_of, iso_time
from mailstead.message.summary import message_summary
from mailstead.mta.envelope import sender_account
from mailstead.proto.smtp.replies import Reply

__all__ = [
    "bounced",
    "deferred",
    "delivered",
    "expired",
    "received",
]


def _reply(reply: Reply) -> dict[str, object]:
    return {"code": reply.code, "enhanced": reply.enhanced, "text": " ".join(reply.lines)}


def _host(remote: str | None) -> tuple[str | None, str | None]:
    """``"mx.example [192.0.2.1]"`` -> (host, ip)."""
    if not remote:
        return None, None
    host, _, rest = remote.partition(" [")
    return host, rest.rstrip("]") or None


# Messages up to this size are summarised by the webhook dispatcher.
_SUMMARISED_WHEN_SENT = 256 * 1024


def received(
    copies: Sequence[tuple[str, str]],
    *,
    queue_id: str,
    mail_from: str,
    content: bytes,
    client: dict[str, object] | None,
    max_body_bytes: int,
    received_at: float,
    folder: str = "INBOX",
    extra: Mapping[str, object] | None = None,
) -> list[Event]:
    """message.received for each ``(mailbox, rcpt_to)`` copy stored in ``folder``.

    ``client`` is what the SMTP session knew (ip, helo, tls, user), None
    when the queue delivered it locally. The message is summarised once for
    all copies. ``extra`` adds fields (the ``authentication`` results of
    the receiver's checks).
    """
    if not copies:
        return []
    # Summarising costs about 0.1 ms of CPU per message: a message of common
    # size goes raw into the outbox and the dispatcher summarises it, at its
    # lower priority; a big one is summarised now rather than stored twice.
    later = len(content) <= _SUMMARISED_WHEN_SENT
    summary = None if later else message_summary(content, max_body_bytes=max_body_bytes)
    at = iso_time(received_at)
    return [
        Event(
            "message.received",
            {
                "queue_id": queue_id,
                "mailbox": mailbox,
                "folder": folder,
                "envelope": {"mail_from": mail_from, "rcpt_to": rcpt_to},
                "client": client,
                "received_at": at,
                "message": summary,
                **(extra or {}),
            },
            account=mailbox,
            domain=domain_of(mailbox),
            raw_message=content if later else None,
            body_limit=max_body_bytes,
        )
        for mailbox, rcpt_to in copies
    ]


def _outcome_data(
    queue_id: str, sender: str, recipient: str, attempts: int
) -> tuple[dict[str, object], str | None, str | None]:
    account, domain = sender_account(sender)
    data: dict[str, object] = {
        "queue_id": queue_id,
        "mail_from": sender,
        "recipient": recipient,
        "attempt": attempts,
    }
    return data, account, domain


def delivered(
    queue_id: str,
    sender: str,
    recipient: str,
    attempts: int,
    reply: Reply,
    remote: str | None,
    tls: bool | None,
) -> Event:
    """message.delivered: a remote host (or a local mailbox, ``remote`` None) took it."""
    data, account, domain = _outcome_data(queue_id, sender, recipient, attempts)
    host, ip = _host(remote)
    data.update(local=remote is None, mx=host, ip=ip, tls=tls, reply=_reply(reply))
    return Event("message.delivered", data, account=account, domain=domain)


def deferred(
    queue_id: str,
    sender: str,
    recipient: str,
    attempts: int,
    error: str,
    next_attempt: float,
) -> Event:
    """message.deferred: this attempt failed for now; ``next_attempt`` is the retry."""
    data, account, domain = _outcome_data(queue_id, sender, recipient, attempts)
    data.update(error=error, next_attempt=iso_time(next_attempt))
    return Event("message.deferred", data, account=account, domain=domain)


def bounced(
    queue_id: str,
    sender: str,
    recipient: str,
    attempts: int,
    reply: Reply,
    remote: str | None,
    dsn_sent: bool,
) -> Event:
    """message.bounced: the recipient failed for good."""
    data, account, domain = _outcome_data(queue_id, sender, recipient, attempts)
    host, ip = _host(remote)
    data.update(
        status=reply.enhanced,
        reply=_reply(reply),
        mx=host,
        ip=ip,
        diagnostic=f"smtp; {reply.code} {' '.join(reply.lines)}" if remote else None,
        dsn_sent=dsn_sent,
    )
    return Event("message.bounced", data, account=account, domain=domain)


def expired(
    queue_id: str,
    sender: str,
    recipient: str,
    attempts: int,
    last_error: str,
    dsn_sent: bool,
) -> Event:
    """message.expired: still undeliverable when the queue lifetime ran out."""
    data, account, domain = _outcome_data(queue_id, sender, recipient, attempts)
    data.update(last_error=last_error, dsn_sent=dsn_sent)
    return Event("message.expired", data, account=account, domain=domain)
