"""Fuzz target: the MIME structure of a stored message as IMAP FETCH sees it.

Owns :mod:`mailstead.proto.imap.message` (``ParsedMessage``, ``MimePart``:
header blocks, multipart splitting, message/rfc822 nesting, sections,
BINARY) and :mod:`mailstead.proto.imap.mimeheader` (unfolding, comments,
Content-Type and -Disposition parameters, address lists, ENVELOPE and
BODYSTRUCTURE rendering). The modules promise that no input makes them
raise (``UnknownCTE`` from BINARY aside); oracles: every part lies inside
its parent, sections are the bytes they name, and ENVELOPE / BODY /
BODYSTRUCTURE parse as RFC 9051 §9 writes them.
"""

from __future__ import annotations

from collections.abc import Iterator

from fuzz._harness import fuzz, instrumented
from fuzz._imapsyntax import check_body, check_envelope, check_fetch_response, parse

with instrumented(__name__):
    from mailstead.proto.imap import mimeheader
    from mailstead.proto.imap.fetch import parse_fetch, render_fetch
    from mailstead.proto.imap.message import (
        HEADER,
        HEADER_FIELDS,
        HEADER_FIELDS_NOT,
        MIME,
        TEXT,
        MimePart,
        ParsedMessage,
        Section,
        UnknownCTE,
    )
    from mailstead.proto.imap.tokens import Atom, ParenList

_MAX_VISITED = 200  # parts checked per input; the parser's own bound is MAX_PARTS
_FIELDS = (b"From", b"subject", b"Content-Type", b"x-missing")
_DEFAULT = mimeheader.ContentType(b"TEXT", b"PLAIN", (), False)
_MAX_FETCHED = 4  # parts whose FETCH response is rendered per input
_WHOLE = (
    *("RFC822", "RFC822.HEADER", "RFC822.TEXT", "RFC822.SIZE", "BODY[]", "BODY[TEXT]"),
    *("BODY[HEADER]<2.40>", "BODY[HEADER.FIELDS.NOT (Subject)]", "ENVELOPE", "BODY"),
    *("BODYSTRUCTURE", "UID", "FLAGS", "INTERNALDATE"),
)


class _Source:
    """The fuzzed message as the store hands it to FETCH (``FetchSource``)."""

    uid = 1
    flags = ("\\Seen",)
    internaldate = 0.0
    internaldate_offset = 0

    def __init__(self, msg: ParsedMessage) -> None:
        self.msg = msg
        self.size = msg.size

    def message(self) -> ParsedMessage:
        return self.msg

    def cached(self, item: str) -> bytes | None:
        return None

    def remember(self, item: str, value: bytes) -> None:
        pass


def _fetch(msg: ParsedMessage, items: tuple[str, ...], utf8s: tuple[bool, ...] = (False,)) -> None:
    """Render ``FETCH (items)`` for ``msg`` and check it against the RFC 9051 grammar."""
    request = parse_fetch((ParenList(tuple(Atom(item) for item in items)),))
    for utf8 in utf8s:
        try:
            response = render_fetch(
                request, _Source(msg), seq=1, include_uid=False, add_flags=False, utf8=utf8
            )
        except UnknownCTE:
            return
        check_fetch_response(response, utf8)


def _walk(msg: ParsedMessage) -> Iterator[tuple[tuple[int, ...], MimePart]]:
    """Section numbers and parts in RFC 9051 §6.4.5 numbering, depth first, bounded."""
    root = msg.root
    todo: list[tuple[tuple[int, ...], MimePart]] = []
    if root.is_multipart:
        todo += [((i,), p) for i, p in enumerate(root.parts(), 1)]
    else:
        todo.append(((1,), root))
    seen = 0
    while todo and seen < _MAX_VISITED:
        numbers, part = todo.pop()
        seen += 1
        yield numbers, part
        if part.is_multipart:
            todo += [((*numbers, i), p) for i, p in enumerate(part.parts(), 1)]
        else:
            inner = part.enclosed()
            if inner is None:
                continue
            if inner.is_multipart:
                todo += [((*numbers, i), p) for i, p in enumerate(inner.parts(), 1)]
            else:
                todo.append(((*numbers, 1), inner))


def _check_part(msg: ParsedMessage, numbers: tuple[int, ...], part: MimePart) -> None:
    assert 0 <= part.start <= part.fields_end <= part.body_start <= part.end <= msg.size, (
        numbers,
        part.start,
        part.fields_end,
        part.body_start,
        part.end,
    )
    assert msg.part(numbers) is part, f"part {numbers} is not where the walk found it"
    assert part.header_bytes() + part.body_bytes() == msg.data[part.start : part.end]
    for child in part.parts():
        assert part.body_start <= child.start <= child.end <= part.end, (numbers, "child")
    assert msg.section(Section(numbers)) == part.body_bytes()
    assert msg.section(Section(numbers, MIME)) == part.header_bytes()
    for text in (HEADER, TEXT, HEADER_FIELDS, HEADER_FIELDS_NOT):
        got = msg.section(Section(numbers, text, _FIELDS))
        assert got is None or isinstance(got, bytes)
    try:
        decoded = msg.binary(numbers)
    except UnknownCTE:
        pass
    else:
        assert decoded is not None and msg.binary_size(numbers) == len(decoded)
    part.header_values(b"received")
    _check_header_functions(part.fields())


def _check_header_functions(fields: dict[bytes, bytes]) -> None:
    """The mimeheader helpers on every field value of a part."""
    for value in fields.values():
        rendered = mimeheader.address_list(value, False)
        if rendered != b"NIL":
            parse(rendered, False)
        assert b"\n" not in mimeheader.unfold(value)
        mimeheader.strip_comments(value)
        mimeheader.parse_content_type(value, _DEFAULT)
        mimeheader.parse_disposition(value)


def test_one_input(data: bytes) -> None:
    """Parse ``data`` as a stored message and render everything FETCH can ask of it."""
    msg = ParsedMessage(data)
    for utf8 in (False, True):
        check_envelope(parse(msg.envelope(utf8), utf8))
        for extended in (False, True):
            check_body(parse(msg.bodystructure(extended, utf8), utf8), extended)
    assert msg.header_bytes() + msg.text_bytes() == data
    _fetch(msg, _WHOLE, (False, True))
    for i, (numbers, part) in enumerate(_walk(msg)):
        _check_part(msg, numbers, part)
        if i < _MAX_FETCHED:
            n = ".".join(map(str, numbers))
            _fetch(msg, (f"BODY[{n}]", f"BODY.PEEK[{n}.MIME]<0.20>", f"BODY[{n}.TEXT]"))
            _fetch(msg, (f"BINARY[{n}]", f"BINARY.PEEK[{n}]<1.9>", f"BINARY.SIZE[{n}]"))
    _check_header_functions({b"raw": data})
    msg.section(Section((), HEADER_FIELDS_NOT, _FIELDS))


def main() -> None:
    """``python -m fuzz.mime_header [libFuzzer flags] [corpus dirs]``."""
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
