"""What every sans-IO engine in :mod:`mailstead.proto` hands its session.

An engine (SMTP server and client, IMAP, POP3) is driven the same way:
``receive_data(bytes)`` in, then ``next_event()`` until it returns one of
the two sentinels below, answering each event the engine asks about.
IMAP's ``Idling`` and ``Closing`` end a turn too: they come back until new
input changes them, or for good.
Each protocol names its own events after its RFC's nouns (``MailFrom``,
``Retr``, ``Command``), all subclasses of :class:`Event`.
"""

from __future__ import annotations

__all__ = ["NEED_DATA", "PAUSED", "Event"]


class Event:
    """Base of everything a protocol engine's ``next_event`` returns."""

    __slots__ = ()


class _Sentinel(Event):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: More bytes are needed before another event can be produced.
NEED_DATA = _Sentinel("NEED_DATA")
#: The engine waits for the application to answer the last event.
PAUSED = _Sentinel("PAUSED")
