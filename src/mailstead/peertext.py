"""Text a peer chose, on its way into a header field or a log line.

The protocols refuse control characters where their grammar forbids them
(an EHLO name, an address, an xtext value); these helpers are the last
line behind that: whatever a writer is handed, no CR, LF, NUL or other
control character reaches a header field (:func:`header_text`) or a log
line (:func:`log_text`). Every writer of peer text uses them, so there is
one definition of "control character", not a replace() per call site.

Pure functions, no I/O: the sans-IO protocols use :func:`has_control` too.
"""

from __future__ import annotations

import re

__all__ = ["CONTROL_CHARS", "has_control", "header_text", "log_text"]

#: Unicode category Cc (C0, DEL, C1 — U+0085 NEL among them) and the line and
#: paragraph separators U+2028/U+2029, which str.splitlines(), JSON log
#: readers and terminals may take for a line end.
CONTROL_CHARS = "".join(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029))

# One character class, no repetition inside: linear on any input.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_RUN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def has_control(text: str) -> bool:
    """True if ``text`` holds any control character (see :data:`CONTROL_CHARS`)."""
    return _CONTROL.search(text) is not None


def header_text(text: str) -> str:
    """``text`` fit for one header field body (RFC 5322 §2.2): one line, no controls.

    Each run of control characters (TAB, CR and LF included) becomes one
    space, so nothing the text holds can end the field or start another.
    """
    return _CONTROL_RUN.sub(" ", text)


def log_text(text: str) -> str:
    r"""``text`` fit for one log line: what is not printable escaped as repr() does.

    ``"t.test\rX-Inj: 1"`` becomes ``t.test\rX-Inj: 1`` with a literal
    backslash; the backslash itself is doubled so the escapes stay
    unambiguous. Printable non-ASCII (an SMTPUTF8 address) is kept; control,
    format (bidi overrides), separator and surrogate characters are not.
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in text)
