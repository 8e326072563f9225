"""A throwaway PostgreSQL server for tests and benchmarks, on a loopback port.

Debian's ``postgresql`` package provides the programs
(``/usr/lib/postgresql/<version>/bin``); no server the machine happens to
run is touched. ``initdb`` refuses to run as root, so as root the cluster is
made and run as the ``postgres`` user the package creates, in a directory
of its own under the system's temporary directory (pytest's ``tmp_path`` is
private to root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["PostgresMissing", "TemporaryPostgres", "find_bindir", "temporary_postgres"]

_PACKAGE_HINT = "install Debian's postgresql package (apt-get install postgresql)"
# The settings a test server runs with: fast (a crash of the machine may
# lose it, which a test never survives anyway) and quiet. Benchmarks pass
# ``durable=True`` to measure what a production server pays.
_FAST = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "on"}


class PostgresMissing(RuntimeError):
    """The PostgreSQL server programs are not installed."""


def find_bindir() -> Path:
    """The newest installed ``/usr/lib/postgresql/<version>/bin`` (or ``$PG_BINDIR``)."""
    override = os.environ.get("PG_BINDIR")
    candidates = [Path(override)] if override else []
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(versions)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise PostgresMissing(f"PostgreSQL's initdb and pg_ctl not found: {_PACKAGE_HINT}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TemporaryPostgres:
    """A private cluster: ``initdb`` into a temporary directory, ``pg_ctl`` on 127.0.0.1."""

    def __init__(self, *, durable: bool = False, settings: Mapping[str, str] | None = None) -> None:
        self.bindir = find_bindir()
        self.user = "mailstead"
        self.port = 0
        self._settings = {} if durable else dict(_FAST)
        self._settings.update(settings or {})
        self._root = Path(tempfile.mkdtemp(prefix="mailstead-pg-"))
        self.datadir = self._root / "data"
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresMissing(
                    f"running as root needs the postgres user: {_PACKAGE_HINT}"
                ) from None
            os.chown(self._root, self._owner.pw_uid, self._owner.pw_gid)

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self._owner is not None:
            name = self._owner.pw_name
            command = ["setpriv", f"--reuid={name}", f"--regid={name}", "--init-groups", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, cwd=self._root, check=False
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"{argv[0]} failed: {' | '.join(tail)}")

    def start(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self._root),
            "max_connections": "200",
            **self._settings,
        }
        for attempt in range(5):
            self.port = _free_port()
            flags = " ".join(
                f"-c {key}={value}" for key, value in {**options, "port": str(self.port)}.items()
            )
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self._root / "server.log"),
                    "-o",
                    flags,
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
                return
            except RuntimeError:
                if attempt == 4:
                    raise

    @property
    def dsn(self) -> str:
        """The maintenance database (``postgres``) as the cluster's superuser."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its DSN."""
        import psycopg  # the testing package stays importable without it

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.dsn_for(name)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            if self.port:
                self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self._root, ignore_errors=True)


@contextlib.contextmanager
def temporary_postgres(*, durable: bool = False) -> Iterator[TemporaryPostgres]:
    """A started :class:`TemporaryPostgres`, stopped and removed afterwards."""
    server = TemporaryPostgres(durable=durable)
    try:
        server.start()
        yield server
    finally:
        server.stop()
