"""The caniemail client-support table, read from the JSON shipped with the package.

``scripts/fetch_caniemail.py`` writes ``templates/data/caniemail.json``; this
module reads it once and answers one question: for a feature, which client
platforms do not support it, or only partly, in their most recent test.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

__all__ = [
    "MAJOR",
    "ClientIssue",
    "Feature",
    "SupportTable",
    "load_table",
    "parse_clients",
]

# The platforms most mail is read on: a feature they lack is an error. The
# rest (Gmail's mobile web view, Windows Mail, Samsung, Thunderbird, the
# regional webmails...) make it a warning.
MAJOR: frozenset[tuple[str, str]] = frozenset(
    {
        ("gmail", "desktop-webmail"),
        ("gmail", "ios"),
        ("gmail", "android"),
        ("outlook", "windows"),
        ("outlook", "macos"),
        ("outlook", "outlook-com"),
        ("outlook", "ios"),
        ("outlook", "android"),
        ("apple-mail", "macos"),
        ("apple-mail", "ios"),
        ("yahoo", "desktop-webmail"),
        ("yahoo", "ios"),
        ("yahoo", "android"),
    }
)


@dataclass(frozen=True, slots=True)
class ClientIssue:
    """One client platform that lacks a feature ("n") or supports it in part ("a")."""

    family: str
    platform: str
    support: str  # "n" or "a"
    version: str  # the tested version the verdict comes from
    notes: tuple[str, ...]

    @property
    def major(self) -> bool:
        return (self.family, self.platform) in MAJOR

    def to_json(self) -> dict[str, object]:
        return {
            "family": self.family,
            "platform": self.platform,
            "support": "none" if self.support == "n" else "partial",
            "version": self.version,
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class Feature:
    """One caniemail feature: its title, its page, and the platforms that lack it."""

    slug: str
    title: str
    category: str
    url: str
    issues: tuple[ClientIssue, ...]


class SupportTable:
    """Features by slug, each reduced to the latest verdict per client platform."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.package_version = str(raw["package_version"])
        self.data_date = str(raw["data_date"])
        self.families: dict[str, str] = dict(raw["families"])
        self.platforms: dict[str, str] = dict(raw["platforms"])
        self._features: dict[str, Feature] = {}
        tested: set[tuple[str, str]] = set()
        for slug, body in cast(dict[str, dict[str, Any]], raw["features"]).items():
            notes: dict[str, str] = body["notes"]
            issues: list[ClientIssue] = []
            for family, platforms in body["support"].items():
                for platform, versions in platforms.items():
                    tested.add((family, platform))
                    if not versions:
                        continue
                    # The data lists tests oldest first: the last is today's client.
                    version, (support, numbers) = list(versions.items())[-1]
                    if support in ("n", "a"):
                        texts = tuple(notes[str(n)] for n in numbers if str(n) in notes)
                        issues.append(ClientIssue(family, platform, support, version, texts))
            self._features[slug] = Feature(
                slug, body["title"], body["category"], body["url"], tuple(issues)
            )
        self.tested: frozenset[tuple[str, str]] = frozenset(tested)

    def __contains__(self, slug: object) -> bool:
        return slug in self._features

    def feature(self, slug: str) -> Feature:
        return self._features[slug]

    def family_name(self, family: str) -> str:
        return self.families.get(family, family)

    def platform_name(self, platform: str) -> str:
        return self.platforms.get(platform, platform)


@functools.cache
def load_table() -> SupportTable:
    """The shipped table, parsed once per process."""
    text = (
        resources.files("mailstead.templates")
        .joinpath("data", "caniemail.json")
        .read_text(encoding="utf-8")
    )
    return SupportTable(json.loads(text))


def parse_clients(names: Sequence[str] | None) -> frozenset[tuple[str, str]] | None:
    """``["gmail", "outlook.windows"]`` -> the (family, platform) pairs they name.

    ``None`` means every client. A family alone names all its platforms; an
    unknown name is a ``ValueError`` listing the known families.
    """
    if names is None:
        return None
    table = load_table()
    chosen: set[tuple[str, str]] = set()
    if isinstance(names, str):
        names = names.split(",")
    for name in names:
        family, _, platform = name.strip().lower().partition(".")
        matches = {pair for pair in table.tested if pair[0] == family and platform in ("", pair[1])}
        if not matches:
            known = ", ".join(sorted(table.families))
            raise ValueError(f"unknown mail client {name!r} (known: {known}; or family.platform)")
        chosen |= matches
    return frozenset(chosen)
