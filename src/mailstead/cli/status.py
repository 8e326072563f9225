"""``mailstead status``, ``reload`` and ``stop``: the running server, over its control socket.

Each asks the ``serve`` of the config's data directory (control/client.py).
Without one, ``status`` and ``reload`` exit 3 with one line (LSB's and
``systemctl status``'s "not running"); ``stop`` succeeds, there is nothing
to stop. Only root and the ``[run]`` user may ask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mailstead.cli.common import Failure, echo_json, json_option, load, one_line_errors
from mailstead.config import Config
from mailstead.control.client import ControlError, NotRunning, request, wait_stopped

if TYPE_CHECKING:
    from mailstead.control.protocol import Command

__all__ = ["reload", "status", "stop"]

#: ``mailstead status``'s exit status when no server runs (LSB: "program is not running").
NOT_RUNNING = 3


class NotRunningFailure(Failure):
    """No server runs: ``mailstead: <reason>`` and exit status 3."""

    exit_code = NOT_RUNNING


def _ask(config: Config, command: Command) -> dict[str, object]:
    try:
        return request(config, command)
    except NotRunning as exc:
        raise NotRunningFailure(str(exc)) from None
    except ControlError as exc:
        raise Failure(str(exc)) from None


def _span(seconds: float) -> str:
    """``2d 3h``, ``5h 12m``, ``4m 10s``, ``12s``: two units at most."""
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (s, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{n}{unit}" for n, unit in parts[:2])


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _objects(value: object) -> list[dict[str, object]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _counts(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int)}


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _row(label: str, text: str) -> str:
    return f"{label:<13}{text}".rstrip()


def status_text(s: dict[str, object]) -> list[str]:
    """The lines of ``mailstead status`` for a status result (docs/cli.md)."""
    domains = s.get("domains")
    named = ", ".join(map(str, domains)) if isinstance(domains, list) else ""
    up = _span(_number(s.get("uptime_seconds")))
    workers = _objects(s.get("workers"))
    mail = sum(1 for w in workers if w.get("role") == "mail")
    lines = [
        f"mailstead {s.get('version')} {s.get('state')} {named} as {s.get('hostname')}",
        _row("pid", f"{s.get('pid')}, up {up} (since {s.get('started_at')})"),
        _row("config", str(s.get("config"))),
        _row("data_dir", str(s.get("data_dir"))),
        _row("workers", f"{mail} mail, {len(workers) - mail} webhooks"),
    ]
    for w in workers:
        pid = w.get("pid")
        restarts = int(_number(w.get("restarts")))
        shown = f"pid {pid}" if pid is not None else "-"
        line = f"  {w.get('role')} {w.get('index')}".ljust(15) + f"{shown:<11}{w.get('state')}"
        if restarts:
            line = line.ljust(38) + _plural(restarts, "restart")
        lines.append(line)
    lines.append("listeners")
    for a in _objects(s.get("listeners")):
        host = str(a.get("host"))
        shown = f"[{host}]" if ":" in host else host
        lines.append(f"  {a.get('name')}".ljust(15) + f"{shown}:{a.get('port')}")
    sessions = s.get("sessions")
    if isinstance(sessions, dict):
        counts = _counts(sessions)
        text = ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "none"
    else:
        text = "unknown (no metrics in this build)"
    lines.append(_row("sessions", text))
    queue = s.get("queue")
    q = queue if isinstance(queue, dict) else {}
    text = _plural(int(_number(q.get("messages"))), "message")
    by_state = _counts(q.get("recipients"))
    if by_state:
        states = ", ".join(f"{n} {state}" for state, n in by_state.items())
        text += f", {_plural(sum(by_state.values()), 'recipient')} ({states})"
    age = q.get("oldest_age_seconds")
    if isinstance(age, int | float):
        text += f", oldest {_span(age)}"
    lines.append(_row("queue", text))
    last = s.get("last_reload")
    if isinstance(last, dict):
        outcome = "reloaded" if last.get("ok") else "failed"
        lines.append(_row("last reload", f"{last.get('at')}: {outcome}"))
    return lines


@click.command()
@json_option
@click.pass_context
@one_line_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the running server: workers, listeners, sessions, queue.

    Exits 3 with one line when no server runs on the config's data
    directory. Needs root or the [run] user.

    \b
    Example:
      mailstead status
      mailstead status --json | jq .queue.messages
    """
    result = _ask(load(ctx), "status")
    if as_json:
        echo_json(result)
        return
    for line in status_text(result):
        click.echo(line)


@click.command()
@click.pass_context
@one_line_errors
def reload(ctx: click.Context) -> None:
    """Reload the config, certificates, users, aliases and webhooks (like SIGHUP).

    Sessions in progress are kept. Prints what the reload applied; exits 1
    with the reason when the new config is refused (the old one stays).

    \b
    Example:
      mailstead reload
    """
    result = _ask(load(ctx), "reload")
    click.echo(f"reloaded: {result.get('summary')}")


@click.command()
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to wait for the server to exit  [default: [limits] shutdown_timeout + 10].",
)
@click.pass_context
@one_line_errors
def stop(ctx: click.Context, timeout: float | None) -> None:
    """Stop the server gracefully (like SIGTERM) and wait until it has exited.

    Listeners close at once; sessions end at their next wait for input, at
    most [limits] shutdown_timeout later. Exits 1 if the server is still
    running after --timeout seconds, 0 if none was running.

    \b
    Example:
      mailstead stop --timeout 60
    """
    config = load(ctx)
    try:
        result = request(config, "stop")
    except NotRunning as exc:
        # Stopping what is stopped succeeds (LSB, systemctl): scripts may call it twice.
        click.echo(f"{exc}: nothing to stop")
        return
    except ControlError as exc:
        raise Failure(str(exc)) from None
    pid = result.get("pid")
    wait = timeout if timeout is not None else config.limits.shutdown_timeout + 10.0
    if not wait_stopped(config, wait, pid if isinstance(pid, int) else None):
        raise Failure(f"server (pid {pid}) still running after {wait:g} s")
    click.echo(f"stopped (pid {pid})")
