"""The --json shapes docs/cli.md documents, and a checker for them.

A shape is a type (``str``, ``int``, ``bool``, ``None``), a tuple of
alternatives (``(str, None)``), a one-element list (a list of that shape),
or a dict of key to shape (exactly those keys). String shapes may also be a
tuple of allowed literal values via :class:`OneOf`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class OneOf:
    values: tuple[str, ...]


@dataclass(frozen=True)
class Matching:
    pattern: str


TIME = Matching(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
QUEUE_ID = Matching(r"[0-9A-F]{24}")

QUEUE_RECIPIENT = {
    "address": str,
    "state": OneOf(("pending", "deferred", "delivered", "failed")),
    "attempts": int,
    "next_attempt": (TIME, None),
    "last_error": (str, None),
}
QUEUE_MESSAGE = {
    "id": QUEUE_ID,
    "state": OneOf(("active", "deferred", "held")),
    "sender": str,
    "received_at": TIME,
    "held_at": (TIME, None),
    "size": int,
    "recipients": [QUEUE_RECIPIENT],
}
QUEUE_LIST = [QUEUE_MESSAGE]
QUEUE_SHOW = {
    **QUEUE_MESSAGE,
    "envid": (str, None),
    "ret": (OneOf(("FULL", "HDRS")), None),
    "headers": [str],
}
QUEUE_SHOW_BODY = {**QUEUE_SHOW, "body": str}


def check(value: object, shape: object, where: str = "$") -> None:
    """Raise AssertionError naming the first place ``value`` leaves ``shape``."""
    if isinstance(shape, tuple):
        errors = []
        for alternative in shape:
            try:
                check(value, alternative, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError("; ".join(errors))
    if shape is None:
        assert value is None, f"{where}: {value!r} is not null"
    elif isinstance(shape, OneOf):
        assert value in shape.values, f"{where}: {value!r} not in {shape.values}"
    elif isinstance(shape, Matching):
        assert isinstance(value, str) and re.fullmatch(shape.pattern, value), (
            f"{where}: {value!r} does not match {shape.pattern}"
        )
    elif isinstance(shape, list):
        assert isinstance(value, list), f"{where}: not a list"
        for i, item in enumerate(value):
            check(item, shape[0], f"{where}[{i}]")
    elif isinstance(shape, dict):
        assert isinstance(value, dict), f"{where}: not an object"
        assert set(value) == set(shape), f"{where}: keys {sorted(value)} != {sorted(shape)}"
        for key, sub in shape.items():
            check(value[key], sub, f"{where}.{key}")
    elif shape is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: not an int"
    else:
        assert isinstance(shape, type) and isinstance(value, shape), f"{where}: not {shape}"
