"""CPU accounting from /proc, to tell a CPU-bound run from a disk-bound one.

On a 2-core machine the load generator, the kernel's loopback TCP and the
file system journal all share the CPUs with the server, so the wall time
alone does not say whether a server is slow or merely waiting; these
counters do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MachineCPU", "tree_cpu_seconds"]

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class MachineCPU:
    """Cumulative jiffies of all CPUs (the first line of /proc/stat)."""

    busy: int
    iowait: int
    total: int

    @classmethod
    def now(cls) -> MachineCPU:
        first = Path("/proc/stat").read_text().split("\n", 1)[0]
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, first.split()[1:9])
        busy = user + nice + system + irq + softirq + steal
        return cls(busy, iowait, busy + idle + iowait)

    def share_since(self, start: MachineCPU) -> tuple[float, float]:
        """(busy, iowait) fractions of all CPU time since ``start``."""
        total = max(1, self.total - start.total)
        return (self.busy - start.busy) / total, (self.iowait - start.iowait) / total


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, utime + cutime, stime + cstime) of a live process, in ticks."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces.
    rest = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = map(int, rest[11:15])
    return int(rest[1]), utime + cutime, stime + cstime


def tree_cpu_seconds(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by ``root``, its live descendants and the reaped ones.

    A reaped child's time is in its parent's cutime/cstime, so short-lived
    workers (Postfix's smtpd, cleanup, virtual) are counted once they exit.
    """
    stats: dict[int, tuple[int, int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            stats[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    user = system = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            user += stats[pid][1]
            system += stats[pid][2]
            todo.extend(children.get(pid, []))
    return user / _TICK, system / _TICK
