"""Typed configuration, loaded from ``mailstead.toml``.

The file format is the external contract of DESIGN.md §3; ``docs/`` documents
it for operators. Loading is strict: an unknown key, a value of the wrong type
or a bad value raises :class:`ConfigError` with one line that names the file
and the key path (``mailstead.toml: listen.smtp[0]: expected "host:port",
got "foo"``), because a typo that is silently ignored is an outage later.

Everything is resolved at load time: relative paths become absolute, domains
are normalised, durations become seconds, so the rest of the program never
re-parses configuration text.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn, TypeVar
from urllib.parse import urlsplit

from mailstead.addresses import AddressError, normalize_domain
from mailstead.config_template import TEMPLATE
from mailstead.config_values import HostPort, default_hostname, parse_duration, parse_hostport
from mailstead.limits import ConnectionPolicy
from mailstead.mta.schedule import DEFAULT_DELAY_WARNING

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "DeliveryConfig",
    "HostPort",
    "HttpClientConfig",
    "ListenConfig",
    "Pop3Config",
    "StorageConfig",
    "TLSConfig",
    "WebhookConfig",
    "default_config_text",
    "default_hostname",
    "load_config",
    "parse_duration",
    "parse_hostport",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
StorageFormat = Literal["maildir", "mbox"]

_T = TypeVar("_T")


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid (one-line message)."""


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """The sockets each protocol listens on; an empty tuple disables that listener."""

    #: MTA: mail from other servers, for local recipients only.
    smtp: tuple[HostPort, ...] = (("127.0.0.1", 2525),)
    #: MSA with STARTTLS; AUTH is required, and only after TLS.
    submission: tuple[HostPort, ...] = (("127.0.0.1", 2587),)
    #: MSA over implicit TLS (RFC 8314 §3.3).
    submissions: tuple[HostPort, ...] = (("127.0.0.1", 2465),)
    #: IMAP with STARTTLS.
    imap: tuple[HostPort, ...] = (("127.0.0.1", 2143),)
    #: IMAP over implicit TLS.
    imaps: tuple[HostPort, ...] = (("127.0.0.1", 2993),)
    #: POP3 with STLS.
    pop3: tuple[HostPort, ...] = (("127.0.0.1", 2110),)
    #: POP3 over implicit TLS.
    pop3s: tuple[HostPort, ...] = (("127.0.0.1", 2995),)


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Where the server's certificate chain and private key live (absolute paths)."""

    #: PEM certificate chain, leaf first.
    cert: Path
    #: PEM private key matching ``cert``.
    key: Path


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """How local mailboxes are stored on disk."""

    #: ``"maildir"`` (one file per message) or ``"mbox"`` (one file per folder).
    format: StorageFormat = "maildir"


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """How the outbound MTA reaches remote servers and how long it keeps trying."""

    #: Resolvers used for every lookup (MX, SPF, DKIM, DMARC, MTA-STS);
    #: empty means the system resolver. Port 53 unless given.
    dns_servers: tuple[HostPort, ...] = ()
    #: TCP port of remote MX hosts (25 on the Internet; other values for tests).
    smtp_port: int = 25
    #: Local address outbound connections are bound to; ``None`` lets the kernel choose.
    source_ip: str | None = None
    #: Name sent in EHLO/HELO to remote servers; defaults to ``Config.hostname``.
    helo_name: str = ""
    #: Seconds to wait after the 1st, 2nd, … temporary failure; the last
    #: interval repeats until ``max_lifetime`` is reached.
    retry_schedule: tuple[int, ...] = (60, 300, 900, 1800, 3600, 7200, 14400, 28800)
    #: Seconds after which a message still undelivered is bounced (DSN, RFC 3464).
    max_lifetime: int = 5 * 86400
    #: Seconds after which the sender is told, once, that a message is still
    #: being retried (a "delayed" DSN, at the first deferral after it); 0 never.
    delay_warning: int = DEFAULT_DELAY_WARNING
    #: Refuse to hand mail over in clear text: a host that offers no STARTTLS
    #: is deferred (4.7.4) instead. Off by default: STARTTLS is opportunistic.
    require_tls: bool = False


@dataclass(frozen=True, slots=True)
class HttpClientConfig:
    """Limits on the HTTP requests the server itself makes (webhooks)."""

    #: Private, loopback or link-local networks requests may reach in addition
    #: to public addresses; everything non-public is refused otherwise (SSRF).
    allow_networks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One endpoint that receives signed HTTP POSTs for matching mail events."""

    #: ``http://`` or ``https://`` URL the events are POSTed to.
    url: str
    #: Event name patterns (``*`` matches within a name, e.g. ``message.*``).
    events: tuple[str, ...] = ("*",)
    #: Shared secret used to sign each delivery; ``None`` sends them unsigned.
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class Pop3Config:
    """Behaviour of the POP3 server that is a policy choice, not protocol."""

    #: Delete messages once a client has retrieved them (RETR), even if it
    #: never sends DELE; ``False`` leaves mail on the server as IMAP does.
    delete_retrieved: bool = False


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How logins are checked (IMAP, POP3 and SMTP AUTH alike)."""

    #: Seconds a password that passed the full scrypt check is recognised
    #: without it again (same user, same stored hash); 0 checks every login
    #: in full. See password_cache.py for the trade-off.
    password_cache_ttl: int = 3600


@dataclass(frozen=True, slots=True)
class ConnectionLimitsConfig:
    """How many connections each listener takes (counted across workers), the
    deadlines against clients that hold them, failed-login penalties, and
    how long a worker process may stall (docs/security.md)."""

    #: Simultaneous connections from one IP address to one listener (Postfix
    #: anvil and Dovecot mail_max_userip_connections are of this kind).
    connections_per_ip: int = 50
    #: Simultaneous connections from one network (IPv4 /24, IPv6 /64).
    connections_per_network: int = 200
    #: Simultaneous connections to one listener in all.
    connections_total: int = 1000
    #: Seconds to finish a command line once its first byte arrived.
    line_timeout: int = 60
    #: Seconds from connect to a successful login (IMAP, POP3, submission).
    login_timeout: int = 60
    #: Seconds from MAIL FROM to the end of the message data (SMTP).
    transaction_timeout: int = 1800
    #: Percent of connections_total from which a listener is under stress.
    stress_threshold: int = 80
    #: Under stress: the idle, line and login deadlines of sessions not
    #: logged in, in seconds.
    stress_timeout: int = 10
    #: Longest wait before a login attempt from an address that has failed
    #: before (2 s after one failure, doubling), in seconds.
    auth_penalty_max: int = 15
    #: Failures from one address (or four times as many from its network)
    #: after which its logins are refused unchecked.
    auth_block_after: int = 20
    #: Seconds after its last failure that an address's failures are forgotten.
    auth_block_time: int = 900
    #: Seconds a worker's event loop may go without a heartbeat before the
    #: supervisor kills and replaces the worker (net/watchdog.py).
    watchdog_timeout: int = 10
    #: Seconds workers get to finish after SIGTERM before they are killed.
    shutdown_timeout: int = 30

    def policy(self) -> ConnectionPolicy:
        """The deadlines every session enforces (limits.ConnectionPolicy)."""
        return ConnectionPolicy(
            line_timeout=self.line_timeout,
            login_timeout=self.login_timeout,
            transaction_timeout=self.transaction_timeout,
            stress_fraction=self.stress_threshold / 100,
            stress_timeout=self.stress_timeout,
        )


@dataclass(frozen=True, slots=True)
class Config:
    """The whole, validated configuration of one Mailstead instance."""

    #: The file this configuration was loaded from (absolute).
    path: Path
    #: Fully qualified name of this host (ASCII form): SMTP banner, EHLO, Received.
    hostname: str
    #: Root of all state: SQLite databases, mail, TLS files (absolute).
    data_dir: Path
    #: Local domains, normalised (lower-case, IDN as A-labels), in file order.
    domains: tuple[str, ...]
    #: Certificate and key for STARTTLS and implicit TLS.
    tls: TLSConfig
    #: Listening sockets per protocol.
    listen: ListenConfig = field(default_factory=ListenConfig)
    #: Mailbox storage format.
    storage: StorageConfig = field(default_factory=StorageConfig)
    #: Outbound delivery.
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    #: Outbound HTTP restrictions.
    http_client: HttpClientConfig = field(default_factory=HttpClientConfig)
    #: Webhook endpoints defined in the file (more may be added with the CLI).
    webhooks: tuple[WebhookConfig, ...] = ()
    #: POP3 policy.
    pop3: Pop3Config = field(default_factory=Pop3Config)
    #: Login checking.
    auth: AuthConfig = field(default_factory=AuthConfig)
    #: Connection limits of every listener.
    limits: ConnectionLimitsConfig = field(default_factory=ConnectionLimitsConfig)
    #: Server processes sharing the listening sockets; 0 means one per CPU.
    workers: int = 0

    @property
    def mail_root(self) -> Path:
        """Directory holding ``<domain>/<local>/Maildir`` (or ``mbox``) per user."""
        return self.data_dir / "mail"

    def db_path(self, name: str) -> Path:
        """Path of the SQLite database called ``name`` (``directory``, ``queue`` …)."""
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"invalid database name {name!r}")
        return self.data_dir / f"{name}.sqlite3"


# --------------------------------------------------------------------------- loading

_TOP_KEYS = {
    "hostname",
    "data_dir",
    "workers",
    "domains",
    "listen",
    "tls",
    "storage",
    "delivery",
    "http_client",
    "webhooks",
    "pop3",
    "auth",
    "limits",
}
_LISTEN_KEYS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
_EVENT_PATTERN = re.compile(r"[a-z0-9_*-]+(?:\.[a-z0-9_*-]+)*")


class _Reader:
    """Type-checked access to the parsed TOML, building key paths for errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.source}: {key}: {message}")

    def table(
        self, parent: Mapping[str, object], name: str, prefix: str, allowed: Sequence[str]
    ) -> dict[str, object]:
        key = f"{prefix}{name}"
        value = parent.get(name, {})
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {_show(value)}")
        self.no_unknown(value, f"{key}.", allowed)
        return value

    def no_unknown(self, table: Mapping[str, object], prefix: str, allowed: Sequence[str]) -> None:
        for name in table:
            if name not in allowed:
                expected = ", ".join(sorted(allowed))
                self.fail(f"{prefix}{name}", f"unknown key (expected one of: {expected})")

    def typed(self, value: object, key: str, kind: type[_T], noun: str) -> _T:
        # bool is an int subclass in Python but a distinct type in TOML.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(key, f"expected {noun}, got {_show(value)}")
        return value

    def string(self, value: object, key: str) -> str:
        return self.typed(value, key, str, "a string")

    def string_list(self, value: object, key: str) -> list[str]:
        items = self.typed(value, key, list, "an array of strings")
        return [self.string(item, f"{key}[{i}]") for i, item in enumerate(items)]

    def each(self, value: object, key: str, parse: Callable[[str], _T], what: str) -> list[_T]:
        out = []
        for i, text in enumerate(self.string_list(value, key)):
            try:
                out.append(parse(text))
            except ValueError as exc:
                self.fail(f"{key}[{i}]", f"expected {what}, got {_show(text)} ({exc})")
        return out


def _show(value: object) -> str:
    """A short, single-line rendering of a TOML value for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)  # escapes control characters
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _duration(
    r: _Reader, table: Mapping[str, object], key: str, default: int, *, off: bool = False
) -> int:
    """The duration at ``key`` (its last part) in seconds, or ``default``.

    With ``off``, ``"0"`` is allowed too and gives 0 (never, or turned off).
    """
    name = key.rpartition(".")[2]
    if name not in table:
        return default
    text = r.string(table[name], key)
    if off and text in ("0", "0s"):
        return 0
    try:
        return parse_duration(text)
    except ValueError as exc:
        hint = ' (or "0" for never)' if off else ""
        r.fail(key, f"{exc}{hint}, got {_show(text)}")


def load_config(path: Path) -> Config:
    """Read, validate and resolve the configuration file at ``path``."""
    source = str(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"no config at {path}; run `mailstead init`") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: invalid TOML: not UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    return _build(data, path.absolute(), _Reader(source))


def _build(data: dict[str, object], path: Path, r: _Reader) -> Config:
    r.no_unknown(data, "", sorted(_TOP_KEYS))

    if "hostname" in data:
        hostname = _domain_name(r, r.string(data["hostname"], "hostname"), "hostname")
    else:
        hostname = default_hostname()

    data_dir_text = r.string(data.get("data_dir", "var"), "data_dir")
    if not data_dir_text:
        r.fail("data_dir", "must not be empty")
    data_dir = (path.parent / Path(data_dir_text).expanduser()).resolve()

    if "domains" not in data:
        r.fail("domains", "missing (list the mail domains this server is the destination for)")
    domains: list[str] = []
    for i, text in enumerate(r.string_list(data["domains"], "domains")):
        domain = _domain_name(r, text, f"domains[{i}]")
        if domain not in domains:
            domains.append(domain)
    if not domains:
        r.fail("domains", "at least one domain is required")

    listen_t = r.table(data, "listen", "", _LISTEN_KEYS)
    defaults = ListenConfig()
    listen = ListenConfig(
        **{
            name: (
                tuple(r.each(listen_t[name], f"listen.{name}", parse_hostport, '"host:port"'))
                if name in listen_t
                else getattr(defaults, name)
            )
            for name in _LISTEN_KEYS
        }
    )

    tls_t = r.table(data, "tls", "", ("cert", "key"))
    tls = TLSConfig(
        cert=_data_path(r, data_dir, tls_t.get("cert", "tls/cert.pem"), "tls.cert"),
        key=_data_path(r, data_dir, tls_t.get("key", "tls/key.pem"), "tls.key"),
    )

    storage_t = r.table(data, "storage", "", ("format",))
    fmt = r.string(storage_t.get("format", "maildir"), "storage.format")
    if fmt not in ("maildir", "mbox"):
        r.fail("storage.format", f'expected "maildir" or "mbox", got {_show(fmt)}')
    storage = StorageConfig(format="maildir" if fmt == "maildir" else "mbox")

    delivery = _delivery(r, data, hostname)

    http_t = r.table(data, "http_client", "", ("allow_networks",))
    networks = r.each(
        http_t.get("allow_networks", []),
        "http_client.allow_networks",
        ipaddress.ip_network,
        'a network like "127.0.0.0/8"',
    )

    pop3_t = r.table(data, "pop3", "", ("delete_retrieved",))
    pop3 = Pop3Config(
        delete_retrieved=r.typed(
            pop3_t.get("delete_retrieved", False), "pop3.delete_retrieved", bool, "true or false"
        )
    )

    auth_t = r.table(data, "auth", "", ("password_cache_ttl",))
    cache_ttl = _duration(
        r, auth_t, "auth.password_cache_ttl", AuthConfig().password_cache_ttl, off=True
    )

    limits = _limits(r, data)

    workers = r.typed(data.get("workers", 0), "workers", int, "a whole number")
    if not 0 <= workers <= 256:
        r.fail("workers", f"expected 0 (one per CPU) to 256, got {workers}")

    return Config(
        path=path,
        workers=workers,
        hostname=hostname,
        data_dir=data_dir,
        domains=tuple(domains),
        listen=listen,
        tls=tls,
        storage=storage,
        delivery=delivery,
        http_client=HttpClientConfig(allow_networks=tuple(networks)),
        webhooks=_webhooks(r, data),
        pop3=pop3,
        auth=AuthConfig(password_cache_ttl=cache_ttl),
        limits=limits,
    )


def _limits(r: _Reader, data: Mapping[str, object]) -> ConnectionLimitsConfig:
    defaults = ConnectionLimitsConfig()
    counts = ("connections_per_ip", "connections_per_network", "connections_total")
    durations = (
        "auth_penalty_max",
        "auth_block_time",
        "line_timeout",
        "login_timeout",
        "transaction_timeout",
        "stress_timeout",
        "watchdog_timeout",
        "shutdown_timeout",
    )
    t = r.table(data, "limits", "", (*counts, "stress_threshold", "auth_block_after", *durations))

    def whole(key: str, low: int, high: int = 1_000_000, unit: str = "") -> int:
        value = r.typed(t.get(key, getattr(defaults, key)), f"limits.{key}", int, "a whole number")
        if not low <= value <= high:
            r.fail(f"limits.{key}", f"expected {low} to {high}{unit}, got {value}")
        return value

    per_ip = whole("connections_per_ip", 1)
    per_network = whole("connections_per_network", per_ip)
    total = whole("connections_total", per_ip)
    stress = whole("stress_threshold", 1, 100, " (percent)")
    block_after = whole("auth_block_after", 1)
    seconds = {key: _duration(r, t, f"limits.{key}", getattr(defaults, key)) for key in durations}
    return ConnectionLimitsConfig(
        connections_per_ip=per_ip,
        connections_per_network=per_network,
        connections_total=total,
        stress_threshold=stress,
        auth_block_after=block_after,
        **seconds,
    )


def _domain_name(r: _Reader, text: str, key: str) -> str:
    # Address literals (RFC 5321 §4.1.3) are refused: a local domain names a
    # directory under mail_root, and a hostname goes into EHLO and the banner.
    try:
        if text.strip().startswith("["):
            raise AddressError(text)
        return normalize_domain(text)
    except AddressError:
        r.fail(key, f"expected a domain name, got {_show(text)}")


def _data_path(r: _Reader, data_dir: Path, value: object, key: str) -> Path:
    text = r.string(value, key)
    if not text:
        r.fail(key, "must not be empty")
    return (data_dir / Path(text).expanduser()).resolve()


def _delivery(r: _Reader, data: Mapping[str, object], hostname: str) -> DeliveryConfig:
    t = r.table(
        data,
        "delivery",
        "",
        (
            "dns_servers",
            "smtp_port",
            "source_ip",
            "helo_name",
            "retry_schedule",
            "max_lifetime",
            "delay_warning",
            "require_tls",
        ),
    )
    defaults = DeliveryConfig()

    def resolver(text: str) -> HostPort:
        try:
            return str(ipaddress.ip_address(text)), 53  # bare address, IPv6 too
        except ValueError:
            pass
        host, port = parse_hostport(text, default_port=53)
        ipaddress.ip_address(host)  # a resolver is an address, never a name to resolve
        if port == 0:
            raise ValueError("port 0")
        return host, port

    dns_servers = r.each(
        t.get("dns_servers", []), "delivery.dns_servers", resolver, "an IP address[:port]"
    )

    port = r.typed(t.get("smtp_port", defaults.smtp_port), "delivery.smtp_port", int, "an integer")
    if not 1 <= port <= 65535:
        r.fail("delivery.smtp_port", f"expected a port 1-65535, got {port}")

    source_text = r.string(t.get("source_ip", ""), "delivery.source_ip")
    source_ip: str | None = None
    if source_text:
        try:
            source_ip = str(ipaddress.ip_address(source_text))
        except ValueError:
            r.fail("delivery.source_ip", f"expected an IP address, got {_show(source_text)}")

    helo_text = r.string(t.get("helo_name", ""), "delivery.helo_name")
    helo_name = _domain_name(r, helo_text, "delivery.helo_name") if helo_text else hostname

    if "retry_schedule" in t:
        schedule = tuple(
            r.each(t["retry_schedule"], "delivery.retry_schedule", parse_duration, "a duration")
        )
        if not schedule:
            r.fail("delivery.retry_schedule", "at least one interval is required")
    else:
        schedule = defaults.retry_schedule

    max_lifetime = defaults.max_lifetime
    if "max_lifetime" in t:
        text = r.string(t["max_lifetime"], "delivery.max_lifetime")
        try:
            max_lifetime = parse_duration(text)
        except ValueError as exc:
            r.fail("delivery.max_lifetime", f"{exc}, got {_show(text)}")

    return DeliveryConfig(
        dns_servers=tuple(dns_servers),
        smtp_port=port,
        source_ip=source_ip,
        helo_name=helo_name,
        retry_schedule=schedule,
        max_lifetime=max_lifetime,
        delay_warning=_duration(r, t, "delivery.delay_warning", defaults.delay_warning, off=True),
        require_tls=r.typed(
            t.get("require_tls", False), "delivery.require_tls", bool, "true or false"
        ),
    )


def _webhooks(r: _Reader, data: Mapping[str, object]) -> tuple[WebhookConfig, ...]:
    items = r.typed(data.get("webhooks", []), "webhooks", list, "an array of tables [[webhooks]]")
    hooks = []
    for i, item in enumerate(items):
        key = f"webhooks[{i}]"
        t = r.typed(item, key, dict, "a table")
        r.no_unknown(t, f"{key}.", ("url", "events", "secret"))
        if "url" not in t:
            r.fail(f"{key}.url", "missing")
        url = r.string(t["url"], f"{key}.url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or not url.isprintable():
            r.fail(f"{key}.url", f"expected an http:// or https:// URL, got {_show(url)}")
        events: tuple[str, ...] = ("*",)
        if "events" in t:
            events = tuple(r.string_list(t["events"], f"{key}.events"))
            if not events:
                r.fail(f"{key}.events", "at least one event pattern is required")
            for j, pattern in enumerate(events):
                if not _EVENT_PATTERN.fullmatch(pattern):
                    r.fail(f"{key}.events[{j}]", f"invalid event pattern {_show(pattern)}")
        secret = None
        if "secret" in t:
            secret = r.string(t["secret"], f"{key}.secret")
            if not secret:
                r.fail(f"{key}.secret", "must not be empty (omit the key to send unsigned)")
        hooks.append(WebhookConfig(url=url, events=events, secret=secret))
    return tuple(hooks)


# --------------------------------------------------------------------------- writing


def default_config_text(domain: str, hostname: str) -> str:
    """A commented ``mailstead.toml`` with the defaults, for ``mailstead init``.

    Raises ConfigError if ``domain`` or ``hostname`` is not a domain name.
    """
    r = _Reader("mailstead init")
    _domain_name(r, domain, "--domain")
    _domain_name(r, hostname, "--hostname")
    # A JSON string is a valid TOML basic string (same escapes).
    return TEMPLATE.format(
        hostname=json.dumps(hostname, ensure_ascii=False),
        domain=json.dumps(domain, ensure_ascii=False),
    )
