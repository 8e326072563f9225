"""What every DHCP client driver shares: the lease, its error, and running a client.

The ISC and dhcpcd drivers run their program with a script Mailstead
writes (:data:`REPORT_SCRIPT`) in place of the distribution's hook scripts:
it only appends the variables it is called with to a report file, one JSON
line per call, so nothing but Mailstead changes the host.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mailstead.netconfig import live

__all__ = [
    "BOUND",
    "DHCPError",
    "Lease",
    "bound",
    "in_netns",
    "ipv4",
    "lease_from_options",
    "prefix_of",
    "records",
    "which",
    "work_parent",
    "write_report_script",
]

_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
# The script calls of a lease that is in force (dhclient-script(8), dhcpcd-run-hooks(8)).
BOUND = ("BOUND", "RENEW", "REBIND", "REBOOT")

_REPORT_SCRIPT = """\
#!{python} -I
import json, os
keep = ("reason", "interface")
seen = {{k: v for k, v in os.environ.items() if k in keep or k.startswith("new_")}}
with open({report!r}, "a", encoding="utf-8") as f:
    f.write(json.dumps(seen) + "\\n")
"""


class DHCPError(live.NetconfigError):
    """No lease: no client, no answer, or a manager that cannot be asked."""


@dataclass(frozen=True, slots=True)
class Lease:
    """What the DHCP server granted (RFC 2131 §3.1, the options of RFC 2132)."""

    iface: str
    address: str
    prefix: int
    #: The first router offered (option 3), or ``None``.
    router: str | None
    #: DNS servers offered (option 6), in the server's order.
    dns: tuple[str, ...]
    #: Seconds the address may be used (option 51).
    lease_time: int
    #: What spoke DHCP: ``dhclient``, ``dhcpcd``, ``systemd-networkd`` or ``NetworkManager``.
    client: str
    #: The server that granted it (option 54).
    server: str | None = None

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix}"

    def to_json(self) -> dict[str, object]:
        return {
            "iface": self.iface,
            "address": self.address,
            "prefix": self.prefix,
            "router": self.router,
            "dns": list(self.dns),
            "lease_time": self.lease_time,
            "server": self.server,
            "client": self.client,
        }


def which(name: str) -> str | None:
    """The program's path, also where root's programs live."""
    return shutil.which(name) or shutil.which(name, path=_SBIN)


def in_netns(netns: str | None, argv: list[str]) -> list[str]:
    """``argv`` run inside network namespace ``netns`` (``ip netns exec``), or as it is."""
    if netns is None:
        return argv
    ip = which("ip")
    if ip is None:
        raise DHCPError("ip (iproute2) is needed to run a DHCP client in a network namespace")
    return [ip, "netns", "exec", netns, *argv]


def work_parent() -> str:
    """Where a client's temporary directory goes: not under /run, which dhcpcd's is mounted over."""
    parent = Path(tempfile.gettempdir()).resolve()
    return "/var/tmp" if parent.is_relative_to("/run") else str(parent)


def write_report_script(work: Path) -> tuple[Path, Path]:
    """The reporting script in ``work`` and the report file it appends to."""
    report = work / "report.jsonl"
    script = work / "report"
    script.write_text(_REPORT_SCRIPT.format(python=sys.executable, report=str(report)))
    script.chmod(0o700)
    return script, report


def records(report: Path) -> list[dict[str, str]]:
    """Every complete line the script wrote so far."""
    try:
        text = report.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    # A line without its newline is still being written.
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def bound(report: Path) -> dict[str, str] | None:
    """The last call that put a lease in force, or ``None`` yet."""
    return next((r for r in reversed(records(report)) if r.get("reason") in BOUND), None)


def ipv4(text: str) -> str:
    """A dotted-quad IPv4 address, checked; ValueError otherwise."""
    try:
        return socket.inet_ntoa(socket.inet_aton(text))
    except OSError:
        raise ValueError(f"not an IPv4 address: {text!r}") from None


def prefix_of(mask: str) -> int:
    """The prefix length of a subnet mask (RFC 2132 §3.3: contiguous ones)."""
    bits = int.from_bytes(socket.inet_aton(mask), "big")
    prefix = bin(bits).count("1")
    if bits != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF:
        raise DHCPError(f"the server sent a subnet mask that is not one: {mask!r}")
    return prefix


def lease_from_options(
    iface: str,
    options: Mapping[str, str],
    client: str,
    problem: str,
    *,
    prefixes: Mapping[str, int] | None = None,
) -> Lease:
    """A lease from DHCP options named as dhclient-script, dhcpcd-run-hooks and
    NetworkManager name them (RFC 2132's names in lower case with underscores).

    The prefix comes from ``subnet_cidr`` or ``subnet_mask``, else from
    ``prefixes`` (the address's prefix on the interface), else /32.
    ``problem`` begins the error when there is no usable address.
    """
    try:
        address = ipv4(options["ip_address"])
        if "subnet_cidr" in options:
            prefix = int(options["subnet_cidr"])
        elif "subnet_mask" in options or prefixes is None:
            prefix = prefix_of(options.get("subnet_mask", "255.255.255.255"))
        else:
            prefix = prefixes[address]
        lease_time = int(options.get("dhcp_lease_time", "0"))
    except (KeyError, OSError, ValueError):
        raise DHCPError(f"{problem}: {dict(options)}") from None
    routers = options.get("routers", "").split()
    return Lease(
        iface=iface,
        address=address,
        prefix=prefix,
        router=routers[0] if routers else None,
        dns=tuple(options.get("domain_name_servers", "").split()),
        lease_time=lease_time,
        client=client,
        server=options.get("dhcp_server_identifier") or None,
    )
