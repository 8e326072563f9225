"""What an order asks for, and how it fails: shared by the keeper and the order.

Apart from ``order.py`` so the keeper imports certbot's ``acme`` package
(and requests) only when an order runs: a server whose certificate is not
due never loads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["OrderError", "Request"]


class OrderError(Exception):
    """The order failed (one line, naming the ACME server's reason when it gave one)."""


@dataclass(frozen=True, slots=True)
class Request:
    """What to ask for, and of whom."""

    directory: str
    names: Sequence[str]
    challenge: str
    email: str = ""
    ca_file: Path | None = None
