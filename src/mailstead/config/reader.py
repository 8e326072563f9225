"""Type-checked reading of the parsed TOML, shared by every section's loader.

Every check names the key path in its error (``listen.smtp[0]``), so a
mistake in the file is reported as one line an operator can act on.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from mailstead.addresses import AddressError, normalize_domain
from mailstead.config.values import parse_duration

__all__ = [
    "ConfigError",
    "Reader",
    "data_path",
    "domain_name",
    "duration",
    "show",
    "unknown_key",
]

_T = TypeVar("_T")


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid (one-line message)."""


class Reader:
    """Type-checked access to the parsed TOML, building key paths for errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.source}: {key}: {message}")

    def table(
        self, parent: Mapping[str, object], name: str, prefix: str, allowed: Sequence[str]
    ) -> dict[str, object]:
        key = f"{prefix}{name}"
        value = parent.get(name, {})
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {show(value)}")
        self.no_unknown(value, f"{key}.", allowed)
        return value

    def no_unknown(self, table: Mapping[str, object], prefix: str, allowed: Sequence[str]) -> None:
        for name in table:
            if name not in allowed:
                self.fail(f"{prefix}{name}", unknown_key(name, allowed))

    def typed(self, value: object, key: str, kind: type[_T], noun: str) -> _T:
        # bool is an int subclass in Python but a distinct type in TOML.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(key, f"expected {noun}, got {show(value)}")
        return value

    def string(self, value: object, key: str) -> str:
        return self.typed(value, key, str, "a string")

    def string_list(self, value: object, key: str) -> list[str]:
        items = self.typed(value, key, list, "an array of strings")
        return [self.string(item, f"{key}[{i}]") for i, item in enumerate(items)]

    def each(self, value: object, key: str, parse: Callable[[str], _T], what: str) -> list[_T]:
        out = []
        for i, text in enumerate(self.string_list(value, key)):
            try:
                out.append(parse(text))
            except ValueError as exc:
                self.fail(f"{key}[{i}]", f"expected {what}, got {show(text)} ({exc})")
        return out


def unknown_key(name: str, allowed: Sequence[str]) -> str:
    """The reason for an unknown key: a close allowed name first (a typo such as
    ``domain`` for ``domains``, ``Listen`` for ``listen``), then all of them."""
    expected = ", ".join(sorted(allowed))
    by_folded = {key.casefold(): key for key in allowed}
    close = by_folded.get(name.casefold().replace("-", "_"))
    if close is None:
        # 0.65: "tsl" finds "tls" (0.67); "bogus" no longer finds "abuse" (0.6).
        matches = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.65)
        close = by_folded[matches[0]] if matches else None
    if close is None:
        return f"unknown key (expected one of: {expected})"
    return f"unknown key; did you mean `{close}`? (expected one of: {expected})"


def show(value: object) -> str:
    """A short, single-line rendering of a TOML value for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)  # escapes control characters
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def duration(
    r: Reader, table: Mapping[str, object], key: str, default: int, *, off: bool = False
) -> int:
    """The duration at ``key`` (its last part) in seconds, or ``default``.

    With ``off``, ``"0"`` is allowed too and gives 0 (never, or turned off).
    """
    name = key.rpartition(".")[2]
    if name not in table:
        return default
    text = r.string(table[name], key)
    if off and text in ("0", "0s"):
        return 0
    try:
        return parse_duration(text)
    except ValueError as exc:
        hint = ' (or "0" for never)' if off else ""
        r.fail(key, f"{exc}{hint}, got {show(text)}")


def domain_name(r: Reader, text: str, key: str) -> str:
    """``text`` as a normalised domain name, or a failure naming ``key``."""
    # Address literals (RFC 5321 §4.1.3) are refused: a local domain names a
    # directory under mail_root, and a hostname goes into EHLO and the banner.
    try:
        if text.strip().startswith("["):
            raise AddressError(text)
        return normalize_domain(text)
    except AddressError:
        r.fail(key, f"expected a domain name, got {show(text)}")


def data_path(r: Reader, data_dir: Path, value: object, key: str) -> Path:
    """A non-empty path from the file, resolved against ``data_dir``."""
    text = r.string(value, key)
    if not text:
        r.fail(key, "must not be empty")
    return (data_dir / Path(text).expanduser()).resolve()
