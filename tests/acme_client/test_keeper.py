"""When the keeper renews, who renews, the backoff after failures, and the hot swap.

The ACME order itself is replaced by an issuer that makes certificates from
a test CA, valid on the fake clock's terms; tests/acme_client/test_pebble.py runs
real orders.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mailstead.acme_client import CertificateKeeper, Outcome, keep_certificate
from mailstead.acme_client.files import Issued
from mailstead.acme_client.keeper import BACKOFF_BASE, BACKOFF_CAP
from mailstead.acme_client.request import OrderError, Request
from mailstead.acme_client.responders import Responder
from mailstead.config import Config, load_config
from mailstead.testing.clock import FakeClock
from mailstead.tlscert import CertificateError, ensure_self_signed, server_context
from tests.acme_client.certs import issued, serial, served_serial

DAY = 86400.0
NAMES = ["mx.example.test", "mta-sts.example.test"]
T0 = 1_800_000_000.0


def make_config(tmp_path: Path, names: str = '["mta-sts.example.test"]') -> Config:
    path = tmp_path / "mailstead.toml"
    path.write_text(
        'hostname = "mx.example.test"\ndomains = ["example.test"]\n'
        "[tls.acme]\n"
        'directory = "https://ca.example.test/dir"\n'
        'listen = ["127.0.0.1:0"]\n'
        f"names = {names}\n"
    )
    config = load_config(path)
    ensure_self_signed(config.tls.cert, config.tls.key, config.hostname)
    return config


class Issuer:
    """Stands in for the ACME order: 90-day certificates from the fake clock's now."""

    def __init__(self, clock: FakeClock, fail: bool = False) -> None:
        self.clock = clock
        self.fail = fail
        self.requests: list[Request] = []

    def __call__(self, request: Request, account_key: bytes, responder: Responder) -> Issued:
        self.requests.append(request)
        if self.fail:
            raise OrderError("validation failed: mx.example.test: connection refused")
        now = self.clock.time()
        return issued(list(request.names), now, now + 90 * DAY)


def keeper_for(
    config: Config, clock: FakeClock, issuer: Callable[[Request, bytes, Responder], Issued]
) -> CertificateKeeper:
    context = server_context(config.tls.cert, config.tls.key)
    return CertificateKeeper(config, context, clock=clock, issuer=issuer)


def context_of(keeper: CertificateKeeper) -> ssl.SSLContext:
    assert keeper.context is not None
    return keeper.context


def test_renews_at_two_thirds_of_the_lifetime(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    issuer = Issuer(clock)
    keeper = keeper_for(make_config(tmp_path), clock, issuer)

    async def scenario() -> None:
        stand_in = await served_serial(context_of(keeper))
        assert await keeper.step() is Outcome.RENEWED  # none yet: at once
        first = serial(keeper.files.cert.read_bytes())
        assert await served_serial(context_of(keeper)) == first != stand_in
        clock.advance(60 * DAY - 1)
        assert await keeper.step() is None
        clock.advance(2)
        assert await keeper.step() is Outcome.RENEWED
        assert await served_serial(context_of(keeper)) != first

    asyncio.run(scenario())
    assert [r.names for r in issuer.requests] == [tuple(NAMES)] * 2
    assert issuer.requests[0].directory == "https://ca.example.test/dir"
    files = keeper.files
    for path in (files.account_key, files.cert, files.key):
        assert path.stat().st_mode & 0o777 == 0o600


def test_a_name_missing_from_the_certificate_makes_it_due(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    keeper = keeper_for(make_config(tmp_path), clock, Issuer(clock))
    keeper.files.store(issued(["mx.example.test"], T0, T0 + 90 * DAY))
    assert keeper.due_at() == 0.0
    keeper.files.store(issued(NAMES, T0, T0 + 90 * DAY))
    assert keeper.due_at() == T0 + 60 * DAY


def test_failures_back_off_exponentially_are_logged_and_shared(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T0)
    issuer = Issuer(clock, fail=True)
    config = make_config(tmp_path)
    keeper = keeper_for(config, clock, issuer)
    # Another worker of the same server: it honours the same backoff.
    other = keeper_for(config, clock, issuer)
    caplog.set_level(logging.INFO, "mailstead.acme")

    async def scenario() -> None:
        assert await keeper.step() is Outcome.FAILED
        assert caplog.messages[-1] == (
            "acme: order for mx.example.test, mta-sts.example.test failed (1 in a row): "
            "validation failed: mx.example.test: connection refused; "
            "next attempt at 2027-01-15T08:05:00Z"
        )
        assert await keeper.step() is None
        assert await other.step() is None
        clock.advance(BACKOFF_BASE)
        assert await other.step() is Outcome.FAILED
        clock.advance(BACKOFF_BASE)
        assert await keeper.step() is None  # now 2 * BASE
        clock.advance(BACKOFF_BASE)
        assert await keeper.step() is Outcome.FAILED
        for _ in range(12):
            clock.advance(BACKOFF_CAP)
            assert await keeper.step() is Outcome.FAILED
        backoff = keeper.files.backoff()
        assert backoff.failures == 15
        assert backoff.next_attempt == clock.time() + BACKOFF_CAP
        issuer.fail = False
        clock.advance(BACKOFF_CAP)
        assert await keeper.step() is Outcome.RENEWED
        assert keeper.files.backoff().failures == 0

    asyncio.run(scenario())
    assert len(issuer.requests) == 16
    state = json.loads(keeper.files.state_path.read_text())
    assert state == {"failures": 0, "next_attempt": 0.0, "last_error": ""}


def test_one_process_orders_and_the_others_pick_up_the_files(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    issuer = Issuer(clock)
    config = make_config(tmp_path)
    first, second = keeper_for(config, clock, issuer), keeper_for(config, clock, issuer)

    async def scenario() -> None:
        with second.files.order_lock() as mine:  # the second worker is mid-order
            assert mine
            assert await first.step() is Outcome.BUSY
        assert await first.step() is Outcome.RENEWED
        # The second looked before the first renewed, and rechecks under the lock.
        assert await second.renew() is Outcome.CURRENT
        new = serial(first.files.cert.read_bytes())
        assert await served_serial(context_of(second)) == new
        # A forced renewal by one: the other's next look serves it.
        assert await first.renew(force=True) is Outcome.RENEWED
        assert second.load()
        assert await served_serial(context_of(second)) != new
        assert not second.load()  # nothing new since

    asyncio.run(scenario())
    assert len(issuer.requests) == 2


def test_an_unloadable_file_keeps_the_old_certificate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T0)
    keeper = keeper_for(make_config(tmp_path), clock, Issuer(clock))
    keeper.files.store(issued(NAMES, T0, T0 + 90 * DAY))
    assert keeper.load()
    good = serial(keeper.files.cert.read_bytes())
    # A key that does not match the chain, e.g. written by hand.
    keeper.files.store(Issued(keeper.files.cert.read_bytes(), issued(NAMES, T0, T0 + 1).key_pem))
    assert not keeper.load()
    assert "acme: cannot load" in caplog.text
    assert asyncio.run(served_serial(context_of(keeper))) == good


def test_keep_certificate_serves_the_stored_one_before_returning(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    keeper = keeper_for(config, FakeClock(T0), Issuer(FakeClock(T0)))
    now = float(int(os.path.getmtime(config.tls.cert)))
    keeper.files.store(issued(NAMES, now - DAY, now + 90 * DAY))
    context = server_context(config.tls.cert, config.tls.key)

    async def scenario() -> None:
        task = keep_certificate(config, context)
        assert await served_serial(context) == serial(keeper.files.cert.read_bytes())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_without_the_acme_package_it_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "acme" else find_spec(name)
    )
    with pytest.raises(
        CertificateError, match=r"^\[tls\.acme\] needs the Python package acme: pip install acme$"
    ):
        CertificateKeeper(make_config(tmp_path), None)


def test_a_server_stopping_mid_order_does_not_wait_for_it(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    started, release = threading.Event(), threading.Event()

    def slow(request: Request, account_key: bytes, responder: Responder) -> Issued:
        started.set()
        release.wait(30)
        return issued(list(request.names), T0, T0 + 90 * DAY)

    keeper = keeper_for(make_config(tmp_path), clock, slow)

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(keeper.renew())
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        # The lock is free again: the next start (here, another look) may order.
        with keeper.files.order_lock() as mine:
            assert mine

    asyncio.run(scenario())
    release.set()
    assert not keeper.files.cert.exists()


def test_a_taken_challenge_port_is_a_failure_like_any_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T0)
    config = make_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert config.tls.acme is not None
        acme = dataclasses.replace(config.tls.acme, listen=(("127.0.0.1", port),))
        config = dataclasses.replace(config, tls=dataclasses.replace(config.tls, acme=acme))
        keeper = keeper_for(config, clock, Issuer(clock))
        assert asyncio.run(keeper.renew()) is Outcome.FAILED
    assert keeper.files.backoff().last_error == (
        f"cannot listen on 127.0.0.1:{port}: address already in use"
    )
