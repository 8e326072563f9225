"""What every test here may ask for: the namespace pair (:mod:`tests.netconfig.netns`), and
for DHCP the client namespace's own resolv.conf and dnsmasq serving the pair.

Nothing reaches the host: dnsmasq answers DHCP only (``--port=0``, no
resolv.conf, no hosts file) with its lease file under ``tmp_path``, and
``/etc/netns/NS/resolv.conf`` is in place before anything runs in the
client's namespace, so even a client that wrote resolv.conf would write
that file, not the host's.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netconfig.netns import Pair, make_pair
from tests.tools import require

__all__ = ["DNS", "RANGE", "SERVER", "Pair"]


@pytest.fixture
def pair() -> Iterator[Pair]:
    yield from make_pair()


SERVER = "10.77.0.1"
RANGE = ("10.77.0.50", "10.77.0.54")
DNS = ("10.77.0.53", "10.77.0.54")


@pytest.fixture
def resolv(pair: Pair) -> Iterator[Path]:
    """``/etc/netns/NS/resolv.conf`` for the client's namespace, removed after the test."""
    netns_dir = Path("/etc/netns")
    made_root = not netns_dir.exists()
    folder = netns_dir / pair.ns
    folder.mkdir(parents=True)
    path = folder / "resolv.conf"
    path.write_text("# the test namespace's own; the host's file is never touched\n")
    try:
        yield path
    finally:
        path.unlink()
        folder.rmdir()
        if made_root:
            with contextlib.suppress(OSError):  # another test's folder is in it
                netns_dir.rmdir()


@pytest.fixture
def server(pair: Pair, tmp_path: Path) -> Iterator[Path]:
    """dnsmasq on ``v1`` in the peer namespace; the path of its lease file."""
    dnsmasq = require("dnsmasq")
    pair.run("addr", "add", f"{SERVER}/24", "dev", pair.peer, ns=pair.peer_ns)
    leases = tmp_path / "dnsmasq.leases"
    proc = subprocess.Popen(
        [
            pair.ip, "netns", "exec", pair.peer_ns, dnsmasq,
            "--keep-in-foreground", "--conf-file=/dev/null", "--user=root", "--pid-file=",
            "--no-resolv", "--no-hosts", "--port=0",
            f"--interface={pair.peer}", "--bind-interfaces",
            f"--dhcp-range={RANGE[0]},{RANGE[1]},255.255.255.0,10m",
            f"--dhcp-option=option:router,{SERVER}",
            f"--dhcp-option=option:dns-server,{DNS[0]},{DNS[1]}",
            f"--dhcp-leasefile={leases}", "--dhcp-authoritative",
            f"--log-facility={tmp_path / 'dnsmasq.log'}", "--log-dhcp",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(0.3)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    try:
        yield leases
    finally:
        proc.terminate()
        proc.wait(timeout=10)
