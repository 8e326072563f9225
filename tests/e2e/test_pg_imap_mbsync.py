"""The mbsync suite of ``test_imap_mbsync.py`` once more,
with the mail store (and the rest of the shared state) on PostgreSQL."""

# isort: off
from tests.e2e.test_imap_mbsync import *  # noqa: F403 - its tests and fixtures
from tests.e2e.test_pg_store import server  # noqa: F401 - the server, on PostgreSQL
# isort: on

# These look at the server's Maildir files: the database has none.
del test_mbsync_pushes_local_changes  # noqa: F821 - star-imported
del test_mbsync_repeated_sync_changes_nothing  # noqa: F821 - star-imported
