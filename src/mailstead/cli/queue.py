"""``mailstead queue``: the outbound queue as an operator sees it.

``list`` prints a ``mailq``-like layout (:mod:`mailstead.cli.queue_text`);
``flush``, ``delete``, ``hold`` and ``release`` act on several ids, on
``--all`` or on the messages the filters select (``--to-domain``,
``--from``, ``--state``, ``--older-than``, as on ``list``).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

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
from mailstead.cli.queue_text import listing, printable, span
from mailstead.limits import SMTPLimits
from mailstead.mta.queue_select import (
    MESSAGE_STATES,
    MessageState,
    Selection,
    SelectionError,
    message_state,
    parse_duration,
)

if TYPE_CHECKING:
    from mailstead.config import Config
    from mailstead.mta.envelope import QueuedMessage, RecipientStatus
    from mailstead.mta.queue import Queue

__all__ = ["queue"]

# `queue show` prints at most this much of a message's header section.
_SHOW_HEADER_LIMIT = 64 * 1024

_F = TypeVar("_F", bound=Callable[..., object])


class _UsageFailure(Failure):
    """A command line that cannot be carried out as given: one line, exit status 2."""

    exit_code = 2


def _next_attempt(when: float, now: float) -> str:
    return "now" if when <= now else f"in {span(when - now)}"


def _recipient_text(r: RecipientStatus, now: float, *, held: bool = False) -> str:
    text = f"{printable(r.address)} {r.state}, {r.attempts} attempt(s)"
    if r.open:
        text += ", on hold" if held else f", next {_next_attempt(r.next_attempt, now)}"
    if r.last_error:
        text += f", last error: {printable(r.last_error)}"
    return text


def _message_json(m: QueuedMessage, now: float) -> dict[str, object]:
    """The stable JSON of a queued message (docs/cli.md)."""
    return {
        "id": m.id,
        "state": message_state(m, now),
        "sender": m.sender,
        "received_at": rfc3339(m.received_at),
        "held_at": None if m.held_at is None else rfc3339(m.held_at),
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


def _split_message(content: bytes, limit: int | None) -> tuple[list[str], bytes]:
    """The header lines of a queued message (at most _SHOW_HEADER_LIMIT bytes)
    and, if ``limit`` is not None, up to that many bytes of its body."""
    lines: list[str] = []
    read = 0
    with io.BytesIO(content) as f:
        for raw in f:
            read += len(raw)
            if raw in (b"\r\n", b"\n") or read > _SHOW_HEADER_LIMIT:
                break
            lines.append(raw.rstrip(b"\r\n").decode("utf-8", "replace"))
        body = f.read(limit) if limit is not None else b""
    return lines, body


def _filter_options(f: _F) -> _F:
    """The filters shared by ``list`` and the actions."""
    options = [
        click.option(
            "--to-domain", metavar="DOMAIN", help="Messages with a recipient in DOMAIN left."
        ),
        click.option(
            "--from",
            "sender",
            metavar="ADDRESS|@DOMAIN",
            help="Messages from this sender (any case), or from any sender of @DOMAIN;"
            ' "<>" for bounces.',
        ),
        click.option(
            "--state",
            type=click.Choice(MESSAGE_STATES),
            help="active (being delivered or due now), deferred (waiting to retry) or held.",
        ),
        click.option(
            "--older-than",
            metavar="DURATION",
            help="Messages that arrived longer ago than DURATION (30m, 1h, 2d, 1w).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _selection(
    to_domain: str | None, sender: str | None, state: str | None, older_than: str | None
) -> Selection:
    try:
        selection = Selection(
            to_domain=to_domain,
            sender=sender,
            state=_state(state),
            older_than=None if older_than is None else parse_duration(older_than),
        )
        return selection
    except SelectionError as exc:
        raise _UsageFailure(str(exc)) from None


def _state(state: str | None) -> MessageState | None:
    for known in MESSAGE_STATES:
        if state == known:
            return known
    return None


def _pick(q: Queue, selection: Selection, now: float) -> tuple[list[QueuedMessage], int]:
    """The messages ``selection`` picks and how many are queued in all."""
    messages = q.list()
    return selection.pick(messages, now), len(messages)


def _no_server_warning(ctx: click.Context, data_dir: Path) -> None:
    from mailstead.system.lock import running_pid

    if running_pid(data_dir) is None:
        # Postfix's mailq says "Mail system is down" in the same case.
        click.echo(
            "mailstead: warning: no server is running; nothing in the queue is being delivered",
            err=True,
        )


@click.group()
def queue() -> None:
    """Inspect and manage the outbound queue (mail waiting for remote servers).

    \b
    Examples:
      mailstead queue list --to-domain gmail.com --older-than 1h
      mailstead queue hold --from spammer@example.test
      mailstead queue show 0005F1C2A3B4C5D6E7F80911 --body
    """


@queue.command("list")
@_filter_options
@json_option
@click.pass_context
@one_line_errors
def queue_list(
    ctx: click.Context,
    to_domain: str | None,
    sender: str | None,
    state: str | None,
    older_than: str | None,
    as_json: bool,
) -> None:
    """List queued messages, oldest first, like Postfix's mailq.

    A line per message: id (followed by * when it is being delivered or due
    now, ! when held), size in bytes, arrival time and sender; then each
    recipient still to be delivered, under its last delivery error in
    parentheses. The last line totals the messages listed.

    \b
    Example:
      mailstead queue list --state deferred --older-than 2d
    """
    selection = _selection(to_domain, sender, state, older_than)
    config = load(ctx)
    now = time.time()
    with open_queue(config) as q:
        messages, queued = _pick(q, selection, now)
    if as_json:
        echo_json([_message_json(m, now) for m in messages])
        return
    click.echo(listing(messages, now, queue_empty=queued == 0), nl=False)
    if messages:
        _no_server_warning(ctx, config.data_dir)


@queue.command("show")
@click.argument("queue_id", metavar="ID")
@click.option("--body", is_flag=True, help="Print the message body too (after the headers).")
@json_option
@click.pass_context
@one_line_errors
def queue_show(ctx: click.Context, queue_id: str, body: bool, as_json: bool) -> None:
    """Show message ID: envelope, status of each recipient, and the message headers.

    \b
    Example:
      mailstead queue show 0005F1C2A3B4C5D6E7F80911 --body
    """
    config = load(ctx)
    with open_queue(config) as q:
        m = q.get(queue_id.upper())
        if m is None:
            raise Failure(f"no queued message {printable(queue_id)[:80]!r}")
        try:
            # From the queue, not m.path: with PostgreSQL the content is a row.
            raw = q.open_message(m.id)
        except (KeyError, FileNotFoundError):
            raise Failure(f"queued message {m.id} has left the queue") from None
        headers, content = _split_message(raw, SMTPLimits().message_size if body else None)
    now = time.time()
    if as_json:
        shown: dict[str, object] = _message_json(m, now)
        shown |= {"envid": m.envid, "ret": m.ret, "headers": headers}
        if body:
            shown["body"] = content.decode("utf-8", "replace")
        echo_json(shown)
        return
    click.echo(f"id:       {m.id}")
    click.echo(f"state:    {message_state(m, now)}")
    click.echo(f"sender:   <{printable(m.sender)}>")
    click.echo(f"received: {rfc3339(m.received_at)} ({span(now - m.received_at)} ago)")
    if m.held_at is not None:
        click.echo(f"held:     {rfc3339(m.held_at)} ({span(now - m.held_at)} ago)")
    click.echo(f"size:     {m.size} bytes")
    if m.envid is not None:
        click.echo(f"envid:    {printable(m.envid)}")
    if m.ret is not None:
        click.echo(f"ret:      {m.ret}")
    click.echo("recipients:")
    for r in m.recipients:
        click.echo(f"  {_recipient_text(r, now, held=m.held_at is not None)}")
    click.echo("headers:")
    for line in headers:
        click.echo(f"  {printable(line)}")
    if body:
        click.echo("body:")
        for line in content.decode("utf-8", "replace").splitlines():
            click.echo(f"  {printable(line)}")


def _action_options(f: _F) -> _F:
    f = _filter_options(f)
    f = click.option("--all", "everything", is_flag=True, help="Every queued message.")(f)
    return click.argument("queue_ids", metavar="[ID]...", nargs=-1)(f)


def _targets(
    ctx: click.Context,
    q: Queue,
    queue_ids: Sequence[str],
    everything: bool,
    selection: Selection,
    *,
    required: bool = True,
) -> list[str] | None:
    """The ids an action applies to: the ids given (all of them queued), or what
    ``--all`` and the filters select. None: the whole queue, unfiltered."""
    if queue_ids and everything:
        raise _UsageFailure("give ids or --all, not both")
    if not queue_ids and not everything and selection.empty:
        if not required:
            return None
        raise _UsageFailure(
            "say which messages: ids, --all or a filter"
            f" (mailstead queue {ctx.command.name} --help)"
        )
    now = time.time()
    if queue_ids:
        found = []
        for given in queue_ids:
            m = q.get(given.upper())
            if m is None:
                raise Failure(f"no queued message {printable(given)[:80]!r}")
            found.append(m)
        return [m.id for m in selection.pick(found, now)]
    if selection.empty:
        return None
    picked, _ = _pick(q, selection, now)
    return [m.id for m in picked]


def _done(verb: str, ids: Sequence[str], skipped: int = 0, why: str = "") -> str:
    if len(ids) == 1 and not skipped:
        return f"{verb} queued message {ids[0]}"
    text = f"{verb} {len(ids)} queued message(s)"
    return text + (f"; {skipped} {why}" if skipped else "")


@queue.command("flush")
@_action_options
@click.pass_context
@one_line_errors
def queue_flush(
    ctx: click.Context, /, queue_ids: tuple[str, ...], everything: bool, **filters: str | None
) -> None:
    """Make deferred recipients due now (all of them without ids or filters).

    A running server is woken and tries them at once; without one nothing is
    sent until it starts. Held messages stay held.

    \b
    Example:
      mailstead queue flush --to-domain example.org
    """
    config = load(ctx)
    with open_queue(config) as q:
        # Flushing only makes mail go sooner: without ids or filters it is
        # the whole queue, as `queue flush` always was and `postqueue -f` is.
        ids = _targets(ctx, q, queue_ids, everything, _selection(**filters), required=False)
        n = q.flush(time.time(), ids)
    click.echo(f"{n} deferred recipient(s) due now; {_wake(config)}")


@queue.command("delete")
@_action_options
@click.pass_context
@one_line_errors
def queue_delete(
    ctx: click.Context, /, queue_ids: tuple[str, ...], everything: bool, **filters: str | None
) -> None:
    """Remove messages from the queue: they are not delivered and no bounce is sent.

    \b
    Examples:
      mailstead queue delete 0005F1C2A3B4C5D6E7F80911
      mailstead queue delete --from '<>' --older-than 1d
    """
    with open_queue(load(ctx)) as q:
        deleted, gone = [], 0
        for queue_id in _chosen(ctx, q, queue_ids, everything, filters):
            try:
                q.delete(queue_id)
            except KeyError:
                gone += 1  # delivered (or deleted) in the meantime
            else:
                deleted.append(queue_id)
    click.echo(_done("deleted", deleted, gone, "already gone"))


@queue.command("hold")
@_action_options
@click.pass_context
@one_line_errors
def queue_hold(
    ctx: click.Context, /, queue_ids: tuple[str, ...], everything: bool, **filters: str | None
) -> None:
    """Hold messages: the server never tries them until `queue release`.

    A delivery already in flight finishes.

    \b
    Example:
      mailstead queue hold --to-domain slow.example
    """
    with open_queue(load(ctx)) as q:
        ids = _chosen(ctx, q, queue_ids, everything, filters)
        held = q.hold(ids, time.time())
    click.echo(_done("held", held, len(ids) - len(held), "already held or gone"))


@queue.command("release")
@_action_options
@click.pass_context
@one_line_errors
def queue_release(
    ctx: click.Context, /, queue_ids: tuple[str, ...], everything: bool, **filters: str | None
) -> None:
    """Release held messages: they are tried again at their next attempt time.

    Follow with `queue flush` to try them now.

    \b
    Example:
      mailstead queue release --all
    """
    with open_queue(load(ctx)) as q:
        ids = _chosen(ctx, q, queue_ids, everything, filters)
        released = q.release(ids)
    click.echo(_done("released", released, len(ids) - len(released), "not held"))


def _chosen(
    ctx: click.Context,
    q: Queue,
    queue_ids: Sequence[str],
    everything: bool,
    filters: dict[str, str | None],
) -> list[str]:
    """The ids an action that needs a choice applies to (:func:`_targets`)."""
    ids = _targets(ctx, q, queue_ids, everything, _selection(**filters))
    return [m.id for m in q.list()] if ids is None else ids


def _wake(config: Config) -> str:
    """Wake the running server's outbound loops; say what happens to due mail."""
    from mailstead.control.client import ControlError, NotRunning, request

    try:
        woken = request(config, "wake")["workers_woken"]
    except NotRunning:
        return "no server is running: they go when it starts"
    except ControlError as exc:
        from mailstead.mta.outbound import POLL_INTERVAL

        return f"the server could not be woken ({exc}): it looks within {POLL_INTERVAL:g} seconds"
    return f"{woken} worker(s) of the running server trying them now"
