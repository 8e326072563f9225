"""``[log]``: format, file, rotation; every mistake named by its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.config.log import LogConfig, load_log
from mailstead.config.reader import ConfigError, Reader

DATA = Path("/srv/mail/var")


def loaded(table: dict[str, object]) -> LogConfig:
    return load_log(Reader("mailstead.toml"), {"log": table}, DATA)


def test_defaults_write_logfmt_to_the_data_dir() -> None:
    config = loaded({})
    assert (config.format, config.file) == ("logfmt", DATA / "log" / "mailstead.log")
    assert config.files() == [
        *(DATA / "log" / f"mailstead.log.{i}" for i in (5, 4, 3, 2, 1)),
        DATA / "log" / "mailstead.log",
    ]


def test_json_a_file_of_its_own_and_none() -> None:
    config = loaded({"format": "json", "file": "logs/mail.log", "max_bytes": 65536, "keep": 1})
    assert (config.format, config.file, config.max_bytes) == ("json", DATA / "logs/mail.log", 65536)
    assert config.files() == [DATA / "logs/mail.log.1", DATA / "logs/mail.log"]
    assert loaded({"file": False}).files() == []


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({"format": "text"}, 'log.format: expected "logfmt" or "json", got "text"'),
        ({"file": True}, "log.file: expected a path or false, got true"),
        ({"file": ""}, "log.file: must not be empty"),
        ({"max_bytes": 1000}, "log.max_bytes: must be at least 65536, got 1000"),
        ({"keep": 0}, "log.keep: must be 1 to 100, got 0"),
        (
            {"level": "debug"},
            "log.level: unknown key (expected one of: file, format, keep, max_bytes)",
        ),
    ],
)
def test_mistakes_name_their_key(table: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        loaded(table)
    assert str(raised.value) == f"mailstead.toml: {error}"
