"""Password guessing spread over two nodes of one PostgreSQL database meets one count.

Two harness servers (two "nodes", each with its own shared memory) share
the test's database, as two ``serve`` processes behind a load balancer do.
A guesser fails on one and is slowed, then refused, on the other; the real
user logging in from another network is not.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mailstead.config import load_config
from tests.e2e.harness import USERS, ServerHandle, client_tls_context, running_config, write_config

ALICE = "alice@example.test"
GUESSER, REAL_USER = "127.0.0.2", "127.0.1.1"
LIMITS = '[limits]\nauth_penalty_max = "1s"\nauth_block_after = 2\n'


@contextmanager
def two_nodes(root: Path, dsn: str) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    for name in ("a", "b"):
        (root / name).mkdir()
    with (
        running_config(load_config(write_config(root / "a", dsn=dsn, extra=LIMITS))) as a,
        running_config(load_config(write_config(root / "b", dsn=dsn, extra=LIMITS))) as b,
    ):
        yield a, b


def submit_login(server: ServerHandle, source: str, password: str) -> tuple[int, float]:
    """C: AUTH PLAIN over submissions from ``source``: the reply's code and the seconds it took."""
    with smtplib.SMTP_SSL(
        "127.0.0.1",
        server.ports["submissions"],
        context=client_tls_context(),
        source_address=(source, 0),
        timeout=30,
    ) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = ALICE, password
        began = time.monotonic()
        try:  # one mechanism: login() would try PLAIN, then LOGIN
            code = smtp.auth("PLAIN", smtp.auth_plain)[0]
        except smtplib.SMTPAuthenticationError as exc:
            code = exc.smtp_code
        return code, time.monotonic() - began


@pytest.fixture
def nodes(tmp_path: Path, pg_dsn: str) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    with two_nodes(tmp_path, pg_dsn) as both:
        yield both


def test_failures_on_one_node_slow_then_block_the_guesser_on_the_other(
    nodes: tuple[ServerHandle, ServerHandle],
) -> None:
    a, b = nodes
    assert submit_login(a, GUESSER, "one")[0] == 535
    code, took = submit_login(b, GUESSER, "two")
    assert code == 535 and took >= 1.0  # waited for the failure on a
    # The right password too is refused there, unchecked and temporarily.
    assert submit_login(a, GUESSER, USERS[ALICE])[0] == 454
    assert submit_login(b, GUESSER, USERS[ALICE])[0] == 454
    # The account is not locked: the real user, from another network.
    code, took = submit_login(b, REAL_USER, USERS[ALICE])
    assert code == 235 and took < 1.0


def test_a_login_on_one_node_clears_the_address_on_the_other(
    nodes: tuple[ServerHandle, ServerHandle],
) -> None:
    a, b = nodes
    assert submit_login(a, GUESSER, "typo")[0] == 535
    code, took = submit_login(b, GUESSER, USERS[ALICE])
    assert code == 235 and took >= 1.0
    deadline = time.monotonic() + 5
    while True:  # the success is written after the reply, without waiting
        code, took = submit_login(a, GUESSER, USERS[ALICE])
        assert code == 235
        if took < 1.0 or time.monotonic() > deadline:
            break
    assert took < 1.0
