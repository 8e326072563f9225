"""What a migration tells whoever watches it: octets to copy, octets copied, units done.

The command line draws a bar from it (``cli/progress.py``, as backup and
restore do); tests count the units, and may stop a run after one of them
to show that the next run resumes.
"""

from __future__ import annotations

from typing import Protocol

from mailstead.migrate.state import Unit

__all__ = ["NO_PROGRESS", "Progress"]


class Progress(Protocol):
    """Told the octets to copy once (``begin``), each message copied (``advance``) and
    each unit committed (``finished``)."""

    def begin(self, total: int) -> None: ...

    def advance(self, octets: int) -> None: ...

    def finished(self, unit: Unit) -> None: ...


class _Silent:
    """Watches nothing."""

    def begin(self, total: int) -> None:
        pass

    def advance(self, octets: int) -> None:
        pass

    def finished(self, unit: Unit) -> None:
        pass


NO_PROGRESS: Progress = _Silent()
