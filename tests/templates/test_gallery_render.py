"""Every gallery template renders into a complete message with a readable text part."""

from __future__ import annotations

import email
import email.policy
import json
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mailstead.message.compose import build_message
from mailstead.templates.pipeline import EmailTemplate

GALLERY = Path(__file__).parent / "gallery"
ENTRIES: list[dict[str, Any]] = json.loads((GALLERY / "gallery.json").read_text("utf-8"))[
    "templates"
]


def _strings(value: object) -> list[str]:
    """The data's text values that a reader must find in the text part."""
    if isinstance(value, dict):
        # the <title> is the subject; a token is in a link's address
        hidden = ("url", "title", "token")
        return [s for key, v in value.items() if key not in hidden for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) and not value.startswith("http") else []


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_gallery_template_renders_into_a_readable_message(entry: dict[str, Any]) -> None:
    mail = EmailTemplate(GALLERY / entry["file"]).render(entry["data"])
    raw = build_message("news@example.test", ["ann@example.test"], mail.subject or "x", mail.body)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    if "title" in entry["data"]:
        assert msg["Subject"] == entry["data"]["title"]
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    text = plain.get_content().replace("\r\n", "\n")
    assert text == mail.text
    assert not re.search(r"<[a-z/!]|\{\{|\{%|&[a-z]+;", text)  # no markup left
    for line in text.splitlines():
        assert len(line) <= 78 or " " not in line.strip(), line  # only a long URL stays long
    words = " ".join(text.split())
    for value in _strings(entry["data"]):
        if value != entry["data"].get("preheader"):
            assert " ".join(value.split()) in words
    urls = re.findall(r"^\[(\d+)\] (\S+)$", text, re.M)
    assert [int(n) for n, _ in urls] == list(range(1, len(urls) + 1))
    for n, _ in urls:
        assert f"[{n}]" in text.split("\n\n[1] ")[0]  # each reference is used in the body
