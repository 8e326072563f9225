"""A pair of network namespaces joined by a veth pair, made for one test and removed after it.

The tests change addresses only there, never on the host: ``v0`` sits in
``ns`` and its peer ``v1`` in ``peer_ns``, both up (``dummy`` links are not
available on every kernel; veth pairs are).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.tools import require


@dataclass(frozen=True, slots=True)
class Pair:
    """Two namespaces and the veth pair between them."""

    ip: str  # the path of ``ip``
    ns: str
    peer_ns: str
    iface: str = "v0"
    peer: str = "v1"

    def run(self, *args: str, ns: str | None = None) -> str:
        """``ip -n NS ARGS...``: its output, or AssertionError with its stderr."""
        done = subprocess.run(
            [self.ip, "-n", ns or self.ns, *args], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"
        return done.stdout

    def addrs(self, iface: str | None = None) -> list[dict[str, object]]:
        """``addr_info`` of ``iface`` (default ``v0``) as ``ip -j addr`` shows it."""
        shown = json.loads(self.run("-j", "addr", "show", "dev", iface or self.iface))
        info: list[dict[str, object]] = shown[0]["addr_info"]
        return info

    def cidrs(self, iface: str | None = None) -> set[str]:
        """The ``address/prefix`` pairs on ``iface`` other than the link-local ones."""
        return {f"{a['local']}/{a['prefixlen']}" for a in self.addrs(iface) if a["scope"] != "link"}


def _ip(ip: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ip, *args], capture_output=True, text=True, timeout=30)


def make_pair() -> Iterator[Pair]:
    """Make the pair, yield it, and remove both namespaces, also when the test failed."""
    ip = require("ip")
    tag = secrets.token_hex(4)
    made: list[str] = []
    try:
        for ns in (f"ms-{tag}-a", f"ms-{tag}-b"):
            done = _ip(ip, "netns", "add", ns)
            if done.returncode != 0:
                pytest.skip(f"the kernel refuses a network namespace: {done.stderr.strip()}")
            made.append(ns)
        pair = Pair(ip, made[0], made[1])
        done = _ip(
            ip,
            "-n",
            pair.ns,
            "link",
            "add",
            pair.iface,
            "type",
            "veth",
            "peer",
            "name",
            pair.peer,
            "netns",
            pair.peer_ns,
        )
        if done.returncode != 0:
            pytest.skip(f"the kernel refuses a veth pair: {done.stderr.strip()}")
        for ns, link in ((pair.ns, pair.iface), (pair.peer_ns, pair.peer), (pair.ns, "lo")):
            pair.run("link", "set", link, "up", ns=ns)
        yield pair
    finally:
        # Deleting a namespace deletes the veth end in it, and so its peer.
        for ns in made:
            _ip(ip, "netns", "delete", ns)
