"""The two ways a protocol exchange can go wrong (after h11's split)."""

from __future__ import annotations


class RemoteProtocolError(Exception):
    """The peer broke the protocol; the session answers it and carries on or closes."""


class LocalProtocolError(Exception):
    """Our own code misused a protocol object (a bug in Mailstead, not the peer)."""
