"""Account paths: the layout of docs/config.md, and no address may leave the mail root."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.store import MaildirStore, MboxStore, UnsafePathError
from mailstead.store.paths import account_dir, maildir_path, mbox_path

HOSTILE_ADDRESSES = [
    "../../x@example.test",
    "alice/../bob@example.test",
    "..@example.test",
    ".@example.test",
    ".hidden@example.test",
    "a\x00b@example.test",
    "a\\b@example.test",
    "a\nb@example.test",
    "@example.test",
    "alice@",
    "alice",
    "",
    "alice@../etc",
    "alice@.hidden",
    "alice@..",
    "alice@a/b",
    "alice@a\x00b",
    "alice@a\\b",
    "x" * 65 + "@example.test",
]


def test_layout(tmp_path: Path) -> None:
    assert account_dir(tmp_path, "alice@example.test") == tmp_path / "example.test" / "alice"
    assert maildir_path(tmp_path, "alice@example.test") == (
        tmp_path / "example.test" / "alice" / "Maildir"
    )
    assert mbox_path(tmp_path, "alice@example.test") == tmp_path / "example.test" / "alice" / "mbox"


def test_quoted_local_part_with_at_splits_at_last_at(tmp_path: Path) -> None:
    assert account_dir(tmp_path, "a@b@example.test") == tmp_path / "example.test" / "a@b"


def test_relative_mail_root() -> None:
    assert account_dir(Path("."), "bob@example.test") == Path("example.test/bob")


@pytest.mark.parametrize("address", HOSTILE_ADDRESSES)
def test_hostile_address_is_refused(tmp_path: Path, address: str) -> None:
    with pytest.raises(UnsafePathError):
        account_dir(tmp_path, address)


@pytest.mark.parametrize("address", HOSTILE_ADDRESSES)
def test_hostile_address_creates_nothing(tmp_path: Path, address: str) -> None:
    root = tmp_path / "mail"
    root.mkdir()
    for store in (MaildirStore(root), MboxStore(root)):
        with pytest.raises(UnsafePathError):
            store.deliver(address, [b"Subject: x\n\nhi\n"], "eve@example.net", 0.0)
    assert list(tmp_path.rglob("*")) == [root]


def test_unsafe_path_error_is_value_error() -> None:
    assert issubclass(UnsafePathError, ValueError)
