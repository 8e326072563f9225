"""Webhook endpoints: where events go, which ones, signed with what.

Endpoints come from two places and live in one table: ``[[webhooks]]`` in
the config (``source = 'config'``, made to match the file at every
``serve`` start) and ``mailstead webhook add`` (``source = 'cli'``). Each
has its own secrets, newest first: a rotation adds a new secret and keeps
the old one for :data:`ROTATION_GRACE`, and every delivery in between is
signed with both (Standard Webhooks allows several signatures), so the
receiver can switch keys without losing a delivery.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from mailstead.events import Event, matches
from mailstead.mta.queue_db import SQLConnection
from mailstead.webhooks.signing import (
    InvalidSecretError,
    generate_secret,
    parse_secret,
    sign_headers,
)

__all__ = ["ROTATION_GRACE", "ConfiguredEndpoint", "Endpoint", "EndpointRegistry"]

#: How long a rotated-out secret still signs deliveries (24 h).
ROTATION_GRACE = 24 * 3600.0

_DISABLED_BY_CONFIG = "enabled = false in the config"

# Endpoints are re-read this often, so one added by the CLI (another
# process) starts receiving events within a second or so.
_REFRESH = 1.0

Transaction = Callable[[], AbstractContextManager[SQLConnection]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One webhook endpoint and what it subscribes to."""

    id: str
    url: str
    events: tuple[str, ...]
    #: (secret, retire_at or None), newest first.
    secrets: tuple[tuple[str, float | None], ...]
    domain: str | None = None
    account: str | None = None
    ordered: bool = False
    enabled: bool = True
    disabled_reason: str | None = None
    source: str = "cli"
    created_at: float = 0.0

    def subscribes(self, event_type: str) -> bool:
        return self.enabled and any(matches(p, event_type) for p in self.events)

    def receives(self, event: Event) -> bool:
        """Whether ``event`` goes to this endpoint: type, then the domain/account filters."""
        if not self.subscribes(event.type):
            return False
        if self.domain is not None and event.domain != self.domain:
            return False
        return self.account is None or event.account == self.account

    def signing_secrets(self, now: float) -> list[str]:
        """The secrets that sign a delivery made at ``now`` (two during a rotation)."""
        return [s for s, retire_at in self.secrets if retire_at is None or retire_at > now]

    def request_headers(self, webhook_id: str, body: bytes, now: float) -> dict[str, str]:
        """The headers of one POST of ``body``: JSON, signed with every current secret."""
        headers = sign_headers(self.signing_secrets(now), webhook_id, body, int(now))
        headers["content-type"] = "application/json"
        return headers

    def as_json(self, *, show_secrets: bool = False) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "domain": self.domain,
            "account": self.account,
            "ordered": self.ordered,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "source": self.source,
        }
        if show_secrets:
            out["secrets"] = [s for s, _ in self.secrets]
        return out


_COLUMNS = (
    "id, url, events, secrets, domain, account, ordered, enabled, disabled_reason, source,"
    " created_at"
)


def _endpoint(row: Sequence[object]) -> Endpoint:
    secrets = tuple((str(s), None if r is None else float(r)) for s, r in json.loads(str(row[3])))
    return Endpoint(
        id=str(row[0]),
        url=str(row[1]),
        events=tuple(json.loads(str(row[2]))),
        secrets=secrets,
        domain=None if row[4] is None else str(row[4]),
        account=None if row[5] is None else str(row[5]),
        ordered=bool(row[6]),
        enabled=bool(row[7]),
        disabled_reason=None if row[8] is None else str(row[8]),
        source=str(row[9]),
        created_at=float(str(row[10])),
    )


@dataclass(frozen=True, slots=True)
class ConfiguredEndpoint:
    """What ``[[webhooks]]`` says of one endpoint (``config.webhooks.WebhookConfig``)."""

    url: str
    events: tuple[str, ...]
    secret: str | None = None
    domain: str | None = None
    account: str | None = None
    ordered: bool = False
    enabled: bool = True


def config_endpoint_id(url: str) -> str:
    """A config endpoint's id: stable for its URL, so restarts keep its deliveries."""
    return "ep_cfg_" + hashlib.sha256(url.encode()).hexdigest()[:12]


class EndpointRegistry:
    """Reads and changes the endpoints table through the outbox's transactions."""

    def __init__(
        self,
        transaction: Transaction,
        reading: Transaction,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._transaction = transaction
        self._reading = reading
        self._clock = clock
        self._cache: tuple[Endpoint, ...] = ()
        self._cached_at = float("-inf")
        self._cache_lock = threading.Lock()

    def _changed(self) -> None:
        self._cached_at = float("-inf")

    def active(self, conn: SQLConnection | None = None) -> tuple[Endpoint, ...]:
        """The enabled endpoints, re-read at most every second.

        ``conn``: the caller's open transaction, to re-read them in (a
        second pooled connection, taken while holding one, could wait for
        ever when every thread does the same).
        """
        now = time.monotonic()
        if now - self._cached_at >= _REFRESH:
            # Read with no lock held: a thread waiting here for a connection
            # must not hold up one that has its own.
            fresh = tuple(e for e in self.list(conn) if e.enabled)
            with self._cache_lock:
                if now > self._cached_at:
                    self._cache, self._cached_at = fresh, now
        return self._cache

    def list(self, conn: SQLConnection | None = None) -> list[Endpoint]:
        query = f"SELECT {_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"
        if conn is not None:
            return [_endpoint(r) for r in conn.execute(query).fetchall()]
        with self._reading() as reader:
            rows = reader.execute(query).fetchall()
        return [_endpoint(r) for r in rows]

    def get(self, endpoint_id: str) -> Endpoint:
        """The endpoint ``endpoint_id``; KeyError if there is none."""
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE id = ?", (endpoint_id,)
            ).fetchone()
        if row is None:
            raise KeyError(endpoint_id)
        return _endpoint(row)

    def add(
        self,
        url: str,
        events: Sequence[str] = ("*",),
        *,
        secret: str | None = None,
        domain: str | None = None,
        account: str | None = None,
        ordered: bool = False,
    ) -> Endpoint:
        """A new endpoint (``source = 'cli'``); a secret is made if none is given."""
        secret = secret or generate_secret()
        parse_secret(secret)  # InvalidSecretError for a malformed one
        endpoint_id = (
            f"ep_{time.time_ns() // 1000:014x}{hashlib.sha256(url.encode()).hexdigest()[:4]}"
        )
        with self._transaction() as conn:
            self._insert(conn, endpoint_id, url, events, secret, domain, account, ordered, "cli")
        self._changed()
        return self.get(endpoint_id)

    def _insert(
        self,
        conn: SQLConnection,
        endpoint_id: str,
        url: str,
        events: Sequence[str],
        secret: str,
        domain: str | None,
        account: str | None,
        ordered: bool,
        source: str,
    ) -> None:
        conn.execute(
            f"INSERT INTO webhook_endpoints ({_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 1, NULL, ?, ?)",
            (
                endpoint_id,
                url,
                json.dumps(list(events)),
                json.dumps([[secret, None]]),
                domain,
                account,
                int(ordered),
                source,
                self._clock(),
            ),
        )

    def delete(self, endpoint_id: str) -> None:
        """Remove an endpoint and its pending deliveries; KeyError if there is none."""
        with self._transaction() as conn:
            if (
                conn.execute("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,)).rowcount
                == 0
            ):
                raise KeyError(endpoint_id)
            conn.execute(
                "UPDATE webhook_deliveries SET state = 'failed', last_error = 'endpoint deleted',"
                " finished_at = ? WHERE endpoint_id = ? AND state = 'pending'",
                (self._clock(), endpoint_id),
            )
        self._changed()

    def set_enabled(self, endpoint_id: str, enabled: bool, reason: str | None = None) -> None:
        with self._transaction() as conn:
            self._set_enabled(conn, endpoint_id, enabled, reason)
        self._changed()

    def disable_in(self, conn: SQLConnection, endpoint_id: str, reason: str) -> None:
        """Disable inside the caller's transaction (the dispatcher, on 410 Gone)."""
        self._set_enabled(conn, endpoint_id, False, reason)
        self._changed()

    @staticmethod
    def _set_enabled(
        conn: SQLConnection, endpoint_id: str, enabled: bool, reason: str | None
    ) -> None:
        cursor = conn.execute(
            "UPDATE webhook_endpoints SET enabled = ?, disabled_reason = ? WHERE id = ?",
            (int(enabled), None if enabled else reason, endpoint_id),
        )
        if cursor.rowcount == 0:
            raise KeyError(endpoint_id)

    def rotate_secret(self, endpoint_id: str, grace: float = ROTATION_GRACE) -> str:
        """A new secret for the endpoint; the current ones sign for ``grace`` seconds more."""
        new = generate_secret()
        now = self._clock()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT secrets FROM webhook_endpoints WHERE id = ?", (endpoint_id,)
            ).fetchone()
            if row is None:
                raise KeyError(endpoint_id)
            kept = [
                [s, now + grace if retire is None else retire]
                for s, retire in json.loads(row[0])
                if retire is None or retire > now
            ]
            conn.execute(
                "UPDATE webhook_endpoints SET secrets = ? WHERE id = ?",
                (json.dumps([[new, None], *kept]), endpoint_id),
            )
        self._changed()
        return new

    def sync_config(self, configured: Sequence[ConfiguredEndpoint]) -> None:
        """Make the config endpoints match ``[[webhooks]]``.

        An endpoint whose secret the file leaves out keeps the one made for
        it the first time (``webhook list --show-secrets``); one no longer in
        the file is removed, with its pending deliveries.
        """
        for c in configured:
            if c.secret is not None:
                try:
                    parse_secret(c.secret)
                except InvalidSecretError as exc:
                    raise InvalidSecretError(f"[[webhooks]] {c.url}: secret: {exc}") from None
        wanted = {config_endpoint_id(c.url): c for c in configured}
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT id, secrets FROM webhook_endpoints WHERE source = 'config'"
            ).fetchall()
            present = {str(r[0]): json.loads(r[1]) for r in rows}
            for endpoint_id in present.keys() - wanted.keys():
                conn.execute("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,))
                conn.execute(
                    "UPDATE webhook_deliveries SET state = 'failed',"
                    " last_error = 'endpoint removed from the config', finished_at = ?"
                    " WHERE endpoint_id = ? AND state = 'pending'",
                    (self._clock(), endpoint_id),
                )
            for endpoint_id, c in wanted.items():
                if endpoint_id not in present:
                    self._insert(
                        conn, endpoint_id, c.url, c.events, c.secret or generate_secret(),
                        c.domain, c.account, c.ordered, "config",
                    )  # fmt: skip
                else:
                    secrets = present[endpoint_id]
                    if c.secret is not None and (not secrets or secrets[0][0] != c.secret):
                        secrets = [[c.secret, None]]
                    conn.execute(
                        "UPDATE webhook_endpoints SET url = ?, events = ?, secrets = ?,"
                        " domain = ?, account = ?, ordered = ? WHERE id = ?",
                        (
                            c.url,
                            json.dumps(list(c.events)),
                            json.dumps(secrets),
                            c.domain,
                            c.account,
                            int(c.ordered),
                            endpoint_id,
                        ),
                    )
                if not c.enabled:
                    self._set_enabled(conn, endpoint_id, False, _DISABLED_BY_CONFIG)
                else:  # back on once the file says so; other reasons stay
                    conn.execute(
                        "UPDATE webhook_endpoints SET enabled = 1, disabled_reason = NULL"
                        " WHERE id = ? AND disabled_reason = ?",
                        (endpoint_id, _DISABLED_BY_CONFIG),
                    )
        self._changed()
