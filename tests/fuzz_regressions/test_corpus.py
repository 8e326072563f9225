"""Every seed of every fuzz target passes, without atheris: the targets stay runnable."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from fuzz.run import FUZZ_DIR, TARGETS

SEEDS = sorted(
    (target, path)
    for target in TARGETS
    for path in (FUZZ_DIR / "corpus" / target).iterdir()
    if path.is_file()
)


@pytest.mark.parametrize(("target", "seed"), SEEDS, ids=[f"{t}/{p.name}" for t, p in SEEDS])
def test_seed(target: str, seed: Path) -> None:
    importlib.import_module(f"fuzz.{target}").test_one_input(seed.read_bytes())


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_has_seeds(target: str) -> None:
    assert any(t == target for t, _ in SEEDS)
