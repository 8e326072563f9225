"""Message and recipient rates through the check hook: 450 4.7.1 when a bucket is empty, then
accepted again as it refills; shared by every worker, and every node of a cluster, through the
abuse database (each test runs on SQLite and on PostgreSQL: the ``abuse`` fixture)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mailstead.config import AbuseConfig, Rate
from mailstead.config.abuse import parse_rate
from mailstead.mailauth.abuse import RefusingChecks
from mailstead.mailauth.abuse_db import PostgresAbuseDB, SQLiteAbuseDB, Unavailable
from mailstead.mailauth.ratelimit import (
    Bucket,
    ClientRates,
    SenderRates,
    TokenBuckets,
)
from mailstead.mailauth.refusals import Refusals
from mailstead.mta.receiver import Role
from mailstead.peernet import network_of
from mailstead.pgsql.connect import connect
from mailstead.testing.clock import FakeClock
from tests.mailauth.abuse_helpers import Client, Events, receiver_with
from tests.mailauth.conftest import AbuseBackend

BOB = "bob@example.test"
CAROL = "carol@example.test"
DAVE = "dave@example.test"


def client_rates(
    abuse: AbuseBackend, clock: FakeClock, events: Events | None = None, **settings: object
) -> ClientRates:
    config = replace(AbuseConfig(), **settings)  # type: ignore[arg-type]
    return ClientRates(config, TokenBuckets(abuse.open(clock)), Refusals(events, "smtp"))


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("60/1m", Rate(60, 60)),
        ("60/m", Rate(60, 60)),
        ("500/1h", Rate(500, 3600)),
        ("3/90s", Rate(3, 90)),
        ("10/1h30m", Rate(10, 5400)),
        ("0", None),
    ],
)
def test_rates_read_from_the_config(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["60", "60/", "/1m", "0/1m", "-1/1m", "60/0s", "sixty/1m", ""])
def test_bad_rates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_messages_per_address_refused_then_accepted_as_the_bucket_refills(
    tmp_path: Path,
    abuse: AbuseBackend,
) -> None:
    clock = FakeClock()
    rates = client_rates(abuse, clock, ip_messages=Rate(3, 60))
    with receiver_with(tmp_path, [rates]) as receiver:
        client = Client(receiver, "192.0.2.7")
        # C: MAIL FROM:<a@sender.test>  (three times)  S: 250 …
        assert [client.mail("a@sender.test") for _ in range(3)] == ["250 2.1.0 Ok"] * 3
        assert client.mail("a@sender.test") == (
            "450 4.7.1 Too much mail from your address, try again later"
        )
        # 3 per minute: one token comes back every 20 seconds.
        clock.advance(19)
        assert client.mail("a@sender.test").startswith("450 4.7.1")
        clock.advance(1)
        assert client.mail("a@sender.test") == "250 2.1.0 Ok"
        assert client.mail("a@sender.test").startswith("450 4.7.1")
        # Another address has its own bucket.
        assert Client(receiver, "198.51.100.1").mail("a@sender.test") == "250 2.1.0 Ok"


def test_the_network_shares_a_bigger_bucket(tmp_path: Path, abuse: AbuseBackend) -> None:
    clock = FakeClock()
    rates = client_rates(abuse, clock, ip_messages=Rate(2, 60), network_share=2)
    with receiver_with(tmp_path, [rates]) as receiver:
        for ip in ("192.0.2.1", "192.0.2.2"):
            client = Client(receiver, ip)
            assert [client.mail("a@sender.test") for _ in range(2)] == ["250 2.1.0 Ok"] * 2
        # A third address of the /24 finds the network's bucket (2 × 2) empty.
        assert Client(receiver, "192.0.2.3").mail("a@sender.test") == (
            "450 4.7.1 Too much mail from your network, try again later"
        )
        assert Client(receiver, "192.0.3.1").mail("a@sender.test") == "250 2.1.0 Ok"


def test_recipients_per_address(tmp_path: Path, abuse: AbuseBackend) -> None:
    clock = FakeClock()
    rates = client_rates(abuse, clock, ip_recipients=Rate(2, 60))
    with receiver_with(tmp_path, [rates]) as receiver:
        client = Client(receiver, "192.0.2.7")
        assert client.mail("a@sender.test") == "250 2.1.0 Ok"
        assert client.rcpt(BOB) == "250 2.1.5 Ok"
        assert client.rcpt(CAROL) == "250 2.1.5 Ok"
        assert client.rcpt(DAVE) == (
            "450 4.7.1 Too many recipients from your address, try again later"
        )
        # The refused recipient is not in the message; the others get it.
        assert client.data() == "250 2.0.0 Ok: "
        assert not (tmp_path / "mail/example.test/dave").exists()
        clock.advance(30)
        client.mail("a@sender.test")
        assert client.rcpt(DAVE) == "250 2.1.5 Ok"


def test_a_refused_message_takes_no_token_from_the_other_buckets(
    tmp_path: Path, abuse: AbuseBackend
) -> None:
    clock = FakeClock()
    rates = client_rates(abuse, clock, ip_messages=Rate(1, 60), network_share=2)
    with receiver_with(tmp_path, [rates]) as receiver:
        first = Client(receiver, "192.0.2.1")
        assert first.mail("a@sender.test") == "250 2.1.0 Ok"
        for _ in range(5):
            assert first.mail("a@sender.test").startswith("450")
        # The network's bucket (2) still has the token the refusals did not take.
        assert Client(receiver, "192.0.2.2").mail("a@sender.test") == "250 2.1.0 Ok"


def test_every_worker_draws_from_the_same_buckets(tmp_path: Path, abuse: AbuseBackend) -> None:
    # Two AbuseDB objects: two connections to one database, as two worker
    # processes, or two nodes, have.
    clock = FakeClock()
    one = client_rates(abuse, clock, ip_messages=Rate(4, 60))
    two = client_rates(abuse, clock, ip_messages=Rate(4, 60))
    with receiver_with(tmp_path / "a", [one]) as a, receiver_with(tmp_path / "b", [two]) as b:
        replies = [Client(r, "192.0.2.7").mail("x@sender.test") for r in (a, b, a, b, a, b)]
    assert (
        replies
        == ["250 2.1.0 Ok"] * 4 + ["450 4.7.1 Too much mail from your address, try again later"] * 2
    )


def test_submission_rates_per_user_and_per_domain(tmp_path: Path, abuse: AbuseBackend) -> None:
    clock = FakeClock()
    config = replace(
        AbuseConfig(),
        user_messages=Rate(2, 3600),
        domain_messages=Rate(3, 3600),
        user_recipients=Rate(3, 3600),
    )
    rates = SenderRates(config, TokenBuckets(abuse.open(clock)), Refusals(None, "submission"))
    hook = RefusingChecks("mx.example.test", [rates])
    with receiver_with(tmp_path, hook, role=Role.MSA) as receiver:
        bob = Client(receiver, "127.0.0.1", user=BOB)
        carol = Client(receiver, "127.0.0.1", user=CAROL)
        assert bob.mail(BOB) == "250 2.1.0 Ok"
        assert bob.mail(BOB) == "250 2.1.0 Ok"
        assert bob.mail(BOB) == (
            "450 4.7.1 Too much mail from bob@example.test: "
            "at most 2 messages per hour, try again later"
        )
        assert carol.mail(CAROL) == "250 2.1.0 Ok"
        assert carol.mail(CAROL) == (
            "450 4.7.1 Too much mail from domain example.test: "
            "at most 3 messages per hour, try again later"
        )
        clock.advance(1200)  # a third of an hour: one message for the domain
        assert carol.mail(CAROL) == "250 2.1.0 Ok"
        assert [carol.rcpt(r) for r in ("x@far.test", "y@far.test", "z@far.test")] == [
            "250 2.1.5 Ok"
        ] * 3
        assert carol.rcpt("w@far.test") == (
            "450 4.7.1 Too many recipients from carol@example.test: "
            "at most 3 recipients per hour, try again later"
        )
        # Our users' mail gets no Authentication-Results of ours.
        assert carol.data() == "250 2.0.0 Ok: "


def test_each_refusal_is_an_event_with_its_reason(tmp_path: Path, abuse: AbuseBackend) -> None:
    clock = FakeClock()
    events = Events()
    rates = client_rates(abuse, clock, events, ip_messages=Rate(1, 60), ip_recipients=None)
    with receiver_with(tmp_path, [rates]) as receiver:
        client = Client(receiver, "192.0.2.7")
        client.mail("a@sender.test")
        assert client.mail("a@sender.test").startswith("450")
        rates.refusals.flush()
    (event,) = events.of_type("message.refused")
    assert event.account is None
    assert event.data == {
        "listener": "smtp",
        "check": "ratelimit",
        "stage": "sender",
        "reason": "ip_messages 1/1m",
        "reply": "450 4.7.1 Too much mail from your address, try again later",
        "remote_ip": "192.0.2.7",
        "helo": "mta.sender.test",
        "user": None,
        "mail_from": "a@sender.test",
        "recipient": None,
    }


def test_a_busy_database_lets_mail_through_quickly(tmp_path: Path, abuse: AbuseBackend) -> None:
    clock = FakeClock()
    rates = client_rates(abuse, clock, ip_messages=Rate(1, 60))
    with receiver_with(tmp_path, [rates]) as receiver:
        client = Client(receiver, "192.0.2.7")
        assert client.mail("a@sender.test") == "250 2.1.0 Ok"
        with abuse.stuck_writer("ip:192.0.2.7:messages"):
            started = time.monotonic()
            assert client.mail("a@sender.test") == "250 2.1.0 Ok"
            assert time.monotonic() - started < 1.0
        assert client.mail("a@sender.test").startswith("450")


def test_full_buckets_are_swept_away(tmp_path: Path, abuse: AbuseBackend) -> None:
    clock = FakeClock()
    buckets = TokenBuckets(abuse.open(clock))
    rate = Rate(10, 60)
    for n in range(50):
        assert buckets.take([Bucket(f"ip:192.0.2.{n}:messages", rate, "", "")]) is None
    clock.advance(61)  # every bucket full again, and a sweep due
    buckets.take([Bucket("ip:198.51.100.1:messages", rate, "", "")])
    assert abuse.rows("SELECT key FROM rate") == [("ip:198.51.100.1:messages",)]


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("192.0.2.77", "192.0.2.0/24"),
        ("2001:db8:1:2:3::9", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.77", "192.0.2.0/24"),
        ("unknown", "unknown"),
    ],
)
def test_networks(ip: str, network: str) -> None:
    assert network_of(ip) == network


def test_exempt_networks_are_not_counted(tmp_path: Path) -> None:
    config = replace(AbuseConfig(), ip_messages=Rate(1, 60))  # exempt: loopback
    db = SQLiteAbuseDB(tmp_path / "abuse.sqlite3")
    rates = ClientRates(config, TokenBuckets(db), Refusals(None, "smtp"))
    with receiver_with(tmp_path, [rates]) as receiver:
        client = Client(receiver, "127.0.0.1")
        assert [client.mail("a@sender.test") for _ in range(3)] == ["250 2.1.0 Ok"] * 3
    assert not (tmp_path / "abuse.sqlite3").exists()  # never even opened


def test_a_database_that_cannot_be_opened_turns_the_limits_off_not_the_mail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "abuse.sqlite3").mkdir()  # not a database at all
    config = replace(AbuseConfig(), ip_messages=Rate(1, 60))
    db = SQLiteAbuseDB(tmp_path / "abuse.sqlite3")
    rates = ClientRates(config, TokenBuckets(db), Refusals(None, "smtp"))
    with receiver_with(tmp_path, [rates]) as receiver:
        client = Client(receiver, "192.0.2.7")
        assert [client.mail("a@sender.test") for _ in range(3)] == ["250 2.1.0 Ok"] * 3
    warnings = [r.getMessage() for r in caplog.records if "not checked" in r.getMessage()]
    assert len(warnings) == 1  # once a minute, not once a command
    assert warnings[0].startswith("rate limits not checked: abuse database unavailable")


def test_two_nodes_at_once_let_exactly_the_limit_through(abuse: AbuseBackend) -> None:
    # Two nodes (two AbuseDB objects), four threads each, all after one
    # bucket of 4 at the same moment: 4 tokens taken, no more, no fewer.
    clock = FakeClock()
    nodes = [TokenBuckets(abuse.open(clock)) for _ in range(2)]
    bucket = Bucket("ip:192.0.2.7:messages", Rate(4, 3600), "", "")
    barrier = threading.Barrier(8)
    taken: list[bool] = []

    def send(buckets: TokenBuckets) -> None:
        barrier.wait()
        for _ in range(3):
            while True:
                try:
                    taken.append(buckets.take([bucket]) is None)
                    break
                except Unavailable:  # the other writers held it too long: try again
                    continue

    threads = [threading.Thread(target=send, args=(nodes[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (taken.count(True), taken.count(False)) == (4, 20)


def test_a_newer_cluster_schema_turns_the_limits_off_not_the_mail(pg_dsn: str) -> None:
    bucket = Bucket("ip:192.0.2.7:messages", Rate(1, 60), "", "")
    assert TokenBuckets(PostgresAbuseDB(pg_dsn)).take([bucket]) is None  # creates the tables
    with connect(pg_dsn) as conn:
        conn.execute("UPDATE mailstead_schema SET version = 99 WHERE component = 'abuse'")
    with pytest.raises(Unavailable, match="abuse tables are at version 99"):
        TokenBuckets(PostgresAbuseDB(pg_dsn)).take([bucket])
