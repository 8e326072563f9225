"""``[run]``: whom the server runs as once its ports are bound."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mailstead.config.reader import Reader, show

__all__ = ["RunConfig", "load_run"]

# What useradd accepts by default (shadow-utils NAME_REGEX, plus digits first).
_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}\$?|[0-9]+")


@dataclass(frozen=True, slots=True)
class RunConfig:
    """The unprivileged account ``serve`` switches to when started as root."""

    #: User name (or number) the server runs as after binding its ports.
    user: str = "mailstead"
    #: Group name (or number); its only group: supplementary groups are dropped.
    group: str = "mailstead"
    #: Keep running as root when started as root (refused otherwise).
    allow_root: bool = False


def load_run(r: Reader, data: Mapping[str, object]) -> RunConfig:
    """The ``[run]`` table of ``data``."""
    t = r.table(data, "run", "", ("user", "group", "allow_root"))
    names: dict[str, str] = {}
    for key in ("user", "group"):
        text = r.string(t.get(key, "mailstead"), f"run.{key}")
        if not _NAME.fullmatch(text):
            r.fail(f"run.{key}", f"expected a {key} name, got {show(text)}")
        names[key] = text
    allow_root = r.typed(t.get("allow_root", False), "run.allow_root", bool, "true or false")
    return RunConfig(user=names["user"], group=names["group"], allow_root=allow_root)
