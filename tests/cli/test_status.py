"""``mailstead status``, ``reload`` and ``stop`` without a server, and the status layout.

The commands against a running server are in tests/e2e/test_control.py.
"""

from __future__ import annotations

from pathlib import Path

from mailstead.cli.status import status_text
from tests.cli.golden_files import assert_golden
from tests.cli.runner import run

# A status reply as the server sends it (tests/control/status_shape.py checks the shape).
STATUS: dict[str, object] = {
    "version": "0.1.0",
    "pid": 4100,
    "state": "serving",
    "started_at": "2026-12-07T16:00:00Z",
    "uptime_seconds": 9000.4,
    "config": "/etc/mailstead/mailstead.toml",
    "data_dir": "/var/lib/mailstead",
    "hostname": "mx.example.test",
    "domains": ["example.test", "example.org"],
    "workers": [
        {
            "index": 0,
            "role": "mail",
            "pid": 4101,
            "state": "serving",
            "started_at": "2026-12-07T16:00:00Z",
            "restarts": 0,
            "last_beat_seconds": 0.1,
        },
        {
            "index": 1,
            "role": "mail",
            "pid": 4190,
            "state": "serving",
            "started_at": "2026-12-07T17:10:00Z",
            "restarts": 2,
            "last_beat_seconds": 0.3,
        },
        {
            "index": 2,
            "role": "webhooks",
            "pid": None,
            "state": "restarting",
            "started_at": None,
            "restarts": 1,
            "last_beat_seconds": None,
        },
    ],
    "listeners": [
        {"name": "smtp", "host": "0.0.0.0", "port": 25},
        {"name": "submissions", "host": "::", "port": 465},
    ],
    "sessions": {"smtp": 3, "imap": 12, "pop3": 0},
    "queue": {
        "messages": 4,
        "recipients": {"deferred": 3, "pending": 2},
        "oldest_received_at": "2026-12-07T15:30:00Z",
        "oldest_age_seconds": 5400.0,
    },
    "last_reload": {
        "at": "2026-12-07T18:00:00Z",
        "ok": True,
        "summary": "domains example.test, example.org; ...",
    },
}


def test_status_layout() -> None:
    assert_golden("status.txt", "\n".join(status_text(STATUS)) + "\n")


def test_status_layout_with_sessions_unknown_and_an_empty_queue() -> None:
    quiet = {
        **STATUS,
        "sessions": None,
        "queue": {
            "messages": 0,
            "recipients": {},
            "oldest_received_at": None,
            "oldest_age_seconds": None,
        },
        "last_reload": None,
    }
    assert_golden("status_quiet.txt", "\n".join(status_text(quiet)) + "\n")


def test_status_without_a_server_exits_3_with_one_line(config: Path) -> None:
    result = run(config, "status")
    assert result.exit_code == 3
    data_dir = config.parent / "var"
    assert result.output == f"mailstead: no server running on {data_dir}\n"
    assert run(config, "status", "--json").exit_code == 3


def test_reload_without_a_server_exits_3(config: Path) -> None:
    result = run(config, "reload")
    assert (result.exit_code, result.output) == (
        3,
        f"mailstead: no server running on {config.parent / 'var'}\n",
    )


def test_stop_without_a_server_has_nothing_to_do(config: Path) -> None:
    result = run(config, "stop")
    assert (result.exit_code, result.output) == (
        0,
        f"no server running on {config.parent / 'var'}: nothing to stop\n",
    )


def test_a_server_that_holds_the_lock_but_does_not_answer(config: Path) -> None:
    from mailstead.system.lock import ServeLock

    lock = ServeLock(config.parent / "var")  # as a server of an older version would
    try:
        result = run(config, "status")
    finally:
        lock.close()
    assert result.exit_code == 1
    sock = config.parent / "var" / "control.sock"
    assert result.output.startswith(f"mailstead: a server runs on {config.parent / 'var'} (pid ")
    assert result.output.endswith(
        f") but its control socket {sock} does not answer: no such file or directory\n"
    )
    assert result.output.count("\n") == 1
