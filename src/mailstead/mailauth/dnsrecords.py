"""The DNS records an operator publishes for a domain: ``mailstead dns-records DOMAIN``.

Suggestions, not queries: nothing here touches the network. For each local
domain:

* **MX** ``<domain> MX 10 <hostname>``: mail for the domain comes here
  (RFC 5321 §5.1). The hostname needs A/AAAA records, not a CNAME
  (RFC 2181 §10.3).
* **SPF** ``v=spf1 mx ~all`` (RFC 7208): the domain's MX hosts (this one)
  send its mail, plus ``ip4:``/``ip6:`` for the address its mail leaves
  from: its ``delivery.source_ip_by_domain`` entry, else
  ``delivery.source_ip``, if set.
  ``~all`` (softfail) rather than ``-all``: with DKIM and DMARC published,
  a receiver that rejects on an SPF ``fail`` before evaluating DMARC would
  refuse legitimately forwarded mail whose DKIM signature still verifies
  (RFC 7489 §10.1); softfail leaves the decision to DMARC.
* **DKIM** one TXT record per key (``<selector>._domainkey.<domain>``,
  RFC 6376 §3.6.2); keys are created if the domain has none.
* **DMARC** ``_dmarc.<domain>`` ``v=DMARC1; p=quarantine;
  rua=mailto:postmaster@<domain>`` (RFC 7489 §6.3). ``p=quarantine`` rather
  than ``p=none``: every message Mailstead sends for the domain is DKIM-signed
  with an aligned ``d=``, so only mail sent around it fails, and that is what
  a policy is for; an operator who also sends through other services starts
  with ``p=none`` and reads the aggregate reports first. Reports go to
  postmaster, which RFC 5321 §4.5.1 requires to exist anyway; being in the
  same domain, it needs no RFC 7489 §7.1 authorisation record.
* **PTR** for each such address, pointing at the EHLO name: not in the
  domain's zone but in the reverse zone of whoever holds the address (the
  hosting provider), to be asked for. Receivers check that the address's
  name resolves back to it (forward-confirmed reverse DNS, RFC 8601 §3
  ``iprev``; RFC 5321 §4.1.4 is why the EHLO name is the one to use).
* **TLS-RPT** ``_smtp._tls.<domain>`` ``v=TLSRPTv1; rua=mailto:postmaster@…``
  (RFC 8460 §3): harmless, and tells the operator when senders fail TLS.
  MTA-STS is not suggested: it needs an HTTPS policy host this server does
  not run.

Names are absolute, with the final dot; TXT values are the logical string,
split into quoted ≤255-octet strings only for zone-file output (RFC 1035
§3.3.14, RFC 7208 §3.3).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mailstead.addresses import AddressError, normalize_domain
from mailstead.config import Config
from mailstead.mailauth.dkim import DKIMKeys, txt_record

__all__ = ["TTL", "DNSRecordsError", "Record", "records", "txt_strings", "zone_text"]

#: TTL printed in zone-file output (one hour).
TTL = 3600
_TXT_CHUNK = 255  # RFC 1035 §3.3: a character-string is at most 255 octets


class DNSRecordsError(Exception):
    """Records were asked for a domain this server does not serve (one-line message)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One suggested resource record, in presentation form."""

    #: ``"MX"``, ``"TXT"`` or ``"PTR"``.
    type: str
    #: Absolute owner name with the final dot, e.g. ``_dmarc.example.test.``.
    name: str
    #: RDATA: ``10 mail.example.test.`` for MX, the unquoted string for TXT,
    #: the EHLO name for PTR.
    value: str
    #: What the record is for, one line (printed as a zone-file comment).
    comment: str


def records(config: Config, domain: str) -> list[Record]:
    """The MX, SPF, DKIM, DMARC and TLS-RPT records to publish for ``domain``,
    and the PTR records to ask for, one per address its mail leaves from.

    Creates the domain's DKIM keys if it has none. Raises
    :class:`DNSRecordsError` if ``domain`` is not one of ``config.domains``.
    """
    try:
        name = normalize_domain(domain)
    except AddressError:
        raise DNSRecordsError(f"invalid domain {domain!r}") from None
    if name not in config.domains:
        served = ", ".join(config.domains)
        raise DNSRecordsError(f"{name} is not a domain of this server (domains: {served})")
    postmaster = f"postmaster@{name}"
    out = [
        Record(
            "MX",
            f"{name}.",
            f"10 {config.hostname}.",
            f"mail for {name} is delivered to {config.hostname} (needs A/AAAA records, no CNAME)",
        ),
        Record(
            "TXT",
            f"{name}.",
            _spf(config, name),
            "SPF: the MX hosts send this domain's mail; others softfail, DMARC decides",
        ),
    ]
    for key in DKIMKeys(config.data_dir).ensure(name):
        key_name, value = txt_record(key)
        algorithm = "RSA" if key.algorithm == "rsa" else "Ed25519 (RFC 8463)"
        out.append(Record("TXT", f"{key_name}.", value, f"DKIM public key, {algorithm}"))
    out += [
        Record(
            "TXT",
            f"_dmarc.{name}.",
            f"v=DMARC1; p=quarantine; rua=mailto:{postmaster}",
            "DMARC: quarantine unaligned mail (p=none to only watch); reports to postmaster",
        ),
        Record(
            "TXT",
            f"_smtp._tls.{name}.",
            f"v=TLSRPTv1; rua=mailto:{postmaster}",
            "TLS-RPT: senders report TLS failures to postmaster",
        ),
    ]
    helo = config.delivery.helo_name or config.hostname
    for ip in _sources(config, name):
        out.append(
            Record(
                "PTR",
                ip.reverse_pointer + ".",
                f"{helo}.",
                f"reverse DNS of {ip}, where {name} mail leaves from: ask the holder of "
                f"{ip} (the hosting provider) for it; {helo} needs an A/AAAA record to {ip}",
            )
        )
    return out


def _sources(config: Config, domain: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses mail from ``domain`` leaves from (none: the kernel chooses)."""
    address = config.delivery.source_for(f"postmaster@{domain}")
    return [ipaddress.ip_address(address)] if address else []


def _spf(config: Config, domain: str) -> str:
    # RFC 7208 §5.6: ip4/ip6 mechanisms name the sending address itself.
    terms = ["v=spf1", "mx", *(f"ip{ip.version}:{ip}" for ip in _sources(config, domain))]
    terms.append("~all")
    return " ".join(terms)


def txt_strings(value: str) -> list[str]:
    """``value`` split into character-strings of at most 255 octets (UTF-8 safe)."""
    data = value.encode("utf-8")
    chunks: list[str] = []
    while data:
        cut = min(_TXT_CHUNK, len(data))
        while cut < len(data) and (data[cut] & 0xC0) == 0x80:  # not inside a UTF-8 sequence
            cut -= 1
        chunks.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    return chunks or [""]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def zone_text(recs: list[Record], ttl: int = TTL) -> str:
    """Zone-file lines ``name TTL IN TYPE value``, each after a ``;`` comment line."""
    lines: list[str] = []
    for rec in recs:
        value = rec.value
        if rec.type == "TXT":
            value = " ".join(_quote(s) for s in txt_strings(rec.value))
        lines.append(f"; {rec.comment}")
        lines.append(f"{rec.name} {ttl} IN {rec.type} {value}")
    return "\n".join(lines) + "\n"
