"""A receiver with the abuse checks, spoken to like a client: each call gives the reply line."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mailstead.directory import Directory
from mailstead.events import Event
from mailstead.limits import SMTPLimits
from mailstead.mailauth.hook import Check, Checks
from mailstead.mta.queue import Queue
from mailstead.mta.receiver import Delivery, Peer, Receiver, Refused, Role
from mailstead.proto.smtp.events import MailParams, RcptParams
from mailstead.store import open_store

USERS = ("bob@example.test", "carol@example.test", "dave@example.test")


class Events:
    """An event sink of the test's own: keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def wants(self, event_type: str) -> bool:
        return True

    def emit(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def of_type(self, event_type: str) -> list[Event]:
        return [e for e in self.events if e.type == event_type]


class Client:
    """One SMTP client of a receiver: ``mail`` and ``rcpt`` answer with the server's reply."""

    def __init__(self, receiver: Receiver, ip: str, user: str | None = None) -> None:
        self.receiver = receiver
        self.peer = Peer(ip=ip, helo="mta.sender.test", user=user)
        self.delivery: Delivery | None = None

    def mail(self, sender: str) -> str:
        try:
            self.delivery = self.receiver.start(self.peer, sender, MailParams())
        except Refused as refused:
            self.delivery = None
            return refused.reply.one_line()
        return "250 2.1.0 Ok"

    def rcpt(self, recipient: str) -> str:
        assert self.delivery is not None
        try:
            self.delivery.add_rcpt(recipient, RcptParams())
        except Refused as refused:
            return refused.reply.one_line()
        return "250 2.1.5 Ok"

    def data(self, content: bytes = b"Subject: hi\r\n\r\nhi\r\n") -> str:
        assert self.delivery is not None
        delivery, self.delivery = self.delivery, None
        try:
            delivery.body(content)
            return delivery.commit().reply.one_line()[:14]
        except Refused as refused:
            delivery.abort()
            return refused.reply.one_line()


@contextmanager
def receiver_with(
    tmp_path: Path, checks: Sequence[Check] | Checks, role: Role = Role.MTA
) -> Iterator[Receiver]:
    """A receiver for ``example.test`` (users bob, carol, dave) running ``checks``."""
    with Directory(tmp_path / "directory.sqlite3", ["example.test"]) as directory:
        for user in USERS:
            directory.add_user(user, "pw")
        hook = checks if isinstance(checks, Checks) else Checks("mx.example.test", checks)
        yield Receiver(
            role,
            hostname="mx.example.test",
            domains=["example.test"],
            directory=directory,
            store=open_store("maildir", tmp_path / "mail"),
            queue=Queue(tmp_path),
            limits=SMTPLimits(),
            checks=hook,
        )
