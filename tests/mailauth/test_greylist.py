"""Greylisting through the check hook: 451 4.7.1 to a new triplet, its retry accepted after the
delay and within the window, networks that keep retrying whitelisted; on SQLite and on
PostgreSQL (the ``abuse`` fixture), where the nodes of a cluster share the state."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from pathlib import Path

from mailstead.config import AbuseConfig
from mailstead.mailauth.abuse_db import Unavailable
from mailstead.mailauth.greylist import Greylist
from mailstead.mailauth.refusals import Refusals
from mailstead.testing.clock import FakeClock
from tests.mailauth.abuse_helpers import Client, Events, receiver_with
from tests.mailauth.conftest import AbuseBackend

BOB = "bob@example.test"
CAROL = "carol@example.test"
DAY = 86400.0


def greylist(
    abuse: AbuseBackend, clock: FakeClock, events: Events | None = None, **settings: object
) -> Greylist:
    config = replace(AbuseConfig(), greylist=True, **settings)  # type: ignore[arg-type]
    return Greylist(config, abuse.open(clock), Refusals(events, "smtp"))


def attempt(client: Client, sender: str, recipient: str) -> str:
    """One transaction up to RCPT TO: the RCPT reply."""
    assert client.mail(sender) == "250 2.1.0 Ok"
    return client.rcpt(recipient)


def test_first_attempt_waits_the_retry_after_the_delay_passes(
    tmp_path: Path, abuse: AbuseBackend
) -> None:
    clock = FakeClock()
    events = Events()
    check = greylist(abuse, clock, events)
    with receiver_with(tmp_path, [check]) as receiver:
        client = Client(receiver, "192.0.2.7")
        # C: RCPT TO:<bob@example.test>   S: 451 4.7.1 Greylisted …
        assert attempt(client, "a@sender.test", BOB) == (
            "451 4.7.1 Greylisted, try again in 300 seconds"
        )
        clock.advance(60)
        assert attempt(client, "a@sender.test", BOB) == (
            "451 4.7.1 Greylisted, try again in 240 seconds"
        )
        clock.advance(240)
        assert attempt(client, "a@sender.test", BOB) == "250 2.1.5 Ok"
        assert client.data() == "250 2.0.0 Ok: "
        # From now on the triplet passes at once, from any address of the /24.
        assert attempt(Client(receiver, "192.0.2.8"), "a@sender.test", BOB) == "250 2.1.5 Ok"
        # Another recipient, or another sender, is another triplet.
        assert attempt(client, "a@sender.test", CAROL).startswith("451 4.7.1")
        assert attempt(client, "b@sender.test", BOB).startswith("451 4.7.1")
        check.refusals.flush()
    first = events.of_type("message.refused")[0]
    assert first.account == BOB and first.domain == "example.test"
    assert first.data["check"] == "greylist"
    assert first.data["stage"] == "recipient"
    assert first.data["reason"] == (
        "greylisted for 300s (192.0.2.0/24, <a@sender.test>, <bob@example.test>)"
    )


def test_a_retry_after_the_window_starts_over(tmp_path: Path, abuse: AbuseBackend) -> None:
    clock = FakeClock()
    with receiver_with(tmp_path, [greylist(abuse, clock)]) as receiver:
        client = Client(receiver, "192.0.2.7")
        assert attempt(client, "a@sender.test", BOB).startswith("451")
        clock.advance(DAY + 1)
        assert attempt(client, "a@sender.test", BOB) == (
            "451 4.7.1 Greylisted, try again in 300 seconds"
        )
        clock.advance(300)
        assert attempt(client, "a@sender.test", BOB) == "250 2.1.5 Ok"


def test_a_network_that_retried_five_times_is_whitelisted_for_35_days(
    tmp_path: Path, abuse: AbuseBackend
) -> None:
    clock = FakeClock()
    with receiver_with(tmp_path, [greylist(abuse, clock)]) as receiver:
        client = Client(receiver, "192.0.2.7")
        senders = [f"s{n}@sender.test" for n in range(5)]
        for sender in senders:
            assert attempt(client, sender, BOB).startswith("451")
        clock.advance(300)
        for sender in senders:
            assert attempt(client, sender, BOB) == "250 2.1.5 Ok"
        # Whitelisted: a new triplet from the network passes without a wait.
        assert attempt(client, "new@sender.test", CAROL) == "250 2.1.5 Ok"
        # ... as long as it keeps coming: 35 days of silence forget it.
        clock.advance(34 * DAY)
        assert attempt(client, "new2@sender.test", CAROL) == "250 2.1.5 Ok"
        clock.advance(35 * DAY + 1)
        assert attempt(client, "new3@sender.test", CAROL).startswith("451")


def test_whitelisting_can_be_turned_off(tmp_path: Path, abuse: AbuseBackend) -> None:
    clock = FakeClock()
    check = greylist(abuse, clock, greylist_whitelist_after=0)
    with receiver_with(tmp_path, [check]) as receiver:
        client = Client(receiver, "192.0.2.7")
        for n in range(6):
            attempt(client, f"s{n}@sender.test", BOB)
        clock.advance(300)
        for n in range(6):
            assert attempt(client, f"s{n}@sender.test", BOB) == "250 2.1.5 Ok"
        assert attempt(client, "new@sender.test", BOB).startswith("451")


def test_authenticated_sessions_are_never_greylisted(tmp_path: Path, abuse: AbuseBackend) -> None:
    with receiver_with(tmp_path, [greylist(abuse, FakeClock())]) as receiver:
        client = Client(receiver, "192.0.2.7", user=CAROL)
        assert attempt(client, CAROL, BOB) == "250 2.1.5 Ok"


def test_the_state_outlives_a_restart(tmp_path: Path, abuse: AbuseBackend) -> None:
    clock = FakeClock()
    with receiver_with(tmp_path / "a", [greylist(abuse, clock)]) as receiver:
        assert attempt(Client(receiver, "192.0.2.7"), "a@sender.test", BOB).startswith("451")
    clock.advance(300)
    with receiver_with(tmp_path / "b", [greylist(abuse, clock)]) as receiver:
        assert attempt(Client(receiver, "192.0.2.7"), "a@sender.test", BOB) == "250 2.1.5 Ok"


def test_a_real_mta_on_its_retry_schedule_gets_through_on_an_autojumping_clock(
    tmp_path: Path,
    abuse: AbuseBackend,
) -> None:
    # The outbound queue's default schedule: 1m, 5m, 15m … after the first attempt.
    clock = FakeClock(autojump_threshold=0)
    started = time.monotonic()
    with receiver_with(tmp_path, [greylist(abuse, clock)]) as receiver:
        client = Client(receiver, "203.0.113.5")

        async def sending_mta() -> list[tuple[float, str]]:
            tries: list[tuple[float, str]] = []
            t0 = clock.time()
            for wait in (0, 60, 300, 900):
                await clock.sleep(wait)
                reply = attempt(client, "news@sender.test", BOB)
                tries.append((clock.time() - t0, reply))
                if reply.startswith("250"):
                    break
            return tries

        tries = asyncio.run(sending_mta())
    assert tries == [
        (0, "451 4.7.1 Greylisted, try again in 300 seconds"),
        (60, "451 4.7.1 Greylisted, try again in 240 seconds"),
        (360, "250 2.1.5 Ok"),
    ]
    assert time.monotonic() - started < 5


def test_old_triplets_are_swept(tmp_path: Path, abuse: AbuseBackend) -> None:
    clock = FakeClock()
    with receiver_with(tmp_path, [greylist(abuse, clock)]) as receiver:
        client = Client(receiver, "192.0.2.7")
        attempt(client, "old@sender.test", BOB)
        clock.advance(DAY + 61)
        attempt(client, "new@sender.test", BOB)
    rows = abuse.rows("SELECT triplet FROM greylist")
    assert rows == [(abuse.triplet("192.0.2.0/24", "new@sender.test", "bob@example.test"),)]


def test_a_retry_to_another_node_passes(tmp_path: Path, abuse: AbuseBackend) -> None:
    # The first attempt reached one node, the retry another: one greylist.
    clock = FakeClock()
    one, two = greylist(abuse, clock), greylist(abuse, clock)
    with receiver_with(tmp_path / "a", [one]) as a, receiver_with(tmp_path / "b", [two]) as b:
        assert attempt(Client(a, "192.0.2.7"), "a@sender.test", BOB).startswith("451")
        clock.advance(300)
        assert attempt(Client(b, "192.0.2.9"), "a@sender.test", BOB) == "250 2.1.5 Ok"
        assert attempt(Client(a, "192.0.2.7"), "a@sender.test", BOB) == "250 2.1.5 Ok"


def test_passes_counted_on_two_nodes_at_once_are_all_counted(
    tmp_path: Path, abuse: AbuseBackend
) -> None:
    # Five triplets of one network pass at the same moment, on two nodes:
    # each pass counts, so the network is whitelisted after five.
    clock = FakeClock()
    nodes = [greylist(abuse, clock) for _ in range(2)]
    senders = [f"s{n}@sender.test" for n in range(5)]
    for n, sender in enumerate(senders):
        assert nodes[n % 2]._wait("192.0.2.0/24", sender, BOB) == 300
    clock.advance(300)
    barrier = threading.Barrier(len(senders))
    waits: list[float | None] = []

    def retry(n: int) -> None:
        barrier.wait()
        while True:
            try:
                waits.append(nodes[n % 2]._wait("192.0.2.0/24", senders[n], BOB))
                return
            except Unavailable:  # the other writers held it too long: try again
                continue

    threads = [threading.Thread(target=retry, args=(n,)) for n in range(len(senders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert waits == [None] * 5
    assert abuse.rows("SELECT network, passed FROM greylist_network") == [("192.0.2.0/24", 5)]
