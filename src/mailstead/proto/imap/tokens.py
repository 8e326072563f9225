"""The values an IMAP command line is made of, as the parser hands them on.

RFC 9051 §4 has atoms, numbers, strings (quoted or literal), parenthesized
lists and NIL. Numbers and NIL stay atoms here: only the command that reads
an argument knows whether ``123`` is a number or a mailbox name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Atom:
    """A bare word: ``FLAGS``, ``1:*``, ``\\Seen``, ``NIL``, ``BODY.PEEK[TEXT]<0.100>``.

    Fetch attributes keep their ``[section]`` (which may contain spaces and a
    parenthesized header list) and ``<partial>`` in the one atom.
    """

    value: str


@dataclass(frozen=True, slots=True)
class String:
    """A quoted string or a literal (``{n}``, ``{n+}``, ``~{n}``); the bytes it carries."""

    value: bytes
    literal: bool = False
    # RFC 3516 literal8 (``~{n}``), as in APPEND of binary content.
    binary: bool = False


@dataclass(frozen=True, slots=True)
class ParenList:
    """A parenthesized list of tokens, possibly nested."""

    items: tuple[Token, ...]


Token = Atom | String | ParenList
