"""The text part laid out once per shape of the markup is the text part of each message."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.templates import pipeline
from mailstead.templates.inline import inline_css
from mailstead.templates.pipeline import EmailTemplate
from mailstead.templates.text import html_to_text

PAGE = """---
preheader: {{ points }} points for {{ name }}
---
<html><head><style>.hide { display: none } p.note { margin: 0 }</style></head><body>
<table role="presentation"><tr><td><p>Hello {{ name }}, you have <b>{{ points }}</b> points.</p>
<ul>{% for pick in picks %}<li><a href="{{ pick.url }}">{{ pick.title }}</a></li>{% endfor %}</ul>
<p class="note">See <a href="https://example.test/u/{{ id }}">your page</a> or
<a href="mailto:{{ email }}">{{ email }}</a>.</p>
<p class="{{ css }}">Styled by the data</p>
<img src="https://cdn.example.test/{{ id }}.png" alt="{{ name }}" width="100" height="50">
<pre>  kept {{ name }}  </pre>
</td><td><p>{{ tail }}</p></td></tr></table>
<table><tr><td>Name</td><td>{{ cell }}</td></tr><tr><td>Points</td><td>10</td></tr></table>
</body></html>
"""

BASE: dict[str, object] = {
    "name": "Ann",
    "points": 120,
    "picks": [
        {"url": "https://example.test/p/1", "title": "First pick"},
        {"url": "https://example.test/p/2", "title": "Second"},
    ],
    "id": "u1",
    "email": "ann@example.test",
    "css": "plain",
    "tail": "Bye.",
    "cell": "Ann Lee",
}

# Values the plan takes as they are: the text part comes from the plan.
PLANNED = [
    {"name": "Bob"},
    {"name": "Bob Lee-Smith", "points": 7},
    {"name": '<Eve & "Co">', "tail": "a ' quote"},
    {"name": "Ünïcode ☃"},
    {"picks": [{"url": "https://example.test/p/3", "title": "https://example.test/p/3"}]},
    {"picks": [{"url": "https://example.test/same", "title": "A"}] * 2},
    {"picks": [{"url": "https://example.test/u/u1", "title": "same as the page link"}]},
    {"picks": []},
]
# Values that change more than their own text: the message is laid out whole.
WHOLE = [
    {"name": "  spaced  out "},
    {"name": ""},
    {"name": "non\xa0breaking"},
    {"name": "two\nlines"},
    {"picks": [{"url": "/relative", "title": "x"}]},
    {"css": "hide"},
]


def _template(folder: Path, page: str) -> EmailTemplate:
    path = folder / "page.html"
    path.write_text(page, encoding="utf-8")
    return EmailTemplate(path)


@pytest.fixture
def laid_out(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The markups laid out whole, not from a plan."""
    done: list[str] = []

    def counted(markup: str, *, preheader: str | None = None) -> str:
        done.append(markup)
        return html_to_text(markup, preheader=preheader)

    monkeypatch.setattr(pipeline, "html_to_text", counted)
    return done


@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("changes", PLANNED + WHOLE)
def test_the_planned_text_is_the_text_of_the_message(
    tmp_path: Path, laid_out: list[str], changes: dict[str, object], grid: bool
) -> None:
    # a value in a grid table's cell changes its column's width: no plan
    template = _template(tmp_path, PAGE if grid else PAGE.replace("{{ cell }}", "Ann Lee"))
    first = template.render(BASE)
    assert first.text == html_to_text(first.html, preheader=first.preheader)
    email = template.render(BASE | changes)
    assert email.text == html_to_text(email.html, preheader=email.preheader)
    if grid:
        assert len(laid_out) == 2
    elif changes in PLANNED:
        assert laid_out == []


def test_a_selector_on_an_address_is_not_planned(tmp_path: Path, laid_out: list[str]) -> None:
    template = _template(
        tmp_path,
        '<style>a[href^="mailto"] { display: none }</style><p><a href="{{ u }}">mail us</a></p>',
    )
    web = template.render({"u": "https://example.test/"})
    mail = template.render({"u": "mailto:a@example.test"})
    assert web.text == "mail us [1]\n\n[1] https://example.test/\n"
    assert 'style="display: none;"' in mail.html
    assert mail.text == ""
    assert len(laid_out) == 2  # each message laid out whole


def test_the_filled_skeleton_is_the_message_inlined(tmp_path: Path) -> None:
    template = _template(tmp_path, PAGE.replace("{{ cell }}", "Ann Lee"))
    for changes in PLANNED + WHOLE:
        email = template.render(BASE | changes)
        assert email.html == inline_css(email.source_html, template.path, 10**7)


def test_a_control_character_in_the_data_is_text(tmp_path: Path) -> None:
    template = _template(tmp_path, PAGE)
    email = template.render(BASE | {"tail": "bell\x07"})
    assert "bell\x07" in email.text


def test_a_value_in_a_conditional_comment_is_written_as_the_inliner_writes_it(
    tmp_path: Path,
) -> None:
    # a comment is kept as written (here "O&#39;Neil"), where text would be "O'Neil"
    template = _template(
        tmp_path,
        "<style>p { color: red }</style><!--[if mso]><table><tr><td>Hi {{ name }}</td></tr>"
        "</table><![endif]--><p>Hello {{ name }}</p>",
    )
    for name in ("Ann", "O'Neil & <Co>", "Bob"):
        email = template.render({"name": name})
        assert email.html == inline_css(email.source_html, template.path, 10**7)
        assert email.text == html_to_text(email.html, preheader=email.preheader)


def test_a_body_tidied_ahead_is_the_body_tidied_whole() -> None:
    import random

    from mailstead.templates import text
    from mailstead.templates.shapes import fill

    pieces = ["word", "two words", "x" * 85, " ", "   ", "\t", "\n", "\n\n", "\n \n\n", "·",
              "\ue0000\ue001", "\ue0001\ue001", " \ue0020\ue003", "\ue0021:1\ue003",
              "\ue0022:0\ue003", "a \ue0003\ue001 b " * 12]  # fmt: skip
    values = ["Ann", "Bo Lee", "https://example.test/" + "p" * 70, "x"]
    rnd = random.Random(14)
    for _ in range(5000):
        body = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 25)))
        numbers = [rnd.choice([None, 1, 2, 12]) for _ in range(3)]
        whole: str | None = fill(body, values)
        if whole is not None:
            whole = text._numbered_slots(whole, numbers)
        expected = None if whole is None else text._tidy(whole)
        assert text._Body(body).finish(values, numbers) == expected, repr(body)
