"""netplan: a drop-in ``/etc/netplan/90-mailstead.yaml`` that adds to the interface's addresses.

netplan reads every ``*.yaml`` in ``/lib/netplan``, ``/etc/netplan`` and
``/run/netplan`` in the lexical order of their names (a name in ``/run``
shadows the same name in ``/etc``, which shadows ``/lib``) and merges them:
mappings merge, sequences such as ``addresses`` are concatenated
(netplan(5), "hierarchy of configuration files"). The drop-in names the
device under the same type and ID as the file that defines it, so it only
adds addresses; a label is the address's ``label`` option (netplan 0.100
and later). The file is Mailstead's own, mode 0600 as ``netplan`` asks of
files holding configuration, and is removed when its last address goes.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import yaml

from mailstead.netconfig.persist.model import (
    HEADER,
    Change,
    PersistError,
    Request,
    is_ours,
    read_text,
)

__all__ = ["FILE", "definition", "plan", "read_entries"]

FILE = Path("etc/netplan/90-mailstead.yaml")
_DIRECTORIES = ("lib/netplan", "etc/netplan", "run/netplan")  # lowest priority first
_DEVICE_TYPES = (
    "ethernets", "wifis", "bonds", "bridges", "vlans", "tunnels", "vrfs",
    "modems", "dummy-devices", "virtual-ethernets", "nm-devices",
)  # fmt: skip

Entry = tuple[str, str | None]  # (cidr, label)
# device type -> netplan ID -> addresses
Model = dict[str, dict[str, list[Entry]]]


def files(root: Path) -> list[Path]:
    """The YAML files netplan reads, in the order it merges them."""
    by_name: dict[str, Path] = {}
    for directory in _DIRECTORIES:
        for path in (root / directory).glob("*.yaml"):
            by_name[path.name] = path
    return [by_name[name] for name in sorted(by_name)]


def _load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(read_text(path) or "")
    except yaml.YAMLError:
        return {}
    network = data.get("network") if isinstance(data, dict) else None
    return network if isinstance(network, dict) else {}


def _matches(netplan_id: str, device: object, iface: str) -> bool:
    if not isinstance(device, dict):
        return netplan_id == iface
    match = device.get("match")
    if device.get("set-name") == iface:
        return True
    if isinstance(match, dict):
        name = match.get("name")
        return isinstance(name, str) and fnmatch.fnmatchcase(iface, name)
    return netplan_id == iface


def definition(root: Path, iface: str, *, skip: Path | None = None) -> tuple[str, str, Path] | None:
    """The (device type, netplan ID, file) of the first definition that covers ``iface``."""
    for path in files(root):
        if path == skip:
            continue
        network = _load(path)
        for kind in _DEVICE_TYPES:
            devices = network.get(kind)
            if not isinstance(devices, dict):
                continue
            for netplan_id, device in devices.items():
                if _matches(str(netplan_id), device, iface):
                    return kind, str(netplan_id), path
    return None


def read_entries(text: str) -> Model:
    """The addresses a Mailstead drop-in holds, by device type and ID."""
    data = yaml.safe_load(text) or {}
    model: Model = {}
    for kind, devices in (data.get("network") or {}).items():
        if kind not in _DEVICE_TYPES:
            continue
        for netplan_id, device in devices.items():
            entries = model.setdefault(kind, {}).setdefault(str(netplan_id), [])
            for item in device.get("addresses") or []:
                if isinstance(item, dict):
                    ((cidr, options),) = item.items()
                    entries.append((str(cidr), (options or {}).get("label")))
                else:
                    entries.append((str(item), None))
    return model


def _render(model: Model) -> str:
    # JSON strings are YAML 1.2 double-quoted scalars: every name and
    # address is quoted, so none can turn into another type.
    q = json.dumps
    out = [HEADER, "network:", "  version: 2"]
    for kind, devices in model.items():
        out.append(f"  {kind}:")
        for netplan_id, entries in devices.items():
            out += [f"    {q(netplan_id)}:", "      addresses:"]
            for cidr, label in entries:
                if label is None:
                    out.append(f"        - {q(cidr)}")
                else:
                    out += [f"        - {q(cidr)}:", f"            label: {q(label)}"]
    return "\n".join(out) + "\n"


def plan(root: Path, request: Request, *, add: bool) -> list[Change]:
    """The drop-in with the address added or removed."""
    path = root / FILE
    before = read_text(path)
    if before is not None and not is_ours(before):
        raise PersistError(f"/{FILE} was not written by mailstead; left alone")
    try:
        model = read_entries(before) if before is not None else {}
    except (yaml.YAMLError, AttributeError, TypeError, ValueError) as exc:
        raise PersistError(f"/{FILE}: cannot read it back ({exc})") from None
    kept: Model = {
        kind: {i: [e for e in entries if e[0] != request.cidr] for i, entries in devices.items()}
        for kind, devices in model.items()
    }
    if add:
        found = definition(root, request.iface, skip=path)
        if found is None:
            raise PersistError(f"no netplan file defines {request.iface}; add it to one first")
        kind, netplan_id, _ = found
        if (request.cidr, request.label) in model.get(kind, {}).get(netplan_id, []):
            return []
        kept.setdefault(kind, {}).setdefault(netplan_id, []).append((request.cidr, request.label))
    kept = {
        kind: {i: entries for i, entries in devices.items() if entries}
        for kind, devices in kept.items()
    }
    kept = {kind: devices for kind, devices in kept.items() if devices}
    return [Change(path, before, _render(kept) if kept else None, 0o600)]
