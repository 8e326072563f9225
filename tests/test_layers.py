"""Imports run downhill, in no circle, and proto/ does no I/O: the layers, read from the code.

Every module under ``src/mailstead`` is parsed (none is imported) and its
``mailstead`` imports collected: at the top, inside functions, and under
``if TYPE_CHECKING:``. Each must reach a module of its own layer or of one
below it in :data:`LAYERS` (docs/architecture.md, "Layers", explains them).
Circles are looked for among the imports that run, not the
``TYPE_CHECKING`` ones, which exist for the type checker only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom first: a module may import modules of its own row and of the rows
# before it. A name ending in ".*" is a package and everything in it; other
# names are single modules. A new module must be placed here.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Leaf pieces every layer may use; they import only each other.
    (
        "base",
        (
            "mailstead",  # the package itself: a version string
            "mailstead.limits",  # every size, count and time bound
            "mailstead.peertext",  # cleaning peer text for logs and headers
            "mailstead.addresses",  # canonical forms of mail addresses
            "mailstead.clock",  # the Clock interface and the system clock
            "mailstead.durable",  # fsync and atomic-write primitives
            "mailstead.dns",  # the Resolver interface and its dnspython implementation
            "mailstead.sqlite_wal",  # switching a shared SQLite database to WAL
            "mailstead.password_cache",  # recently verified passwords
            "mailstead.passwords",  # scrypt hashes of passwords
            "mailstead.peernet",  # the /24 or /64 a peer is counted in
            "mailstead.tlscert",  # the server certificate and its SSLContext
            "mailstead.sqlconn",  # the query face SQLite and psycopg connections share
            "mailstead.directory_db",  # the directory's rows: SQLite file or cluster database
            "mailstead.directory",  # domains, users, aliases (one set of queries)
            "mailstead.pgsql.*",  # the cluster database: pools, schema versions
            "mailstead.events",  # the event model and the EventSink interface
            "mailstead.logs",  # log lines: session/peer/queue id context, logfmt and JSON
        ),
    ),
    # Sans-IO state machines for SMTP, IMAP, POP3 and SASL (see SANS_IO).
    ("proto", ("mailstead.proto.*",)),
    # Typed settings from TOML; the layers above read their sections.
    ("config", ("mailstead.config.*",)),
    # Prometheus metrics: the counts the mail path keeps, shared by the workers.
    ("metrics", ("mailstead.metrics.*",)),
    # The host side of serving: leaving root, the data-dir lock, sd_notify, the unit.
    ("system", ("mailstead.system.*",)),
    # Building messages (trace header fields, composing) and rendering
    # templates for them.
    ("message", ("mailstead.message.*", "mailstead.templates.*")),
    # Maildir and mbox, the per-account index; implements proto's storage faces.
    ("store", ("mailstead.store.*",)),
    # DKIM signing and the DNS records to publish (SPF, DMARC, ARC to come).
    ("mailauth", ("mailstead.mailauth.*",)),
    # Interface addresses: live (netlink), DHCP, persistence writers.
    ("netconfig", ("mailstead.netconfig.*",)),
    # The MTA's decisions: receiver, queue, routing, outbound engine, DSNs.
    ("mta", ("mailstead.mta.*",)),
    # asyncio sessions, listeners, the SMTP client's sockets, the supervisor.
    ("net", ("mailstead.net.*",)),
    # Webhooks: the outbox and dispatcher the server runs, and the receiver
    # library applications import (its package imports nothing of ours).
    ("webhooks", ("mailstead.webhooks.*",)),
    # Backups of a data directory while serving, and restoring them.
    ("backup", ("mailstead.backup.*",)),
    # Moving a node's data into the cluster database and back (mailstead migrate).
    ("migrate", ("mailstead.migrate.*",)),
    # Automatic certificates (ACME, RFC 8555): orders, challenge responders,
    # renewal and the hot swap into the listeners' shared TLS context.
    ("acme", ("mailstead.acme_client.*",)),
    # Fakes for the tests (clock, DNS, transports, a Postfix peer).
    ("testing", ("mailstead.testing.*",)),
    # The control socket: the supervisor's answers to status/reload/stop/flush, and the client.
    ("control", ("mailstead.control.*",)),
    # Wires the services together and runs them.
    ("app", ("mailstead.app", "mailstead.daemon", "mailstead.cluster_schema")),
    # Checks of the configuration and of the published DNS (mailstead check).
    ("checks", ("mailstead.checks.*",)),
    # The command line, and ``python -m mailstead``.
    ("cli", ("mailstead.cli.*", "mailstead.__main__")),
)

# Imports that run uphill today, each to be removed once it is fixed: the
# test fails for a pair listed here that no longer occurs. Empty when
# issue 12 closes.
KNOWN_UPHILL: frozenset[tuple[str, str]] = frozenset()

# proto/ is sans-IO (docs/architecture.md): nothing it runs, in proto/ or
# in the base modules it uses, imports these.
SANS_IO = frozenset({"asyncio", "socket", "ssl", "os", "time", "threading"})


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's target, as seen in one module."""

    importer: str
    target: str  # a module name: absolute, and a submodule when one is named
    line: int
    type_checking: bool  # under ``if TYPE_CHECKING:``: never runs


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted((SRC / "mailstead").rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str) -> Iterator[tuple[str, int, bool]]:
    """Every (imported module, line, under TYPE_CHECKING) in ``module``, any package."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))

    def walk(node: ast.AST, type_checking: bool) -> Iterator[tuple[str, int, bool]]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from walk(child, True)
            for child in node.orelse:
                yield from walk(child, type_checking)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, type_checking
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{module}:{node.lineno}: the house imports absolutely"
            source = node.module or ""
            for alias in node.names:
                # ``from mailstead.mta import dsn`` imports the submodule.
                named = f"{source}.{alias.name}"
                yield (named if named in MODULES else source), node.lineno, type_checking
        for inner in ast.iter_child_nodes(node):
            yield from walk(inner, type_checking)

    yield from walk(tree, False)


def mailstead_imports() -> list[Import]:
    return [
        Import(module, target, line, type_checking)
        for module in MODULES
        for target, line, type_checking in imports(module)
        if target == "mailstead" or target.startswith("mailstead.")
    ]


def layer_of(module: str) -> int:
    """The index in LAYERS of the row that names ``module``; KeyError if none does."""
    rows = [
        index
        for index, (_, names) in enumerate(LAYERS)
        for name in names
        if module == name.removesuffix(".*")
        or (name.endswith(".*") and module.startswith(name[:-1]))
    ]
    if len(rows) != 1:
        raise KeyError(f"{module} is in {len(rows)} rows of LAYERS, not one")
    return rows[0]


def test_every_module_is_in_one_layer() -> None:
    unplaced = []
    for module in MODULES:
        try:
            layer_of(module)
        except KeyError as exc:
            unplaced.append(str(exc))
    assert not unplaced, "\n".join(unplaced)


def test_imports_run_downhill() -> None:
    uphill = {}
    for imp in mailstead_imports():
        if layer_of(imp.target) > layer_of(imp.importer):
            uphill[(imp.importer, imp.target)] = (
                f"{MODULES[imp.importer].relative_to(SRC)}:{imp.line}: {imp.importer} "
                f"({LAYERS[layer_of(imp.importer)][0]}) imports {imp.target} "
                f"({LAYERS[layer_of(imp.target)][0]})"
            )
    new = sorted(text for pair, text in uphill.items() if pair not in KNOWN_UPHILL)
    assert not new, "\n".join(new)
    fixed = sorted(KNOWN_UPHILL - uphill.keys())
    assert not fixed, f"fixed, so remove from KNOWN_UPHILL: {fixed}"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or a module importing itself.

    Tarjan's algorithm, iterative so a long chain cannot overflow the stack.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, ()):
                    found.append(sorted(component))
    return found


def test_no_modules_import_each_other_in_a_circle() -> None:
    edges: dict[str, set[str]] = {}
    for imp in mailstead_imports():
        if not imp.type_checking:
            edges.setdefault(imp.importer, set()).add(imp.target)
    cycles = _cycles(edges)
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_cycles_are_found() -> None:
    # The finder itself: a circle of three behind a tail, a self-import, a tree.
    edges = {"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"b"}, "e": {"e"}, "f": {"g", "h"}}
    assert sorted(_cycles(edges)) == [["b", "c", "d"], ["e"]]


def test_proto_does_no_io() -> None:
    runtime: dict[str, list[tuple[str, int]]] = {}
    for module in MODULES:
        runtime[module] = [(t, line) for t, line, tc in imports(module) if not tc]
    # Everything a proto module runs: proto itself and the base modules it uses.
    reached = [m for m in MODULES if m.startswith("mailstead.proto")]
    seen = set(reached)
    while reached:
        module = reached.pop()
        for target, _ in runtime[module]:
            if target in MODULES and target not in seen:
                seen.add(target)
                reached.append(target)
    found = sorted(
        f"{MODULES[module].relative_to(SRC)}:{line}: imports {target}"
        for module in seen
        for target, line in runtime[module]
        if target.split(".")[0] in SANS_IO
    )
    assert not found, "\n".join(found)
