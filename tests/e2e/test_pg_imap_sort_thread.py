"""``test_imap_sort_thread.py`` once more, with the mail store (and the rest of the
shared state) on PostgreSQL."""

# isort: off
from tests.e2e.test_imap_sort_thread import *  # noqa: F403 - its tests and fixtures
from tests.e2e.test_pg_store import server  # noqa: F401 - the server, on PostgreSQL
# isort: on
