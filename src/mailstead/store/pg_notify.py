"""Change notices between nodes: LISTEN/NOTIFY on the cluster's mailboxes.

Every change to a mailbox (new messages, flags, expunges, a rename or a
delete) is followed, once committed, by ``NOTIFY mailstead_mail,
'<mailbox id>'`` (``pg_rows.announce``; after the commit, not in it, so
the notify lock never waits on a disk flush). A node that dies between
the two loses the notice, which costs the others one fallback interval.
Each process keeps one connection listening (:class:`ChangeNotices`): its
own, not the pool's, since a listening connection must stay with its
session, and in a thread of its own, so the event loop never waits on it.
The thread counts the notices per mailbox; an IMAP session in IDLE
(``PgMailbox.refresh`` with a ``max_age``) then reads the database only
for a mailbox that was named since its last read, and at least every
:data:`FALLBACK_POLL` seconds in case a notice was lost. A lost connection
is opened again with a growing pause; every reconnection starts a new
*epoch*, which makes each open mailbox read once more (what changed while
nobody listened). The thread starts at the first IDLE and ends after :data:`LINGER` seconds
without one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import psycopg

from mailstead.pgsql.connect import DatabaseUnavailable, connect

__all__ = [
    "FALLBACK_POLL",
    "LINGER",
    "NOTIFY_CHANNEL",
    "ChangeNotices",
    "Mark",
    "shared_notices",
]

log = logging.getLogger("mailstead.store")

#: The channel of the notices; the payload is a mailbox id (``mail_mailboxes.id``).
NOTIFY_CHANNEL = "mailstead_mail"

# Seconds: how often IDLE reads a mailbox nobody named (a notice lost with
# the connection costs at most this much delay).
FALLBACK_POLL = 5.0
# Seconds: the pause before opening the connection again, doubling per
# failure up to the second number.
BACKOFF = (0.5, 30.0)
# Seconds the thread keeps listening after the last IDLE look asked for it.
LINGER = 60.0
# Seconds the thread waits for notices before looking at its stop flag.
_WAIT = 1.0
# Mailboxes whose notice counts are kept; past it they are forgotten and a
# new epoch makes every open mailbox read once (bounded memory on a
# cluster of many accounts).
MAX_MARKED = 100_000

#: What a mailbox remembers of the notices at its last read: (epoch, count).
Mark = tuple[int, int]


class _Notice(Protocol):
    @property
    def payload(self) -> str: ...


class _Listening(Protocol):
    """The part of a psycopg connection the listener uses (a fake in tests)."""

    def execute(self, query: str) -> object: ...

    def notifies(
        self, *, timeout: float | None = None, stop_after: int | None = None
    ) -> Iterable[_Notice]: ...

    def close(self) -> None: ...


def _listen_connection(dsn: str) -> _Listening:
    return connect(dsn, autocommit=True)


class ChangeNotices:
    """Owns this process's LISTEN connection and the notice counts per mailbox."""

    def __init__(
        self,
        dsn: str,
        *,
        open_connection: Callable[[str], _Listening] = _listen_connection,
        backoff: tuple[float, float] = BACKOFF,
        linger: float = LINGER,
    ) -> None:
        self._dsn = dsn
        self._open = open_connection
        self._backoff = backoff
        self._linger = linger
        self._counts: dict[int, int] = {}
        self._epoch = 0
        #: True while the connection is listening.
        self.listening = False
        #: How many times the connection was opened (the first time included).
        self.connections = 0
        self._asked = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def mark(self, mailbox_id: int) -> Mark:
        """What has been heard of ``mailbox_id``: changes when a notice names it,
        and for every mailbox at each (re)connection."""
        return self._epoch, self._counts.get(mailbox_id, 0)

    def want(self) -> None:
        """Someone relies on the notices (an IDLE look): listen, if not yet.

        Cheap enough for every look: it starts the thread only when none runs.
        """
        self._asked = time.monotonic()
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                # Forked: the thread stayed in the parent; its connection is
                # the parent's socket, left untouched here.
                self._pid = os.getpid()
                self._thread = None
                self.listening = False
                self._epoch += 1
            thread = self._thread
            if thread is not None and thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="pg-notices", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread and close its connection (the next :meth:`want` starts it again)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the thread ------------------------------------------------------------

    def _run(self) -> None:
        pause, longest = self._backoff
        failures = 0
        while not self._should_end():
            try:
                conn = self._open(self._dsn)
            except (DatabaseUnavailable, psycopg.Error) as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "change notices: %s; IDLE looks every %gs until it is back",
                        exc,
                        FALLBACK_POLL,
                    )
                self._stop.wait(min(pause * 2 ** (failures - 1), longest))
                continue
            try:
                self._listen(conn)
                failures = 0
            except psycopg.Error as exc:
                failures += 1
                log.warning(
                    "change notices: the LISTEN connection failed (%s);"
                    " IDLE looks every %gs until it is back",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    FALLBACK_POLL,
                )
                self._stop.wait(min(pause * 2 ** (failures - 1), longest))
            finally:
                self.listening = False
                with contextlib.suppress(psycopg.Error):
                    conn.close()

    def _listen(self, conn: _Listening) -> None:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        # Listening from here on: what changed before is read once by every
        # open mailbox (a new epoch), what changes after is a notice.
        self.connections += 1
        self._epoch += 1
        self.listening = True
        if self.connections > 1:
            log.info("change notices: listening again")
        while not self._should_end():
            for notice in conn.notifies(timeout=_WAIT):
                self._heard(notice.payload)

    def _heard(self, payload: str) -> None:
        try:
            mailbox_id = int(payload)
        except ValueError:
            return  # not ours (someone else NOTIFYing on the channel)
        if len(self._counts) >= MAX_MARKED and mailbox_id not in self._counts:
            self._counts = {}
            self._epoch += 1
        self._counts[mailbox_id] = self._counts.get(mailbox_id, 0) + 1

    def _should_end(self) -> bool:
        return self._stop.is_set() or time.monotonic() - self._asked > self._linger


_shared: dict[str, ChangeNotices] = {}
_shared_lock = threading.Lock()


def shared_notices(dsn: str) -> ChangeNotices:
    """This process's notices for ``dsn`` (one listening connection per process at most)."""
    with _shared_lock:
        notices = _shared.get(dsn)
        if notices is None:
            notices = _shared[dsn] = ChangeNotices(dsn)
        return notices
