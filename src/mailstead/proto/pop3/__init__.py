"""POP3 (RFC 1939 with RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH), sans-IO.

:class:`POP3Server` is the protocol state machine; :class:`Maildrop` is the
interface the storage layer implements for it.
"""

from mailstead.proto.pop3.events import (
    NEED_DATA,
    PAUSED,
    AuthRequest,
    Closing,
    Event,
    Retrieve,
    StartTLS,
    Update,
)
from mailstead.proto.pop3.maildrop import Authenticate, Maildrop, MaildropInUse, OpenMaildrop
from mailstead.proto.pop3.server import POP3Server, POP3Settings, State

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "AuthRequest",
    "Authenticate",
    "Closing",
    "Event",
    "Maildrop",
    "MaildropInUse",
    "OpenMaildrop",
    "POP3Server",
    "POP3Settings",
    "Retrieve",
    "StartTLS",
    "State",
    "Update",
]
