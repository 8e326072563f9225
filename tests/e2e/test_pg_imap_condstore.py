"""The CONDSTORE/QRESYNC suite of ``test_imap_condstore.py`` once more,
with the mail store (and the rest of the shared state) on PostgreSQL."""

# isort: off
from tests.e2e.test_imap_condstore import *  # noqa: F403 - its tests and fixtures
from tests.e2e.test_pg_store import server  # noqa: F401 - the server, on PostgreSQL
# isort: on

# It expects the Maildir scan's modseqs (one for a batch); each delivery here
# takes its own.
del test_mutt_resynchronises_with_qresync  # noqa: F821 - star-imported
