"""Events the IMAP server protocol yields: what only its session can do.

Most commands are run by :class:`~mailstead.proto.imap.server.IMAPServer`
itself against its storage interface; these events are the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

# Re-exported: a session imports the sentinels with its protocol's events.
from mailstead.proto.events import NEED_DATA as NEED_DATA
from mailstead.proto.events import PAUSED as PAUSED
from mailstead.proto.events import Event as Event
from mailstead.proto.imap.storage import OffLoop
from mailstead.proto.sasl import Credentials


@dataclass(frozen=True, slots=True)
class AuthRequest(Event):
    """LOGIN or a finished AUTHENTICATE: verify and call ``auth_result()``."""

    credentials: Credentials
    #: How they came: "LOGIN", or the SASL mechanism of AUTHENTICATE.
    mechanism: str = "LOGIN"


@dataclass(frozen=True, slots=True)
class StorageWork(Event):
    """A command's slow, self-contained storage I/O (APPEND's file write and
    fsyncs, COPY's directory fsync): call ``run()`` off the event loop, in a
    thread, then ``storage_done()`` with the exception it raised, or None.

    ``run`` touches nothing the worker's sessions share, so the other
    sessions' commands may run meanwhile; this one waits (``PAUSED``), and
    its tagged reply comes once all its steps are done.
    """

    run: OffLoop


@dataclass(frozen=True, slots=True)
class StartTLS(Event):
    """STARTTLS got OK: flush, do the handshake, then call ``tls_started()``."""


@dataclass(frozen=True, slots=True)
class StartCompression(Event):
    """COMPRESS DEFLATE got OK (RFC 4978): flush the OK as it is, then DEFLATE
    every byte both ways (raw, zlib wbits=-15, a sync flush after each write).

    ``unread``: what the client sent after the command, compressed already;
    inflate it and give it back with ``receive_data``.
    """

    unread: bytes


@dataclass(frozen=True, slots=True)
class Idling(Event):
    """The client is in IDLE and has not said DONE (RFC 2177): wait for input
    as after ``NEED_DATA``, calling ``poll()`` every ``idle_poll_interval``.

    It comes back on every ``next_event()`` until DONE arrives.
    """


@dataclass(frozen=True, slots=True)
class Closing(Event):
    """The protocol has sent its last response (a ``* BYE``): flush and close.

    It comes back on every ``next_event()`` from then on.
    """

    reason: str
