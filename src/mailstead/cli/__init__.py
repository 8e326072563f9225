"""The ``mailstead`` command line (DESIGN.md §3): thin — it parses arguments,
calls the services, and turns their errors into one line on stderr.

``root.py`` builds the ``mailstead`` group and adds one command group per
module (``user.py``, ``queue.py`` …); ``common.py`` holds what they share:
one-line errors, ``--json`` output, loading the config.
"""

from mailstead.cli.root import main

__all__ = ["main"]
