"""Tag-lists (RFC 6376 §3.2) as DKIM, DMARC, TLS-RPT and MTA-STS write them."""

from __future__ import annotations

import pytest

from mailstead.checks.tags import TagError, parse_tags, select


def test_tags() -> None:
    assert parse_tags(" v=DMARC1 ;p = reject; rua=mailto:a@b.test;") == {
        "v": "DMARC1",
        "p": "reject",
        "rua": "mailto:a@b.test",
    }


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("v=1;;p=x", "an empty tag between two ';'"),
        ("v=1; p", "'p' is not tag=value"),
        ("v=1; 9x=1", "'9x=1' is not tag=value"),
        ("p=1; p=2", "the tag p= appears twice"),
    ],
)
def test_bad_tag_lists(text: str, reason: str) -> None:
    with pytest.raises(TagError, match=reason.replace("(", r"\(")):
        parse_tags(text)


def test_select_by_version() -> None:
    records = [b"v=DMARC1; p=none", b"v=DMARC10; p=none", b"p=none; v=DMARC1", b"v = DMARC1"]
    assert select(records, "DMARC1") == ["v=DMARC1; p=none", "v = DMARC1"]
