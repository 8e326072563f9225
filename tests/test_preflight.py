"""The preflight names the package to install, for a missing tool and a missing feature."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import tools


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tools, "_SBIN", str(tmp_path))
    tools.problem.cache_clear()
    yield tmp_path
    tools.problem.cache_clear()


def _fake(directory: Path, name: str, output: str) -> None:
    script = directory / name
    # printf is a shell builtin: PATH holds only this directory
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}'\n")
    script.chmod(0o755)


def test_a_missing_tool_names_its_package(bare_path: Path) -> None:
    assert tools.problem("mbsync") == "mbsync is missing: apt-get install isync"


def test_swaks_without_net_ssleay_names_the_recommends(bare_path: Path) -> None:
    _fake(
        bare_path,
        "swaks",
        "=== Basic AUTH supported\n*** TLS not available: requires Net::SSLeay",
    )
    reason = tools.problem("swaks")
    assert reason is not None
    assert reason.endswith("apt-get install libnet-ssleay-perl")


def test_a_tool_with_its_features_passes(bare_path: Path) -> None:
    _fake(bare_path, "swaks", "=== Basic AUTH supported\n=== TLS supported")
    assert tools.problem("swaks") is None


def test_in_ci_a_test_needing_a_missing_tool_fails(
    bare_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install mutt"):
        tools.require("mutt")
