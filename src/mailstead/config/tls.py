"""``[tls]``: the server's certificate and key, and ``[tls.acme]`` to obtain them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mailstead.config.reader import Reader, data_path, domain_name, show
from mailstead.config.values import HostPort, parse_hostport

__all__ = ["CHALLENGES", "AcmeConfig", "TLSConfig", "load_tls"]

#: The challenge types Mailstead answers, with the port each listens on by default.
CHALLENGES = {"http-01": 80, "tls-alpn-01": 443}


@dataclass(frozen=True, slots=True)
class AcmeConfig:
    """Where and how to obtain certificates automatically (RFC 8555)."""

    #: The ACME server's directory URL (https).
    directory: str
    #: Contact address sent with the account (optional, RFC 8555 §7.3).
    email: str = ""
    #: ``"http-01"`` (RFC 8555 §8.3) or ``"tls-alpn-01"`` (RFC 8737).
    challenge: str = "http-01"
    #: Where the challenge is answered while an order runs.
    listen: tuple[HostPort, ...] = (("0.0.0.0", 80),)
    #: Names besides ``hostname`` on the certificate (normalised).
    names: tuple[str, ...] = ()
    #: Extra trust anchors (PEM) for the ACME server's HTTPS; None: the system's.
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Where the server's certificate chain and private key live (absolute paths)."""

    #: PEM certificate chain, leaf first.
    cert: Path
    #: PEM private key matching ``cert``.
    key: Path
    #: Obtain and renew the certificate with ACME; the files above serve
    #: until the first one is issued.
    acme: AcmeConfig | None = None


_ACME_KEYS = ("directory", "email", "challenge", "listen", "names", "ca_file")


def load_tls(r: Reader, data: Mapping[str, object], data_dir: Path) -> TLSConfig:
    """The ``[tls]`` table of ``data``, its paths resolved against ``data_dir``."""
    t = r.table(data, "tls", "", ("cert", "key", "acme"))
    return TLSConfig(
        cert=data_path(r, data_dir, t.get("cert", "tls/cert.pem"), "tls.cert"),
        key=data_path(r, data_dir, t.get("key", "tls/key.pem"), "tls.key"),
        acme=_load_acme(r, t, data_dir) if "acme" in t else None,
    )


def _load_acme(r: Reader, tls: Mapping[str, object], data_dir: Path) -> AcmeConfig:
    a = r.table(tls, "acme", "tls.", _ACME_KEYS)
    if "directory" not in a:
        r.fail("tls.acme.directory", "missing (the ACME server's directory URL)")
    directory = r.string(a["directory"], "tls.acme.directory")
    url = urlsplit(directory)
    # RFC 8555 §6.1: ACME runs over HTTPS only.
    if url.scheme != "https" or not url.hostname:
        r.fail("tls.acme.directory", f"expected an https:// URL, got {show(directory)}")
    email = r.string(a.get("email", ""), "tls.acme.email")
    if email and ("@" not in email or any(c.isspace() or c in "<>," for c in email)):
        r.fail("tls.acme.email", f"expected one mail address, got {show(email)}")
    challenge = r.string(a.get("challenge", "http-01"), "tls.acme.challenge")
    if challenge not in CHALLENGES:
        r.fail("tls.acme.challenge", f'expected "http-01" or "tls-alpn-01", got {show(challenge)}')
    port = CHALLENGES[challenge]
    if "listen" in a:
        listen = tuple(
            r.each(a["listen"], "tls.acme.listen", lambda s: parse_hostport(s, port), '"host:port"')
        )
        if not listen:
            r.fail("tls.acme.listen", "at least one address is required")
    else:
        listen = (("0.0.0.0", port),)
    names: list[str] = []
    for i, text in enumerate(r.string_list(a.get("names", []), "tls.acme.names")):
        name = domain_name(r, text, f"tls.acme.names[{i}]")
        if name not in names:
            names.append(name)
    ca_file = data_path(r, data_dir, a["ca_file"], "tls.acme.ca_file") if "ca_file" in a else None
    return AcmeConfig(directory, email, challenge, listen, tuple(names), ca_file)
