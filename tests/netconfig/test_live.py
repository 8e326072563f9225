"""Live address changes over netlink, checked with ``ip -j addr`` in namespaces the tests made."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mailstead.netconfig import live
from tests.netconfig.netns import Pair
from tests.tools import require


def test_links_lists_the_veth_pair_and_loopback(pair: Pair) -> None:
    links = {link.name: link for link in live.links(netns=pair.ns)}
    assert set(links) == {"lo", "v0"}
    v0 = links["v0"]
    assert (v0.kind, v0.mtu, v0.state) == ("veth", 1500, "up")
    assert v0.mac == pair.run("-j", "link", "show", "v0").split('"address":"')[1][:17]
    assert links["lo"].kind == "loopback"


def test_add_and_delete_ipv4(pair: Pair) -> None:
    outcome = live.add_address("v0", "192.0.2.25/24", netns=pair.ns)
    assert (outcome.changed, outcome.message) == (True, "added 192.0.2.25/24 to v0")
    assert pair.cidrs() == {"192.0.2.25/24"}
    (shown,) = [a for a in pair.addrs() if a["family"] == "inet"]
    assert (shown["broadcast"], shown["label"]) == ("192.0.2.255", "v0")

    outcome = live.delete_address("v0", "192.0.2.25/24", netns=pair.ns)
    assert (outcome.changed, outcome.message) == (True, "removed 192.0.2.25/24 from v0")
    assert pair.cidrs() == set()


def test_labelled_ipv4_is_the_old_alias(pair: Pair) -> None:
    live.add_address("v0", "192.0.2.25/24", netns=pair.ns)
    outcome = live.add_address("v0", "198.51.100.7/24", label="v0:1", netns=pair.ns)
    assert outcome.message == "added 198.51.100.7/24 label v0:1 to v0"
    labels = {a["local"]: a["label"] for a in pair.addrs() if a["family"] == "inet"}
    assert labels == {"192.0.2.25": "v0", "198.51.100.7": "v0:1"}
    listed = [a for a in live.addresses(netns=pair.ns) if a.address == "198.51.100.7"]
    assert [(a.iface, a.cidr, a.label, a.scope) for a in listed] == [
        ("v0", "198.51.100.7/24", "v0:1", "global")
    ]


def test_ipv6_waits_for_dad(pair: Pair) -> None:
    outcome = live.add_address("v0", "2001:db8::25/64", netns=pair.ns)
    assert outcome.changed
    assert outcome.message.startswith("added 2001:db8::25/64 to v0 (DAD passed in ")
    assert outcome.address is not None and "tentative" not in outcome.address.flags
    (shown,) = [a for a in pair.addrs() if a["local"] == "2001:db8::25"]
    assert "tentative" not in shown and "dadfailed" not in shown
    assert pair.cidrs() == {"2001:db8::25/64"}

    live.delete_address("v0", "2001:db8::25/64", netns=pair.ns)
    assert pair.cidrs() == set()


def test_dad_failure_is_reported_and_the_address_removed(pair: Pair) -> None:
    # The peer holds the address already (nodad: at once): it answers our solicitation.
    pair.run("addr", "add", "2001:db8::25/64", "dev", "v1", "nodad", ns=pair.peer_ns)
    with pytest.raises(live.DadFailedError) as failed:
        live.add_address("v0", "2001:db8::25/64", netns=pair.ns)
    assert str(failed.value) == "DAD failed: another node on v0 uses 2001:db8::25; removed it"
    assert pair.cidrs() == set()


def test_dad_that_cannot_finish_is_bounded(pair: Pair) -> None:
    pair.run("link", "set", "v0", "down")
    with pytest.raises(live.DadFailedError) as failed:
        live.add_address("v0", "2001:db8::25/64", netns=pair.ns, dad_timeout=0.3)
    assert str(failed.value) == (
        "2001:db8::25/64 on v0 is still tentative after 0.3 s"
        " (is v0 up with a carrier?); left in place"
    )
    (shown,) = [a for a in pair.addrs() if a["local"] == "2001:db8::25"]
    assert shown["tentative"] is True


def test_adding_what_is_there_is_a_no_op(pair: Pair) -> None:
    live.add_address("v0", "192.0.2.25/24", label="v0:1", netns=pair.ns)
    again = live.add_address("v0", "192.0.2.25/24", label="v0:1", netns=pair.ns)
    assert not again.changed
    assert again.message == "192.0.2.25/24 is already on v0: nothing to do"
    unlabelled = live.add_address("v0", "192.0.2.25/24", netns=pair.ns)
    assert not unlabelled.changed
    gone = live.delete_address("v0", "203.0.113.1/24", netns=pair.ns)
    assert (gone.changed, gone.message) == (False, "203.0.113.1/24 is not on v0: nothing to do")
    assert pair.cidrs() == {"192.0.2.25/24"}


def test_dry_run_changes_nothing(pair: Pair) -> None:
    outcome = live.add_address("v0", "192.0.2.25/24", label="v0:1", netns=pair.ns, dry_run=True)
    assert (outcome.changed, outcome.message) == (True, "would add 192.0.2.25/24 label v0:1 to v0")
    assert pair.cidrs() == set()
    pair.run("addr", "add", "192.0.2.25/24", "dev", "v0")
    outcome = live.delete_address("v0", "192.0.2.25/24", netns=pair.ns, dry_run=True)
    assert outcome.message == "would remove 192.0.2.25/24 from v0"
    assert pair.cidrs() == {"192.0.2.25/24"}


def test_lifetimes_and_flags_are_read(pair: Pair) -> None:
    pair.run(
        "addr", "add", "2001:db8::9/64", "dev", "v0", "nodad", "valid_lft", "300",
        "preferred_lft", "0",
    )  # fmt: skip
    (seen,) = [a for a in live.addresses(netns=pair.ns) if a.address == "2001:db8::9"]
    assert (seen.family, seen.prefix, seen.label) == ("inet6", 64, "")
    assert {"nodad", "deprecated"} <= set(seen.flags)
    assert seen.preferred_lifetime == 0
    assert seen.valid_lifetime is not None and 290 <= seen.valid_lifetime <= 300
    assert seen.to_json()["flags"] == list(seen.flags)


@pytest.mark.parametrize(
    ("iface", "cidr", "label", "error", "message"),
    [
        ("v9", "192.0.2.25/24", None, live.InterfaceNotFoundError, "no interface named 'v9'"),
        ("v0/x", "192.0.2.25/24", None, live.InterfaceNotFoundError,
         "'v0/x' is not a valid interface name"),
        ("v0", "192.0.2.25", None, live.BadAddressError,
         "bad CIDR '192.0.2.25': give the prefix length, as in 192.0.2.25/24"),
        ("v0", "192.0.2.300/24", None, live.BadAddressError,
         "bad CIDR '192.0.2.300/24': not an IPv4 or IPv6 address/prefix"),
        ("v0", "192.0.2.25/33", None, live.BadAddressError,
         "bad CIDR '192.0.2.25/33': not an IPv4 or IPv6 address/prefix"),
        ("v0", "192.0.2.0/24", None, live.BadAddressError,
         "bad CIDR '192.0.2.0/24': the network's own or broadcast address"),
        ("v0", "224.0.0.5/24", None, live.BadAddressError,
         "bad CIDR '224.0.0.5/24': not a unicast address"),
        ("v0", "fe80::1%v0/64", None, live.BadAddressError,
         "bad CIDR 'fe80::1%v0/64': no zone index; name the interface instead"),
        ("v0", "192.0.2.25/24", "eth0:1", live.BadAddressError,
         "label 'eth0:1' must start with the interface name, as in v0:1"),
        ("v0", "192.0.2.25/24", "v0:0123456789abc", live.BadAddressError,
         "label 'v0:0123456789abc' is 16 bytes; the kernel takes at most 15"),
        ("v0", "192.0.2.25/24", "v0 1", live.BadAddressError,
         "label 'v0 1' may not hold spaces, slashes or control characters"),
        ("v0", "2001:db8::25/64", "v0:1", live.BadAddressError,
         "labels are for IPv4 addresses only; IPv6 has none"),
    ],
)  # fmt: skip
def test_errors_are_one_line(
    pair: Pair,
    iface: str,
    cidr: str,
    label: str | None,
    error: type[live.NetconfigError],
    message: str,
) -> None:
    with pytest.raises(error) as raised:
        live.add_address(iface, cidr, label=label, netns=pair.ns)
    assert str(raised.value) == message
    assert pair.cidrs() == set()


def test_label_of_fifteen_bytes_is_taken(pair: Pair) -> None:
    live.add_address("v0", "192.0.2.25/24", label="v0:0123456789ab", netns=pair.ns)
    assert [a["label"] for a in pair.addrs() if a["family"] == "inet"] == ["v0:0123456789ab"]


def test_address_on_another_interface(pair: Pair) -> None:
    pair.run("addr", "add", "192.0.2.25/24", "dev", "lo")
    with pytest.raises(live.AddressInUseError, match=r"^192\.0\.2\.25 is already on lo$"):
        live.add_address("v0", "192.0.2.25/24", netns=pair.ns)
    assert pair.cidrs() == set()


def test_same_address_with_another_prefix_or_label(pair: Pair) -> None:
    live.add_address("v0", "192.0.2.25/24", label="v0:1", netns=pair.ns)
    with pytest.raises(live.AddressInUseError) as other_prefix:
        live.add_address("v0", "192.0.2.25/28", netns=pair.ns)
    assert str(other_prefix.value) == "192.0.2.25 is already on v0 as 192.0.2.25/24"
    with pytest.raises(live.AddressInUseError) as other_label:
        live.add_address("v0", "192.0.2.25/24", label="v0:2", netns=pair.ns)
    assert str(other_label.value) == "192.0.2.25/24 is already on v0 with label 'v0:1'"
    with pytest.raises(live.AddressInUseError) as delete_other:
        live.delete_address("v0", "192.0.2.25/28", netns=pair.ns)
    assert str(delete_other.value) == "192.0.2.25 is on v0 as 192.0.2.25/24, not 192.0.2.25/28"
    assert pair.cidrs() == {"192.0.2.25/24"}


def test_missing_namespace() -> None:
    with pytest.raises(live.InterfaceNotFoundError) as raised:
        live.links(netns="ms-no-such-namespace")
    assert str(raised.value) == "no network namespace named 'ms-no-such-namespace'"


_ADD_WITHOUT_CAP = """
import sys
from mailstead.netconfig import live
try:
    live.add_address("v0", "192.0.2.25/24", netns=sys.argv[1])
except live.NotPermittedError as exc:
    print(exc)
"""


def test_missing_cap_net_admin(pair: Pair) -> None:
    setpriv = require("setpriv")
    # Root without CAP_NET_ADMIN: it may still enter the namespace (CAP_SYS_ADMIN).
    done = subprocess.run(
        [setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin", "--",
         sys.executable, "-c", _ADD_WITHOUT_CAP, pair.ns],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (done.stdout, done.stderr) == (
        "adding 192.0.2.25/24 to v0: not permitted (needs CAP_NET_ADMIN: run as root)\n",
        "",
    )
    assert pair.cidrs() == set()
