"""The check hook at each SMTP stage, with a small blocklist check of the test's own."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from mailstead.directory import Directory
from mailstead.limits import SMTPLimits
from mailstead.mailauth.hook import Checks, Client, Verdict
from mailstead.mta.queue import Queue
from mailstead.mta.receiver import Peer, Receiver, Refused, Role
from mailstead.proto.smtp.events import MailParams, RcptParams
from mailstead.proto.smtp.replies import Reply
from mailstead.store import open_store

BLOCKED = Reply(554, "5.7.1", "Service unavailable; client host blocked")


class Blocklist:
    """Refuses one address at the connection, one sender, one recipient; stamps the rest."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def connection(self, client: Client) -> Verdict | None:
        self.asked.append(f"connection {client.ip}")
        return Verdict(BLOCKED, cause="listed") if client.ip == "192.0.2.66" else None

    def sender(self, client: Client, sender: str) -> Verdict | None:
        self.asked.append(f"sender {sender}")
        if sender == "spam@bad.test":
            return Verdict(Reply(550, "5.7.1", "Sender refused"))
        return None

    def recipient(self, client: Client, sender: str, recipient: str) -> Verdict | None:
        self.asked.append(f"recipient {recipient}")
        if recipient == "trap@example.test":
            return Verdict(Reply(550, "5.1.1", "No such user"))
        return None

    def body(
        self, client: Client, sender: str, recipients: Sequence[str], content: bytes
    ) -> Verdict | None:
        self.asked.append(f"body {len(content)}")
        return Verdict(results=("x-blocklist=pass",), log={"blocklist": "pass"})


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Receiver, Blocklist]]:
    with Directory(tmp_path / "d.sqlite3", ["example.test"]) as directory:
        directory.add_user("bob@example.test", "pw")
        directory.add_user("trap@example.test", "pw")
        check = Blocklist()
        receiver = Receiver(
            Role.MTA,
            hostname="mx.example.test",
            domains=["example.test"],
            directory=directory,
            store=open_store("maildir", tmp_path / "mail"),
            queue=Queue(tmp_path),
            limits=SMTPLimits(),
            checks=Checks("mx.example.test", [check]),
        )
        yield receiver, check


def refusal(call: object, *args: object) -> str:
    with pytest.raises(Refused) as refused:
        call(*args)  # type: ignore[operator]
    return refused.value.reply.one_line()


def test_a_listed_client_is_refused_before_its_sender_is_asked(
    setup: tuple[Receiver, Blocklist],
) -> None:
    receiver, check = setup
    # C: MAIL FROM:<alice@good.test>   S: 554 5.7.1 …
    peer = Peer(ip="192.0.2.66", helo="x.test")
    start = receiver.start
    assert refusal(start, peer, "alice@good.test", MailParams()) == (
        "554 5.7.1 Service unavailable; client host blocked"
    )
    assert check.asked == ["connection 192.0.2.66"]


def test_sender_and_recipient_stages(setup: tuple[Receiver, Blocklist], tmp_path: Path) -> None:
    receiver, check = setup
    peer = Peer(ip="192.0.2.1", helo="x.test")
    assert refusal(receiver.start, peer, "spam@bad.test", MailParams()).startswith("550 5.7.1")
    delivery = receiver.start(peer, "alice@good.test", MailParams())
    assert refusal(delivery.add_rcpt, "trap@example.test", RcptParams()).startswith("550 5.1.1")
    delivery.add_rcpt("bob@example.test", RcptParams())
    delivery.body(b"Subject: hi\r\n\r\nhi\r\n")
    assert delivery.commit().reply.code == 250
    assert check.asked[-3:] == [
        "recipient trap@example.test",
        "recipient bob@example.test",
        "body 19",
    ]
    (stored,) = (tmp_path / "mail/example.test/bob/Maildir/new").iterdir()
    assert b"Authentication-Results: mx.example.test;\n\tx-blocklist=pass\nSubject: hi\n" in (
        stored.read_bytes()
    )
