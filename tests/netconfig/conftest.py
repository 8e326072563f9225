"""The namespace pair every test here may ask for: see :mod:`tests.netconfig.netns`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.netconfig.netns import Pair, make_pair


@pytest.fixture
def pair() -> Iterator[Pair]:
    yield from make_pair()
