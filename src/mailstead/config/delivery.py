"""``[delivery]``: how the outbound MTA reaches remote servers, and for how long."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mailstead.addresses import AddressError, normalize_domain, split_address
from mailstead.config.reader import Reader, domain_name, duration, show
from mailstead.config.values import HostPort, parse_duration, parse_hostport

__all__ = ["DEFAULT_DELAY_WARNING", "DeliveryConfig", "load_delivery"]

#: Seconds a message may wait before its sender gets a "delayed" DSN
#: (RFC 3464 ``Action: delayed``). Postfix's ``delay_warning_time`` is off by
#: default, with 4h as the documented suggestion; sendmail's
#: ``Timeout.queuewarn`` defaults to 4h. Mailstead warns after 4h; 0 disables.
DEFAULT_DELAY_WARNING = 4 * 3600


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
    #: Sender domain (normalised) -> the local address its mail leaves from,
    #: instead of ``source_ip``; for a domain's own reputation, PTR and SPF.
    source_ip_by_domain: dict[str, str] = field(default_factory=dict)
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
    #: Honour the MTA-STS policies of destination domains (RFC 8461): fetch
    #: and cache them, and in ``enforce`` mode deliver only to the MX hosts
    #: they name, over STARTTLS with a certificate valid for the host.
    mta_sts: bool = True
    #: PEM trust anchors used instead of the system's roots to check the
    #: certificates MTA-STS asks for (policy hosts and MX hosts): a private
    #: CA, or a test's. Relative to ``data_dir``; None: the system's roots.
    tls_ca_file: Path | None = None

    def source_for(self, sender: str) -> str | None:
        """The local address mail from ``sender`` (an envelope address) leaves from."""
        if self.source_ip_by_domain and sender:
            try:
                domain = normalize_domain(split_address(sender)[1])
            except AddressError:
                return self.source_ip
            return self.source_ip_by_domain.get(domain, self.source_ip)
        return self.source_ip

    @property
    def source_addresses(self) -> frozenset[str]:
        """Every configured local address outbound mail leaves from."""
        found = set(self.source_ip_by_domain.values())
        if self.source_ip:
            found.add(self.source_ip)
        return frozenset(found)


_KEYS = (
    "dns_servers",
    "smtp_port",
    "source_ip",
    "source_ip_by_domain",
    "helo_name",
    "retry_schedule",
    "max_lifetime",
    "delay_warning",
    "require_tls",
    "mta_sts",
    "tls_ca_file",
)


def _resolver(text: str) -> HostPort:
    try:
        return str(ipaddress.ip_address(text)), 53  # bare address, IPv6 too
    except ValueError:
        pass
    host, port = parse_hostport(text, default_port=53)
    ipaddress.ip_address(host)  # a resolver is an address, never a name to resolve
    if port == 0:
        raise ValueError("port 0")
    return host, port


def _source_address(r: Reader, text: str, key: str) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        r.fail(key, f"expected an IP address, got {show(text)}")
    if ip.is_unspecified or ip.is_multicast:
        r.fail(key, f"expected an address of this host, got {show(text)}")
    return str(ip)


def load_delivery(
    r: Reader, data: Mapping[str, object], hostname: str, data_dir: Path | None = None
) -> DeliveryConfig:
    """The ``[delivery]`` table of ``data``; ``helo_name`` defaults to ``hostname``.

    ``tls_ca_file`` is resolved against ``data_dir`` when given, else kept
    as written (users of it join it to the data directory).
    """
    t = r.table(data, "delivery", "", _KEYS)
    defaults = DeliveryConfig()

    dns_servers = r.each(
        t.get("dns_servers", []), "delivery.dns_servers", _resolver, "an IP address[:port]"
    )

    port = r.typed(t.get("smtp_port", defaults.smtp_port), "delivery.smtp_port", int, "an integer")
    if not 1 <= port <= 65535:
        r.fail("delivery.smtp_port", f"expected a port 1-65535, got {port}")

    source_text = r.string(t.get("source_ip", ""), "delivery.source_ip")
    source_ip = _source_address(r, source_text, "delivery.source_ip") if source_text else None
    by_domain: dict[str, str] = {}
    table = r.typed(
        t.get("source_ip_by_domain", {}), "delivery.source_ip_by_domain", dict, "a table"
    )
    for name, value in table.items():
        key = f"delivery.source_ip_by_domain.{name}"
        domain = domain_name(r, name, key)
        if domain in by_domain:
            r.fail(key, f"{domain} is listed twice")
        by_domain[domain] = _source_address(r, r.string(value, key), key)

    helo_text = r.string(t.get("helo_name", ""), "delivery.helo_name")
    helo_name = domain_name(r, helo_text, "delivery.helo_name") if helo_text else hostname

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
            r.fail("delivery.max_lifetime", f"{exc}, got {show(text)}")

    tls_ca_file = None
    if "tls_ca_file" in t:
        text = r.string(t["tls_ca_file"], "delivery.tls_ca_file")
        if not text:
            r.fail("delivery.tls_ca_file", "must not be empty")
        tls_ca_file = Path(text).expanduser()
        if data_dir is not None:
            tls_ca_file = (data_dir / tls_ca_file).resolve()

    return DeliveryConfig(
        dns_servers=tuple(dns_servers),
        smtp_port=port,
        source_ip=source_ip,
        source_ip_by_domain=by_domain,
        helo_name=helo_name,
        retry_schedule=schedule,
        max_lifetime=max_lifetime,
        delay_warning=duration(r, t, "delivery.delay_warning", defaults.delay_warning, off=True),
        require_tls=r.typed(
            t.get("require_tls", False), "delivery.require_tls", bool, "true or false"
        ),
        mta_sts=r.typed(t.get("mta_sts", True), "delivery.mta_sts", bool, "true or false"),
        tls_ca_file=tls_ca_file,
    )
