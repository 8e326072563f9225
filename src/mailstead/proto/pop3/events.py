"""Events the POP3 server protocol yields, named after RFC 1939's nouns."""

from __future__ import annotations

from dataclasses import dataclass

# Re-exported: a session imports the sentinels with its protocol's events.
from mailstead.proto.events import NEED_DATA as NEED_DATA
from mailstead.proto.events import PAUSED as PAUSED
from mailstead.proto.events import Event as Event
from mailstead.proto.sasl import Credentials


@dataclass(frozen=True, slots=True)
class StartTLS(Event):
    """STLS got +OK: flush, negotiate TLS, then call ``tls_started()`` (RFC 2595 §4)."""


@dataclass(frozen=True, slots=True)
class AuthRequest(Event):
    """USER/PASS or a finished AUTH exchange: check the credentials and answer
    with ``auth_result()``; after a user name, open the maildrop and answer
    with ``maildrop_opened()``, ``maildrop_in_use()``, ``login_too_soon()``
    or ``maildrop_failed()``.

    ``mechanism`` is ``"USER"`` for USER/PASS (RFC 1939 §7), else the SASL
    mechanism name (RFC 5034).
    """

    mechanism: str
    credentials: Credentials


@dataclass(frozen=True, slots=True)
class Retrieve(Event):
    """RETR (``body_lines`` None) or TOP: read message ``index`` (0-based in the
    listing) and hand its bytes to ``retrieved()``, or call ``retrieve_failed()``.
    """

    index: int
    body_lines: int | None = None


@dataclass(frozen=True, slots=True)
class Update(Event):
    """QUIT in the TRANSACTION state: the UPDATE state (RFC 1939 §6).

    Mark ``seen`` as read and remove ``deleted`` for good (both 0-based,
    disjoint), then call ``update_done()``.
    """

    deleted: tuple[int, ...]
    seen: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Closing(Event):
    """The protocol has sent its last response: flush and close."""

    reason: str
