"""``mailstead check config``: every problem of a configuration, with its key and reason.

The loader (:mod:`mailstead.config`) stops at the first mistake, which is
right for ``serve`` and slow for an operator fixing a file: fix, run, read
the next line, again. Here the loader runs on the parsed file again and
again; each time it refuses a key, the problem is recorded and that key is
taken out (back to its default), until the rest loads. Every refusal is
then the loader's own words, and nothing it validates is re-implemented.

What the loader cannot know is checked on the loaded configuration: the
hostname (``localhost``), the TLS certificate and key
(:mod:`mailstead.checks.tls`), whether each listening address can be bound,
whether the outbound source addresses are on this host, and the cluster
database (:mod:`mailstead.checks.database`).
"""

from __future__ import annotations

import copy
import errno
import ipaddress
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailstead.checks.database import database_problems
from mailstead.checks.problem import Problem
from mailstead.checks.tls import certificate_problems
from mailstead.config import Config, ConfigError, HostPort, load_config
from mailstead.config.reader import Reader
from mailstead.config.root import build_config

__all__ = ["ConfigReport", "Problem", "check_config", "hostname_warning"]

# Each pass takes one key out, so this bounds the passes for a hostile file.
_MAX_PROBLEMS = 200
# Stands in for a refused ``domains`` so the sections after it are still read.
_PLACEHOLDER_DOMAINS = ["domains.invalid"]


@dataclass(slots=True)
class ConfigReport:
    """What :func:`check_config` found in one configuration file."""

    path: Path
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def hostname_warning(hostname: str) -> str | None:
    """Why ``hostname`` will not do on the Internet, or None when it may."""
    if hostname == "localhost" or hostname.endswith(".localhost"):
        # RFC 6761 §6.3: localhost names the host itself everywhere; no
        # peer can reach it, and EHLO, MX and PTR records need a real name.
        return (
            f'is "{hostname}", a name no other host can reach: set hostname = '
            '"mail.example.com" in the config (the banner, EHLO, MX and PTR records use it)'
        )
    return None


def check_config(path: Path) -> ConfigReport:
    """Load ``path`` as ``serve`` does and check everything ``serve`` will depend on."""
    report = ConfigReport(path)
    try:
        config = load_config(path)
        pruned: set[str] = set()
    except ConfigError as exc:
        loaded = _load_pruned(path, str(exc))
        report.problems += loaded.problems
        if loaded.config is None:
            return report
        config, pruned = loaded.config, loaded.pruned

    if "hostname" not in pruned and (text := hostname_warning(config.hostname)):
        report.problems.append(Problem("warning", "hostname", text))
    if not pruned & {"tls", "data_dir", "listen"}:
        report.problems += certificate_problems(config)
    if "listen" not in pruned:
        report.problems += listen_problems(config)
    if "delivery" not in pruned:
        report.problems += _source_problems(config)
    if "storage" not in pruned:
        report.problems += database_problems(config)
    return report


@dataclass(slots=True)
class _Pruned:
    problems: list[Problem]
    config: Config | None
    pruned: set[str]  # top-level keys something was taken out of


def _load_pruned(path: Path, first: str) -> _Pruned:
    """Every refusal of the loader, taking each refused key out in turn."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, ValueError):
        # The file itself cannot be read or parsed: the loader's line says so.
        return _Pruned([Problem("error", "", first)], None, set())
    source = str(path)
    data = copy.deepcopy(data)
    origins: dict[int, list[int]] = {}  # id(list) -> original index of each item left
    problems: list[Problem] = []
    pruned: set[str] = set()
    removed: set[str] = set()  # keys taken out, numbered as in the file
    for _ in range(_MAX_PROBLEMS):
        try:
            config = build_config(data, path.absolute(), Reader(source))
        except ConfigError as exc:
            text = str(exc).removeprefix(f"{source}: ")
            key, _, reason = text.partition(": ")
            if key == "domains":  # required: a stand-in lets the rest be read
                problems.append(Problem("error", key, reason))
                pruned.add(key)
                data["domains"] = list(_PLACEHOLDER_DOMAINS)
                continue
            slots = list(_walk(data, key))
            if not slots:
                return _Pruned([*problems, Problem("error", "", text)], None, pruned)
            rest = key[len(_key_text(slots, {})) :]  # the part missing from the file
            full = _key_text(slots, origins) + rest
            # A key required once its bad value was taken out: not the operator's.
            if full not in removed:
                problems.append(Problem("error", full, reason))
            removed.add(_key_text(slots, origins))
            pruned.add(str(slots[0][1]))
            _take_out(slots[-1], origins)
            continue
        return _Pruned(problems, config, pruned)
    problems.append(Problem("error", "", f"more than {_MAX_PROBLEMS} problems; fix these first"))
    return _Pruned(problems, None, pruned)


_Slot = tuple[dict[str, object] | list[object], str | int]


def _walk(data: dict[str, object], key: str) -> Iterator[_Slot]:
    """The (container, key or index) of each step of ``key`` that exists in ``data``.

    Key paths are the loader's: ``a.b[2].c``, where a table key may itself
    hold dots (``delivery.source_ip_by_domain.example.com``): the longest
    key present wins.
    """
    node: object = data
    rest = key
    while rest:
        if isinstance(node, list) and rest.startswith("["):
            end = rest.find("]")
            index_text = rest[1:end]
            if end < 0 or not index_text.isdigit() or int(index_text) >= len(node):
                return
            yield node, int(index_text)
            node, rest = node[int(index_text)], rest[end + 1 :]
        elif isinstance(node, dict):
            rest = rest.removeprefix(".")
            names = [
                name
                for name in node
                if rest.startswith(name) and rest[len(name) : len(name) + 1] in ("", ".", "[")
            ]
            if not names:
                return
            name = max(names, key=len)
            yield node, name
            node, rest = node[name], rest[len(name) :]
        else:
            return


def _key_text(slots: list[_Slot], origins: dict[int, list[int]]) -> str:
    """The key path of ``slots``, array items numbered as in ``origins`` (the file)."""
    out = ""
    for container, step in slots:
        if isinstance(step, int):
            out += f"[{origins.get(id(container), range(step + 1))[step]}]"
        else:
            out += f".{step}" if out else step
    return out


def _take_out(slot: _Slot, origins: dict[int, list[int]]) -> None:
    container, step = slot
    if isinstance(container, list) and isinstance(step, int):
        kept = origins.setdefault(id(container), list(range(len(container))))
        del kept[step]
        del container[step]
    elif isinstance(container, dict) and isinstance(step, str):
        del container[step]


def _show(address: HostPort) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _overlap(a: HostPort, b: HostPort) -> bool:
    """Whether binding both fails: same port, and the same host or a wildcard of its family."""
    if a[1] != b[1] or a[1] == 0:
        return False
    if a[0] == b[0]:
        return True
    try:
        ip_a, ip_b = ipaddress.ip_address(a[0]), ipaddress.ip_address(b[0])
    except ValueError:
        return False
    return ip_a.version == ip_b.version and (ip_a.is_unspecified or ip_b.is_unspecified)


def listen_problems(config: Config) -> list[Problem]:
    """Clashes between listeners, and addresses this host cannot bind now.

    An address in use or a privileged port is a warning: the server itself
    may be running, or started later as root or with CAP_NET_BIND_SERVICE.
    """
    from mailstead.app import LISTENERS  # in the order serve binds them
    from mailstead.net.listener import bind  # the very call serve makes

    problems: list[Problem] = []
    seen: list[tuple[str, HostPort]] = []
    for listener in LISTENERS:
        addresses: tuple[HostPort, ...] = getattr(config.listen, listener)
        for address in addresses:
            key = f"listen.{listener}"
            clash = next((name for name, other in seen if _overlap(address, other)), None)
            seen.append((key, address))
            if clash is not None:
                reason = f"clashes with {clash}: both cannot listen there"
                problems.append(Problem("error", key, reason, _show(address)))
                continue
            try:
                bind(address, backlog=1).close()
            except OSError as exc:
                problems.append(_bind_problem(key, address, exc))
    return problems


def _bind_problem(key: str, address: HostPort, exc: OSError) -> Problem:
    where = _show(address)
    if exc.errno == errno.EADDRINUSE:
        return Problem("warning", key, "address already in use", where)
    if exc.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        return Problem("warning", key, reason, where)
    if exc.errno == errno.EADDRNOTAVAIL:
        return Problem("error", key, "not an address of this host", where)
    return Problem("error", key, exc.strerror or str(exc), where)


def _source_problems(config: Config) -> list[Problem]:
    from mailstead.app import SourceAddressError, check_source_addresses

    try:
        check_source_addresses(config)
    except SourceAddressError as exc:
        key, _, reason = str(exc).partition(": ")
        return [Problem("error", key, reason)]
    return []
