"""What MTA-STS remembers across restarts: cached policies and TLS-RPT counts.

One SQLite database (``mta_sts.sqlite3`` in the data directory), shared by
every worker process:

* ``policies``: per policy domain, the last valid policy fetched, its id and
  when it expires (RFC 8461 §5.1: a cached, unexpired policy is applied even
  when the TXT record or the policy host cannot be reached);
* ``tls_results``: per UTC day, policy domain, MX host and result type
  (RFC 8460 §4.3: ``success`` or a failure type), how many sessions ended
  that way: what an aggregate TLS-RPT report is built from.

Neither table is a promise to anyone (a lost policy is fetched again, a lost
count makes a report a little short), so commits are not fsynced.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mailstead.mta.mta_sts import Policy, PolicyError, parse_policy
from mailstead.sqlite_wal import enable_wal

__all__ = ["CachedPolicy", "MtaStsStore", "TLSResultCount"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS policies (
    domain     TEXT PRIMARY KEY,
    policy_id  TEXT NOT NULL,
    policy     TEXT NOT NULL,   -- the policy file, as parse_policy reads it
    fetched_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tls_results (
    day         TEXT NOT NULL,  -- UTC, YYYY-MM-DD (RFC 8460 reports cover UTC days)
    domain      TEXT NOT NULL,  -- the policy domain
    policy_type TEXT NOT NULL,  -- "sts" or "no-policy-found" (RFC 8460 §4.4)
    mx_host     TEXT NOT NULL,
    result_type TEXT NOT NULL,  -- "success" or an RFC 8460 §4.3 result type
    count       INTEGER NOT NULL,
    PRIMARY KEY (day, domain, policy_type, mx_host, result_type)
);
"""


@dataclass(frozen=True, slots=True)
class CachedPolicy:
    """A policy as cached: its id, the policy, and when it was fetched and expires."""

    policy_id: str
    policy: Policy
    fetched_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class TLSResultCount:
    """One row of ``tls_results``."""

    day: str
    domain: str
    policy_type: str
    mx_host: str
    result_type: str
    count: int


class MtaStsStore:
    """Owns ``mta_sts.sqlite3``: the policy cache and the TLS-RPT counters.

    Thread-safe (one connection behind a lock); calls are short and meant to
    run in an executor thread.
    """

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 10000")
        enable_wal(self._db)
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def get(self, domain: str) -> CachedPolicy | None:
        """The cached policy of ``domain``, expired or not; None if none is (readable)."""
        with self._lock:
            row = self._db.execute(
                "SELECT policy_id, policy, fetched_at, expires_at FROM policies WHERE domain = ?",
                (domain,),
            ).fetchone()
        if row is None:
            return None
        try:
            policy = parse_policy(str(row[1]).encode("ascii"))
        except (PolicyError, UnicodeError):
            return None  # written by another version: fetched again
        return CachedPolicy(str(row[0]), policy, float(row[2]), float(row[3]))

    def put(self, domain: str, policy_id: str, policy: Policy, now: float) -> CachedPolicy:
        """Cache ``policy`` for ``domain`` from ``now`` for its ``max_age``."""
        cached = CachedPolicy(policy_id, policy, now, now + policy.max_age)
        with self._lock:
            self._db.execute(
                "INSERT INTO policies (domain, policy_id, policy, fetched_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (domain) DO UPDATE SET"
                " policy_id = excluded.policy_id, policy = excluded.policy,"
                " fetched_at = excluded.fetched_at, expires_at = excluded.expires_at",
                (domain, policy_id, policy.text(), now, cached.expires_at),
            )
        return cached

    def count_result(
        self, now: float, domain: str, policy_type: str, mx_host: str, result_type: str
    ) -> None:
        """Add one session's TLS outcome to today's counters (RFC 8460 §4.3)."""
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        with self._lock:
            self._db.execute(
                "INSERT INTO tls_results VALUES (?, ?, ?, ?, ?, 1)"
                " ON CONFLICT (day, domain, policy_type, mx_host, result_type)"
                " DO UPDATE SET count = count + 1",
                (day, domain, policy_type, mx_host, result_type),
            )

    def results(self, day: str | None = None) -> list[TLSResultCount]:
        """The counters, of one UTC day (``YYYY-MM-DD``) or all, in a stable order."""
        query = "SELECT * FROM tls_results"
        args: tuple[str, ...] = ()
        if day is not None:
            query += " WHERE day = ?"
            args = (day,)
        query += " ORDER BY day, domain, policy_type, mx_host, result_type"
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [
            TLSResultCount(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5]))
            for r in rows
        ]
