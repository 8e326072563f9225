"""The ``tag=value; tag=value`` records DKIM, DMARC, MTA-STS and TLS-RPT publish.

All four use the same shape: RFC 6376 §3.2 (DKIM's tag-list, which DMARC
borrows in RFC 7489 §6.4), RFC 8461 §3.1 and RFC 8460 §3 write theirs alike.
"""

from __future__ import annotations

import re

__all__ = ["TagError", "parse_tags", "select"]

_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class TagError(ValueError):
    """A record is not a tag-list; the message says where."""


def parse_tags(text: str) -> dict[str, str]:
    """The tags of ``text``, names as written, values without surrounding whitespace.

    RFC 6376 §3.2: a tag appearing twice makes the whole list invalid; an
    empty last element (a trailing ``;``) is allowed.
    """
    tags: dict[str, str] = {}
    parts = text.split(";")
    for i, part in enumerate(parts):
        if not part.strip():
            if i == len(parts) - 1:
                continue
            raise TagError("an empty tag between two ';'")
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not _TAG_NAME.fullmatch(name):
            raise TagError(f"{part.strip()!r} is not tag=value")
        if name in tags:
            raise TagError(f"the tag {name}= appears twice")
        tags[name] = value.strip()
    return tags


def select(records: list[bytes], version: str) -> list[str]:
    """The records whose first tag is exactly ``v=<version>`` (RFC 7489 §6.4, RFC 8461 §3.1)."""
    out = []
    for raw in records:
        text = raw.decode("utf-8", "replace")
        first = text.split(";", 1)[0]
        name, _, value = first.partition("=")
        if name.strip() == "v" and value.strip() == version:
            out.append(text)
    return out
