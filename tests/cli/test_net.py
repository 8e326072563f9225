"""`mailstead net …` run in-process against network namespaces the tests made (hidden --netns)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

from tests.cli.runner import run
from tests.netconfig.netns import Pair, make_pair
from tests.tools import require


@pytest.fixture
def pair() -> Iterator[Pair]:
    yield from make_pair()


def net(config: Path, pair: Pair, *args: str) -> Result:
    return run(config, "net", "--netns", pair.ns, *args)


def _send_from(config: Path, address: str) -> None:
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('source_ip    = ""', f'source_ip = "{address}"'), "utf-8")


def test_add_show_del(config: Path, pair: Pair) -> None:
    added = net(config, pair, "add", "v0", "192.0.2.25/24", "--label", "v0:1")
    assert (added.exit_code, added.output) == (0, "added 192.0.2.25/24 label v0:1 to v0\n")
    assert pair.cidrs() == {"192.0.2.25/24"}
    again = net(config, pair, "add", "v0", "192.0.2.25/24", "--label", "v0:1")
    assert (again.exit_code, again.output) == (0, "192.0.2.25/24 is already on v0: nothing to do\n")

    shown = net(config, pair, "show")
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0] == "1: lo loopback unknown mtu 65536 00:00:00:00:00:00"
    assert "    inet 127.0.0.1/8 scope host" in lines
    assert "    inet 192.0.2.25/24 scope global label v0:1" in lines
    assert any(line.startswith(" v0 veth up mtu 1500 ", 2) for line in lines)

    gone = net(config, pair, "del", "v0", "192.0.2.25/24")
    assert (gone.exit_code, gone.output) == (0, "removed 192.0.2.25/24 from v0\n")
    assert pair.cidrs() == set()
    again = net(config, pair, "del", "v0", "192.0.2.25/24")
    assert (again.exit_code, again.output) == (0, "192.0.2.25/24 is not on v0: nothing to do\n")


def test_show_marks_what_mail_sends_from(config: Path, pair: Pair) -> None:
    _send_from(config, "192.0.2.25")
    assert net(config, pair, "add", "v0", "192.0.2.25/24").exit_code == 0
    assert net(config, pair, "add", "v0", "2001:db8::25/64").exit_code == 0
    text = net(config, pair, "show").output.splitlines()
    assert "    inet 192.0.2.25/24 scope global  [mail]" in text
    assert "    inet6 2001:db8::25/64 scope global" in text

    shown = net(config, pair, "show", "--json")
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    assert document["mail_missing"] == []
    (v0,) = [link for link in document["links"] if link["name"] == "v0"]
    assert set(v0) == {"name", "index", "state", "mac", "mtu", "kind", "addresses"}
    assert (v0["kind"], v0["mtu"], v0["state"]) == ("veth", 1500, "up")
    mine = [a for a in v0["addresses"] if a["scope"] == "global"]
    assert mine == [
        {
            "family": "inet",
            "address": "192.0.2.25",
            "prefix": 24,
            "cidr": "192.0.2.25/24",
            "label": "v0",
            "scope": "global",
            "flags": ["permanent"],
            "valid_lifetime": None,
            "preferred_lifetime": None,
            "mail": True,
        },
        {
            "family": "inet6",
            "address": "2001:db8::25",
            "prefix": 64,
            "cidr": "2001:db8::25/64",
            "label": "",
            "scope": "global",
            "flags": ["permanent"],
            "valid_lifetime": None,
            "preferred_lifetime": None,
            "mail": False,
        },
    ]


def test_show_names_a_mail_address_on_no_interface(config: Path, pair: Pair) -> None:
    _send_from(config, "198.51.100.7")
    shown = net(config, pair, "show")
    assert shown.output.endswith("mail sends from 198.51.100.7, which is on no interface\n")
    assert json.loads(net(config, pair, "show", "--json").output)["mail_missing"] == [
        "198.51.100.7"
    ]


def test_show_without_a_configuration(tmp_path: Path, pair: Pair) -> None:
    shown = net(tmp_path / "absent.toml", pair, "show", "--json")
    assert shown.exit_code == 0, shown.output
    assert [link["name"] for link in json.loads(shown.output)["links"]] == ["lo", "v0"]


def test_ipv6_add_waits_for_dad(config: Path, pair: Pair) -> None:
    added = net(config, pair, "add", "v0", "2001:DB8::0025/64")
    assert added.exit_code == 0, added.output
    assert added.output.startswith("added 2001:db8::25/64 to v0 (DAD passed in ")
    assert pair.cidrs() == {"2001:db8::25/64"}


def test_dad_failure_is_one_line(config: Path, pair: Pair) -> None:
    pair.run("addr", "add", "2001:db8::25/64", "dev", "v1", "nodad", ns=pair.peer_ns)
    failed = net(config, pair, "add", "v0", "2001:db8::25/64")
    assert (failed.exit_code, failed.output) == (
        1,
        "mailstead: DAD failed: another node on v0 uses 2001:db8::25; removed it\n",
    )


def test_dry_run_changes_nothing(config: Path, pair: Pair) -> None:
    planned = net(config, pair, "add", "v0", "192.0.2.25/24", "--dry-run")
    assert (planned.exit_code, planned.output) == (0, "would add 192.0.2.25/24 to v0\n")
    assert pair.cidrs() == set()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "v9", "192.0.2.25/24"), "no interface named 'v9'"),
        (("add", "v0", "192.0.2.25"),
         "bad CIDR '192.0.2.25': give the prefix length, as in 192.0.2.25/24"),
        (("add", "v0", "nonsense/24"),
         "bad CIDR 'nonsense/24': not an IPv4 or IPv6 address/prefix"),
        (("add", "v0", "192.0.2.25/24", "--label", "eth0:1"),
         "label 'eth0:1' must start with the interface name, as in v0:1"),
        (("add", "v0", "192.0.2.25/24", "--label", "v0:0123456789abc"),
         "label 'v0:0123456789abc' is 16 bytes; the kernel takes at most 15"),
        (("add", "v0", "127.0.0.1/8"), "127.0.0.1 is already on lo"),
        (("del", "v9", "192.0.2.25/24"), "no interface named 'v9'"),
    ],
)  # fmt: skip
def test_errors_are_one_line(config: Path, pair: Pair, args: tuple[str, ...], message: str) -> None:
    failed = net(config, pair, *args)
    assert (failed.exit_code, failed.output) == (1, f"mailstead: {message}\n")


def test_missing_namespace(config: Path) -> None:
    failed = run(config, "net", "--netns", "ms-no-such-namespace", "show")
    assert (failed.exit_code, failed.output) == (
        1,
        "mailstead: no network namespace named 'ms-no-such-namespace'\n",
    )


def test_missing_cap_net_admin_is_one_line(config: Path, pair: Pair) -> None:
    setpriv = require("setpriv")
    done = subprocess.run(
        [setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin", "--",
         sys.executable, "-m", "mailstead", "--config", str(config),
         "net", "--netns", pair.ns, "add", "v0", "192.0.2.25/24"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "mailstead: adding 192.0.2.25/24 to v0: not permitted (needs CAP_NET_ADMIN: run as root)\n",
    )
    assert pair.cidrs() == set()


def _ifupdown_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/network").mkdir(parents=True)
    (root / "etc/network/interfaces").write_text(
        "source /etc/network/interfaces.d/*\n\nauto v0\niface v0 inet manual\n", "utf-8"
    )
    return root


def test_add_and_del_persist_in_a_tree(config: Path, pair: Pair, tmp_path: Path) -> None:
    root = _ifupdown_root(tmp_path)
    args = ("v0", "192.0.2.25/24", "--label", "v0:1", "--persist", "auto", "--root", str(root))
    planned = net(config, pair, "add", *args, "--dry-run")
    assert planned.exit_code == 0, planned.output
    assert planned.output.splitlines()[:4] == [
        "would add 192.0.2.25/24 label v0:1 to v0",
        "persist: ifupdown: /etc/network/interfaces has 'iface v0'",
        "--- /dev/null",
        "+++ /etc/network/interfaces.d/mailstead-v0",
    ]
    assert "+iface v0:1 inet static" in planned.output.splitlines()
    assert not (root / "etc/network/interfaces.d").exists()
    assert pair.cidrs() == set()

    added = net(config, pair, "add", *args)
    written = root / "etc/network/interfaces.d/mailstead-v0"
    assert added.output.splitlines() == [
        "added 192.0.2.25/24 label v0:1 to v0",
        "persist: ifupdown: /etc/network/interfaces has 'iface v0'",
        f"created {written}",
    ]
    assert "    address 192.0.2.25/24\n" in written.read_text("utf-8")
    assert pair.cidrs() == {"192.0.2.25/24"}

    gone = net(
        config, pair, "del", "v0", "192.0.2.25/24", "--persist", "ifupdown", "--root", str(root)
    )
    assert gone.output.splitlines() == [
        "removed 192.0.2.25/24 from v0",
        "persist: ifupdown: chosen with --persist ifupdown",
        f"removed {written}",
    ]
    assert not written.exists() and pair.cidrs() == set()


def test_persist_that_cannot_be_written_changes_nothing_live(
    config: Path, pair: Pair, tmp_path: Path
) -> None:
    failed = net(
        config, pair, "add", "v0", "192.0.2.25/24", "--persist", "auto", "--root", str(tmp_path)
    )
    assert failed.exit_code == 1
    assert failed.output.startswith("mailstead: no network manager configures v0 under ")
    assert pair.cidrs() == set()


def test_root_without_persist(config: Path, pair: Pair, tmp_path: Path) -> None:
    failed = net(config, pair, "add", "v0", "192.0.2.25/24", "--root", str(tmp_path))
    assert (failed.exit_code, failed.output) == (
        1,
        "mailstead: --root names where --persist writes: give --persist too\n",
    )


def test_apply_adds_what_is_declared(config: Path, pair: Pair) -> None:
    with config.open("a", encoding="utf-8") as f:
        f.write('\n[[network.addresses]]\niface = "v0"\ncidr = "192.0.2.25/24"\nlabel = "v0:1"\n')
    planned = net(config, pair, "apply", "--dry-run")
    assert (planned.exit_code, planned.output) == (
        0,
        "would-add: v0 192.0.2.25/24: would add 192.0.2.25/24 label v0:1 to v0\n",
    )
    assert pair.cidrs() == set()
    applied = net(config, pair, "apply", "--json")
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.output)["addresses"][0]["status"] == "added"
    assert pair.cidrs() == {"192.0.2.25/24"}


def test_dhcp_on_a_missing_interface(config: Path, pair: Pair) -> None:
    failed = net(config, pair, "dhcp", "v9")
    assert (failed.exit_code, failed.output) == (1, "mailstead: no interface named 'v9'\n")
