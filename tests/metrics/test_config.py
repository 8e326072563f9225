"""``[listen] metrics``: off by default, "host:port" strings like every listener."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.config import ConfigError, load_config


def load(tmp_path: Path, listen: str) -> object:
    path = tmp_path / "mailstead.toml"
    path.write_text(f'domains = ["example.test"]\n[listen]\n{listen}\n')
    return load_config(path).listen.metrics


def test_off_by_default(tmp_path: Path) -> None:
    assert load(tmp_path, "") == ()


def test_addresses(tmp_path: Path) -> None:
    assert load(tmp_path, 'metrics = ["127.0.0.1:9925", "[::1]:9925"]') == (
        ("127.0.0.1", 9925),
        ("::1", 9925),
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ('"127.0.0.1:9925"', "listen.metrics"),
        (
            '["127.0.0.1"]',
            'listen.metrics[0]: expected "host:port", got "127.0.0.1" (missing port)',
        ),
        ('["127.0.0.1:99999"]', "listen.metrics[0]: "),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, value: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, f"metrics = {value}")
    assert f"mailstead.toml: {error}" in str(raised.value)
