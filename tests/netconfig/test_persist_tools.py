"""What each writer produced, read by the manager's own tool where Debian packages one.

* netplan: ``netplan generate --root-dir`` merges our drop-in with the
  admin's file and renders the networkd configuration we check.
* ifupdown: ``ifup --no-act`` parses the stanzas (with the admin's file) and
  prints the ``ip`` commands it would run; ``ifquery`` reads the options.
* systemd-networkd has no offline validator (networkctl needs the running
  daemon); ``systemd-analyze cat-config`` shows that systemd's own drop-in
  lookup finds our file for the admin's ``.network`` file.
* NetworkManager: ``nmcli --offline connection modify`` (1.40 and later;
  Debian 12 ships 1.42) reads a keyfile on stdin without the daemon,
  normalises and verifies the profile as NetworkManager would load it, and
  prints it back: an invalid one is refused, and the addresses must come
  back as written. The format rules of nm-settings-keyfile(5) are also
  checked with a strict key-file parser.
"""

from __future__ import annotations

import configparser
import re
import stat
import subprocess
from pathlib import Path

import pytest

from mailstead.netconfig.persist import PersistError, nm, persist_address, remove_address
from tests.netconfig.test_persist import ADDED, add_all, make_tree
from tests.tools import require


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return " ".join((done.stdout + done.stderr).split())  # whitespace as single spaces


def test_netplan_generate_renders_our_addresses(tmp_path: Path) -> None:
    netplan = require("netplan")
    root = make_tree(tmp_path, "netplan")
    add_all(root, "netplan")
    run(netplan, "generate", "--root-dir", str(root))
    rendered = (root / "run/systemd/network/10-netplan-eth0.network").read_text()
    assert "DHCP=ipv4" in rendered  # the admin's definition, merged
    assert "Address=2001:db8::25/64" in rendered
    assert "Address=192.0.2.26/24" in rendered
    assert "[Address]\nAddress=192.0.2.25/24\nLabel=eth0:1\n" in rendered
    for cidr, _ in ADDED["netplan"]:
        remove_address("eth0", cidr, manager="netplan", root=root)
    run(netplan, "generate", "--root-dir", str(root))
    assert "Address=" not in (root / "run/systemd/network/10-netplan-eth0.network").read_text()


def test_ifupdown_parses_the_stanzas(tmp_path: Path) -> None:
    ifup = require("ifup")
    root = make_tree(tmp_path / "root", "ifupdown")
    add_all(root, "ifupdown")
    fragment = root / "etc/network/interfaces.d/mailstead-eth0"
    # The admin's file, sourcing the tree's directory rather than the host's.
    main = tmp_path / "interfaces"
    main.write_text(
        (root / "etc/network/interfaces")
        .read_text()
        .replace("/etc/network/interfaces.d/*", f"{root}/etc/network/interfaces.d/*")
    )
    state = tmp_path / "state"
    state.mkdir()
    up = run(ifup, "--no-act", "--state-dir", str(state), "-i", str(main), "eth0", "eth0:1")
    assert "dhclient -4" in up  # the admin's stanza still runs first
    assert (
        "ip addr add 192.0.2.25/255.255.255.0 broadcast 192.0.2.255 dev eth0:1 label eth0:1" in up
    )
    assert "ip addr add 192.0.2.26/255.255.255.0 broadcast 192.0.2.255 dev eth0 label eth0" in up
    assert "ip -6 addr add 2001:db8::25/64 dev eth0" in up
    assert "autoconf" not in up  # SLAAC is left as the admin set it
    ifdown, ifquery = (str(Path(ifup).with_name(name)) for name in ("ifdown", "ifquery"))
    down = run(ifdown, "--no-act", "--force", "--state-dir", str(state), "-i", str(main), "eth0")
    assert "ip -6 addr del 2001:db8::25/64 dev eth0" in down
    query = run(ifquery, "-i", str(fragment), "eth0:1")
    assert query == "address: 192.0.2.25 broadcast: 192.0.2.255 netmask: 255.255.255.0"
    listed = run(ifquery, "-i", str(main), "--list")
    assert listed.split() == ["lo", "eth0:1"]  # allow-hotplug eth0 is not "auto"


def test_networkd_finds_the_drop_in(tmp_path: Path) -> None:
    analyze = require("systemd-analyze")
    root = make_tree(tmp_path, "networkd")
    add_all(root, "networkd")
    shown = run(analyze, f"--root={root}", "cat-config", "systemd/network/10-eth0.network")
    drop_in = root / "etc/systemd/network/10-eth0.network.d/mailstead.conf"
    assert f"# {drop_in} " in shown
    assert "Address=192.0.2.25/24 Label=eth0:1" in shown


def test_nm_keyfile_follows_the_format_rules(tmp_path: Path) -> None:
    root = make_tree(tmp_path, "nm")
    add_all(root, "nm")
    persist_address("eth0", "2001:db8::26/64", manager="nm", root=root)
    ((path, text),) = nm.owners(root, "eth0")
    assert path.suffix == ".nmconnection"
    # NetworkManager ignores a keyfile others may read (nm-settings-keyfile(5)).
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keyfile = nm.parse(text)  # strict: no duplicate group or key
    assert {"id", "uuid", "type"} <= set(keyfile["connection"])
    for group, expected in (
        ("ipv4", ["192.0.2.25/24", "192.0.2.26/24"]),
        ("ipv6", ["2001:db8::25/64", "2001:db8::26/64"]),
    ):
        keys = [key for key in keyfile[group] if key.startswith("address")]
        assert all(re.fullmatch(r"address[1-9][0-9]*", key) for key in keys)
        assert [keyfile[group][key] for key in sorted(keys)] == expected
    # Comments stand on lines of their own; GLib has no trailing comments.
    assert all(line.startswith("#") or "#" not in line for line in text.splitlines())


def _nm_reads(nmcli: str, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nmcli, "--offline", "connection", "modify"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _addresses(keyfile: configparser.ConfigParser, group: str) -> list[str]:
    keys = sorted((k for k in keyfile[group] if k.startswith("address")), key=lambda k: int(k[7:]))
    return [keyfile[group][key] for key in keys]


def test_nmcli_offline_loads_the_keyfile_as_written(tmp_path: Path) -> None:
    nmcli = require("nmcli")
    root = make_tree(tmp_path, "nm")
    add_all(root, "nm")
    persist_address("eth0", "2001:db8::26/64", manager="nm", root=root)
    ((_, text),) = nm.owners(root, "eth0")
    done = _nm_reads(nmcli, text)
    assert done.returncode == 0, done.stderr
    written, loaded = nm.parse(text), nm.parse(done.stdout)
    for key in ("id", "uuid", "type", "interface-name"):
        assert loaded["connection"][key] == written["connection"][key]
    assert loaded["ipv4"]["method"] == "auto"
    assert _addresses(loaded, "ipv4") == ["192.0.2.25/24", "192.0.2.26/24"]
    assert _addresses(loaded, "ipv6") == ["2001:db8::25/64", "2001:db8::26/64"]
    for cidr, _ in ADDED["nm"]:
        remove_address("eth0", cidr, manager="nm", root=root)
    remove_address("eth0", "2001:db8::26/64", manager="nm", root=root)
    ((_, text),) = nm.owners(root, "eth0")
    done = _nm_reads(nmcli, text)
    assert done.returncode == 0, done.stderr
    assert not _addresses(nm.parse(done.stdout), "ipv4")


def test_nmcli_offline_agrees_a_disabled_method_takes_no_address(tmp_path: Path) -> None:
    nmcli = require("nmcli")
    root = make_tree(tmp_path, "nm")
    ((path, text),) = nm.owners(root, "eth0")
    disabled = text.replace("[ipv4]\nmethod=auto", "[ipv4]\nmethod=disabled")
    path.write_text(disabled)
    with pytest.raises(PersistError, match="method=disabled takes no static address"):
        persist_address("eth0", "192.0.2.25/24", manager="nm", root=root)
    # What the writer would have made of it, NetworkManager refuses too.
    made = disabled.replace("method=disabled\n", "method=disabled\naddress1=192.0.2.25/24\n", 1)
    done = _nm_reads(nmcli, made)
    assert done.returncode != 0
    assert "ipv4.addresses" in done.stderr
