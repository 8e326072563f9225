"""What an SMTP listener offers, and the EHLO reply that says so (RFC 5321 §4.1.1.1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailstead.limits import SMTPLimits


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What one listener offers: its role decides TLS and AUTH rules."""

    hostname: str
    limits: SMTPLimits = field(default_factory=SMTPLimits)
    # STARTTLS is offered when a certificate is loaded and TLS is not on yet.
    tls_available: bool = False
    # The connection is already encrypted (implicit TLS, RFC 8314).
    secure: bool = False
    # SASL mechanisms offered; empty on the MTA port.
    auth_mechanisms: tuple[str, ...] = ()
    # RFC 8314 §3.3 / RFC 4954 §4: no cleartext passwords.
    auth_requires_tls: bool = True
    # MSA (RFC 6409 §4.3): MAIL needs a successful AUTH first.
    auth_required: bool = False
    software: str = "Mailstead"


def auth_offered(settings: ServerSettings, *, secure: bool) -> bool:
    """True if AUTH is offered now: mechanisms are set, and TLS is on where needed."""
    return bool(settings.auth_mechanisms) and (secure or not settings.auth_requires_tls)


def ehlo_keywords(settings: ServerSettings, *, secure: bool) -> list[str]:
    """The extension lines of the EHLO reply, after its greeting line."""
    keywords = [
        "PIPELINING",  # RFC 2920
        f"SIZE {settings.limits.message_size}",  # RFC 1870
        "8BITMIME",  # RFC 6152
        "SMTPUTF8",  # RFC 6531
        "ENHANCEDSTATUSCODES",  # RFC 2034
        "CHUNKING",  # RFC 3030
        "DSN",  # RFC 3461
    ]
    if settings.tls_available and not secure:
        keywords.append("STARTTLS")  # RFC 3207
    if auth_offered(settings, secure=secure):
        keywords.append("AUTH " + " ".join(settings.auth_mechanisms))  # RFC 4954
    keywords.append("HELP")
    return keywords
