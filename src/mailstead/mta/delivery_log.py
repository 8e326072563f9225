"""The outbound engine's log lines, in the words a Postfix admin greps for.

``queue_id=… to=<…> relay=mx.example[192.0.2.1]:25 delay=… dsn=2.0.0
status=sent`` followed by the reply (docs/logs.md).
"""

from __future__ import annotations

import logging

from mailstead import logs
from mailstead.mta import dsn
from mailstead.peertext import log_text
from mailstead.proto.smtp.replies import Reply

__all__ = ["delivery", "relay"]

log = logging.getLogger("mailstead.outbound")

# Postfix's word for each state a recipient is left in.
_STATUS = {"delivered": "sent", "deferred": "deferred", "failed": "bounced"}


def relay(remote: str, port: int) -> str:
    """``mx.example [192.0.2.1]`` (as last_error stores it) as Postfix logs it:
    ``mx.example[192.0.2.1]:25``."""
    return f"{remote.replace(' [', '[', 1)}:{port}"


def delivery(
    queue_id: str,
    recipient: str,
    *,
    remote: str | None,
    port: int,
    delay: float,
    reply: Reply,
    state: str,
    expired: bool,
    error: str,
) -> None:
    """One recipient's outcome; the reply that settled it ends the line: a
    success's as the host gave it, a failure's with who said it (``error``)."""
    # Addresses and the remote's text are escaped by log_text: no forged lines.
    line = logs.fields(
        queue_id=queue_id,
        to=f"<{log_text(recipient)}>",
        relay=relay(remote, port) if remote else "none",
        delay=f"{max(0.0, delay):.2f}",
        dsn=dsn.status_from_reply(reply),
        status="expired" if expired else _STATUS[state],
    )
    log.info(log_text(reply.one_line() if state == "delivered" else error), extra=line)
