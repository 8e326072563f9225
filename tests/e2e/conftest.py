from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ServerHandle, running_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    with running_server(tmp_path) as handle:
        yield handle


@pytest.fixture
def mbox_server(tmp_path: Path) -> Iterator[ServerHandle]:
    with running_server(tmp_path, storage="mbox") as handle:
        yield handle
