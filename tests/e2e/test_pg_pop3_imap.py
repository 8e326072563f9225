"""The POP3-and-IMAP-on-one-INBOX suite of ``test_pop3_imap.py`` once more,
with the mail store (and the rest of the shared state) on PostgreSQL."""

# isort: off
from tests.e2e.test_pop3_imap import *  # noqa: F403 - its tests and fixtures
from tests.e2e.test_pg_store import server  # noqa: F401 - the server, on PostgreSQL
# isort: on

# About the Maildir files under a POP3 session: the database has none.
del test_imap_select_during_a_pop3_session_moves_files_under_it  # noqa: F821 - star-imported
