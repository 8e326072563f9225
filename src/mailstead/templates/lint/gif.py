"""Animated GIFs: how many frames a GIF holds, and the GIF an image refers to."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from mailstead.templates.lint.document import local_file

__all__ = ["GIF_READ_LIMIT", "gif_bytes", "gif_frames"]

GIF_READ_LIMIT = 10 * 1024 * 1024
_GIF_NAME = re.compile(r"\.gif(?:[?#].*)?$", re.IGNORECASE)


def gif_frames(data: bytes) -> int:
    """How many images a GIF holds (GIF89a spec §§17-27: blocks up to the trailer)."""
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        return 0
    pos = 13
    if data[10] & 0x80:  # global colour table
        pos += 3 * (2 << (data[10] & 0x07))
    frames = 0

    def skip_sub_blocks(at: int) -> int:
        while at < len(data) and data[at] != 0:
            at += data[at] + 1
        return at + 1

    while pos < len(data):
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then data sub-blocks
            pos = skip_sub_blocks(pos + 2)
        elif block == 0x2C:  # image descriptor
            frames += 1
            if frames > 1:
                return frames
            flags = data[pos + 9] if pos + 9 < len(data) else 0
            pos += 10
            if flags & 0x80:
                pos += 3 * (2 << (flags & 0x07))
            pos = skip_sub_blocks(pos + 1)  # LZW minimum code size, then the data
        else:
            break
    return frames


def gif_bytes(base_dir: Path | None, src: str) -> bytes | None:
    """The GIF an image's ``src`` holds (``data:``) or names in ``base_dir``, if it does."""
    if src.lower().startswith("data:image/gif;base64,"):
        try:
            return base64.b64decode(src.split(",", 1)[1][: GIF_READ_LIMIT * 2], validate=False)
        except ValueError:
            return None
    if not _GIF_NAME.search(src):
        return None
    path: Path | None = local_file(base_dir, src.split("?")[0].split("#")[0])
    if path is None:
        return None
    try:
        with path.open("rb") as f:
            return f.read(GIF_READ_LIMIT)
    except OSError:
        return None
