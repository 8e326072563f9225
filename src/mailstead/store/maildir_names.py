"""What a Maildir file name says: the unique base, the size, and the flags.

A name in ``cur/`` is ``<base>:2,<flags>`` (https://cr.yp.to/proto/maildir.html):
the base never changes for the life of the message, the flag letters after
``:2,`` are ASCII-sorted. Mailstead reads and writes the letters the way
Dovecot does, so both can share a Maildir:

* upper-case letters are the system flags (``D`` draft, ``F`` flagged,
  ``P`` passed = ``$Forwarded``, ``R`` replied = ``\\Answered``, ``S`` seen,
  ``T`` trashed = ``\\Deleted``);
* lower-case ``a`` … ``z`` are keywords 0 … 25 of the folder's
  ``dovecot-keywords`` file (lines ``<n> <keyword>``).

The base may carry ``,S=<octets on disk>`` and ``,W=<octets with CRLF>``
(Dovecot's size attributes), which spare a read of the file.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from mailstead.durable import write_file_atomically

KEYWORDS_FILE = "dovecot-keywords"
MAX_KEYWORDS = 26

_SYSTEM_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "$Forwarded": "P",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
_LETTER_SYSTEM = {letter: flag for flag, letter in _SYSTEM_LETTERS.items()}
_VSIZE_RE = re.compile(r",W=(\d+)")


def split_name(name: str) -> tuple[str, str]:
    """``(base, flag letters)`` of a file name; no ``:2,`` means no flags."""
    base, sep, info = name.partition(":")
    if sep and info.startswith("2,"):
        return base, info[2:]
    return base, ""


def crlf_size_named(base: str) -> int | None:
    """The ``,W=`` size in ``base``, or None."""
    w = _VSIZE_RE.search(base)
    return int(w.group(1)) if w else None


class Keywords:
    """The keyword ↔ letter table of one Maildir folder (``dovecot-keywords``)."""

    def __init__(
        self, folder: Path, guard: Callable[[], AbstractContextManager[object]] | None = None
    ) -> None:
        self.path = folder / KEYWORDS_FILE
        # Held while a keyword is added: one process at a time reads the file
        # and writes it back, else two could give one letter to two keywords.
        self._guard = guard or contextlib.nullcontext
        self._mtime: tuple[int, int, int] | None = None
        self._by_index: dict[int, str] = {}
        self._by_name: dict[str, int] = {}

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        # The inode too: a rewrite within one mtime tick is a new file.
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._mtime:
            return
        by_index: dict[int, str] = {}
        for line in self.path.read_text("utf-8", "replace").splitlines():
            number, _, name = line.partition(" ")
            if number.isdigit() and name and int(number) < MAX_KEYWORDS:
                by_index[int(number)] = name
        self._by_index = by_index
        self._by_name = {name.lower(): i for i, name in by_index.items()}
        self._mtime = stamp

    def names(self) -> list[str]:
        self._load()
        return [self._by_index[i] for i in sorted(self._by_index)]

    def flags(self, letters: str) -> list[str]:
        """The IMAP flags and keywords the letters stand for (unknown letters dropped)."""
        result = []
        for letter in letters:
            if letter in _LETTER_SYSTEM:
                result.append(_LETTER_SYSTEM[letter])
            elif "a" <= letter <= "z":
                self._load()
                name = self._by_index.get(ord(letter) - ord("a"))
                if name is not None:
                    result.append(name)
        return result

    def letters(self, flags: list[str]) -> str | None:
        """The sorted letters for ``flags``; None when a keyword has no letter left."""
        letters = set()
        for flag in flags:
            letter = _SYSTEM_LETTERS.get(flag)
            if letter is None:
                index = self._index_of(flag)
                if index is None:
                    return None
                letter = chr(ord("a") + index)
            letters.add(letter)
        return "".join(sorted(letters))

    def _index_of(self, keyword: str) -> int | None:
        self._load()
        found = self._by_name.get(keyword.lower())
        if found is not None:
            return found
        with self._guard():
            self._load()  # another process may have added it meanwhile
            found = self._by_name.get(keyword.lower())
            if found is not None:
                return found
            free = next((i for i in range(MAX_KEYWORDS) if i not in self._by_index), None)
            if free is None:
                return None
            by_index = {**self._by_index, free: keyword}
            text = "".join(f"{i} {by_index[i]}\n" for i in sorted(by_index))
            write_file_atomically(self.path, text.encode("utf-8"))
            self._load()
        return free


_UNIQUE_TIME = re.compile(r"(\d+)\.M(\d+)P\d+(?:Q(\d+))?")


def arrival_order(entry: tuple[str, str, str]) -> tuple[int, int, int, str]:
    """Sort key of a Maildir file by the time in its name (``sec.Musec…Qn``).

    The microseconds are not zero-padded, so plain name order would put
    ``M99999`` after ``M100000``; names of another form sort after, by name.
    """
    m = _UNIQUE_TIME.match(entry[0])
    if m is None:
        return (1 << 62, 0, 0, entry[0])
    sec, usec, count = m.groups()
    return (int(sec), int(usec), int(count or 0), entry[0])


def name_time(name: str) -> float:
    """The delivery time a unique name begins with (0 if it has none)."""
    m = _UNIQUE_TIME.match(name)
    return float(m.group(1)) if m else 0.0
