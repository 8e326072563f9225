"""The base subject of RFC 5256 §2.1, which SORT SUBJECT and THREAD compare.

    base_subject(b"Re: [list] Fwd: Hello (fwd)")  ->  BaseSubject("Hello", True)

The steps of §2.1, on the decoded text (RFC 2047 words undone, step 1):

(2) strip every trailer ``(fwd)`` or white space at the end, repeatedly;
(3) strip every leader at the start: white space, or ``[blob]``s followed
    by ``re``, ``fw`` or ``fwd``, white space, an optional ``[blob]`` and ``:``;
(4) strip one ``[blob]`` at the start if something is left after it;
(5) repeat (3) and (4) until nothing changes;
(6) if the text is ``[fwd: ... ]``, unwrap it and go back to (2).

The grammar is that of RFC 5256 §5 (``subj-refwd``, ``subj-blob``,
``subj-trailer``, ``subj-fwd-hdr``); keywords match case-insensitively.
Every step removes text, so the work is linear in the subject's length
(bounded by :data:`MAX_SUBJECT` anyway).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from mailstead.proto.imap.mime_words import decode_words

__all__ = ["MAX_SUBJECT", "BaseSubject", "base_subject", "casemap"]

MAX_SUBJECT = 4096
"""Characters of a decoded subject looked at; the rest cannot change the order much."""

# Step 1: tabs and folding become a space, runs of spaces one space.
_WHITE = re.compile(r"[ \t\r\n]+")
# subj-blob = "[" *BLOBCHAR "]" *WSP  (BLOBCHAR: anything but "[", "]" and NUL)
_BLOB = re.compile(r"\[[^\[\]\x00]*\] *")
# subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
_REFWD = re.compile(r"(?:re|fwd?) *(?:\[[^\[\]\x00]*\] *)?:", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class BaseSubject:
    """The base subject text, and whether the subject marked a reply or forward.

    ``reply`` is what THREAD=REFERENCES step 5 asks (RFC 5256 §3): the
    subject had a ``subj-refwd`` (Re:, Fw:, Fwd:), a ``(fwd)`` trailer or a
    ``[fwd: ...]`` wrapper.
    """

    text: str
    reply: bool


def _strip_trailers(text: str) -> tuple[str, bool]:
    """Step 2: remove ``(fwd)`` and white space at the end, as often as they appear."""
    reply = False
    while True:
        if text.endswith(" "):
            text = text.rstrip(" ")
        elif text[-5:].lower() == "(fwd)":
            text = text[:-5]
            reply = True
        else:
            return text, reply


def _leader(text: str) -> tuple[int, bool]:
    """Step 3: the length of one ``subj-leader`` at the start (0: none), and if it was Re/Fwd."""
    if text.startswith(" "):
        return 1, False
    pos = 0
    # *subj-blob subj-refwd: the blobs count only if a refwd follows them.
    while True:
        match = _REFWD.match(text, pos)
        if match is not None:
            return match.end(), True
        blob = _BLOB.match(text, pos)
        if blob is None:
            return 0, False
        pos = blob.end()


def base_subject(subject: bytes | str) -> BaseSubject:
    """The RFC 5256 §2.1 base subject of a Subject field value (raw octets or decoded)."""
    text = decode_words(subject, latin1=True) if isinstance(subject, bytes) else subject
    text = _WHITE.sub(" ", text[:MAX_SUBJECT])  # step 1
    reply = False
    while True:
        text, was_fwd = _strip_trailers(text)  # step 2
        reply |= was_fwd
        while True:  # step 5: (3) and (4) until nothing more goes
            length, was_reply = _leader(text)  # step 3
            if length:
                text = text[length:]
                reply |= was_reply
                continue
            # Step 4, and its repeats: step 3 just found no Re/Fwd after the
            # blobs here, nor will it after fewer of them (linear, not quadratic).
            removed = False
            while (blob := _BLOB.match(text)) is not None and blob.end() < len(text):
                text = text[blob.end() :]  # only if a subj-base remains
                removed = True
            if not removed:
                break
        # Step 6: subj-fwd-hdr "[fwd:" ... subj-fwd-trl "]".
        if text[:5].lower() == "[fwd:" and text.endswith("]"):
            text = text[5:-1]
            reply = True
            continue
        return BaseSubject(text, reply)


def casemap(text: str) -> str:
    """The sort and comparison key of a string (RFC 5051 i;unicode-casemap, closely).

    RFC 5256 §1 asks for I18NLEVEL=1 collation (RFC 5255 §4.1): compatibility
    decomposition and case folding, so "Ärger", "ärger" and "A\u0308rger" are equal.
    """
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKD", text).casefold()
