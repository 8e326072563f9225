"""An interrupted migration resumes where it stopped and never copies a unit twice.

The fault is injected through the progress watcher: once right after the
first mailbox committed (the next run copies the rest), once in the middle
of a mailbox (its transaction rolls back: nothing of it is in the target,
and the next run copies it whole).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.migrate import Unit, migrate_to_postgresql
from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import connect
from tests.cli.runner import run
from tests.migrate.installation import build, views


class Interrupted(Exception):
    """The injected fault: the process stops here."""


class StopAfterUnits:
    """Stops the run after ``units`` committed units (directory first, then mailboxes)."""

    def __init__(self, units: int) -> None:
        self.left = units
        self.seen: list[Unit] = []

    def begin(self, total: int) -> None:
        pass

    def advance(self, octets: int) -> None:
        pass

    def finished(self, unit: Unit) -> None:
        self.seen.append(unit)
        self.left -= 1
        if self.left == 0:
            raise Interrupted(str(unit))


class StopMidMailbox(StopAfterUnits):
    """Stops the run inside the copy of a mailbox, after its first message."""

    def __init__(self) -> None:
        super().__init__(0)

    def advance(self, octets: int) -> None:
        raise Interrupted("mid-mailbox")


def _copied(dsn: str) -> list[tuple[str, str, str]]:
    with connect(dsn) as raw:
        return [
            (str(k), str(a), str(m))
            for k, a, m in Connection(raw).execute(
                "SELECT kind, account, mailbox FROM mailstead_migration ORDER BY 1, 2, 3"
            )
        ]


def _message_rows(dsn: str) -> int:
    with connect(dsn) as raw:
        (count,) = raw.execute("SELECT count(*) FROM mail_messages").fetchone() or (0,)
        return int(str(count))


@pytest.fixture
def install(tmp_path: Path) -> Path:
    return build(tmp_path / "node").config


def test_a_run_stopped_after_the_first_mailbox_is_finished_by_the_next(
    install: Path, pg_dsn: str
) -> None:
    before = views(install.parent)
    config = load_config(install)
    with pytest.raises(Interrupted):
        migrate_to_postgresql(config, pg_dsn, StopAfterUnits(2))  # directory, first mailbox
    assert _copied(pg_dsn) == [
        ("directory", "", ""),
        ("mailbox", "alice@example.test", "INBOX"),
    ]
    assert _message_rows(pg_dsn) == 3

    result = run(install, "migrate", "--to", "postgresql", pg_dsn)

    assert result.exit_code == 0, result.output
    assert "MISMATCH" not in result.output
    assert "migrated to postgresql: 15 units copied in this run, 17 verified" in result.output
    assert _message_rows(pg_dsn) == 3 + 3 + 2  # alice INBOX, Work; bob INBOX: once each
    assert views(install.parent, dsn=pg_dsn) == before


def test_a_run_stopped_inside_a_mailbox_leaves_none_of_it(install: Path, pg_dsn: str) -> None:
    config = load_config(install)
    with pytest.raises(Interrupted, match="mid-mailbox"):
        migrate_to_postgresql(config, pg_dsn, StopMidMailbox())
    assert _copied(pg_dsn) == [("directory", "", "")]
    assert _message_rows(pg_dsn) == 0

    result = run(install, "migrate", "--to", "postgresql", pg_dsn)

    assert result.exit_code == 0, result.output
    assert _message_rows(pg_dsn) == 8


def test_running_again_after_success_copies_nothing_and_verifies(
    install: Path, pg_dsn: str
) -> None:
    assert run(install, "migrate", "--to", "postgresql", pg_dsn).exit_code == 0

    again = run(install, "migrate", "--to", "postgresql", pg_dsn)

    assert again.exit_code == 0, again.output
    assert "0 units copied in this run, 17 verified" in again.output
    assert _message_rows(pg_dsn) == 8


class Counting(StopAfterUnits):
    """Stops nothing; adds up what it is told."""

    def __init__(self) -> None:
        super().__init__(-1)
        self.total = 0
        self.advanced = 0

    def begin(self, total: int) -> None:
        self.total = total

    def advance(self, octets: int) -> None:
        self.advanced += octets


def test_progress_counts_every_octet_of_mail_and_every_unit(install: Path, pg_dsn: str) -> None:
    watcher = Counting()

    report = migrate_to_postgresql(load_config(install), pg_dsn, watcher)

    assert report.ok
    assert watcher.total > 0
    assert watcher.advanced == watcher.total
    assert [str(u) for u in watcher.seen][:3] == [
        "directory",
        "alice@example.test INBOX",
        "alice@example.test Archive",
    ]
    assert [str(u) for u in watcher.seen][-2:] == ["queue", "webhooks"]


def test_an_export_stopped_inside_an_account_writes_it_again(
    install: Path, pg_dsn: str, tmp_path: Path
) -> None:
    from mailstead.migrate.to_maildir import migrate_to_maildir
    from tests.e2e.harness import write_config

    before = views(install.parent)
    assert run(install, "migrate", "--to", "postgresql", pg_dsn).exit_code == 0
    pg_config = load_config(write_config(install.parent, dsn=pg_dsn))
    out = tmp_path / "back"
    out.mkdir()
    with pytest.raises(Interrupted):
        # The directory is written; alice's account stops after her first message file.
        migrate_to_maildir(pg_config, out / "var", StopMidMailbox())

    alice = out / "var" / "mail" / "example.test" / "alice" / "Maildir"
    assert len(list((alice / "cur").iterdir())) == 1

    result = run(install, "migrate", "--to", "maildir", str(out / "var"))

    assert result.exit_code == 0, result.output
    assert "migrated to maildir: 3 units copied in this run" in result.output  # alice, bob, queue
    assert views(out) == before
