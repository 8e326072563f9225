"""The template gallery: each template's known problems are found, with the client they break.

tests/templates/gallery/gallery.json lists the templates, the data they are
rendered with and the findings each must produce. Jinja2 renders first;
``.mjml`` files are then compiled with mrml. The clean templates must lint
without errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import lxml.html
import mrml
import pytest

from mailstead.templates.lint import LintReport, lint

GALLERY = Path(__file__).parent / "gallery"
ENTRIES: list[dict[str, Any]] = json.loads((GALLERY / "gallery.json").read_text(encoding="utf-8"))[
    "templates"
]


def _render(entry: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(GALLERY),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    source = env.get_template(entry["file"]).render(entry["data"])
    if entry["file"].endswith(".mjml"):
        return str(mrml.to_html(source).content)
    return source


def _lint(entry: dict[str, Any]) -> LintReport:
    html = _render(entry)
    text = lxml.html.document_fromstring(html).text_content()  # a full-length text part
    return lint(html, text=text, base_dir=GALLERY)


def test_every_gallery_file_is_listed() -> None:
    on_disk = {p.name for p in GALLERY.iterdir() if p.suffix in (".html", ".mjml")}
    assert on_disk == {e["file"] for e in ENTRIES}


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_gallery_findings(entry: dict[str, Any]) -> None:
    report = _lint(entry)
    for expected in entry["expect"]:
        found = [f for f in report.findings if f.check == expected["check"]]
        assert found, f"{entry['file']}: no {expected['check']} finding\n{report.to_text()}"
        if "line" in expected:
            found = [f for f in found if expected["line"] in (f.line, *f.lines)]
            assert found, f"{entry['file']}: {expected['check']} not on line {expected['line']}"
        assert any(f.severity == expected["severity"] for f in found), (
            entry["file"],
            expected,
            found,
        )
        client = expected["client"]
        if client is None:
            assert any(not f.clients for f in found), (entry["file"], expected)
        else:
            family, platform = client.split(".")
            assert any(
                (c.family, c.platform) == (family, platform) for f in found for c in f.clients
            ), (entry["file"], expected, [f.client_names() for f in found])
    if entry["clean"]:
        errors = [f for f in report.findings if f.severity == "error"]
        assert not errors, report.to_text()
        assert not report.fails("error")
    else:
        assert report.fails("error")


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["clean"]], ids=lambda e: e["file"])
def test_clean_templates_score_high_everywhere_that_matters(entry: dict[str, Any]) -> None:
    report = _lint(entry)
    for family in ("gmail", "outlook", "apple-mail", "yahoo"):
        assert report.scores[family] >= 40, (family, report.scores)


def test_broken_templates_score_lower_for_the_client_they_break() -> None:
    by_file = {e["file"]: e for e in ENTRIES}
    clean = _lint(by_file["newsletter_clean.html"]).scores
    broken = _lint(by_file["newsletter_broken.html"]).scores
    assert broken["outlook"] < clean["outlook"] - 20
    assert broken["apple-mail"] <= clean["apple-mail"]
