"""Counting: label values, memory mode, and files shared by forked processes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailstead import metrics
from mailstead.config import Config
from mailstead.config.reader import Reader
from mailstead.config.root import build_config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    data = {"domains": ["example.test", "Bücher.example"], "data_dir": "var"}
    return build_config(data, tmp_path / "mailstead.toml", Reader("test"))


@pytest.fixture
def shared(config: Config) -> Iterator[Path]:
    """This process counts into <data_dir>/metrics, as serve's do; memory again after."""
    directory = metrics.metrics_dir(config)
    metrics.start_serving(directory)
    try:
        yield directory
    finally:
        metrics.stop_serving()


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def value(config: Config, name: str, **labels: str) -> float:
    found = samples(metrics.render(config.data_dir / "queue.sqlite3"))
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_only_local_domains_are_labels(config: Config) -> None:
    metrics.set_local_domains(config.domains)
    assert metrics.domain_label("alice@Example.TEST") == "example.test"
    assert metrics.domain_label("x@bücher.example") == "xn--bcher-kva.example"
    assert metrics.domain_label("x@attacker-chosen-name.test") == "other"
    assert metrics.domain_label("x@remote.test", "alice@example.test") == "example.test"
    assert metrics.domain_label("", "postmaster") == "other"
    assert metrics.domain_label("x@[192.0.2.1]", "x@\udcff") == "other"


def test_memory_mode_counts_and_renders(config: Config) -> None:
    metrics.set_local_domains(config.domains)
    before = value(config, "mailstead_messages_received_total", listener="smtp", domain="other")
    metrics.messages_received("smtp", ["other", "other"])
    after = value(config, "mailstead_messages_received_total", listener="smtp", domain="other")
    assert after - before == 2


def test_tls_versions_and_webhook_results_are_bounded(config: Config) -> None:
    metrics.tls_negotiated("imaps", "TLSv1.3")
    metrics.tls_negotiated("imaps", "TLSv9 from the future")
    metrics.webhook_attempt(503, None, finished=False)
    metrics.webhook_attempt(None, "timeout", finished=True)
    metrics.webhook_attempt(999, None, finished=False)
    found = samples(metrics.render(config.data_dir / "queue.sqlite3"))
    assert (
        "mailstead_tls_handshakes_total",
        (("protocol", "imaps"), ("version", "other")),
    ) in found
    assert ("mailstead_webhook_attempts_total", (("result", "5xx"),)) in found
    assert ("mailstead_webhook_attempts_total", (("result", "timeout"),)) in found
    assert ("mailstead_webhook_attempts_total", (("result", "other"),)) in found
    assert ("mailstead_webhook_deliveries_total", (("outcome", "failed"),)) in found


def test_a_count_never_fails_the_mail(config: Config, shared: Path) -> None:
    # The directory vanishes under a running server: counting goes quiet.
    for path in shared.iterdir():
        path.unlink()
    shared.rmdir()
    metrics.auth_failed("pop3", blocked=True)  # does not raise


def test_serving_empties_the_directory_of_a_previous_run(config: Config) -> None:
    directory = metrics.metrics_dir(config)
    directory.mkdir(parents=True)
    (directory / "counter_1.db").write_bytes(b"left by a crash")
    metrics.start_serving(directory)
    try:
        assert list(directory.iterdir()) == []
    finally:
        metrics.stop_serving()


def _child(work: str) -> int:
    """A forked 'worker' that counts ``work`` and then waits to be killed."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            if work == "imap session":
                metrics.session_started("imap")
                metrics.session_started("smtp")
                metrics.session_ended("smtp")
            metrics.messages_received("smtp", ["example.test"])
            metrics.local_delivery_time(0.003)
            os.write(1, b"")
            time.sleep(60)
        finally:
            os._exit(0)
    return pid


def _wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.02)


def test_forked_processes_count_together(config: Config, shared: Path) -> None:
    received = ("mailstead_messages_received_total", "smtp", "example.test")
    first, second = _child("imap session"), _child("receive")
    try:
        _wait_for(lambda: value(config, received[0], listener="smtp", domain="example.test") == 2)
        assert value(config, "mailstead_local_delivery_seconds_count") == 2
        assert metrics.sessions_by_protocol(config) == {
            "smtp": 0,
            "submission": 0,
            "submissions": 0,
            "imap": 1,
            "imaps": 0,
            "pop3": 0,
            "pop3s": 0,
        }
        assert value(config, "mailstead_sessions", protocol="imap") == 1
        # Every process writes files of its own.
        pids = {p.name.rpartition("_")[2].removesuffix(".db") for p in shared.iterdir()}
        assert pids == {str(first), str(second)}
    finally:
        for pid in (first, second):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    # A dead worker's sessions are gone; what it counted stays counted.
    assert metrics.sessions_by_protocol(config)["imap"] == 0
    assert not list(shared.glob(f"gauge_livesum_{first}.db"))
    assert (
        value(config, "mailstead_messages_received_total", listener="smtp", domain="example.test")
        == 2
    )


def test_no_server_no_sessions(config: Config) -> None:
    assert set(metrics.sessions_by_protocol(config).values()) == {0}
    assert list(metrics.sessions_by_protocol(config)) == list(metrics.PROTOCOLS)
