"""Auto-detection: which manager really configures the interface, and the reason given."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.netconfig.persist import PersistError, detect_manager, persist_address
from tests.netconfig.test_persist import make_tree, snapshot

REASONS = {
    "netplan": "netplan: /etc/netplan/50-cloud-init.yaml names eth0 (ethernets: eth0)",
    "ifupdown": "ifupdown: /etc/network/interfaces has 'iface eth0'",
    "ifcfg": "ifcfg: /etc/sysconfig/network-scripts/ifcfg-eth0",
    "nm": (
        "NetworkManager: a keyfile in /etc/NetworkManager/system-connections/ "
        "has interface-name=eth0"
    ),
    "networkd": "systemd-networkd: /etc/systemd/network/10-eth0.network matches Name=eth0",
}


@pytest.mark.parametrize("manager", sorted(REASONS))
def test_each_manager_is_recognised(tmp_path: Path, manager: str) -> None:
    root = make_tree(tmp_path, manager)
    assert detect_manager("eth0", root) == (manager, REASONS[manager])
    result = persist_address("eth0", "192.0.2.25/24", root=root)
    assert (result.manager, result.reason) == (manager, REASONS[manager])
    with pytest.raises(PersistError, match="no network manager configures eth1 under"):
        detect_manager("eth1", root)


def test_nothing_configures_it(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(PersistError, match="choose one with --persist"):
        persist_address("eth0", "192.0.2.25/24", root=tmp_path)
    assert snapshot(tmp_path) == before


def test_netplan_wins_over_what_it_renders(tmp_path: Path) -> None:
    root = make_tree(tmp_path, "netplan")
    rendered = root / "run/systemd/network/10-netplan-eth0.network"
    rendered.parent.mkdir(parents=True)
    rendered.write_text("[Match]\nName=eth0\n")
    assert detect_manager("eth0", root)[0] == "netplan"


def test_ifupdown_wins_over_networkmanager(tmp_path: Path) -> None:
    # Debian's NetworkManager leaves interfaces in /etc/network/interfaces alone.
    root = make_tree(make_tree(tmp_path, "nm"), "ifupdown")
    assert detect_manager("eth0", root)[0] == "ifupdown"


def test_sourced_files_and_devices_named_inside(tmp_path: Path) -> None:
    main = tmp_path / "etc/network/interfaces"
    main.parent.mkdir(parents=True)
    main.write_text("source-directory /etc/network/interfaces.d\n")
    (tmp_path / "etc/network/interfaces.d").mkdir()
    (tmp_path / "etc/network/interfaces.d/uplink").write_text("iface eth0 inet dhcp\n")
    assert detect_manager("eth0", tmp_path) == (
        "ifupdown",
        "ifupdown: /etc/network/interfaces.d/uplink has 'iface eth0'",
    )
    script = tmp_path / "etc/sysconfig/network-scripts/ifcfg-uplink"
    script.parent.mkdir(parents=True)
    script.write_text("DEVICE=em1\n")
    assert detect_manager("em1", tmp_path) == (
        "ifcfg",
        "ifcfg: /etc/sysconfig/network-scripts/ifcfg-uplink has DEVICE=em1",
    )


def test_networkd_name_globs(tmp_path: Path) -> None:
    directory = tmp_path / "etc/systemd/network"
    directory.mkdir(parents=True)
    (directory / "20-wired.network").write_text("[Match]\nName=en* eth*\n")
    (directory / "10-not-lo.network").write_text("[Match]\nName=!lo en* eth*\n")
    (directory / "05-by-mac.network").write_text("[Match]\nMACAddress=52:54:00:12:34:56\n")
    assert detect_manager("eth0", tmp_path)[1].endswith("20-wired.network matches Name=eth0")
    assert detect_manager("enp1s0", tmp_path)[1].endswith("20-wired.network matches Name=enp1s0")
    assert detect_manager("wg0", tmp_path)[1].endswith("10-not-lo.network matches Name=wg0")
    with pytest.raises(PersistError):
        detect_manager("lo", tmp_path)
