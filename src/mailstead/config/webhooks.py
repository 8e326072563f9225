"""``[[webhooks]]``: the endpoints defined in the file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from mailstead.addresses import AddressError, canonical_address
from mailstead.config.reader import Reader, domain_name, show
from mailstead.events import pattern_error

__all__ = ["WebhookConfig", "load_webhooks"]


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One endpoint that receives signed HTTP POSTs for matching mail events."""

    #: ``http://`` or ``https://`` URL the events are POSTed to.
    url: str
    #: Event name patterns, shell-style (``message.*``, ``*.failed``, ``*``).
    events: tuple[str, ...] = ("*",)
    #: The ``whsec_`` secret each delivery is signed with (Standard Webhooks);
    #: ``None``: one is made and kept (``mailstead webhook list --show-secrets``).
    secret: str | None = None
    #: Only events of this domain, or of this account (a mailbox address).
    domain: str | None = None
    account: str | None = None
    #: One delivery at a time per account, in the order the events happened.
    ordered: bool = False
    #: ``false`` keeps the endpoint but sends it nothing.
    enabled: bool = True


def load_webhooks(r: Reader, data: Mapping[str, object]) -> tuple[WebhookConfig, ...]:
    """The ``[[webhooks]]`` array of tables of ``data``, in file order."""
    items = r.typed(data.get("webhooks", []), "webhooks", list, "an array of tables [[webhooks]]")
    hooks = []
    for i, item in enumerate(items):
        key = f"webhooks[{i}]"
        t = r.typed(item, key, dict, "a table")
        r.no_unknown(
            t, f"{key}.", ("url", "events", "secret", "domain", "account", "ordered", "enabled")
        )
        if "url" not in t:
            r.fail(f"{key}.url", "missing")
        url = r.string(t["url"], f"{key}.url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or not url.isprintable():
            r.fail(f"{key}.url", f"expected an http:// or https:// URL, got {show(url)}")
        events: tuple[str, ...] = ("*",)
        if "events" in t:
            events = tuple(r.string_list(t["events"], f"{key}.events"))
            if not events:
                r.fail(f"{key}.events", "at least one event pattern is required")
            for j, pattern in enumerate(events):
                problem = pattern_error(pattern)
                if problem is not None:
                    r.fail(f"{key}.events[{j}]", problem)
        secret = None
        if "secret" in t:
            secret = r.string(t["secret"], f"{key}.secret")
            if not secret:
                r.fail(f"{key}.secret", "must not be empty (omit the key to have one made)")
            if not secret.startswith("whsec_"):
                # The key itself is checked when serve or the CLI opens the outbox.
                r.fail(f"{key}.secret", 'expected a Standard Webhooks secret "whsec_<base64>"')
        domain = None
        if "domain" in t:
            domain = domain_name(r, r.string(t["domain"], f"{key}.domain"), f"{key}.domain")
        account = None
        if "account" in t:
            text = r.string(t["account"], f"{key}.account")
            try:
                account = canonical_address(text)
            except AddressError:
                r.fail(f"{key}.account", f"expected a mail address, got {show(text)}")
        flags = {}
        for flag in ("ordered", "enabled"):
            if flag in t:
                flags[flag] = r.typed(t[flag], f"{key}.{flag}", bool, "true or false")
        hooks.append(
            WebhookConfig(
                url=url, events=events, secret=secret, domain=domain, account=account, **flags
            )
        )
    return tuple(hooks)
