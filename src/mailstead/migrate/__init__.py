"""Moving a node's data into the cluster database and back (``mailstead migrate``).

One job per module: :mod:`~mailstead.migrate.plan` (what to copy, and the
refusals), :mod:`~mailstead.migrate.state` (the progress rows that make a
run resumable), one ``copy_*`` module per component, ``local_mail`` (the
node's mailboxes as the IMAP server sees them),
:mod:`~mailstead.migrate.verify` (counts and checksums on both sides),
:mod:`~mailstead.migrate.progress` (what a watcher is told), and the two
directions: :mod:`~mailstead.migrate.to_postgresql` and
:mod:`~mailstead.migrate.to_maildir`.
"""

from __future__ import annotations

from mailstead.migrate.plan import MigrationError
from mailstead.migrate.progress import NO_PROGRESS, Progress
from mailstead.migrate.state import Unit
from mailstead.migrate.to_postgresql import migrate_to_postgresql
from mailstead.migrate.verify import Check, Report

__all__ = [
    "NO_PROGRESS",
    "Check",
    "MigrationError",
    "Progress",
    "Report",
    "Unit",
    "migrate_to_postgresql",
]
