"""``net dhcp`` on an interface systemd-networkd or NetworkManager manages: the manager is asked.

The daemons are not run here: small fake ``networkctl`` and ``nmcli``
programs, first on PATH, record their arguments and answer in the real
tools' formats (networkctl(1), nmcli(1) terse mode, sd-dhcp-lease's lease
file). The managers' state lives in a temporary tree passed as ``root``
(its ``run/`` and ``etc/``), and the interface is ``v0`` of the namespace
pair, so neither the host's daemons nor its files are involved.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mailstead.netconfig import live
from mailstead.netconfig.dhcp import DHCPError, obtain_lease, planned_changes
from mailstead.netconfig.persist import MARKER
from tests.netconfig.conftest import Pair

LEASE = """\
# This is private data. Do not parse.
ADDRESS=10.77.0.50
NETMASK=255.255.255.0
ROUTER=10.77.0.1
SERVER_ADDRESS=10.77.0.1
BROADCAST=10.77.0.255
DNS=10.77.0.53 10.77.0.54
LIFETIME=600
T1=300
T2=525
CLIENTID=018e72da4f54c8
"""

STATUS = """\
\u25cf 2: v0
                     Link File: /usr/lib/systemd/network/99-default.link
                  Network File: /etc/systemd/network/10-v0.network
                         State: routable (configured)
                       Address: 10.77.0.50 (DHCP4 via 10.77.0.1)
                                fe80::8c72:daff:fe4f:54c8
                       Gateway: 10.77.0.1
                           DNS: 10.77.0.53
                                10.77.0.54
"""

# networkctl: records argv; "reconfigure"/"renew" bind a lease when DHCPv4 is on.
NETWORKCTL = """\
#!{python} -I
import json, os, sys
from pathlib import Path
root = Path(os.environ["FAKE_ROOT"])
with open(root / "calls.jsonl", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
lease = root / "run/systemd/netif/leases" / os.environ["FAKE_INDEX"]
network = root / "etc/systemd/network/10-v0.network"
text = network.read_text() + "".join(p.read_text() for p in network.parent.glob("*.d/*.conf"))
if sys.argv[1:2] in (["reconfigure"], ["renew"]) and os.environ.get("FAKE_BIND") == "1":
    if "DHCP=ipv4" in text or "DHCP=yes" in text:
        lease.parent.mkdir(parents=True, exist_ok=True)
        lease.write_text({lease!r})
    elif lease.exists():
        lease.unlink()
if sys.argv[1:2] == ["status"]:
    sys.stdout.write({status!r})
"""

NM_SHOW = """\
DHCP4.OPTION[1]:broadcast_address = 10.77.0.255
DHCP4.OPTION[2]:dhcp_client_identifier = 01\\:8e\\:72\\:da\\:4f\\:54\\:c8
DHCP4.OPTION[3]:dhcp_lease_time = 600
DHCP4.OPTION[4]:dhcp_server_identifier = 10.77.0.1
DHCP4.OPTION[5]:domain_name_servers = 10.77.0.53 10.77.0.54
DHCP4.OPTION[6]:expiry = 1796660040
DHCP4.OPTION[7]:ip_address = 10.77.0.50
DHCP4.OPTION[8]:routers = 10.77.0.1
DHCP4.OPTION[9]:subnet_mask = 255.255.255.0
IP4.ADDRESS[1]:10.77.0.50/24
IP4.GATEWAY:10.77.0.1
IP4.ROUTE[1]:dst = 10.77.0.0/24, nh = 0.0.0.0, mt = 100
IP4.ROUTE[2]:dst = 0.0.0.0/0, nh = 10.77.0.1, mt = 100
IP4.DNS[1]:10.77.0.53
IP4.DNS[2]:10.77.0.54
"""

UUID = "5e5f1c2a-3b7d-4c1e-9f00-0a1b2c3d4e5f"

# nmcli: records argv; keeps ipv4.method in a file; answers in terse (-t) form.
NMCLI = """\
#!{python} -I
import json, os, sys
from pathlib import Path
root = Path(os.environ["FAKE_ROOT"])
with open(root / "calls.jsonl", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
args = [a for a in sys.argv[1:] if a not in ("-t",)]
method = root / "method"
if args[:3] == ["-g", "GENERAL.STATE", "device"]:
    print("100 (connected)")
elif args[-3:] == ["connection", "show", "--active"]:
    print("{uuid}:v0:Wired connection 1")
elif args[:2] == ["-g", "ipv4.method"]:
    print(method.read_text())
elif args[:2] == ["connection", "modify"]:
    method.write_text(args[-1])
elif args[:2] == ["-f", "DHCP4,IP4"]:
    sys.stdout.write({show!r})
"""


@pytest.fixture
def index(pair: Pair) -> int:
    return next(link.index for link in live.links(netns=pair.ns) if link.name == pair.iface)


def _fake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str, index: int
) -> Path:
    root = tmp_path / "root"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    program = bin_dir / name
    program.write_text(text)
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin")
    monkeypatch.setenv("FAKE_ROOT", str(root))
    monkeypatch.setenv("FAKE_INDEX", str(index))
    monkeypatch.setenv("FAKE_BIND", "1")
    return root


def _calls(root: Path) -> list[list[str]]:
    return [json.loads(line) for line in (root / "calls.jsonl").read_text().splitlines()]


@pytest.fixture
def networkd_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: int) -> Path:
    text = NETWORKCTL.format(python=sys.executable, lease=LEASE, status=STATUS)
    root = _fake(tmp_path, monkeypatch, "networkctl", text, index)
    links = root / "run/systemd/netif/links"
    links.mkdir(parents=True)
    (links / str(index)).write_text("ADMIN_STATE=configured\nOPER_STATE=routable\n")
    network = root / "etc/systemd/network/10-v0.network"
    network.parent.mkdir(parents=True)
    network.write_text("[Match]\nName=v0\n\n[Network]\nAddress=192.0.2.10/24\n")
    return root


DROP_IN = "etc/systemd/network/10-v0.network.d/mailstead-dhcp.conf"


def test_networkd_gets_a_drop_in_and_is_reconfigured(pair: Pair, networkd_root: Path) -> None:
    root = networkd_root
    plan = planned_changes("v0", netns=pair.ns, root=root)
    assert plan[0].startswith("asks systemd-networkd: systemd-networkd manages v0")
    assert plan[1].startswith(f"files: writes /{DROP_IN} ([Network] DHCP=ipv4), which stays")
    assert plan[2] == "runs networkctl reload and networkctl reconfigure v0"

    lease = obtain_lease("v0", netns=pair.ns, root=root, timeout=5)

    assert lease.to_json() == {
        "iface": "v0",
        "address": "10.77.0.50",
        "prefix": 24,
        "router": "10.77.0.1",
        "dns": ["10.77.0.53", "10.77.0.54"],
        "lease_time": 600,
        "server": "10.77.0.1",
        "client": "systemd-networkd",
    }
    assert (root / DROP_IN).read_text() == (
        f"{MARKER}: `mailstead net dhcp v0 --release` removes this file.\n\n[Network]\nDHCP=ipv4\n"
    )
    assert _calls(root) == [["reload"], ["reconfigure", "v0"]]

    released = obtain_lease("v0", release=True, netns=pair.ns, root=root, timeout=5)

    assert released == lease
    assert not (root / DROP_IN).exists()
    assert _calls(root)[2:] == [["reload"], ["reconfigure", "v0"]]


def test_networkd_with_dhcp_on_already_renews(pair: Pair, networkd_root: Path) -> None:
    root = networkd_root
    network = root / "etc/systemd/network/10-v0.network"
    network.write_text("[Match]\nName=v0\n\n[Network]\nDHCP=yes\n")
    plan = planned_changes("v0", netns=pair.ns, root=root)
    assert plan[1:3] == [
        "files: none (/etc/systemd/network/10-v0.network has DHCP=yes already)",
        "runs networkctl renew v0",
    ]
    assert obtain_lease("v0", netns=pair.ns, root=root, timeout=5).address == "10.77.0.50"
    assert _calls(root) == [["renew", "v0"]]
    assert not (root / DROP_IN).exists()
    with pytest.raises(
        DHCPError, match=r"^DHCP on v0 is set in its .network file, not by mailstead"
    ):
        obtain_lease("v0", release=True, netns=pair.ns, root=root, timeout=5)


def test_networkd_status_is_the_fallback(
    pair: Pair, networkd_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BIND", "0")  # no lease file appears
    pair.run(
        "addr", "add", "10.77.0.50/24", "dev", "v0", "valid_lft", "500", "preferred_lft", "500"
    )
    lease = obtain_lease("v0", netns=pair.ns, root=networkd_root, timeout=0.5)
    assert (lease.cidr, lease.router, lease.dns, lease.server) == (
        "10.77.0.50/24",
        "10.77.0.1",
        ("10.77.0.53", "10.77.0.54"),
        "10.77.0.1",
    )
    assert 490 <= lease.lease_time <= 500  # the address's lifetime, over netlink
    assert ["status", "--no-pager", "v0"] in _calls(networkd_root)


def test_networkd_without_a_network_file(pair: Pair, networkd_root: Path) -> None:
    (networkd_root / "etc/systemd/network/10-v0.network").unlink()
    with pytest.raises(DHCPError, match=r"^no \.network file in /etc/systemd/network"):
        planned_changes("v0", netns=pair.ns, root=networkd_root)


def test_a_managed_interface_refuses_another_client(pair: Pair, networkd_root: Path) -> None:
    with pytest.raises(DHCPError, match=r"systemd-networkd manages v0.*so dhclient would fight it"):
        obtain_lease("v0", client="dhclient", netns=pair.ns, root=networkd_root)


@pytest.fixture
def nm_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: int) -> Path:
    text = NMCLI.format(python=sys.executable, uuid=UUID, show=NM_SHOW)
    root = _fake(tmp_path, monkeypatch, "nmcli", text, index)
    (root / "run/NetworkManager").mkdir(parents=True)
    (root / "method").write_text("manual")
    return root


def test_networkmanager_connection_goes_auto_and_up(pair: Pair, nm_root: Path) -> None:
    plan = planned_changes("v0", netns=pair.ns, root=nm_root)
    assert (
        plan[0] == "asks NetworkManager: NetworkManager manages v0 (device state 100 (connected))"
    )
    assert plan[1] == (
        "files: NetworkManager writes ipv4.method auto (was manual) into the profile of "
        "'Wired connection 1', which keeps it after a reboot"
    )
    assert plan[2] == f"runs nmcli connection up {UUID} (connection 'Wired connection 1' on v0)"

    lease = obtain_lease("v0", netns=pair.ns, root=nm_root, timeout=7)

    assert lease.to_json() == {
        "iface": "v0",
        "address": "10.77.0.50",
        "prefix": 24,
        "router": "10.77.0.1",
        "dns": ["10.77.0.53", "10.77.0.54"],
        "lease_time": 600,
        "server": "10.77.0.1",
        "client": "NetworkManager",
    }
    calls = _calls(nm_root)
    assert ["connection", "modify", UUID, "ipv4.method", "auto"] in calls
    assert ["--wait", "7", "connection", "up", UUID] in calls
    assert calls[-1] == ["-t", "-f", "DHCP4,IP4", "device", "show", "v0"]

    released = obtain_lease("v0", release=True, netns=pair.ns, root=nm_root, timeout=7)
    assert released == lease
    assert _calls(nm_root)[-1] == ["--wait", "7", "connection", "down", UUID]


def test_networkmanager_auto_already_writes_nothing(pair: Pair, nm_root: Path) -> None:
    (nm_root / "method").write_text("auto")
    plan = planned_changes("v0", netns=pair.ns, root=nm_root)
    assert plan[1] == "files: none written by mailstead (ipv4.method is auto already)"
    obtain_lease("v0", netns=pair.ns, root=nm_root, timeout=7)
    assert not any(call[:2] == ["connection", "modify"] for call in _calls(nm_root))
