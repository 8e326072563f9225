"""message.received tells the UID and UIDVALIDITY IMAP shows, with the mail store on PostgreSQL.

As ``test_webhook_uid.py``, but each copy is a row of the cluster database:
the dispatcher asks the database for the UID its delivery got
(``PgMailStore.find_delivered``), whether it runs in the server's process
or, under ``serve``, in a process of its own; and across nodes, where the
node that took the mail is not the one an IMAP client reads it from.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailstead.config import load_config
from tests.e2e.harness import ServerHandle, running_config, write_config
from tests.e2e.process import ServerProcess
from tests.e2e.test_webhook_uid import imap_session, selected, send, told
from tests.e2e.test_webhooks import Receiver, webhook_config


@contextmanager
def node(root: Path, url: str, dsn: str) -> Iterator[ServerHandle]:
    root.mkdir(exist_ok=True)
    path = write_config(root, dsn=dsn, extra=webhook_config(url, '["message.received"]'))
    with running_config(load_config(path)) as handle:
        yield handle


def test_the_uid_in_the_webhook_is_the_one_imap_shows(tmp_path: Path, pg_dsn: str) -> None:
    with Receiver() as receiver, node(tmp_path, receiver.url, pg_dsn) as server:
        send(server, "first", "second", "third")
        from_webhooks = told(receiver, 3)
        with imap_session(server) as imap:
            from_imap = selected(imap)
    assert from_webhooks == from_imap
    assert sorted(uid for _, uid in from_imap.values()) == [1, 2, 3]


def test_mail_taken_by_one_node_read_on_the_other(tmp_path: Path, pg_dsn: str) -> None:
    with (
        Receiver() as receiver,
        node(tmp_path / "a", receiver.url, pg_dsn) as a,
        node(tmp_path / "b", receiver.url, pg_dsn) as b,
    ):
        send(a, "before")
        with imap_session(b) as imap:
            assert selected(imap).keys() == {"before"}  # INBOX stays selected on node B
            send(a, "while selected 1", "while selected 2")
            # Each event is sent once, by whichever node's dispatcher claimed it.
            from_webhooks = told(receiver, 3)
            imap.noop()
            from_imap = selected(imap)
    assert from_webhooks == from_imap


def test_from_serve_whose_dispatcher_runs_in_a_process_of_its_own(
    tmp_path: Path, pg_dsn: str
) -> None:
    with Receiver() as receiver:
        extra = webhook_config(receiver.url, '["message.received"]')
        proc = ServerProcess(tmp_path, workers=2, extra=extra, roles=("smtp", "imap"), dsn=pg_dsn)
        with proc, imap_session(proc.handle) as imap:
            selected(imap)
            send(proc.handle, "one", "two", "three", "four")
            from_webhooks = told(receiver, 4)
            imap.noop()
            from_imap = selected(imap)
    assert from_webhooks == from_imap
