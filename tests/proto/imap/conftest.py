"""The mail the IMAP transcript tests start from."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.proto.imap.imap_transcript import MESSAGES, WHEN, deliver


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A Maildir INBOX holding the three MESSAGES (arrived 17, 18 and 19 July 1996)."""
    root = tmp_path / "Maildir"
    deliver(root, *MESSAGES, when=WHEN)
    return root
