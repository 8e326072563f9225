"""Turn py-spy's raw collapsed stacks into a short "where the time goes" table.

py-spy ``record --format raw --threads --idle`` writes one line per distinct
stack: ``thread (TID): NAME;outer (file:line);...;leaf (file:line) COUNT``.
Threads are grouped by role (the event loop is ``MainThread``, the delivery
pool is ``deliver_N``), because their samples mean different things: every
sample of the loop thread is a slice of the one thread that runs all
protocol code, while the pool's samples are spread over up to 32 threads,
most of them waiting on the disk.

Each leaf is shown with its source line, so ``deliver (maildir.py:115)``
reads as ``os.fsync(fd)``: py-spy does not see C functions, and the line
calling one is the useful name for it.
"""

from __future__ import annotations

import linecache
import re
import sys
import sysconfig
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["summarise"]

# With --subprocesses, py-spy puts "process PID:"…";" frames first (the
# supervisor, then the worker); they are dropped, so the workers' threads
# add up by role.
_LINE = re.compile(
    r'^(?:process \d+:"[^"]*";)*'
    r"thread \((?P<tid>\d+)\): (?P<name>[^;]*);(?P<stack>.*) (?P<count>\d+)$"
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# Leaves where a thread is waiting for work, not doing or blocking on any:
# the loop in epoll_wait, a pool thread in its queue's get().
# The supervisor process's main thread only waits for its workers to exit.
_IDLE_LEAVES = {
    ("select", "selectors.py"),
    ("_worker", "concurrent/futures/thread.py"),
    ("run", "mailstead/net/supervisor.py"),
}
# Start-up frames that enclose everything the server does.
_ENTRY_FILES = {
    "mailstead/__main__.py",
    "mailstead/cli/common.py",
    "mailstead/cli/serve.py",
    "mailstead/app.py",
    "mailstead/net/supervisor.py",
}
_TOP = 12


@dataclass(frozen=True)
class Frame:
    func: str
    file: str
    line: int

    @classmethod
    def parse(cls, text: str) -> Frame:
        m = _FRAME.match(text)
        if m is None:
            return cls(text, "", 0)
        return cls(m["func"], m["file"], int(m["line"] or 0))

    @property
    def where(self) -> str:
        return f"{self.func} ({self.file}:{self.line})"


@dataclass
class Group:
    """The samples of the threads of one role."""

    name: str
    threads: set[str] = field(default_factory=set)
    samples: int = 0
    idle: int = 0
    leaves: Counter[Frame] = field(default_factory=Counter)
    inclusive: Counter[tuple[str, str]] = field(default_factory=Counter)


def _group_name(thread_name: str) -> str:
    if thread_name == "MainThread":
        return "event loop (MainThread)"
    # deliver_0 … deliver_31 are one pool.
    return re.sub(r"_\d+$", "_*", thread_name)


def _source(frame: Frame, repo: Path) -> str:
    """The text of the frame's line, if the file can be found here."""
    roots = [repo / "src", Path(sysconfig.get_paths()["stdlib"]), *map(Path, sys.path)]
    for root in roots:
        path = root / frame.file
        if frame.line and path.is_file():
            return linecache.getline(str(path), frame.line).strip()
    return ""


def _load(profile: Path) -> dict[str, Group]:
    groups: dict[str, Group] = {}
    for raw in profile.read_text().splitlines():
        m = _LINE.match(raw)
        if m is None:
            continue
        count = int(m["count"])
        frames = [Frame.parse(f) for f in m["stack"].split(";")]
        name = _group_name(m["name"])
        group = groups.setdefault(name, Group(name))
        group.threads.add(m["tid"])
        group.samples += count
        for key in {(f.func, f.file) for f in frames}:
            group.inclusive[key] += count
        leaf = frames[-1]
        # py-spy qualifies methods with their class (EpollSelector.select).
        if (leaf.func.rsplit(".", 1)[-1], leaf.file) in _IDLE_LEAVES:
            group.idle += count
        else:
            group.leaves[leaf] += count
    return groups


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _group_report(group: Group, repo: Path) -> list[str]:
    busy = group.samples - group.idle
    out = [
        f"#### {group.name}: {len(group.threads)} thread(s), {group.samples:,} samples, "
        f"{_pct(busy, group.samples)} not idle",
        "",
        "Top lines where samples end (self time; C calls show as the line that calls them):",
        "",
        "| % of group samples | line | source |",
        "| ---: | --- | --- |",
    ]
    for frame, count in group.leaves.most_common(_TOP):
        source = _source(frame, repo).replace("|", "\\|")
        out.append(f"| {_pct(count, group.samples)} | `{frame.where}` | `{source}` |")
    out += [
        "",
        "Top Mailstead functions including callees (the changeable code):",
        "",
        "| % of group samples | function |",
        "| ---: | --- |",
    ]
    own = [
        (key, count)
        for key, count in group.inclusive.most_common()
        if key[1].startswith("mailstead/") and key[1] not in _ENTRY_FILES
    ]
    for (func, file), count in own[:_TOP]:
        out.append(f"| {_pct(count, group.samples)} | `{func} ({file})` |")
    return [*out, ""]


def summarise(profile: Path, repo: Path) -> str:
    """Markdown tables of the hottest lines and functions per thread role."""
    groups = _load(profile)
    ordered = sorted(groups.values(), key=lambda g: (g.name != "event loop (MainThread)", g.name))
    lines = [
        f'py-spy raw profile `{profile.name}`. "Idle" = the loop waiting in epoll or a '
        "pool thread waiting for work; everything else (including waits on fsync and "
        "locks) counts as not idle.",
        "",
    ]
    for group in ordered:
        if group.samples:
            lines += _group_report(group, repo)
    return "\n".join(lines)
