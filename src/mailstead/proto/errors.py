"""The two ways a protocol exchange can go wrong (after h11's split)."""

from __future__ import annotations


class RemoteProtocolError(Exception):
    """The peer broke the protocol; the engine tells it so and carries on or closes.

    The error carries the hint for that answer: ``text`` is what the peer
    should be told (it names no internal detail) and ``code`` the
    protocol's code for it where there is one: an SMTP enhanced status
    (RFC 3463), a POP3 or IMAP response code (RFC 2449 §8, RFC 9051 §7.1).
    """

    def __init__(self, text: str = "", *, code: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class LocalProtocolError(Exception):
    """Our own code misused a protocol object (a bug in Mailstead, not the peer)."""
