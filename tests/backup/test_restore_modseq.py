"""A restore never takes a mailbox's HIGHESTMODSEQ back (RFC 7162 §3.1)."""

from __future__ import annotations

from pathlib import Path

from mailstead.backup.restore import restore_backup
from mailstead.backup.take import take_backup
from mailstead.store.account import Account
from mailstead.store.index import MODSEQ_RESTORE_GAP
from tests.backup.conftest import MAILDIR


def test_restore_moves_highestmodseq_past_any_value_seen_since(
    data_dir: Path, tmp_path: Path
) -> None:
    live = Account(data_dir / MAILDIR).mailbox("INBOX")
    live.refresh()
    take_backup(data_dir, tmp_path / "backup")
    # Changes after the backup: a client sees modseqs the restored copy never had.
    live.store(live.uids, ["\\Answered"], "+")
    live.store(live.uids, ["\\Draft"], "+")
    seen_by_clients = live.highestmodseq
    restore_backup(tmp_path / "backup", tmp_path / "restored")
    box = Account(tmp_path / "restored" / MAILDIR).mailbox("INBOX")
    box.refresh()
    assert box.uidvalidity == live.uidvalidity
    assert box.highestmodseq > seen_by_clients
    assert box.highestmodseq >= MODSEQ_RESTORE_GAP
    # Every message counts as changed at the restore: a CONDSTORE client
    # re-reads the flags the restore took back.
    assert {box.messages[uid].modseq for uid in box.uids} == {box.highestmodseq}
    assert all("\\Answered" not in box.messages[uid].flags for uid in box.uids)
