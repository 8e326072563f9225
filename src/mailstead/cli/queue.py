"""``mailstead queue``: the outbound queue as an operator sees it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailstead.cli.common import (
    Failure,
    echo_json,
    json_option,
    load,
    one_line_errors,
    open_queue,
    rfc3339,
)

if TYPE_CHECKING:
    from mailstead.mta.envelope import QueuedMessage, RecipientStatus

__all__ = ["queue"]

# The running server's outbound loop looks at the queue this often
# (mailstead.mta.outbound.POLL_INTERVAL); the help texts say so.
_OUTBOUND_POLL_SECONDS = 2
# `queue show` prints at most this much of a message's header section.
_SHOW_HEADER_LIMIT = 64 * 1024


def _printable(text: str) -> str:
    """``text`` with control characters escaped: remote replies and headers
    must not be able to move the cursor or recolour the operator's terminal."""
    return "".join(c if c.isprintable() or c == "\t" else f"\\x{ord(c):02x}" for c in text)


def _span(seconds: float) -> str:
    """A short human duration: 45s, 12m, 3h, 2d."""
    s = max(0, round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _next_attempt(when: float, now: float) -> str:
    return "now" if when <= now else f"in {_span(when - now)}"


def _recipient_text(r: RecipientStatus, now: float) -> str:
    text = f"{_printable(r.address)} {r.state}, {r.attempts} attempt(s)"
    if r.open:
        text += f", next {_next_attempt(r.next_attempt, now)}"
    if r.last_error:
        text += f", last error: {_printable(r.last_error)}"
    return text


def _message_json(m: QueuedMessage) -> dict[str, object]:
    return {
        "id": m.id,
        "sender": m.sender,
        "received_at": rfc3339(m.received_at),
        "size": m.size,
        "recipients": [
            {
                "address": r.address,
                "state": r.state,
                "attempts": r.attempts,
                "next_attempt": rfc3339(r.next_attempt) if r.open else None,
                "last_error": r.last_error,
            }
            for r in m.recipients
        ],
    }


def _header_section(path: Path) -> str:
    """The header lines of a queued message file (CRLF), at most _SHOW_HEADER_LIMIT bytes."""
    lines: list[str] = []
    read = 0
    with path.open("rb") as f:
        for raw in f:
            read += len(raw)
            if raw in (b"\r\n", b"\n") or read > _SHOW_HEADER_LIMIT:
                break
            lines.append(_printable(raw.rstrip(b"\r\n").decode("utf-8", "replace")))
    return "\n".join(lines)


@click.group()
def queue() -> None:
    """Inspect and manage the outbound queue (mail waiting for remote servers)."""


@queue.command("list")
@json_option
@click.pass_context
@one_line_errors
def queue_list(ctx: click.Context, as_json: bool) -> None:
    """List queued messages, oldest first, with their recipients still to be delivered.

    Text: one line per message (id, age, size, sender, then each open
    recipient with its state, attempts, next attempt and last error).
    """
    with open_queue(load(ctx)) as q:
        messages = q.list()
    if as_json:
        echo_json([_message_json(m) for m in messages])
        return
    now = time.time()
    for m in messages:
        open_rcpts = [r for r in m.recipients if r.open]
        rcpts = "; ".join(_recipient_text(r, now) for r in open_rcpts) or "no open recipients"
        click.echo(
            f"{m.id}  {_span(now - m.received_at):>4}  {m.size:>8}  "
            f"<{_printable(m.sender)}>  {rcpts}"
        )


@queue.command("show")
@click.argument("queue_id", metavar="ID")
@click.pass_context
@one_line_errors
def queue_show(ctx: click.Context, queue_id: str) -> None:
    """Show message ID: envelope, status of each recipient, and the message headers."""
    with open_queue(load(ctx)) as q:
        m = q.get(queue_id.upper())
        if m is None:
            raise Failure(f"no queued message {queue_id!r}")
        try:
            headers = _header_section(m.path)
        except FileNotFoundError:
            raise Failure(f"queued message {m.id} has left the queue") from None
    now = time.time()
    click.echo(f"id:       {m.id}")
    click.echo(f"sender:   <{_printable(m.sender)}>")
    click.echo(f"received: {rfc3339(m.received_at)} ({_span(now - m.received_at)} ago)")
    click.echo(f"size:     {m.size} bytes")
    if m.envid is not None:
        click.echo(f"envid:    {_printable(m.envid)}")
    if m.ret is not None:
        click.echo(f"ret:      {m.ret}")
    click.echo("recipients:")
    for r in m.recipients:
        click.echo(f"  {_recipient_text(r, now)}")
    click.echo("headers:")
    for line in headers.splitlines():
        click.echo(f"  {line}")


@queue.command("flush")
@click.pass_context
@one_line_errors
def queue_flush(ctx: click.Context) -> None:
    """Make every deferred recipient due now.

    The running server's outbound loop picks them up within its poll
    interval of 2 seconds; without a running server nothing is sent.
    """
    with open_queue(load(ctx)) as q:
        n = q.flush(time.time())
    click.echo(
        f"{n} deferred recipient(s) due now; a running server tries them"
        f" within {_OUTBOUND_POLL_SECONDS} seconds"
    )


@queue.command("delete")
@click.argument("queue_id", metavar="ID")
@click.pass_context
@one_line_errors
def queue_delete(ctx: click.Context, queue_id: str) -> None:
    """Remove message ID from the queue: it is not delivered and no bounce is sent."""
    with open_queue(load(ctx)) as q:
        try:
            q.delete(queue_id.upper())
        except KeyError:
            raise Failure(f"no queued message {queue_id!r}") from None
    click.echo(f"deleted queued message {queue_id.upper()}")
