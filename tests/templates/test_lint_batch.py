"""The lint of many messages of one template: what each recipient's data changes, per message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailstead.templates.lint import MAX_LINT_BYTES, batch, lint
from mailstead.templates.lint.checks import GMAIL_CLIP_BYTES
from mailstead.templates.lint.document import snippet
from mailstead.templates.lint.report import LintReport
from mailstead.templates.pipeline import EmailTemplate, RenderedEmail
from mailstead.templates.shapes import Filler, fill, masked, shape

PAGE = """<!DOCTYPE html>
<html><head><title>News</title>
<style>.card { padding: 8px } @media (max-width: 600px) { .card { width: 100% } }</style>
</head><body>
<table role="presentation" width="600"><tr><td class="card" style="color:{{ colour }}">
<h1>Hello {{ name }}</h1>
{% if vip %}<div style="display:flex">VIP corner</div>{% endif %}
<p>{{ intro }}</p>
<p><a href="{{ link }}">Read on</a> or <a href="https://example.test/u?id={{ id }}">leave</a></p>
<img src="{{ picture }}" width="100" height="50" alt="{{ name }}">
</td></tr></table>
</body></html>
"""

BASE: dict[str, object] = {
    "colour": "#123456",
    "name": "Ann",
    "vip": False,
    "intro": "Our news of the month, in a few words for everyone who reads this letter.",
    "link": "https://example.test/news",
    "id": 1,
    "picture": "https://cdn.example.test/a.png",
}


def _essence(report: LintReport) -> list[tuple[str, str, str, int]]:
    """What a report says, without where (positions are the first message's of a shape)."""
    return sorted((f.check, f.severity, f.message, f.occurrences) for f in report.findings)


@pytest.fixture
def template(tmp_path: Path) -> EmailTemplate:
    page = tmp_path / "news.html"
    page.write_text(PAGE, encoding="utf-8")
    shutil.copy(Path(__file__).parent / "gallery" / "spinner.gif", tmp_path)
    return EmailTemplate(page)


def _both(template: EmailTemplate, **changes: object) -> tuple[LintReport, LintReport]:
    email = template.render(BASE | changes)
    sent = len(email.html.encode())  # Gmail clips the HTML as sent, CSS inlined
    whole = lint(email.source_html, text=email.text, base_dir=template.path.parent, sent_bytes=sent)
    return template.lint(email), whole


SAME_SHAPE = [
    {"name": "Bob"},
    {"name": "Bob", "id": 2},
    {"intro": "Short."},  # the text part is as short as the HTML
    {"link": "javascript:alert(1)"},
    {"link": "/relative/page"},
    {"link": "mailto:help@example.test"},
    {"link": "#top"},
    {"picture": "https://cdn.example.test/a.webp"},
    {"picture": "data:image/gif;base64,R0lGODlhAQABAAAAACw="},
    {"intro": "x" * (GMAIL_CLIP_BYTES + 10)},
    {"name": "<b>&amp;</b>"},
    {"name": "bell\x07"},  # read from the message itself, not filled in
    {"picture": "spinner.gif"},  # an animated GIF in the template's folder
]
# a value in a style, another branch, an empty paragraph, a value with a line break (the
# lines move), more than the lint reads
OTHER_SHAPE = [
    {"colour": "#ffffff"},
    {"intro": ""},
    {"vip": True},
    {"name": "Ann\nLee"},
    {"intro": "x" * (MAX_LINT_BYTES + 10)},
]


@pytest.mark.parametrize("changes", SAME_SHAPE + OTHER_SHAPE)
def test_each_message_gets_what_a_whole_lint_finds(
    template: EmailTemplate, changes: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    full: list[str] = []
    real = batch.lint

    def counted(html: str, **options: object) -> LintReport:
        full.append(html)
        return real(html, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(batch, "lint", counted)
    first, whole = _both(template)
    assert _essence(first) == _essence(whole)
    report, whole = _both(template, **changes)
    assert _essence(report) == _essence(whole)
    assert report.scores == whole.scores
    assert len(full) == (2 if changes in OTHER_SHAPE else 1)


def test_a_link_from_the_data_fails_its_own_message_only(template: EmailTemplate) -> None:
    assert not template.lint(template.render(BASE)).fails("error")
    bad = template.lint(template.render(BASE | {"name": "Eve", "link": "javascript:x()"}))
    assert [f.check for f in bad.findings if f.severity == "error"] == ["link-javascript"]
    assert not template.lint(template.render(BASE | {"name": "Max"})).fails("error")


def test_a_branch_the_data_takes_is_linted_as_written(template: EmailTemplate) -> None:
    def flex(email: RenderedEmail) -> bool:
        checks = {f.check for f in template.lint(email).findings}
        return "caniemail:css-display-flex" in checks

    assert not flex(template.render(BASE))
    assert flex(template.render(BASE | {"vip": True, "name": "Vic"}))
    assert not flex(template.render(BASE | {"name": "Zoe"}))


def test_the_clients_chosen_are_kept_per_choice(template: EmailTemplate) -> None:
    email = template.render(BASE)
    gmail = template.lint(email, clients=["gmail"])
    assert gmail.scores.keys() == {"gmail"}
    assert len(template.lint(email).scores) > 1
    with pytest.raises(ValueError, match="nosuchclient"):
        template.lint(email, clients=["nosuchclient"])


def test_the_shape_masks_text_and_addresses_only() -> None:
    markup = (
        '<p style="color:red">Hi Ann</p><a href="https://x.test/?u=7" class="red">go</a>'
        "<style>p { color: red }</style><!-- red --><p> </p><p>a\nb</p>"
    )

    def at(text: str, start: int = 0) -> tuple[int, int]:
        found = markup.index(text, start)
        return found, found + len(text)

    red = markup.index("red")
    values = [at("red"), at("Ann"), at("7"), at("red", red + 1), at("red", markup.index("<style"))]
    blank = markup.index("<p> </p>") + 3
    values += [at("red", markup.index("<!--")), (blank, blank + 1)]
    values.append(at("a\nb"))
    assert shape(markup, masked(markup, values)) == (
        '<p style="color:red">Hi \x00</p><a href="https://x.test/?u=\x00" class="red">go</a>'
        "<style>p { color: red }</style><!-- red --><p> </p><p>\x00\n</p>"
    )


def test_where_the_values_are_is_recorded(tmp_path: Path) -> None:
    page = tmp_path / "v.html"
    page.write_text(
        "---\npreheader: Hi {{ a }}\n---\n<html><body>"
        "<p>{{ a }} {{ b|safe }} {{ '<i>' }} {{ n }}</p>"
        "{% macro m(x) %}<b>{{ x }}</b>{% endmacro %}{{ m(a) }}</body></html>",
        encoding="utf-8",
    )
    email = EmailTemplate(page).render({"a": "<A&B>", "b": "<b>", "n": 3})
    placed = [email.source_html[start:end] for start, end in email.values]
    # the preheader is the data's too; a value inside a macro's output is not placed
    assert placed == ["Hi &lt;A&amp;B&gt;", "&lt;A&amp;B&gt;", "&lt;i&gt;", "3"]


@pytest.mark.parametrize(
    "value",
    ["Ann", "Ann Lee", "a  b\tc", "", " ", " lead", "trail ", "\xa0nbsp", "x\u2028y", "ſ"],
)
def test_the_words_of_a_body_are_counted_from_its_skeleton(value: str) -> None:
    body = "Hello \ue0000\ue001, \ue0001\ue001\ue0000\ue001 and (\ue0002\ue001)\n\ue0000\ue001 end"
    for values in ([value, "Bo", "x y"], ["Bo", value, value], [value, value, value]):
        assert batch._Words.of(body).count(values) == len(fill(body, values).split())


def test_snippets_split_the_source_only_as_far_as_they_need() -> None:
    # line breaks of every kind, "\r\n" across the places the source is cut at
    source = "".join(
        f"line {n} {'x' * (n % 97)}" + "\r\n\n\r\x0c\u2028"[n % 6] for n in range(9000)
    )
    source = source[:4095] + "\r\n" + source[4095:]
    lines = source.splitlines()
    snippets = batch._Snippets(source)
    for line in (1, 2, 70, 71, 72, 1000, 3000, len(lines), len(lines) + 1):
        assert snippets.snippet(line, 3) == snippet(lines, line, 3)


@pytest.mark.parametrize(
    "text",
    ["", "no placeholder", "\ue0000\ue001", "a\ue0001\ue001b\ue0000\ue001\ue0001\ue001c", "\ue000"],
)
def test_a_filler_fills_as_fill_does(text: str) -> None:
    values = ["zero", "one &amp; \\1 \ue0000\ue001"]
    assert Filler(text).fill(values) == fill(text, values)
