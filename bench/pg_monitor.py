"""What a Mailstead cluster asks of its database, counted from the database's side.

A private PostgreSQL (``TemporaryPostgres(durable=True)``: fsync on, as in
production) with ``pg_stat_statements`` loaded. A :class:`Snapshot` taken
before and after a piece of work gives, for one database:

* statements executed (``pg_stat_statements.calls``, BEGIN and COMMIT
  included: ``track_utility`` is on). psycopg sends each statement in its own
  round trip (no pipeline mode in Mailstead), so calls = round trips;
* bytes on the wire between the nodes and the database, both ways, from
  the kernel's TCP counters of the server's sockets (``ss -ti``);
* CPU seconds of the whole PostgreSQL process tree (``bench/cpu.py``).

The snapshots are read over a connection to the maintenance database
(``postgres``), so the monitoring itself is neither counted among the
statements nor (its socket is left out) among the bytes.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from cpu import tree_cpu_seconds

from mailstead.testing.postgres import TemporaryPostgres

__all__ = ["BenchPostgres", "Snapshot", "Usage"]

_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.track_utility": "on",
    "pg_stat_statements.max": "10000",
}
_SS_BYTES = re.compile(r"bytes_(acked|received):(\d+)")


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters of one database at one moment."""

    calls: Counter[str]  # statement text -> times executed
    sent: int  # bytes the server sent to its clients (acknowledged)
    received: int  # bytes the server received from them
    cpu: float  # user + system seconds of the PostgreSQL process tree


@dataclass(frozen=True)
class Usage:
    """What happened between two snapshots."""

    calls: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    received: int = 0
    cpu: float = 0.0

    @property
    def round_trips(self) -> int:
        return sum(self.calls.values())

    @property
    def wire_bytes(self) -> int:
        return self.sent + self.received


class BenchPostgres:
    """The benchmark's PostgreSQL server and a monitoring connection to it."""

    def __init__(self) -> None:
        self.server = TemporaryPostgres(durable=True, settings=_SETTINGS)
        self._monitor: psycopg.Connection[tuple[object, ...]] | None = None
        self._monitor_port = 0

    def start(self) -> None:
        self.server.start()
        self._monitor = psycopg.connect(self.server.dsn, autocommit=True)
        self._monitor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        fd = self._monitor.pgconn.socket
        with socket.socket(fileno=fd) as sock:
            self._monitor_port = int(sock.getsockname()[1])
            sock.detach()  # the fd stays libpq's

    def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.close()
        self.server.stop()

    @property
    def postmaster_pid(self) -> int:
        return int((self.server.datadir / "postmaster.pid").read_text().split("\n", 1)[0])

    def version(self) -> str:
        assert self._monitor is not None
        row = self._monitor.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"

    def create_database(self, name: str) -> str:
        return self.server.create_database(name)

    def _oid(self, database: str) -> int:
        assert self._monitor is not None
        row = self._monitor.execute(
            "SELECT oid FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if row is None:
            raise LookupError(f"no database {database}")
        return int(str(row[0]))

    def snapshot(self, database: str) -> Snapshot:
        assert self._monitor is not None
        oid = self._oid(database)
        calls: Counter[str] = Counter()
        for query, count in self._monitor.execute(
            # toplevel: what the clients sent, not what ran inside it
            # (foreign-key checks, functions), so calls = round trips.
            "SELECT query, calls FROM pg_stat_statements WHERE dbid = %s AND toplevel",
            (oid,),
        ):
            calls[str(query)] += int(str(count))
        sent, received = self._socket_bytes()
        user, system = tree_cpu_seconds(self.postmaster_pid)
        return Snapshot(calls, sent, received, user + system)

    def _socket_bytes(self) -> tuple[int, int]:
        """(sent, received) over the server's client sockets, the monitor's left out."""
        out = subprocess.run(
            ["ss", "-tinH", "state", "established", f"( sport = :{self.server.port} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        sent = received = 0
        skip = False
        for line in out.splitlines():
            if not line.startswith((" ", "\t")):  # a socket line: addresses
                skip = line.split()[-1].endswith(f":{self._monitor_port}")
                continue
            if skip:
                continue
            for kind, value in _SS_BYTES.findall(line):
                if kind == "acked":
                    sent += int(value)
                else:
                    received += int(value)
        return sent, received

    def count_messages(self, database: str) -> int:
        with psycopg.connect(self.server.dsn_for(database)) as conn:
            row = conn.execute("SELECT count(*) FROM mail_messages").fetchone()
        return int(str(row[0])) if row else 0

    def reset_statements(self) -> None:
        assert self._monitor is not None
        self._monitor.execute("SELECT pg_stat_statements_reset()")

    @property
    def log(self) -> Path:
        return self.server.datadir.parent / "server.log"


def usage_between(before: Snapshot, after: Snapshot) -> Usage:
    calls = Counter(after.calls)
    calls.subtract(before.calls)
    return Usage(
        Counter({q: n for q, n in calls.items() if n > 0}),
        after.sent - before.sent,
        after.received - before.received,
        after.cpu - before.cpu,
    )
