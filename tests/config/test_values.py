"""The value syntaxes of mailstead.toml: "host:port" and durations."""

from __future__ import annotations

import pytest

from mailstead.config import parse_duration, parse_hostport


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:2525", ("127.0.0.1", 2525)),
        ("[::1]:25", ("::1", 25)),
        ("mail.example.test:587", ("mail.example.test", 587)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "foo",
        ":25",
        "host:",
        "::1:25",
        "[::1]",
        "[::1]25",
        "[nothost]:25",
        "h:99999",
        "h:-1",
        "h:2٥",
        "a b:25",
        "[::1:25",
    ],
)
def test_parse_hostport_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_hostport(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("5d", 432000), ("2w", 1209600)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "0s", "1y", "-1m", "1.5h", "5 m", "m"])
def test_parse_duration_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)
