"""The documented shape of ``mailstead status --json`` (docs/cli.md), for the checker in
tests/cli/json_shapes.py. ``sessions`` and ``queue.recipients`` map names to counts: their
keys are open-ended, so :func:`check_status` looks at their values itself."""

from __future__ import annotations

from tests.cli.json_shapes import TIME, OneOf, check

WORKER = {
    "index": int,
    "role": OneOf(("mail", "webhooks")),
    "pid": (int, None),
    "state": OneOf(("starting", "serving", "stopping", "restarting")),
    "started_at": (TIME, None),
    "restarts": int,
    "last_beat_seconds": (float, int, None),
}
LISTENER = {"name": str, "host": str, "port": int}
STATUS = {
    "version": str,
    "pid": int,
    "state": OneOf(("starting", "serving", "stopping")),
    "started_at": TIME,
    "uptime_seconds": (float, int),
    "config": str,
    "data_dir": str,
    "hostname": str,
    "domains": [str],
    "workers": [WORKER],
    "listeners": [LISTENER],
    "sessions": (dict, None),
    "queue": {
        "messages": int,
        "recipients": dict,
        "oldest_received_at": (TIME, None),
        "oldest_age_seconds": (float, int, None),
    },
    "last_reload": ({"at": TIME, "ok": bool, "summary": str}, None),
}


def check_status(value: object) -> None:
    """Raise AssertionError where ``value`` leaves the documented status shape."""
    check(value, STATUS)
    assert isinstance(value, dict)
    counts = [value["queue"]["recipients"]]
    if value["sessions"] is not None:
        counts.append(value["sessions"])
    for mapping in counts:
        for name, n in mapping.items():
            assert isinstance(name, str) and isinstance(n, int) and not isinstance(n, bool), (
                name,
                n,
            )
