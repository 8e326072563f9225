"""Fuzz target: the ``message.received`` payload's view of a message.

Owns :mod:`mailstead.message.summary` (``message_summary``: header
decoding, address lists, the MIME walk, body and charset decoding, the
budgets). It promises never to raise; oracles: the result serialises as
UTF-8 JSON, holds no control character but tab and newline, stays inside
the bound its limits give, and reads the same whether the message has LF
or CRLF line ends.
"""

from __future__ import annotations

import json

from fuzz._harness import fuzz, instrumented

with instrumented(__name__):
    from mailstead.message.summary import JSON, message_summary
    from mailstead.peertext import CONTROL_CHARS

_FORBIDDEN = frozenset(CONTROL_CHARS) - {"\t", "\n"}
_SMALL = {"max_body_bytes": 64, "max_header_bytes": 256, "max_parts": 3, "max_addresses": 3}


def _strings(value: JSON) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _check(result: dict[str, JSON], body: int, header: int) -> None:
    json.dumps(result, ensure_ascii=False).encode()  # raises on a lone surrogate
    strings = _strings(result)
    total = sum(len(s.encode()) for s in strings)
    assert total <= 2 * body + header + 400, total
    for s in strings:
        assert not _FORBIDDEN & set(s), repr(s)
    for key in ("text", "html"):
        value = result[key]
        if isinstance(value, str):
            assert len(value.encode()) <= body, key


def _view(result: dict[str, JSON]) -> object:
    """What must not depend on line ends (bodies may: UTF-16 text shifts by a CR)."""
    attachments = result["attachments"]
    assert isinstance(attachments, list)
    return (
        result["headers"],
        result["text"] is None,
        result["html"] is None,
        [
            (a["filename"], a["content_type"], a["content_id"], a["disposition"])
            for a in attachments
            if isinstance(a, dict)
        ],
    )


def test_one_input(data: bytes) -> None:
    """Summarise ``data`` with small and default limits; LF and CRLF must agree."""
    _check(message_summary(data, **_SMALL), _SMALL["max_body_bytes"], _SMALL["max_header_bytes"])
    lf = message_summary(data)
    _check(lf, 256 * 1024, 64 * 1024)
    if b"\r" not in data:
        crlf = message_summary(data.replace(b"\n", b"\r\n"))
        assert _view(lf) == _view(crlf), (_view(lf), _view(crlf))


def main() -> None:
    """``python -m fuzz.message_summary [libFuzzer flags] [corpus dirs]``."""
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
