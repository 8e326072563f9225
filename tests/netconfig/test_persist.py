"""Every persistence writer in a temporary root: golden files, read back, round trips, dry runs.

Each manager starts from the tree a freshly installed host has (the admin's
own file naming ``eth0``); the tests add and remove addresses and compare
what is written with ``golden/<manager>/``, byte for byte. Validation by the
managers' own tools is in ``test_persist_tools.py``.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mailstead.netconfig.live import NetconfigError
from mailstead.netconfig.persist import (
    MARKER,
    PersistError,
    ifcfg,
    ifupdown,
    netplan,
    networkd,
    nm,
    persist_address,
    remove_address,
)

GOLDEN = Path(__file__).parent / "golden"

#: The admin's own files per manager, as a fresh install has them.
BASE: dict[str, dict[str, str]] = {
    "ifupdown": {
        "etc/network/interfaces": (
            "# The loopback network interface\n"
            "source /etc/network/interfaces.d/*\n\n"
            "auto lo\niface lo inet loopback\n\n"
            "allow-hotplug eth0\niface eth0 inet dhcp\n"
        ),
    },
    "ifcfg": {
        "etc/sysconfig/network-scripts/ifcfg-eth0": (
            'DEVICE=eth0\nBOOTPROTO=dhcp\nONBOOT=yes\nTYPE=Ethernet\nNAME="System eth0"\n'
        ),
    },
    "nm": {
        "etc/NetworkManager/system-connections/Wired connection 1.nmconnection": (
            "[connection]\n"
            "id=Wired connection 1\n"
            "uuid=2a5a0f3c-3f4e-4f7e-9d0b-6a1c1f0e9b11\n"
            "type=ethernet\n"
            "interface-name=eth0\n"
            "\n"
            "[ethernet]\n"
            "\n"
            "[ipv4]\n"
            "method=auto\n"
            "\n"
            "[ipv6]\n"
            "addr-gen-mode=default\n"
            "method=auto\n"
            "\n"
            "[proxy]\n"
        ),
    },
    "netplan": {
        "etc/netplan/50-cloud-init.yaml": (
            "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n"
        ),
    },
    "networkd": {
        "etc/systemd/network/10-eth0.network": "[Match]\nName=eth0\n\n[Network]\nDHCP=yes\n",
    },
}

#: What the golden scenario adds, per manager: (cidr, label).
ADDED: dict[str, list[tuple[str, str | None]]] = {
    "ifupdown": [("192.0.2.25/24", "eth0:1"), ("192.0.2.26/24", None), ("2001:db8::25/64", None)],
    "ifcfg": [("192.0.2.25/24", "eth0:1"), ("192.0.2.26/24", None)],
    "nm": [("192.0.2.25/24", None), ("192.0.2.26/24", None), ("2001:db8::25/64", None)],
    "netplan": [("192.0.2.25/24", "eth0:1"), ("192.0.2.26/24", None), ("2001:db8::25/64", None)],
    "networkd": [("192.0.2.25/24", "eth0:1"), ("192.0.2.26/24", None), ("2001:db8::25/64", None)],
}

MANAGERS = sorted(BASE)


def make_tree(root: Path, manager: str) -> Path:
    """``root`` holding the admin's files for ``manager``."""
    for name, text in BASE[manager].items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600 if manager in ("nm", "netplan") else 0o644)
    return root


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: its text and permission bits."""
    return {
        p.relative_to(root).as_posix(): (
            p.read_text(encoding="utf-8"),
            stat.S_IMODE(p.stat().st_mode),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def add_all(root: Path, manager: str) -> None:
    for cidr, label in ADDED[manager]:
        persist_address("eth0", cidr, label=label, manager=manager, root=root)


def test_golden(tmp_path: Path, manager: str) -> None:
    root = make_tree(tmp_path, manager)
    before = snapshot(root)
    add_all(root, manager)
    after = snapshot(root)
    changed = {name: v for name, v in after.items() if before.get(name) != v}
    golden = GOLDEN / manager
    expected = {
        p.relative_to(golden).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(golden.rglob("*"))
        if p.is_file()
    }
    assert {name: text for name, (text, _) in changed.items()} == expected
    for name, (_, mode) in changed.items():
        assert mode == (0o600 if manager in ("nm", "netplan") else 0o644), name


@pytest.fixture(params=MANAGERS)
def manager(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def read_back(root: Path, manager: str) -> list[tuple[str, str | None]]:
    """The addresses the manager's files hold for eth0 beyond the admin's, read by our readers."""
    if manager == "ifupdown":
        text = (root / "etc/network/interfaces.d/mailstead-eth0").read_text()
        return ifupdown.read_entries(text)
    if manager == "ifcfg":
        found: list[tuple[str, str | None]] = []
        for path in sorted((root / ifcfg.DIRECTORY).glob("ifcfg-eth0:*")):
            values = ifcfg.read_variables(path.read_text())
            found.append((f"{values['IPADDR']}/{values['PREFIX']}", values["DEVICE"]))
        return found
    if manager == "nm":
        ((_, text),) = nm.owners(root, "eth0")
        keyfile = nm.parse(text)
        return [
            (value, None)
            for group in ("ipv4", "ipv6")
            for key, value in keyfile.items(group)
            if key.startswith("address")
        ]
    if manager == "netplan":
        model = netplan.read_entries((root / netplan.FILE).read_text())
        return model["ethernets"]["eth0"]
    path = root / "etc/systemd/network/10-eth0.network.d" / networkd.DROP_IN
    return networkd.read_entries(path.read_text())


def test_read_back(tmp_path: Path, manager: str) -> None:
    root = make_tree(tmp_path, manager)
    add_all(root, manager)
    expected = ADDED[manager]
    if manager == "ifcfg":  # the file name is the label: the unlabelled address got eth0:0
        expected = [("192.0.2.26/24", "eth0:0"), ("192.0.2.25/24", "eth0:1")]
    assert read_back(root, manager) == expected


def test_add_is_idempotent_and_remove_restores(tmp_path: Path, manager: str) -> None:
    root = make_tree(tmp_path, manager)
    original = snapshot(root)
    (first, label), (second, _) = ADDED[manager][:2]
    result = persist_address("eth0", first, label=label, manager=manager, root=root)
    assert result.changed and result.manager == manager
    once = snapshot(root)
    again = persist_address("eth0", first, label=label, manager=manager, root=root)
    assert (again.files, again.diff) == ([], "")
    assert snapshot(root) == once
    persist_address("eth0", second, manager=manager, root=root)
    removed = remove_address("eth0", first, manager=manager, root=root)
    assert [after for _, _, after in removed.files] != []
    assert read_back(root, manager) == [(second, "eth0:0" if manager == "ifcfg" else None)]
    remove_address("eth0", second, manager=manager, root=root)
    assert snapshot(root) == original
    nothing = remove_address("eth0", second, manager=manager, root=root)
    assert (nothing.files, nothing.diff) == ([], "")


def test_dry_run_writes_nothing_and_shows_the_diff(tmp_path: Path, manager: str) -> None:
    root = make_tree(tmp_path / "a", manager)
    twin = make_tree(tmp_path / "b", manager)
    cidr, label = ADDED[manager][0]
    before = snapshot(root)
    dry = persist_address("eth0", cidr, label=label, manager=manager, root=root, dry_run=True)
    assert snapshot(root) == before
    real = persist_address("eth0", cidr, label=label, manager=manager, root=twin)
    assert dry.diff == real.diff and dry.diff.startswith("--- ")
    assert [(p.relative_to(root), b, a) for p, b, a in dry.files] == [
        (p.relative_to(twin), b, a) for p, b, a in real.files
    ]
    undo = remove_address("eth0", cidr, manager=manager, root=twin, dry_run=True)
    assert "\n-" in undo.diff and snapshot(twin) != before


def test_dry_run_diff_golden(tmp_path: Path) -> None:
    root = make_tree(tmp_path, "nm")
    result = persist_address("eth0", "192.0.2.25/24", manager="nm", root=root, dry_run=True)
    assert result.diff == (GOLDEN / "nm-add.diff").read_text()


def test_files_carry_the_marker(tmp_path: Path, manager: str) -> None:
    root = make_tree(tmp_path, manager)
    add_all(root, manager)
    for name, (text, _) in snapshot(root).items():
        if name not in BASE[manager] or manager == "nm":
            assert MARKER in text, name


# Foreign files: the marker is missing, so Mailstead refuses or looks past them.

FOREIGN = {
    "ifupdown": "etc/network/interfaces.d/mailstead-eth0",
    "netplan": "etc/netplan/90-mailstead.yaml",
    "networkd": "etc/systemd/network/10-eth0.network.d/mailstead.conf",
}


@pytest.mark.parametrize("owner", sorted(FOREIGN))
def test_a_foreign_file_in_our_place_is_left_alone(tmp_path: Path, owner: str) -> None:
    root = make_tree(tmp_path, owner)
    path = root / FOREIGN[owner]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# the admin's own\n")
    before = snapshot(root)
    for call in (persist_address, remove_address):
        with pytest.raises(PersistError, match="not written by mailstead"):
            call("eth0", "192.0.2.25/24", manager=owner, root=root)
    assert snapshot(root) == before


def test_ifcfg_skips_foreign_aliases(tmp_path: Path) -> None:
    root = make_tree(tmp_path, "ifcfg")
    foreign = root / ifcfg.DIRECTORY / "ifcfg-eth0:0"
    foreign.write_text("DEVICE=eth0:0\nIPADDR=192.0.2.25\nPREFIX=24\n")
    result = persist_address("eth0", "192.0.2.25/24", manager="ifcfg", root=root)
    assert [p.name for p, _, _ in result.files] == ["ifcfg-eth0:1"]
    assert result.notes == ["ifcfg alias files name the address: it comes back as eth0:1"]
    with pytest.raises(PersistError, match="not written by mailstead"):
        persist_address("eth0", "192.0.2.26/24", label="eth0:0", manager="ifcfg", root=root)
    remove_address("eth0", "192.0.2.25/24", manager="ifcfg", root=root)
    assert foreign.read_text() == "DEVICE=eth0:0\nIPADDR=192.0.2.25\nPREFIX=24\n"
    assert not (root / ifcfg.DIRECTORY / "ifcfg-eth0:1").exists()


def test_nm_keeps_the_admins_lines(tmp_path: Path) -> None:
    root = make_tree(tmp_path, "nm")
    ((path, text),) = nm.owners(root, "eth0")
    path.write_text(
        text.replace("method=auto\n\n[ipv6]", "method=auto\naddress1=192.0.2.25/24\n\n[ipv6]")
    )
    own = path.read_text()
    # The admin already has it: nothing to add, and nothing of ours to remove.
    assert persist_address("eth0", "192.0.2.25/24", manager="nm", root=root).files == []
    assert remove_address("eth0", "192.0.2.25/24", manager="nm", root=root).files == []
    persist_address("eth0", "192.0.2.26/24", manager="nm", root=root)
    assert "address2=192.0.2.26/24" in path.read_text()
    remove_address("eth0", "192.0.2.26/24", manager="nm", root=root)
    assert path.read_text() == own


def test_labels_move(tmp_path: Path) -> None:
    for manager in ("ifcfg", "netplan", "networkd", "ifupdown"):
        root = make_tree(tmp_path / manager, manager)
        persist_address("eth0", "192.0.2.25/24", label="eth0:1", manager=manager, root=root)
        persist_address("eth0", "192.0.2.25/24", label="eth0:7", manager=manager, root=root)
        assert read_back(root, manager) == [("192.0.2.25/24", "eth0:7")], manager


def test_nm_notes_a_label_it_cannot_keep(tmp_path: Path) -> None:
    root = make_tree(tmp_path, "nm")
    result = persist_address("eth0", "192.0.2.25/24", label="eth0:1", manager="nm", root=root)
    assert result.notes == ["NetworkManager keyfiles keep no address label; eth0:1 is dropped"]


@pytest.mark.parametrize(
    ("manager", "cidr", "label", "message"),
    [
        ("ifcfg", "2001:db8::25/64", None, "IPV6ADDR_SECONDARIES of ifcfg-eth0"),
        ("netplan", "2001:db8::25/64", "eth0:1", "IPv6 addresses carry no label"),
        ("netplan", "192.0.2.25", None, "give the prefix length"),
        ("netplan", "192.0.2.25/24", "eth1:1", "must start with the interface name"),
        ("ifcfg", "192.0.2.25/24", "eth0x", "labels look like eth0:1"),
        ("bogus", "192.0.2.25/24", None, "unknown network manager 'bogus'"),
    ],
)
def test_bad_requests(
    tmp_path: Path, manager: str, cidr: str, label: str | None, message: str
) -> None:
    root = make_tree(tmp_path, "ifcfg" if manager in ("ifcfg", "bogus") else manager)
    before = snapshot(root)
    with pytest.raises(NetconfigError, match=message):
        persist_address("eth0", cidr, label=label, manager=manager, root=root)
    assert snapshot(root) == before


def test_bad_interface_names(tmp_path: Path) -> None:
    for name in ("", "../etc", "eth0:1", "a" * 16):
        with pytest.raises(PersistError, match="not a valid interface name"):
            persist_address(name, "192.0.2.25/24", manager="netplan", root=tmp_path)


def test_nm_refuses_a_method_without_static_addresses(tmp_path: Path) -> None:
    root = make_tree(tmp_path, "nm")
    ((path, text),) = nm.owners(root, "eth0")
    path.write_text(text.replace("addr-gen-mode=default\nmethod=auto", "method=disabled"))
    with pytest.raises(PersistError, match=r"\[ipv6\] method=disabled takes no static address"):
        persist_address("eth0", "2001:db8::25/64", manager="nm", root=root)


def test_nm_needs_a_keyfile_bound_to_the_interface(tmp_path: Path) -> None:
    with pytest.raises(PersistError, match="interface-name=eth0"):
        persist_address("eth0", "192.0.2.25/24", manager="nm", root=tmp_path)


def test_ifupdown_needs_the_directory_sourced(tmp_path: Path) -> None:
    root = make_tree(tmp_path, "ifupdown")
    main = root / "etc/network/interfaces"
    main.write_text(main.read_text().replace("source /etc/network/interfaces.d/*\n", ""))
    with pytest.raises(PersistError, match=r"does not read /etc/network/interfaces\.d/"):
        persist_address("eth0", "192.0.2.25/24", manager="ifupdown", root=root)
    main.write_text("source-directory interfaces.d\n" + main.read_text())
    assert persist_address("eth0", "192.0.2.25/24", manager="ifupdown", root=root).changed


def test_netplan_and_networkd_need_a_definition(tmp_path: Path) -> None:
    with pytest.raises(PersistError, match="no netplan file defines eth0"):
        persist_address("eth0", "192.0.2.25/24", manager="netplan", root=tmp_path)
    with pytest.raises(PersistError, match=r"no \.network file .* matches Name=eth0"):
        persist_address("eth0", "192.0.2.25/24", manager="networkd", root=tmp_path)


def test_netplan_uses_the_defining_type_and_id(tmp_path: Path) -> None:
    path = tmp_path / "etc/netplan/01-bond.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(
        "network:\n  version: 2\n  ethernets:\n    nic0:\n      match: {name: 'en*'}\n"
        "  bonds:\n    bond0:\n      interfaces: [nic0]\n"
    )
    persist_address("bond0", "192.0.2.25/24", manager="netplan", root=tmp_path)
    persist_address("enp1s0", "192.0.2.26/24", manager="netplan", root=tmp_path)
    model = netplan.read_entries((tmp_path / netplan.FILE).read_text())
    assert model == {
        "bonds": {"bond0": [("192.0.2.25/24", None)]},
        "ethernets": {"nic0": [("192.0.2.26/24", None)]},
    }


def test_writes_are_atomic_leaving_no_temporary_files(tmp_path: Path, manager: str) -> None:
    root = make_tree(tmp_path, manager)
    add_all(root, manager)
    assert not [p for p in root.rglob(".*") if p.name.endswith(".tmp")]


def test_re_adding_an_earlier_address_changes_nothing(tmp_path: Path, manager: str) -> None:
    root = make_tree(tmp_path, manager)
    add_all(root, manager)
    before = snapshot(root)
    for cidr, label in ADDED[manager]:
        assert persist_address("eth0", cidr, label=label, manager=manager, root=root).files == []
    assert snapshot(root) == before


def test_an_edited_file_of_ours_gives_a_one_line_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path, "networkd")
    add_all(root, "networkd")
    path = root / "etc/systemd/network/10-eth0.network.d" / networkd.DROP_IN
    path.write_text(path.read_text().replace("192.0.2.26/24", "192.0.2.300/24"))
    with pytest.raises(PersistError, match=r"mailstead\.conf: cannot read it back"):
        persist_address("eth0", "192.0.2.27/24", manager="networkd", root=root)
    root = make_tree(tmp_path / "np", "netplan")
    (root / netplan.FILE).write_text(f"{MARKER}\nnetwork: [\n")
    with pytest.raises(PersistError, match=r"90-mailstead\.yaml: cannot read it back"):
        persist_address("eth0", "192.0.2.27/24", manager="netplan", root=root)
    root = make_tree(tmp_path / "ifu", "ifupdown")
    persist_address("eth0", "192.0.2.25/24", label="eth0:1", manager="ifupdown", root=root)
    with pytest.raises(PersistError, match="alias labels look like eth0:1, not eth0x"):
        persist_address("eth0", "192.0.2.26/24", label="eth0x", manager="ifupdown", root=root)
