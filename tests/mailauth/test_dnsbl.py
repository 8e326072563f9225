"""DNS block lists (RFC 5782) through the check hook, against a DNS server of the test's own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.mailauth.dnsbl import DNSBL, Listing, is_listing, query_name
from mailstead.mailauth.hook import Client as HookClient
from mailstead.mailauth.lookups import AuthDNS
from mailstead.mailauth.refusals import Refusals
from mailstead.testing.dns import DNSServer, Zones
from tests.mailauth.abuse_helpers import Client, Events, receiver_with

BOB = "bob@example.test"
REFUSED_7 = "554 5.7.1 Service unavailable; client [192.0.2.7] blocked using zen.test"
ZONES: Zones = {
    # RFC 5782 §5: a list's test entry is 127.0.0.2.
    "2.0.0.127.zen.test": {"A": ["127.0.0.2"], "TXT": ["Listed: see https://zen.test/q/127.0.0.2"]},
    "7.2.0.192.zen.test": {"A": ["127.0.0.4"]},
    # Spamhaus's "you asked through a public resolver": an error, not a listing.
    "9.2.0.192.zen.test": {"A": ["127.255.255.254"]},
    # A resolver that answers every name with its own address.
    "10.2.0.192.zen.test": {"A": ["198.51.100.1"]},
    "9.2.0.192.second.test": {"A": ["127.0.0.3"], "TXT": ["second says no"]},
    "zen.test": {"TXT": ["v=none"]},
    "second.test": {"TXT": ["v=none"]},
}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    with DNSServer(ZONES, drop={"8.2.0.192.zen.test"}) as address:
        yield address


def dnsbl(
    server: tuple[str, int], zones: tuple[str, ...] = ("zen.test",), events: Events | None = None
) -> DNSBL:
    return DNSBL(zones, AuthDNS([server]), Refusals(events, "smtp"), budget=1.0)


@pytest.mark.parametrize(
    ("ip", "name"),
    [
        ("192.0.2.99", "99.2.0.192.zen.test"),
        ("::ffff:192.0.2.99", "99.2.0.192.zen.test"),
        (
            "2001:db8:1:2::9",
            "9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.zen.test",
        ),
        ("unknown", None),
    ],
)
def test_query_names(ip: str, name: str | None) -> None:
    assert query_name(ip, "zen.test") == name


@pytest.mark.parametrize(
    ("record", "listed"),
    [
        ("127.0.0.2", True),
        ("127.0.0.11", True),
        ("127.0.1.2", True),
        ("127.255.255.254", False),
        ("198.51.100.1", False),
        ("::1", False),
    ],
)
def test_which_answers_are_listings(record: str, listed: bool) -> None:
    assert is_listing(record) is listed


def test_a_listed_client_is_refused_with_the_lists_reason(
    server: tuple[str, int], tmp_path: Path
) -> None:
    events = Events()
    check = dnsbl(server, events=events)
    with receiver_with(tmp_path, [check]) as receiver:
        client = Client(receiver, "127.0.0.2")
        check.lookup("127.0.0.2").result(5)  # the answer is in (a real client is slower)
        # C: MAIL FROM:<a@sender.test>   S: 554 5.7.1 …
        assert client.mail("a@sender.test") == (
            "554 5.7.1 Service unavailable; client [127.0.0.2] blocked using zen.test; "
            "Listed: see https://zen.test/q/127.0.0.2"
        )
        check.refusals.flush()
    (event,) = events.of_type("message.refused")
    assert event.data["check"] == "dnsbl"
    assert event.data["stage"] == "connection"
    assert event.data["reason"] == "listed by zen.test (127.0.0.2)"


def test_the_body_stage_waits_for_the_answer(server: tuple[str, int], tmp_path: Path) -> None:
    check = dnsbl(server)
    with receiver_with(tmp_path, [check]) as receiver:
        client = Client(receiver, "192.0.2.7")
        # The lookup starts at MAIL FROM; RCPT TO is refused if the answer is in by then.
        assert client.mail("a@sender.test") in ("250 2.1.0 Ok", REFUSED_7)
        reply = client.rcpt(BOB) if client.delivery is not None else REFUSED_7
        if reply.startswith("250"):
            # The end of DATA waits for it (in the receiver's worker thread).
            reply = client.data()
        assert reply == REFUSED_7


def test_the_commands_on_the_event_loop_never_wait_for_the_list(
    server: tuple[str, int], tmp_path: Path
) -> None:
    # The list never answers about 192.0.2.8: waiting for it would take the whole budget.
    check = dnsbl(server)
    with receiver_with(tmp_path, [check]) as receiver:
        client = Client(receiver, "192.0.2.8")
        started = time.monotonic()
        assert client.mail("a@sender.test") == "250 2.1.0 Ok"
        assert client.rcpt(BOB) == "250 2.1.5 Ok"
        assert time.monotonic() - started < 0.5
        assert client.data() == "250 2.0.0 Ok: "  # the budget ran out: mail goes through


def test_the_first_list_that_says_listed_is_named(server: tuple[str, int]) -> None:
    check = dnsbl(server, ("zen.test", "second.test"))
    assert check.lookup("192.0.2.9").result(5) == Listing(
        "second.test", "127.0.0.3", "second says no"
    )


@pytest.mark.parametrize(
    "ip",
    [
        "192.0.2.1",  # NXDOMAIN: not listed
        "192.0.2.9",  # the list's error code
        "192.0.2.10",  # a lying resolver
    ],
)
def test_clients_that_are_not_listed_pass(server: tuple[str, int], tmp_path: Path, ip: str) -> None:
    check = dnsbl(server)
    with receiver_with(tmp_path, [check]) as receiver:
        client = Client(receiver, ip)
        assert client.mail("a@sender.test") == "250 2.1.0 Ok"
        assert client.rcpt(BOB) == "250 2.1.5 Ok"
        assert client.data() == "250 2.0.0 Ok: "
    assert check.lookup(ip).result(5) is None


def test_answers_are_kept(server: tuple[str, int]) -> None:
    check = dnsbl(server)
    first = check.lookup("192.0.2.7")
    first.result(5)
    assert check.lookup("192.0.2.7") is first
    client = HookClient(ip="192.0.2.7", helo="x")
    verdict = check.recipient(client, "a@sender.test", BOB)
    assert verdict is not None and verdict.refusal is not None
    assert verdict.refusal.code == 554
