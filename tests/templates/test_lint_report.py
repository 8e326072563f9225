"""The lint report's formats, its scores and thresholds, the shipped data, and hostile input."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from types import ModuleType

import pytest

from mailstead.templates.lint import MAX_LINT_BYTES, lint
from mailstead.templates.lint.data import load_table

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "src" / "mailstead" / "templates" / "data"
BROKEN = (
    '<html lang="en"><body><div style="display:flex">'
    '<img src="https://e.test/a.png"><a href="/x">&lt;script&gt;</a></div></body></html>'
)


def test_json_format_is_stable() -> None:
    report = lint(BROKEN, text="a text part of sufficient length " * 3)
    out = report.to_json()
    assert json.loads(json.dumps(out)) == out
    assert out["format"] == "mailstead-lint/1"
    assert out["data"] == {
        "source": "caniemail",
        "version": "2.0.2",
        "date": load_table().data_date,
    }
    assert set(out["summary"]) == {"error", "warning", "info"}  # type: ignore[arg-type]
    finding = out["findings"][0]  # type: ignore[index]
    assert set(finding) == {
        "check",
        "feature",
        "severity",
        "line",
        "column",
        "snippet",
        "message",
        "clients",
        "fix",
        "url",
        "occurrences",
        "lines",
    }
    flex = next(f for f in out["findings"] if f["check"] == "caniemail:css-display-flex")  # type: ignore[attr-defined]
    client = next(c for c in flex["clients"] if c["family"] == "outlook")
    assert set(client) == {"family", "platform", "support", "version", "notes"}
    assert client["support"] in ("none", "partial")


def test_text_and_html_renderings() -> None:
    report = lint(BROKEN)
    text = report.to_text()
    flex = next(f for f in report.findings if f.check == "caniemail:css-display-flex")
    assert f"{flex.line}:{flex.column}: error: display:flex" in text
    assert flex.column == BROKEN.index("<div") + 1
    assert "fix: flexbox is ignored by Outlook for Windows" in text
    assert "scores: " in text.splitlines()[-1]
    page = report.to_html()
    assert page.startswith("<!DOCTYPE html>") and "&lt;div style=" in page
    assert "<script>" not in page


def test_fails_at_threshold() -> None:
    report = lint(BROKEN)
    assert report.fails("error") and report.fails("warning")
    info_only = lint('<html lang="en"><body><p>plain</p></body></html>', text="plain")
    assert not info_only.fails("error")
    with pytest.raises(ValueError, match="error or warning"):
        report.fails("info")


def test_scores_are_per_family_and_bounded() -> None:
    report = lint(BROKEN)
    assert {"gmail", "outlook", "apple-mail", "yahoo"} <= set(report.scores)
    assert all(0 <= s <= 100 for s in report.scores.values())
    assert report.scores["outlook"] < report.scores["apple-mail"]


def test_shipped_data_carries_its_provenance() -> None:
    raw = json.loads((DATA / "caniemail.json").read_text(encoding="utf-8"))
    assert raw["license"] == "MIT"
    assert any("Avi Goldman" in line for line in raw["copyright"])
    assert raw["package_version"] == "2.0.2" and raw["data_date"]
    assert len(raw["features"]) >= 300
    padding = raw["features"]["css-padding"]
    assert padding["category"] == "css" and padding["url"].startswith("https://")
    assert padding["support"]["outlook"]["windows"]["2019"] == ["a", [1, 2]]
    notice = (DATA / "NOTICE").read_text(encoding="utf-8")
    assert "MIT License" in notice and "caniemail@2.0.2" in notice


def _fetch_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fetch_caniemail", ROOT / "scripts" / "fetch_caniemail.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fetch_script_keeps_the_facts_without_the_network() -> None:
    script = _fetch_script()
    source = {
        "api_version": "1.0.4",
        "last_update_date": "2026-05-13 14:45:41 +0000",
        "nicenames": {"family": {"gmail": "Gmail"}, "platform": {"ios": "iOS"}},
        "data": [
            {
                "slug": "css-x",
                "title": "x",
                "category": "css",
                "url": "https://e.test/x",
                "notes_by_num": {"1": "Partial."},
                "description": "dropped",
                "stats": {"gmail": {"ios": {"2019": "n", "2024": "a #1"}}},
            }
        ],
    }
    out = script.compact(source, "9.9.9", "MIT License\n\nCopyright © Someone\n")
    assert out["copyright"] == ["Copyright © Someone"]
    assert out["features"]["css-x"]["support"]["gmail"]["ios"] == {
        "2019": ["n", []],
        "2024": ["a", [1]],
    }
    assert "description" not in out["features"]["css-x"]
    bad = dict(source, data=[dict(source["data"][0], stats={"gmail": {"ios": {"1": "maybe"}}})])  # type: ignore[index]
    with pytest.raises(SystemExit):
        script.compact(bad, "9.9.9", "")


def test_latest_test_per_platform_decides() -> None:
    padding = load_table().feature("css-padding")
    windows = next(i for i in padding.issues if (i.family, i.platform) == ("outlook", "windows"))
    assert windows.version == "2019" and windows.support == "a"
    assert "Partial. Only supported on table cells." in windows.notes


# -- hostile input: bounded time, a clear result --------------------------------


def _timed(html: str) -> tuple[float, list[str]]:
    start = time.monotonic()
    report = lint(html, text="x")
    return time.monotonic() - start, [f.check for f in report.findings if f.severity == "error"]


def test_ten_megabytes_is_refused_quickly() -> None:
    took, errors = _timed("<p>" + "x" * (10 * 1024 * 1024) + "</p>")
    assert took < 5
    assert errors == ["lint-too-large", "size-gmail-clip"]
    assert MAX_LINT_BYTES < 10 * 1024 * 1024


def test_hundred_thousand_nested_tags_finish() -> None:
    took, errors = _timed("<div>" * 100_000)
    assert took < 20
    assert "structure-depth" in errors


@pytest.mark.parametrize(
    "html",
    [
        '<p style="width:' + "(" * 100_000 + '">x</p>',
        "<style>" + "@media screen{" * 20_000 + "</style>",
        "<style>" + "a{" * 50_000 + "</style>",
        '<p style="width:' + "calc(" * 20_000 + '">x</p>',
    ],
    ids=["parens", "media", "braces", "calc"],
)
def test_deeply_nested_css_does_not_recurse(html: str) -> None:
    took, _ = _timed(html)
    assert took < 10


def test_an_element_with_thousands_of_attributes_is_not_parsed() -> None:
    took, errors = _timed("<p " + " ".join(f"a{i}=1" for i in range(30_000)) + ">x</p>")
    assert took < 10
    assert errors == ["lint-hostile"]


@pytest.mark.parametrize("html", ["", "   ", "<", "<!--", "<html", "\x00\x00", "<p \udcff>"])
def test_degenerate_documents(html: str) -> None:
    report = lint(html)
    assert isinstance(report.to_text(), str)
