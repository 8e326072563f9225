"""``mailstead webhook``: the endpoints that receive mail events, and their deliveries."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import TYPE_CHECKING

import click

from mailstead.cli.common import Failure, echo_json, json_option, load, one_line_errors, rfc3339
from mailstead.config import Config
from mailstead.config.values import parse_duration

if TYPE_CHECKING:
    from mailstead.webhooks.endpoints import Endpoint
    from mailstead.webhooks.http import DeliveryResult
    from mailstead.webhooks.outbox import Outbox

__all__ = ["webhook"]


def open_outbox(config: Config) -> Outbox:
    """The webhook outbox of ``config``, its config endpoints made to match the file."""
    from mailstead import app  # serve's wiring; imported only by the commands that need it

    return app.open_outbox(config)


def _patterns(text: str) -> tuple[str, ...]:
    """``--events``: comma-separated patterns, each matching some event type."""
    from mailstead.events import pattern_error

    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    if not patterns:
        raise Failure("--events needs at least one pattern, e.g. 'message.*'")
    for pattern in patterns:
        problem = pattern_error(pattern)
        if problem is not None:
            raise Failure(f"--events: {problem}")
    return patterns


def _since(text: str) -> float:
    """``--since``: a duration back from now (``2h``, ``3d``) or an RFC 3339 time."""
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise Failure(
            "--since: expected a duration like 2h or a time like"
            f" 2026-12-07T10:00:00Z, got {text!r}"
        ) from None


def _endpoint_line(e: Endpoint) -> str:
    state = "enabled" if e.enabled else f"disabled ({e.disabled_reason or 'by the operator'})"
    extra = "".join(f" {k}={v}" for k, v in (("domain", e.domain), ("account", e.account)) if v) + (
        " ordered" if e.ordered else ""
    )
    return f"{e.id}  {state}  {e.url}  events={','.join(e.events)}{extra}  [{e.source}]"


def _result_line(result: DeliveryResult) -> str:
    from mailstead.webhooks.dispatcher import describe

    took = f" in {result.elapsed * 1000:.0f} ms"
    problem = describe(result)
    return (f"HTTP {result.status}" if problem is None else problem) + took


def _lookup(outbox: Outbox, endpoint_id: str) -> Endpoint:
    try:
        return outbox.endpoints.get(endpoint_id)
    except KeyError:
        raise Failure(f"no webhook endpoint {endpoint_id!r}") from None


@click.group()
def webhook() -> None:
    """Endpoints that receive every mail event as a signed HTTP POST (docs/webhooks.md).

    \b
    Example:
      mailstead webhook add https://app.example.org/hooks/mail --events 'message.*'
      mailstead webhook list
    """


@webhook.command("add")
@click.argument("url")
@click.option("--events", default="*", show_default=True, help="Event patterns, comma-separated.")
@click.option("--secret", help="A whsec_ secret to sign with (default: a new one, printed).")
@click.option("--domain", help="Only events of this domain.")
@click.option("--account", help="Only events of this account (mailbox address).")
@click.option("--ordered", is_flag=True, help="One delivery at a time per account, in order.")
@json_option
@click.pass_context
@one_line_errors
def webhook_add(
    ctx: click.Context,
    url: str,
    events: str,
    secret: str | None,
    domain: str | None,
    account: str | None,
    ordered: bool,
    as_json: bool,
) -> None:
    """Send the events matching --events to URL, signed (Standard Webhooks).

    \b
    Example:
      mailstead webhook add https://app.example.org/hooks/mail --events 'message.*,auth.failed'
      mailstead webhook add https://crm.example.org/in --domain example.org --ordered
    """
    from urllib.parse import urlsplit

    from mailstead.webhooks.signing import InvalidSecretError

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not url.isprintable():
        raise Failure(f"expected an http:// or https:// URL, got {url!r}")
    patterns = _patterns(events)
    with open_outbox(load(ctx)) as outbox:
        try:
            endpoint = outbox.endpoints.add(
                url,
                patterns,
                secret=secret,
                domain=domain.lower() if domain else None,
                account=account.lower() if account else None,
                ordered=ordered,
            )
        except InvalidSecretError as exc:
            raise Failure(f"--secret: {exc}") from None
    if as_json:
        echo_json(endpoint.as_json(show_secrets=True))
        return
    click.echo(f"added {endpoint.id}: {url}")
    click.echo(f"secret {endpoint.secrets[0][0]}")


@webhook.command("list")
@click.option("--show-secrets", is_flag=True, help="Include each endpoint's secrets.")
@json_option
@click.pass_context
@one_line_errors
def webhook_list(ctx: click.Context, show_secrets: bool, as_json: bool) -> None:
    """List the endpoints: from [[webhooks]] in the config and from `webhook add`.

    \b
    Example:
      mailstead webhook list
      mailstead webhook list --json
    """
    with open_outbox(load(ctx)) as outbox:
        endpoints = outbox.endpoints.list()
    if as_json:
        echo_json([e.as_json(show_secrets=show_secrets) for e in endpoints])
        return
    for e in endpoints:
        click.echo(_endpoint_line(e))
        if show_secrets:
            for s, retire_at in e.secrets:
                until = "" if retire_at is None else f" (until {rfc3339(retire_at)})"
                click.echo(f"  secret {s}{until}")


@webhook.command("del")
@click.argument("endpoint_id", metavar="ID")
@click.pass_context
@one_line_errors
def webhook_del(ctx: click.Context, endpoint_id: str) -> None:
    """Remove endpoint ID; its pending deliveries are dropped.

    \b
    Example:
      mailstead webhook del ep_0662e480b8b1ec7f3a
    """
    with open_outbox(load(ctx)) as outbox:
        endpoint = _lookup(outbox, endpoint_id)
        if endpoint.source == "config":
            raise Failure(f"{endpoint_id} comes from [[webhooks]] in the config: remove it there")
        outbox.endpoints.delete(endpoint_id)
    click.echo(f"deleted {endpoint_id}")


def _set_enabled(ctx: click.Context, endpoint_id: str, enabled: bool) -> None:
    with open_outbox(load(ctx)) as outbox:
        _lookup(outbox, endpoint_id)
        outbox.endpoints.set_enabled(endpoint_id, enabled, None if enabled else "by the operator")
    click.echo(f"{'enabled' if enabled else 'disabled'} {endpoint_id}")


@webhook.command("enable")
@click.argument("endpoint_id", metavar="ID")
@click.pass_context
@one_line_errors
def webhook_enable(ctx: click.Context, endpoint_id: str) -> None:
    """Enable endpoint ID again (after `disable`, or after it answered 410 Gone).

    \b
    Example:
      mailstead webhook enable ep_0662e480b8b1ec7f3a
    """
    _set_enabled(ctx, endpoint_id, True)


@webhook.command("disable")
@click.argument("endpoint_id", metavar="ID")
@click.pass_context
@one_line_errors
def webhook_disable(ctx: click.Context, endpoint_id: str) -> None:
    """Stop sending to endpoint ID; events meanwhile are not kept for it.

    \b
    Example:
      mailstead webhook disable ep_0662e480b8b1ec7f3a
    """
    _set_enabled(ctx, endpoint_id, False)


@webhook.command("rotate-secret")
@click.argument("endpoint_id", metavar="ID")
@click.pass_context
@one_line_errors
def webhook_rotate_secret(ctx: click.Context, endpoint_id: str) -> None:
    """Give endpoint ID a new secret; the old one also signs for 24 hours.

    \b
    Example:
      mailstead webhook rotate-secret ep_0662e480b8b1ec7f3a
    """
    config = load(ctx)
    with open_outbox(config) as outbox:
        endpoint = _lookup(outbox, endpoint_id)
        if endpoint.source == "config" and any(
            w.url == endpoint.url and w.secret for w in config.webhooks
        ):
            # The next serve would put the file's secret back.
            raise Failure(
                f"{endpoint_id} takes its secret from [[webhooks]] in the config: change it there"
            )
        secret = outbox.endpoints.rotate_secret(endpoint_id)
    click.echo(f"secret {secret}")
    click.echo("deliveries carry both signatures for 24 hours; switch the receiver meanwhile")


@webhook.command("test")
@click.argument("endpoint_id", metavar="ID")
@click.pass_context
@one_line_errors
def webhook_test(ctx: click.Context, endpoint_id: str) -> None:
    """POST a signed webhook.test event to endpoint ID now and show the answer.

    \b
    Example:
      mailstead webhook test ep_0662e480b8b1ec7f3a
    """
    config = load(ctx)
    with open_outbox(config) as outbox:
        endpoint = _lookup(outbox, endpoint_id)
    result = asyncio.run(_post_test(config, endpoint))
    click.echo(f"{endpoint.url}: {_result_line(result)}")
    if not result.ok:
        raise Failure(f"the endpoint did not accept the test event ({_result_line(result)})")


async def _post_test(config: Config, endpoint: Endpoint) -> DeliveryResult:
    from mailstead.events import Event
    from mailstead.limits import WebhookLimits
    from mailstead.webhooks.http import WebhookClient
    from mailstead.webhooks.outbox import new_delivery_id
    from mailstead.webhooks.ssrf import AddressGuard

    limits = WebhookLimits()
    event = Event("webhook.test", {"endpoint": endpoint.id, "hostname": config.hostname})
    body = json.dumps(event.payload(), separators=(",", ":")).encode()
    headers = endpoint.request_headers(new_delivery_id(), body, time.time())
    client = WebhookClient(
        AddressGuard(config.http_client.allow_networks),
        connect_timeout=limits.connect_timeout,
        read_timeout=limits.read_timeout,
    )
    try:
        return await client.post(endpoint.url, body, headers)
    finally:
        await client.aclose()


@webhook.command("deliveries")
@click.option("--failed", "only_failed", is_flag=True, help="Only deliveries that gave up.")
@click.option("--since", help="Only deliveries since then: 2h, 3d or an RFC 3339 time.")
@click.option("--limit", default=100, show_default=True, help="At most this many, newest first.")
@json_option
@click.pass_context
@one_line_errors
def webhook_deliveries(
    ctx: click.Context, only_failed: bool, since: str | None, limit: int, as_json: bool
) -> None:
    """The most recent deliveries: event, endpoint, state, attempts, last answer.

    \b
    Example:
      mailstead webhook deliveries --failed --since 2h
      mailstead webhook deliveries --limit 20 --json
    """
    with open_outbox(load(ctx)) as outbox:
        records = outbox.deliveries(
            state="failed" if only_failed else None,
            since=_since(since) if since else None,
            limit=limit,
        )
    if as_json:
        echo_json([r.as_json() for r in records])
        return
    for r in records:
        last = r.last_error or (f"HTTP {r.last_status}" if r.last_status else "-")
        click.echo(
            f"{r.id}  {r.state:<9}  {r.attempts} attempt(s)  {r.event_type}"
            f"  {r.endpoint_id}  {last}"
        )


@webhook.command("replay")
@click.argument("delivery_id", metavar="DELIVERY_ID", required=False)
@click.option("--failed", "failed", is_flag=True, help="Replay every delivery that gave up.")
@click.option("--since", help="With --failed: only those since then (2h, 3d, RFC 3339).")
@click.pass_context
@one_line_errors
def webhook_replay(
    ctx: click.Context, delivery_id: str | None, failed: bool, since: str | None
) -> None:
    """Deliver an event again, under a new webhook-id (so a receiver handles it again).

    Prints each new delivery's id.

    \b
    Example:
      mailstead webhook replay msg_0662e480b8b1ec5d2f6a0c91b7e3
      mailstead webhook replay --failed --since 1d
    """
    if (delivery_id is None) == (not failed):
        raise Failure("give a DELIVERY_ID or --failed")
    if since and not failed:
        raise Failure("--since goes with --failed")
    from mailstead.webhooks.outbox import EndpointGone

    with open_outbox(load(ctx)) as outbox:
        if delivery_id is not None:
            try:
                new_ids = [outbox.replay(delivery_id)]
            except EndpointGone as exc:
                raise Failure(str(exc)) from None
            except KeyError:
                raise Failure(f"no delivery {delivery_id!r}") from None
        else:
            new_ids = outbox.replay_failed(_since(since) if since else None)
    for new_id in new_ids:
        click.echo(new_id)
    click.echo(
        f"{len(new_ids)} delivery(ies) queued again; a running server sends them within a second",
        err=True,
    )
