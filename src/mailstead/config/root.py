"""The top level of ``mailstead.toml`` and the :class:`Config` holding every section.

``hostname``, ``data_dir``, ``domains`` and ``workers`` are read here; each
``[section]`` is read by its own module, in the order the file's keys depend
on one another (``data_dir`` before ``[tls]``, ``hostname`` before
``[delivery]``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mailstead.config.abuse import AbuseConfig, load_abuse
from mailstead.config.auth import AuthConfig, load_auth
from mailstead.config.auth_checks import AuthChecksConfig, load_auth_checks
from mailstead.config.delivery import DeliveryConfig, load_delivery
from mailstead.config.http_client import HttpClientConfig, load_http_client
from mailstead.config.limits import ConnectionLimitsConfig, load_limits
from mailstead.config.listen import ListenConfig, load_listen
from mailstead.config.log import LogConfig, load_log
from mailstead.config.network import NetworkConfig, load_network
from mailstead.config.pop3 import Pop3Config, load_pop3
from mailstead.config.reader import ConfigError, Reader, domain_name
from mailstead.config.run import RunConfig, load_run
from mailstead.config.storage import StorageConfig, load_storage
from mailstead.config.tls import TLSConfig, load_tls
from mailstead.config.values import default_hostname
from mailstead.config.webhooks import WebhookConfig, load_webhooks

__all__ = ["Config", "build_config", "load_config"]


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
    #: SPF, DKIM and DMARC verification of mail from other servers.
    auth_checks: AuthChecksConfig = field(default_factory=AuthChecksConfig)
    #: Rate limits, DNS block lists and greylisting of incoming mail.
    abuse: AbuseConfig = field(default_factory=AbuseConfig)
    #: Connection limits of every listener.
    limits: ConnectionLimitsConfig = field(default_factory=ConnectionLimitsConfig)
    #: Interface addresses declared for the host (``mailstead net apply``).
    network: NetworkConfig = field(default_factory=NetworkConfig)
    #: The account the server runs as after binding its ports.
    run: RunConfig = field(default_factory=RunConfig)
    #: The log's format and the file serve appends it to (``mailstead log``).
    log: LogConfig = field(default_factory=LogConfig)
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
    "auth_checks",
    "abuse",
    "limits",
    "network",
    "run",
    "log",
}


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
    return build_config(data, path.absolute(), Reader(source))


def build_config(data: dict[str, object], path: Path, r: Reader) -> Config:
    """The Config of parsed TOML ``data`` read from ``path``; ``r`` reports problems
    (``mailstead check config`` passes one that collects them all)."""
    r.no_unknown(data, "", sorted(_TOP_KEYS))

    if "hostname" in data:
        hostname = domain_name(r, r.string(data["hostname"], "hostname"), "hostname")
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
        domain = domain_name(r, text, f"domains[{i}]")
        if domain not in domains:
            domains.append(domain)
    if not domains:
        r.fail("domains", "at least one domain is required")

    # A fixed order: a file with several mistakes always reports the same first.
    listen = load_listen(r, data)
    tls = load_tls(r, data, data_dir)
    storage = load_storage(r, data)
    delivery = load_delivery(r, data, hostname)
    http_client = load_http_client(r, data)
    pop3 = load_pop3(r, data)
    auth = load_auth(r, data)
    auth_checks = load_auth_checks(r, data)
    abuse = load_abuse(r, data)
    limits = load_limits(r, data)
    network = load_network(r, data)
    run = load_run(r, data)
    log = load_log(r, data, data_dir)

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
        http_client=http_client,
        webhooks=load_webhooks(r, data),
        pop3=pop3,
        auth=auth,
        auth_checks=auth_checks,
        abuse=abuse,
        limits=limits,
        network=network,
        run=run,
        log=log,
    )
