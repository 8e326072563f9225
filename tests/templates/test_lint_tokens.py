"""The linter's fast tokenizer gives exactly the events of the standard library's HTMLParser.

Markup the fast reader accepts must tokenize the same both ways (tags, attributes,
text, positions); anything else must be left to HTMLParser, and the structure
scan must come out the same either way.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from mailstead.templates.lint import source, tokens
from mailstead.templates.lint.tokens import Attributes

GALLERY = Path(__file__).parent / "gallery"

Event = tuple[object, ...]


class Recorder:
    """A sink that writes the events down, attributes split the same way on both paths."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def doctype(self) -> None:
        self.events.append(("doctype",))

    def start(
        self, tag: str, attrs: Attributes | None, text: str, at: tuple[int, int], closed: bool
    ) -> None:
        split = tokens.attributes(text) if attrs is None else attrs
        self.events.append(("start", tag, tuple(split), text, at, closed))

    def end(self, tag: str, at: tuple[int, int]) -> None:
        self.events.append(("end", tag, at))

    def data(self, text: str, at: tuple[int, int]) -> None:
        self.events.append(("data", text, at))


def _both(markup: str) -> tuple[list[Event] | None, list[Event]]:
    fast = Recorder()
    accepted = tokens._fast(markup, fast)
    slow = Recorder()
    parser = tokens._Stdlib(slow)
    parser.feed(markup)
    parser.close()
    return (fast.events if accepted else None), slow.events


ACCEPTED = [
    '<!DOCTYPE html>\n<html lang="en"><head><title>x</title></head><body></body></html>',
    '<table role="presentation" width=600\n  cellpadding="0"><tr><td colspan=2 rowspan=\'3\'>',
    '<a href="https://e.test/?a=1&amp;b=2" title="x>y">go</a> &nbsp; &#32;&middot;',
    '<img src=a/b.gif alt=""><br/><br /><hr\t/>',
    "<a href=x/>t</a><P CLASS=X data-y=a=b>u</P>",
    "<!--[if mso]><table><tr><td><![endif]--><!--x-->y<!---->",
    "<style media=screen>a < b { c: d } &amp;</STYLE >after<script>if (a<b) {}</script>",
    "<style></style><style/><svg><path d='M0'/></svg>",
    '<v:rect xmlns:v="urn:schemas-microsoft-com:vml" fill="true"><v:fill src=\'a\'/></v:rect>',
    "line1\r\nline2\n<td\n>\n</td\n>tail &amp",
    "<td style=\"a\nb\" class='c\nd'>x</td ><tr></ tr>",
]

LEFT_TO_HTMLPARSER = [
    "a < b",
    "<3",
    "<td\xa0class=x>",
    "<td a='x'b>",
    "<a =b>",
    "<![CDATA[x]]>",
    "<?php x ?>",
    "<!ELEMENT x>",
    "<!-- never closed",
    '<td class="never closed>',
    "<style>no end",
    "</td x>",
    "<a href=é>",
    "<b/ c>",
    "<img alt=>",
]


@pytest.mark.parametrize("markup", ACCEPTED)
def test_fast_reader_gives_htmlparser_events(markup: str) -> None:
    fast, slow = _both(markup)
    assert fast is not None, "the fast reader should accept this"
    assert fast == slow


@pytest.mark.parametrize("markup", LEFT_TO_HTMLPARSER)
def test_unusual_markup_is_left_to_htmlparser(markup: str) -> None:
    fast, _ = _both(markup)
    assert fast is None


def _gallery() -> list[str]:
    return [
        (GALLERY / e["file"]).read_text(encoding="utf-8")
        for e in json.loads((GALLERY / "gallery.json").read_text(encoding="utf-8"))["templates"]
    ]


def _scan_both(markup: str, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    fast = dataclasses.asdict(source.scan(markup))
    with monkeypatch.context() as m:
        m.setattr(tokens, "_fast", lambda _source, _sink: False)
        slow = dataclasses.asdict(source.scan(markup))
    return fast, slow


def test_gallery_scans_alike_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    for markup in _gallery():
        assert _fast_accepts(markup)
        fast, slow = _scan_both(markup, monkeypatch)
        assert fast == slow


def _fast_accepts(markup: str) -> bool:
    return tokens._fast(markup, Recorder())


_PIECES = [
    "<table>", "</table>", "<tr>", "</tr>", "<td>", "</td>", "<td colspan=2>", "<th rowspan='2'>",
    "<p>", "</p>", "<li>", "<div>", "</div>", "<span>", "</span>", "<br/>", "<svg>", "<g/>",
    "</svg>", "<style>p{}</style>", "<style media=x>a{}</style>", "text", " ", "\n", "&nbsp;",
    "&amp;", "<!-- c -->", "<!DOCTYPE html>", "</b>", "<b>", "<img src=x.gif>", "<tbody>",
]  # fmt: skip


def test_random_markup_scans_alike_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(14)
    for _ in range(300):
        markup = "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 40)))
        assert _fast_accepts(markup)
        fast, slow = _scan_both(markup, monkeypatch)
        assert fast == slow, markup


@pytest.mark.parametrize(
    "html", ["<p><![foo]]></p>", "<table><tr><td><![bar[x]]></td></tr></table>"]
)
def test_markup_the_stdlib_parser_asserts_on_is_reported_not_raised(html: str) -> None:
    from mailstead.templates.lint import lint

    report = lint(html)
    assert [f.check for f in report.findings] == ["unparsable"]
    assert "cannot be tokenized" in report.findings[0].message
