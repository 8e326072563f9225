"""The MailboxStore interface: the paths of docs/config.md, INBOX made on first delivery."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import pytest

from mailstead.store import MailboxStore, MaildirStore, MboxStore, open_store

MSG = [b"Subject: hello\n", b"\n", b"hi\n"]


def test_maildir_store_path_contract(tmp_path: Path) -> None:
    store: MailboxStore = open_store("maildir", tmp_path / "mail")
    assert isinstance(store, MaildirStore)
    store.deliver("alice@example.test", MSG, "bob@example.net", 0.0)
    new = tmp_path / "mail" / "example.test" / "alice" / "Maildir" / "new"
    (name,) = os.listdir(new)
    assert (new / name).read_bytes() == b"Subject: hello\n\nhi\n"
    for sub in ("tmp", "cur"):
        assert (new.parent / sub).is_dir()
    assert stat.S_IMODE((tmp_path / "mail" / "example.test").stat().st_mode) == 0o700


def test_mbox_store_path_contract(tmp_path: Path) -> None:
    store: MailboxStore = open_store("mbox", tmp_path / "mail")
    assert isinstance(store, MboxStore)
    store.deliver("alice@example.test", MSG, "bob@example.net", 0.0)
    store.deliver("alice@example.test", MSG, "", 0.0)
    data = (tmp_path / "mail" / "example.test" / "alice" / "mbox").read_bytes()
    assert data == (
        b"From bob@example.net Thu Jan  1 00:00:00 1970\nSubject: hello\n\nhi\n\n"
        b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: hello\n\nhi\n\n"
    )


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown storage format"):
        open_store("mh", tmp_path)


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_inbox_removed_behind_our_back_is_remade(tmp_path: Path, fmt: str) -> None:
    store = open_store(fmt, tmp_path)
    store.deliver("alice@example.test", MSG, "b@example.net", 0.0)
    shutil.rmtree(tmp_path / "example.test")
    store.deliver("alice@example.test", MSG, "b@example.net", 0.0)
    assert (tmp_path / "example.test" / "alice").is_dir()


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_concurrent_first_deliveries_to_many_accounts(tmp_path: Path, fmt: str) -> None:
    store = open_store(fmt, tmp_path)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(10):
                store.deliver(f"u{i}@d{t % 2}.test", MSG, "s@example.net", 0.0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    if fmt == "maildir":
        counts = [len(os.listdir(p)) for p in tmp_path.glob("d*.test/*/Maildir/new")]
    else:
        counts = [p.read_bytes().count(b"\nFrom ") + 1 for p in tmp_path.glob("d*.test/*/mbox")]
    assert sorted(counts) == [4] * 20
