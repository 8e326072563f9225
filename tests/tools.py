"""The external programs the test suite drives, and how to tell they work.

Each :class:`Tool` names the Debian package that brings it and a probe of
the feature the tests need: swaks without Net::SSLeay runs, but cannot do
STARTTLS, and a mutt built without IMAP runs too. ``python -m tests.preflight``
(the first step of ``make test``) checks them all before anything else runs;
a test asks for its tool with :func:`require`, which skips only outside CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

import pytest

from mailstead.testing.postgres import PostgresMissing, find_bindir

_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


@dataclass(frozen=True, slots=True)
class Tool:
    """One program: where to find it, what installs it, how to ask for its features."""

    name: str
    package: str
    # argv that prints the features; None: being there is enough.
    probe: tuple[str, ...] | None = None
    # every one of these must appear in the probe's output
    needs: tuple[str, ...] = ()
    # the packages that bring a missing feature (often a Recommends that
    # --no-install-recommends drops)
    feature_package: str = ""


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "swaks",
            "swaks",
            ("swaks", "--support"),
            ("=== TLS supported", "=== Basic AUTH supported"),
            feature_package="libnet-ssleay-perl",
        ),
        Tool("msmtp", "msmtp", ("msmtp", "--version"), ("TLS/SSL library: GnuTLS",)),
        Tool("postfix", "postfix"),
        # sendmail -t as a real program calls it (no version flag: present is enough).
        Tool("bsd-mailx", "bsd-mailx"),
        Tool("mutt", "mutt", ("mutt", "-v"), ("+USE_IMAP", "+USE_SSL")),
        Tool("mbsync", "isync", ("mbsync", "--version"), ("isync",)),
        Tool("fetchmail", "fetchmail", ("fetchmail", "-V"), ("+SSL",)),
        Tool("getmail", "getmail6", ("getmail", "--version"), ("getmail 6",)),
        Tool("mpop", "mpop", ("mpop", "--version"), ("TLS/SSL library: GnuTLS",)),
        Tool("redis-server", "redis-server", ("redis-server", "--version"), ("Redis server v=",)),
        # A private cluster per test run (mailstead.testing.postgres), pg_trgm included.
        Tool("initdb", "postgresql", ("initdb", "--version"), ("initdb (PostgreSQL) ",)),
        # In front of two nodes, speaking the PROXY protocol (tests/e2e/test_proxy_protocol.py).
        Tool("haproxy", "haproxy", ("haproxy", "-v"), ("HAProxy version ",)),
        Tool("ip", "iproute2", ("ip", "-j", "link", "show", "lo"), ('"ifname":"lo"',)),
        Tool("setpriv", "util-linux", ("setpriv", "--help"), ("--bounding-set",)),
        Tool("dnsmasq", "dnsmasq-base", ("dnsmasq", "--version"), ("DHCP",)),
        Tool("dhclient", "isc-dhcp-client", ("dhclient", "--version"), ("isc-dhclient-4",)),
        Tool("dhcpcd", "dhcpcd-base", ("dhcpcd", "--version"), ("Compiled in features:", "INET")),
        Tool(
            "nmcli",
            "network-manager",
            (
                "nmcli",
                "--offline",
                "connection",
                "add",
                "type",
                "ethernet",
                "con-name",
                "probe",
                "ifname",
                "probe0",
            ),
            ("[connection]", "interface-name=probe0"),
        ),
        Tool("networkctl", "systemd", ("networkctl", "--version"), ("systemd ",)),
        Tool(
            "dbus-daemon",
            "dbus-daemon",
            ("dbus-daemon", "--version"),
            ("D-Bus Message Bus Daemon",),
        ),
        Tool("nsenter", "util-linux", ("nsenter", "--help"), ("--mount",)),
        Tool("unshare", "util-linux", ("unshare", "--help"), ("--mount",)),
        Tool("pebble", "pebble", ("pebble", "--help"), ("-dnsserver",)),
        Tool("netplan", "netplan.io", ("netplan", "info"), ("netplan.io",)),
        Tool("ifup", "ifupdown", ("ifup", "--version"), ("ifup version 0.8",)),
        Tool("systemd-analyze", "systemd", ("systemd-analyze", "--version"), ("systemd ",)),
        Tool(
            "chromium",
            "chromium",
            (
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--user-data-dir=/tmp/mailstead-chromium-probe",
                "--dump-dom",
                "data:text/html,<b>probe-ok</b>",
            ),
            ("<b>probe-ok</b>",),
        ),
    )
}


def locate(name: str) -> str | None:
    """The program's path, also looking where root's daemons and PostgreSQL's programs live."""
    found = shutil.which(name) or shutil.which(name, path=_SBIN)
    if found is None and name == "initdb":
        try:
            found = str(find_bindir() / "initdb")
        except PostgresMissing:
            return None
    return found


@cache
def problem(name: str) -> str | None:
    """Why the tool cannot serve the tests, as one line naming what to install; None if it can."""
    tool = TOOLS[name]
    path = locate(tool.name)
    if path is None:
        return f"{tool.name} is missing: apt-get install {tool.package}"
    if tool.probe is None:
        return None
    try:
        run = subprocess.run(
            [path, *tool.probe[1:]],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{tool.name} does not run ({exc}): apt-get install --reinstall {tool.package}"
    output = run.stdout + run.stderr
    missing = [need for need in tool.needs if need not in output]
    if missing:
        package = tool.feature_package or tool.package
        return f"{tool.name} lacks {', '.join(missing)!r}: apt-get install {package}"
    return None


def require(name: str) -> str:
    """The path of a working tool; in CI a missing one fails the test, elsewhere it skips."""
    reason = problem(name)
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    path = locate(name)
    assert path is not None
    return path
