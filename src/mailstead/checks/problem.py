"""A finding of ``mailstead check config``: severity, key, reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Problem", "Severity"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: an ``error`` keeps ``serve`` from running, a ``warning`` does not."""

    severity: Severity
    #: The key path in the file (``listen.smtp[0]``, ``tls.cert``); ``""``
    #: for the file as a whole.
    key: str
    #: One line saying what is wrong and, where it helps, what to do.
    reason: str
    #: The value at fault when the key alone does not say (``0.0.0.0:993``).
    value: str = ""

    def line(self) -> str:
        """``key value: reason``, the form the text output prints."""
        where = " ".join(part for part in (self.key, self.value) if part)
        return f"{where}: {self.reason}" if where else self.reason
