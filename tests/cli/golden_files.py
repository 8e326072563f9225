"""Text layouts compared with files in tests/cli/golden/.

``MAILSTEAD_UPDATE_GOLDEN=1`` rewrites the files from the current output
(then read the diff before committing it).
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "golden"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("MAILSTEAD_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with MAILSTEAD_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")
