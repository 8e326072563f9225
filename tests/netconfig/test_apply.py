"""``apply``: the declared addresses put on a veth link in a namespace the test made."""

from __future__ import annotations

from pathlib import Path

from mailstead.config import DeclaredAddress
from mailstead.netconfig.apply import apply
from tests.netconfig.conftest import Pair


def _debian_root(root: Path) -> Path:
    """A tree whose /etc/network/interfaces reads interfaces.d/, as Debian's does."""
    (root / "etc/network").mkdir(parents=True)
    (root / "etc/network/interfaces").write_text("source /etc/network/interfaces.d/*\n")
    return root


def _declared(pair: Pair) -> list[DeclaredAddress]:
    return [
        DeclaredAddress(pair.iface, "10.66.0.5/24", label=f"{pair.iface}:mail"),
        DeclaredAddress(pair.iface, "2001:db8:66::5/64", persist="ifupdown"),
        DeclaredAddress(pair.iface, "10.66.1.7/24"),  # there already
        DeclaredAddress(pair.iface, "10.66.2.8/24"),  # there with another prefix
        DeclaredAddress("nope0", "10.66.3.9/24"),
    ]


def test_dry_run_changes_nothing(pair: Pair, tmp_path: Path) -> None:
    pair.run("addr", "add", "10.66.1.7/24", "dev", pair.iface)
    before = pair.cidrs()
    root = _debian_root(tmp_path)
    report = apply(_declared(pair)[:2], dry_run=True, netns=pair.ns, root=root)
    assert [(i.status, i.cidr) for i in report.items] == [
        ("would-add", "10.66.0.5/24"),
        ("would-add", "2001:db8:66::5/64"),
    ]
    assert report.items[1].persist is not None
    assert report.items[1].persist.startswith("ifupdown (would write;")
    assert "+    up ip -6 addr add 2001:db8:66::5/64 dev v0" in report.items[1].diff
    assert report.undeclared == ["v0 10.66.1.7/24"]
    assert pair.cidrs() == before
    assert not (root / "etc/network/interfaces.d").exists()


def test_apply_adds_reports_and_never_removes(pair: Pair, tmp_path: Path) -> None:
    pair.run("addr", "add", "10.66.1.7/24", "dev", pair.iface)
    pair.run("addr", "add", "10.66.2.8/16", "dev", pair.iface)
    pair.run("addr", "add", "10.66.9.9/24", "dev", pair.iface)  # not declared

    root = _debian_root(tmp_path)
    report = apply(_declared(pair), netns=pair.ns, root=root)

    assert [(i.status, i.cidr) for i in report.items] == [
        ("added", "10.66.0.5/24"),
        ("added", "2001:db8:66::5/64"),
        ("present", "10.66.1.7/24"),
        ("differs", "10.66.2.8/24"),
        ("error", "10.66.3.9/24"),
    ]
    assert not report.ok
    assert report.items[3].message == "v0 has it as 10.66.2.8/16"
    assert report.items[4].message == "no interface named 'nope0'"
    assert report.undeclared == ["v0 10.66.9.9/24"]
    assert pair.cidrs() == {
        "10.66.0.5/24",
        "2001:db8:66::5/64",
        "10.66.1.7/24",
        "10.66.2.8/16",
        "10.66.9.9/24",
    }
    [labelled] = [a for a in pair.addrs() if a["local"] == "10.66.0.5"]
    assert labelled["label"] == "v0:mail"
    written = list((root / "etc/network/interfaces.d").iterdir())
    assert written and all("2001:db8:66::5/64" in p.read_text() for p in written)

    text = report.to_text()
    assert text.splitlines()[0] == "added: v0 10.66.0.5/24: added 10.66.0.5/24 label v0:mail to v0"
    assert "not declared, left alone: v0 10.66.9.9/24" in text
    shown = report.to_json()
    assert shown["ok"] is False
    assert [a["status"] for a in shown["addresses"]][:3] == ["added", "added", "present"]

    again = apply(_declared(pair)[:3], netns=pair.ns, root=root)
    assert [i.status for i in again.items] == ["present"] * 3
    assert again.ok
    assert again.items[1].persist is not None
    assert again.items[1].persist.startswith("ifupdown (unchanged;")


def test_nothing_declared(pair: Pair) -> None:
    report = apply([], netns=pair.ns)
    assert report.ok
    assert report.to_text() == "nothing declared in [[network.addresses]]\n"
