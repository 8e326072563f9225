"""``[[webhooks]]``: the endpoints defined in the file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from mailstead.config.reader import Reader, show

__all__ = ["WebhookConfig", "load_webhooks"]

_EVENT_PATTERN = re.compile(r"[a-z0-9_*-]+(?:\.[a-z0-9_*-]+)*")


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


def load_webhooks(r: Reader, data: Mapping[str, object]) -> tuple[WebhookConfig, ...]:
    """The ``[[webhooks]]`` array of tables of ``data``, in file order."""
    items = r.typed(data.get("webhooks", []), "webhooks", list, "an array of tables [[webhooks]]")
    hooks = []
    for i, item in enumerate(items):
        key = f"webhooks[{i}]"
        t = r.typed(item, key, dict, "a table")
        r.no_unknown(t, f"{key}.", ("url", "events", "secret"))
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
                if not _EVENT_PATTERN.fullmatch(pattern):
                    r.fail(f"{key}.events[{j}]", f"invalid event pattern {show(pattern)}")
        secret = None
        if "secret" in t:
            secret = r.string(t["secret"], f"{key}.secret")
            if not secret:
                r.fail(f"{key}.secret", "must not be empty (omit the key to have one made)")
            if not secret.startswith("whsec_"):
                # The key itself is checked when serve or the CLI opens the outbox.
                r.fail(f"{key}.secret", 'expected a Standard Webhooks secret "whsec_<base64>"')
        hooks.append(WebhookConfig(url=url, events=events, secret=secret))
    return tuple(hooks)
