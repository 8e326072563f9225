"""The value syntaxes of ``mailstead.toml``: durations and ``host:port``.

Each parser takes the text as written and returns the resolved value, or
raises ValueError with a message that completes "key: ..." in a
:class:`~mailstead.config.reader.ConfigError`.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from mailstead.addresses import AddressError, normalize_domain

__all__ = ["HostPort", "default_hostname", "parse_duration", "parse_hostport"]

HostPort = tuple[str, int]

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_PART = re.compile(r"(\d{1,9})([smhdw])")


def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``"90s"``, ``"5m"``, ``"1h30m"``, ``"5d"``.

    Raises ValueError for anything else, including zero.
    """
    if not re.fullmatch(r"(?:\d{1,9}[smhdw])+", text):
        raise ValueError('expected a duration like "30s", "5m", "1h" or "5d"')
    seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    return seconds


def parse_hostport(text: str, default_port: int | None = None) -> HostPort:
    """Split ``"127.0.0.1:2525"`` or ``"[::1]:25"`` into ``(host, port)``.

    IPv6 addresses must be bracketed (the colons are otherwise ambiguous);
    the brackets are removed in the result. Without a port, ``default_port``
    is used if given. Port 0 (any free port) is allowed. Raises ValueError.
    """
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("unclosed [")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError('expected ":port" after ]')
            port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ValueError('an IPv6 address must be written in brackets, e.g. "[::1]:25"')
    if not port_text:
        if default_port is None or text.endswith(":"):
            raise ValueError("missing port")
        port = default_port
    elif port_text.isascii() and port_text.isdigit() and len(port_text) <= 5:
        port = int(port_text)
    else:
        raise ValueError(f"invalid port {port_text!r}")
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    if not text.startswith("["):
        _check_host(host)
    return host, port


def _check_host(host: str) -> None:
    if not host:
        raise ValueError("missing host")
    try:
        ipaddress.IPv4Address(host)
        return
    except ValueError:
        pass
    try:
        if host.startswith("[") or normalize_domain(host) != host.lower().rstrip("."):
            raise AddressError(host)
    except AddressError:
        raise ValueError(f"invalid host {host!r}") from None


def default_hostname() -> str:
    """This machine's fully qualified name, or ``localhost`` if it has no usable one."""
    try:
        return normalize_domain(socket.getfqdn())
    except (AddressError, OSError):
        return "localhost"
