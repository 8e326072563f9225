"""dhcpcd (Debian's dhcpcd-base), run so that nothing it keeps or runs reaches the host.

dhcpcd has no options for its lease directory or its run directory
(``/var/lib/dhcpcd``, ``/run/dhcpcd``: its control socket, pid files), so it
runs in a private mount namespace (``unshare --mount``, with a PID namespace
so none of its processes outlive it) where both are temporary directories
of Mailstead's: it can neither see nor talk to a
dhcpcd the host runs, and its leases, DUID and secret vanish with the
directory. It reads Mailstead's configuration instead of
``/etc/dhcpcd.conf``, runs the reporting script instead of
``dhcpcd-run-hooks`` (no resolv.conf, hostname, NTP or timezone hooks), and
with ``--noconfigure`` adds no address or route: Mailstead applies the lease.
The lease is read back with ``dhcpcd -U`` from the lease file dhcpcd wrote.
"""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from mailstead.netconfig.dhcp.lease import (
    DHCPError,
    Lease,
    bound,
    in_netns,
    lease_from_options,
    which,
    write_report_script,
)

__all__ = ["PLAN", "obtain", "parse_dump", "release"]

#: How dhcpcd is run, for the plan ``net dhcp`` prints first.
PLAN = (
    "in a private mount namespace where its lease directory and /run are temporary "
    "directories, removed afterwards, with its own configuration (not /etc/dhcpcd.conf), "
    "--noconfigure, and a script that only reports (dhcpcd-run-hooks is not run)"
)

# Where Debian's build (and dhcpcd's default build) keeps leases, DUID and secret.
_DB_DIRS = ("/var/lib/dhcpcd", "/var/db/dhcpcd")

# RFC 2132 §9.14: the client identifier is the hardware address (``clientid``),
# not a DUID, which would be new in every temporary directory and so ask the
# server for a new lease each time. RFC 3927 link-local addresses are no lease.
_CONF = """\
clientid
noipv4ll
option subnet_mask, routers, domain_name_servers, dhcp_lease_time
"""

_MOUNT = 'mount --bind "$1" "$2" && mount --bind "$3" /run && shift 3 && exec "$@"'


def _private(work: Path, argv: list[str]) -> list[str]:
    """``argv`` in a mount namespace where the lease directory and /run are under ``work``."""
    unshare = which("unshare")
    if unshare is None:
        raise DHCPError("unshare (util-linux) is needed to keep dhcpcd's files off the host")
    db_dir = next((d for d in _DB_DIRS if os.path.isdir(d)), None)
    if db_dir is None:
        raise DHCPError(f"dhcpcd's lease directory is missing (none of {', '.join(_DB_DIRS)})")
    for name in ("db", "run"):
        (work / name).mkdir(mode=0o700, exist_ok=True)
    # A PID namespace too: when dhcpcd (its first process) exits, the kernel
    # kills what it leaves (dhcpcd 9.4's privilege-separation helpers may stay).
    return [
        *(unshare, "--mount", "--pid", "--kill-child", "--propagation", "private", "--"),
        *("/bin/sh", "-c", _MOUNT, "mailstead-dhcpcd"),
        *(str(work / "db"), db_dir, str(work / "run")),
        *argv,
    ]


def _argv(client: str, iface: str, work: Path, timeout: float, *extra: str) -> list[str]:
    script, _ = write_report_script(work)
    (work / "dhcpcd.conf").write_text(_CONF)
    return [
        *(client, "--config", str(work / "dhcpcd.conf"), "--script", str(script)),
        *("--noconfigure", "--ipv4only", "--nobackground"),
        *("--timeout", str(max(1, int(timeout))), *extra, iface),
    ]


def parse_dump(iface: str, text: str) -> Lease:
    """The lease in the ``name=value`` lines of ``dhcpcd -U`` (dhcpcd-run-hooks(8) names)."""
    seen: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep:
            seen[name] = value.strip("'\"")
    problem = f"dhcpcd -U showed no usable lease for {iface}"
    return lease_from_options(iface, seen, "dhcpcd", problem)


def _dump(client: str, iface: str, work: Path) -> Lease:
    """``dhcpcd -4 -U < LEASEFILE``, given a terminal to write to.

    dhcpcd 9.4 loses this output when stdout is a pipe (it exits without
    flushing stdio), so it writes to a pseudo-terminal. The lease file is
    never empty here: on empty input dhcpcd would ask a running dhcpcd instead.
    """
    lease_file = work / "db" / f"{iface}.lease"
    if not lease_file.is_file() or lease_file.stat().st_size == 0:
        raise DHCPError(f"dhcpcd left no lease file for {iface}")
    master, slave = pty.openpty()
    out = b""
    try:
        with lease_file.open("rb") as stdin:
            proc = subprocess.Popen(
                _private(work, [client, "--ipv4only", "--dumplease"]),
                stdin=stdin,
                stdout=slave,
                stderr=subprocess.DEVNULL,
            )
        os.close(slave)
        slave = -1
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            out += chunk
        proc.wait(timeout=10)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return parse_dump(iface, out.decode(errors="replace"))


def _first_child(pid: int) -> int:
    """dhcpcd's pid: the child ``unshare --fork`` (process ``pid``) started."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise DHCPError("dhcpcd did not start under unshare")


def _last_words(work: Path) -> str:
    said = (work / "dhcpcd.log").read_text(errors="replace").strip().splitlines()
    return said[-1] if said else "no output"


def obtain(client: str, iface: str, work: Path, timeout: float, netns: str | None) -> Lease:
    """``dhcpcd --oneshot``: it exits once bound, leaving the lease file behind."""
    argv = _argv(client, iface, work, timeout, "--oneshot")
    with (work / "dhcpcd.log").open("wb") as log:
        try:
            done = subprocess.run(
                in_netns(netns, _private(work, argv)),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout + 15,  # its own timeout, then the ARP probe of RFC 5227
            )
        except subprocess.TimeoutExpired:
            done = None
    if done is None or done.returncode != 0:
        raise DHCPError(
            f"no DHCP lease on {iface} within {timeout:g} s (dhcpcd: {_last_words(work)})"
        )
    return _dump(client, iface, work)


def release(
    client: str,
    iface: str,
    work: Path,
    timeout: float,
    netns: str | None,
    before: Callable[[Lease], None],
) -> Lease:
    """Take the lease again, call ``before(lease)``, then have dhcpcd release it.

    dhcpcd releases on SIGALRM (what ``dhcpcd --release`` sends). The
    DHCPRELEASE goes unicast from the leased address (RFC 2131 §4.4.6),
    which therefore must be on the interface: ``before`` makes sure of that.
    """
    argv = _argv(client, iface, work, timeout)
    report = work / "report.jsonl"
    with (work / "dhcpcd.log").open("wb") as log:
        proc = subprocess.Popen(
            in_netns(netns, _private(work, argv)), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout + 15
            while bound(report) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise DHCPError(
                        f"no DHCP lease on {iface} within {timeout:g} s "
                        f"(dhcpcd: {_last_words(work)})"
                    )
                time.sleep(0.05)
            lease = _dump(client, iface, work)
            before(lease)
            os.kill(_first_child(proc.pid), signal.SIGALRM)
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
    if "releasing lease" not in (work / "dhcpcd.log").read_text(errors="replace"):
        raise DHCPError(f"dhcpcd did not release the lease: {_last_words(work)}")
    return lease
