"""The outbox: which endpoint gets which event, leases, outcomes, replay, secrets.

The contract runs on both engines (``databases``: the queue's SQLite
database, or PostgreSQL); SQLite's own schema steps run on SQLite alone.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from mailstead.directory import Directory
from mailstead.durable import publish_all
from mailstead.events import Event, stored_at
from mailstead.message.summary import message_summary
from mailstead.mta import local_delivery, mail_events
from mailstead.mta.envelope import QueuedMessage, QueuedRecipient
from mailstead.store import MaildirStore
from mailstead.store.account import Account
from mailstead.webhooks.endpoints import ConfiguredEndpoint, config_endpoint_id
from mailstead.webhooks.outbox import Attempted, Outbox
from mailstead.webhooks.signing import verify
from mailstead.webhooks.staging import SETTLE
from tests.mta.queue_backends import Databases, databases
from tests.webhooks.fakes import Clock

__all__ = ["databases"]  # the fixture, for pytest


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(databases: Databases, clock: Clock) -> Iterator[Outbox]:
    with databases.outbox(clock=clock) as o:
        yield o


def received(account: str = "alice@example.test", domain: str = "example.test") -> Event:
    return Event("message.received", {"subject": "hi"}, account=account, domain=domain)


def pending(outbox: Outbox) -> list[tuple[str, str]]:
    return sorted((d.endpoint_id, d.event_type) for d in outbox.deliveries(state="pending"))


def test_an_event_goes_to_each_endpoint_that_subscribes(outbox: Outbox) -> None:
    everything = outbox.endpoints.add("https://a.test/", ["*"])
    messages = outbox.endpoints.add("https://b.test/", ["message.*"])
    auth = outbox.endpoints.add("https://c.test/", ["auth.failed"])
    other_domain = outbox.endpoints.add("https://d.test/", ["*"], domain="other.test")
    bob_only = outbox.endpoints.add("https://e.test/", ["*"], account="bob@example.test")
    outbox.emit([received()])
    assert pending(outbox) == sorted(
        [(everything.id, "message.received"), (messages.id, "message.received")]
    )
    outbox.emit([Event("auth.failed", {}, account="bob@example.test", domain="example.test")])
    assert (auth.id, "auth.failed") in pending(outbox)
    assert (bob_only.id, "auth.failed") in pending(outbox)
    assert (messages.id, "auth.failed") not in pending(outbox)
    assert other_domain.id not in {endpoint for endpoint, _ in pending(outbox)}


def test_without_a_subscriber_nothing_is_stored(outbox: Outbox) -> None:
    assert not outbox.wants("message.received")
    outbox.emit([received()])
    outbox.endpoints.add("https://a.test/", ["auth.*"])
    assert outbox.wants("auth.failed") and not outbox.wants("message.received")
    outbox.emit([received()])
    assert outbox.deliveries() == []


def test_queue_events_commit_with_the_queue_change(databases: Databases, outbox: Outbox) -> None:
    outbox.endpoints.add("https://a.test/", ["message.queued"])
    woken: list[bool] = []
    outbox.on_emitted = lambda ids: woken.append(True)
    with databases.queue(events=outbox) as queue:
        staged = queue.stage(
            "alice@example.test",
            [QueuedRecipient("bob@remote.test")],
            [b"Subject: x\r\n\r\nx\r\n"],
            received_at=1.0,
        )
        assert outbox.deliveries() == []  # staged: neither rows nor event yet
        staged.publish()
        staged.close()
        (delivery,) = outbox.deliveries()
    assert delivery.event_type == "message.queued" and woken == [True]
    (claimed,) = outbox.claim(outbox.endpoints.list()[0], 10, lease=60)
    payload = json.loads(claimed.payload)
    assert payload["data"]["queue_id"] == staged.queue_id
    assert payload["data"]["rcpt_to"] == ["bob@remote.test"]
    assert payload["account"] == "alice@example.test" and payload["version"] == 1


def test_a_claimed_delivery_is_leased(outbox: Outbox, clock: Clock) -> None:
    endpoint = outbox.endpoints.add("https://a.test/")
    outbox.emit([received(), received()])
    assert len(outbox.claim(endpoint, 1, lease=60)) == 1
    assert len(outbox.claim(endpoint, 10, lease=60)) == 1  # the other one
    assert outbox.claim(endpoint, 10, lease=60) == []
    clock.now += 61  # the worker holding them died: the leases ran out
    assert len(outbox.claim(endpoint, 10, lease=60)) == 2


def test_an_ordered_endpoint_gets_one_delivery_per_account_at_a_time(
    outbox: Outbox, clock: Clock
) -> None:
    endpoint = outbox.endpoints.add("https://a.test/", ordered=True)
    outbox.emit([received("alice@example.test"), received("alice@example.test")])
    outbox.emit([received("bob@example.test")])
    first = outbox.claim(endpoint, 10, lease=60)
    accounts = sorted(json.loads(c.payload)["account"] for c in first)
    assert accounts == ["alice@example.test", "bob@example.test"]
    assert outbox.claim(endpoint, 10, lease=60) == []  # alice's second waits for her first
    alice_first = next(c for c in first if json.loads(c.payload)["account"].startswith("alice"))
    outbox.record(
        [
            Attempted(
                alice_first,
                status=500,
                error="HTTP 500",
                elapsed=0.1,
                response=None,
                next_attempt=clock.now + 10,
                succeeded=False,
            )
        ]
    )
    clock.now += 5
    assert outbox.claim(endpoint, 10, lease=60) == []  # still waiting for its retry
    clock.now += 6
    (again,) = outbox.claim(endpoint, 10, lease=60)
    assert again.id == alice_first.id and again.attempts == 1


def test_outcomes_410_disables_and_giving_up_fails(outbox: Outbox, clock: Clock) -> None:
    endpoint = outbox.endpoints.add("https://a.test/")
    outbox.emit([received(), received()])
    one, two = outbox.claim(endpoint, 10, lease=60)
    outbox.record(
        [
            Attempted(one, None, "timeout", 30, None, next_attempt=None, succeeded=False),
            Attempted(two, 410, "HTTP 410", 0.1, "gone", None, False, disable_reason="410 Gone"),
        ]
    )
    assert {d.state for d in outbox.deliveries()} == {"failed"}
    (disabled,) = outbox.endpoints.list()
    assert not disabled.enabled and disabled.disabled_reason == "410 Gone"
    assert not outbox.wants("message.received")


def test_replay_sends_the_same_event_under_a_new_webhook_id(outbox: Outbox) -> None:
    endpoint = outbox.endpoints.add("https://a.test/")
    outbox.emit([received()])
    (claimed,) = outbox.claim(endpoint, 10, lease=60)
    outbox.record([Attempted(claimed, 200, None, 0.1, "ok", next_attempt=None, succeeded=True)])
    new_id = outbox.replay(claimed.id)
    (again,) = outbox.claim(endpoint, 10, lease=60)
    assert again.id == new_id != claimed.id
    assert again.event_id == claimed.event_id and again.payload == claimed.payload
    with pytest.raises(KeyError):
        outbox.replay("msg_nope")


def test_rotation_signs_with_both_secrets_for_a_day(outbox: Outbox, clock: Clock) -> None:
    endpoint = outbox.endpoints.add("https://a.test/")
    old = endpoint.secrets[0][0]
    new = outbox.endpoints.rotate_secret(endpoint.id)
    rotated = outbox.endpoints.get(endpoint.id)
    assert rotated.signing_secrets(clock.now) == [new, old]
    assert rotated.signing_secrets(clock.now + 24 * 3600 + 1) == [new]
    from mailstead.webhooks.signing import sign_headers

    headers = sign_headers(rotated.signing_secrets(clock.now), "msg_1", b"{}", int(clock.now))
    verify(old, b"{}", headers, now=clock.now)  # a receiver not yet switched
    verify(new, b"{}", headers, now=clock.now)  # and one already switched


def test_config_endpoints_follow_the_file(outbox: Outbox) -> None:
    registry = outbox.endpoints
    registry.sync_config([ConfiguredEndpoint("https://a.test/", ("message.*",))])
    (made,) = registry.list()
    assert made.id == config_endpoint_id("https://a.test/") and made.source == "config"
    secret = made.secrets[0][0]
    registry.sync_config([ConfiguredEndpoint("https://a.test/", ("*",), account="a@x.test")])
    (kept,) = registry.list()
    assert kept.events == ("*",) and kept.secrets[0][0] == secret  # a made secret is kept
    assert kept.account == "a@x.test"
    registry.sync_config([ConfiguredEndpoint("https://a.test/", ("*",), enabled=False)])
    assert not registry.list()[0].enabled
    registry.sync_config([ConfiguredEndpoint("https://a.test/", ("*",))])
    assert registry.list()[0].enabled
    registry.add("https://cli.test/")
    registry.sync_config([])
    assert [e.url for e in registry.list()] == ["https://cli.test/"]


def test_staged_events_wait_for_their_message_then_go_to_this_worker(
    outbox: Outbox, clock: Clock
) -> None:
    endpoint = outbox.endpoints.add("https://a.test/")
    handed: list[Sequence[str]] = []
    outbox.on_emitted = handed.append
    staged = outbox.stage([received()])
    staged.publish()
    # Committed before the mailbox copies are published: no other worker
    # may send it yet, and this one is not told until every copy is in.
    assert outbox.claim(endpoint, 10, lease=60) == [] and handed == []
    staged.close()
    (ids,) = handed
    (mine,) = outbox.claim(endpoint, 10, lease=60, only=ids)
    assert [mine.id] == list(ids)
    clock.now += SETTLE + 1  # had this worker died, another sends it after the hold
    outbox.record([Attempted(mine, None, "timeout", 1.0, None, clock.now, False)])
    assert [c.id for c in outbox.claim(endpoint, 10, lease=60)] == list(ids)


def test_publishing_with_a_stale_endpoint_list_does_not_deadlock(outbox: Outbox) -> None:
    # The list is re-read while staging: that read must not need the lock
    # the staging transaction holds (it once did, and SMTP hung).
    outbox.endpoints.add("https://a.test/")
    errors: list[BaseException] = []

    def stage() -> None:
        try:
            for _ in range(3):
                outbox.endpoints._changed()  # as if a second had passed
                staged = outbox.stage([received()])
                staged.publish()
                staged.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=stage) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=20)
    assert not any(w.is_alive() for w in workers) and errors == []
    assert len(outbox.deliveries()) == 12


def test_an_undone_message_takes_its_events_back(outbox: Outbox) -> None:
    endpoint = outbox.endpoints.add("https://a.test/")
    staged = outbox.stage([received()])
    staged.publish()
    staged.undo()
    staged.close()
    assert outbox.deliveries() == [] and outbox.claim(endpoint, 10, lease=60) == []


def test_a_received_message_is_stored_raw_and_summarised_when_claimed(
    outbox: Outbox, tmp_path: Path
) -> None:
    raw = (
        b"From: Zo\xc3\xab <zoe@sender.test>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nHi\r\n"
    )
    endpoint = outbox.endpoints.add("https://hooks.example/x")
    events = mail_events.received(
        [("alice@example.test", "alice@example.test")],
        queue_id="Q1",
        mail_from="zoe@sender.test",
        content=raw,
        client=None,
        max_body_bytes=1024,
        received_at=0.0,
    )
    assert events[0].raw_message == raw  # nothing summarised on the mail path
    outbox.emit(events)
    (claimed,) = outbox.claim(endpoint, 10, 60.0)
    sent = json.loads(claimed.payload)
    assert sent["data"]["message"] == message_summary(raw, max_body_bytes=1024)
    assert sent["data"]["message"]["headers"]["subject"] == "Grüße"


def test_an_outbox_of_an_older_version_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE webhook_events (id TEXT PRIMARY KEY, type TEXT NOT NULL, account TEXT,"
            " domain TEXT, created_at REAL NOT NULL, payload BLOB NOT NULL)"
        )
        old.execute(
            "INSERT INTO webhook_events VALUES ('evt_1', 'auth.failed', NULL, NULL, 0, '{}')"
        )
    with Outbox(path) as outbox:
        endpoint = outbox.endpoints.add("https://hooks.example/x")
        outbox.emit([Event("auth.failed", {"n": 1})])
        (claimed,) = outbox.claim(endpoint, 10, 60.0)
    assert json.loads(claimed.payload)["data"] == {"n": 1}


def test_a_received_message_carries_the_uid_imap_shows(outbox: Outbox, tmp_path: Path) -> None:
    endpoint = outbox.endpoints.add("https://hooks.example/x")
    copy = MaildirStore(tmp_path / "mail").stage(
        "alice@example.test", [b"Subject: a\n\nx\n"], "", 0
    )
    place = copy.stored_as
    publish_all([copy])
    received = mail_events.received(
        [("alice@example.test", "alice@example.test")],
        queue_id="Q1",
        mail_from="zoe@sender.test",
        content=b"Subject: a\r\n\r\nx\r\n",
        client=None,
        max_body_bytes=1024,
        received_at=0.0,
    )
    outbox.emit(stored_at(received, {"alice@example.test": place.encode()}))
    (claimed,) = outbox.claim(endpoint, 10, 60.0)
    data = json.loads(claimed.payload)["data"]
    account = Account(Path(place.path))
    inbox = account.mailbox("INBOX")
    inbox.refresh()  # an IMAP SELECT
    assert (data["uid"], data["uidvalidity"]) == (inbox.uids[0], inbox.uidvalidity)
    assert list(data)[:5] == ["queue_id", "mailbox", "folder", "uid", "uidvalidity"]
    # Told once, kept: a retry after the message was expunged says the same.
    inbox.expunge(inbox.uids)
    account.index.close()
    outbox.record([Attempted(claimed, 500, None, 0.1, None, 0.0, False)])
    (again,) = outbox.claim(endpoint, 10, 60.0)
    assert json.loads(again.payload)["data"]["uid"] == data["uid"]


def test_a_received_message_without_its_place_has_a_null_uid(outbox: Outbox) -> None:
    endpoint = outbox.endpoints.add("https://hooks.example/x")
    outbox.emit([received()])
    (claimed,) = outbox.claim(endpoint, 10, 60.0)
    data = json.loads(claimed.payload)["data"]
    assert data == {"subject": "hi", "uid": None, "uidvalidity": None}


def test_a_message_the_queue_delivers_locally_carries_its_uid_too(
    outbox: Outbox, tmp_path: Path
) -> None:
    endpoint = outbox.endpoints.add("https://hooks.example/x")
    store = MaildirStore(tmp_path / "mail")
    message = QueuedMessage("Q1", "zoe@sender.test", 0.0, 9, None, None, tmp_path / "q", ())
    with Directory(tmp_path / "directory.sqlite3", ["example.test"]) as directory:
        directory.add_user("alice@example.test", "pw")
        result = local_delivery.deliver(
            message,
            "alice@example.test",
            b"Subject: queued\n\nx\n",
            directory=directory,
            store=store,
            sink=outbox,
            max_body_bytes=1024,
        )
    outbox.emit(result.events)
    (claimed,) = outbox.claim(endpoint, 10, 60.0)
    data = json.loads(claimed.payload)["data"]
    account = Account(store.maildir("alice@example.test").path)
    inbox = account.mailbox("INBOX")
    inbox.refresh()
    assert (data["uid"], data["uidvalidity"]) == (inbox.uids[0], inbox.uidvalidity)
    account.index.close()
