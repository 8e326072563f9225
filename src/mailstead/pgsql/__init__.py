"""PostgreSQL: the shared database of a cluster (``[storage] backend = "postgresql"``).

``connect`` opens connections and pools with the settings every node uses
and a password that never reaches a log line; ``migrate`` keeps each
component's tables at the version the code expects. The tables themselves
belong to the components (directory, queue, outbox, store), each beside its
SQLite sibling.
"""
