"""What a POP3 listener offers, and the capability list that says so (RFC 2449 §5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from mailstead.limits import POP3Limits

# SASL mechanisms offered by AUTH (RFC 5034) and listed by CAPA.
MECHANISMS = ("PLAIN", "LOGIN")


@dataclass(frozen=True, slots=True)
class POP3Settings:
    """What one POP3 listener offers: TLS, login rules and the deletion policy."""

    hostname: str
    limits: POP3Limits = field(default_factory=POP3Limits)
    # STLS is offered when a certificate is loaded and TLS is not on yet.
    tls_available: bool = False
    # The connection is already encrypted (implicit TLS on pop3s, RFC 8314).
    secure: bool = False
    # Allow USER/PASS and AUTH without TLS (RFC 8314 §3.3 says do not).
    cleartext_login: bool = False
    # Messages retrieved with RETR are deleted at QUIT even without DELE.
    delete_retrieved: bool = False
    # RFC 2449 §6.5 LOGIN-DELAY: minimum seconds between logins, if enforced.
    login_delay: int | None = None
    # RFC 2449 §6.7 EXPIRE: days mail stays on the server; None is NEVER.
    # delete_retrieved advertises EXPIRE 0.
    expire: int | None = None
    software: str = "Mailstead"


class State(Enum):
    """The session states of RFC 1939 §3."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


def capabilities(settings: POP3Settings, *, secure: bool) -> list[str]:
    """The CAPA lines; RFC 2449 §5: the same in both states (STLS only before TLS)."""
    caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
    expire = 0 if settings.delete_retrieved else settings.expire
    caps.append(f"EXPIRE {'NEVER' if expire is None else expire}")  # RFC 2449 §6.7
    if settings.login_delay is not None:
        caps.append(f"LOGIN-DELAY {settings.login_delay}")  # RFC 2449 §6.5
    if settings.tls_available and not secure:
        caps.append("STLS")  # RFC 2595 §4
    if secure or settings.cleartext_login:
        caps.append("USER")  # RFC 2449 §6.8: only where USER/PASS may be used
        caps.append("SASL " + " ".join(MECHANISMS))  # RFC 5034 §3
    caps.append(f"IMPLEMENTATION {settings.software}")  # RFC 2449 §6.9
    return caps
