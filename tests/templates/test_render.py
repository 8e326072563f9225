"""The Jinja2 and MJML stages: autoescaping, layouts, front matter, errors with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.templates.errors import TemplateError
from mailstead.templates.pipeline import EmailTemplate
from mailstead.templates.render import JinjaTemplate


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, data: dict[str, object] | None = None, **options: bool) -> str:
    with pytest.raises(TemplateError) as caught:
        EmailTemplate(path, **options).render(data or {})
    text = str(caught.value)
    assert "\n" not in text
    return text


def test_data_is_autoescaped_and_layouts_come_from_the_folder(tmp_path: Path) -> None:
    write(tmp_path, "base.html", "<body>{% block main %}{% endblock %}</body>\n")
    write(tmp_path, "parts/footer.html", "<p>Bye {{ name }}</p>")
    page = write(
        tmp_path,
        "welcome.html",
        '{% extends "base.html" %}{% block main %}<p>Hello {{ name }}</p>'
        '{% include "parts/footer.html" %}{% endblock %}',
    )
    out = JinjaTemplate(page).render({"name": "<b>Ann</b>"})
    assert out.markup == (
        "<body><p>Hello &lt;b&gt;Ann&lt;/b&gt;</p><p>Bye &lt;b&gt;Ann&lt;/b&gt;</p></body>\n"
    )


def test_front_matter_gives_subject_and_preheader_and_keeps_line_numbers(tmp_path: Path) -> None:
    page = write(
        tmp_path,
        "receipt.html",
        "---\nsubject: Receipt for order {{ order }}\npreheader: Thanks,  {{ name }}!\n---\n"
        "<p>Order {{ order }}</p>\n<p>{{ missing }}</p>\n",
    )
    out = JinjaTemplate(page).render({"order": 42, "name": "Ann & Bob", "missing": "x"})
    assert out.subject == "Receipt for order 42"
    assert out.preheader == "Thanks, Ann & Bob!"  # headers are text: not escaped
    assert out.markup == "\n\n\n\n<p>Order 42</p>\n<p>x</p>\n"
    assert error_of(page, {"order": 1, "name": "x"}) == (
        f"{page}:6: 'missing' is undefined"  # the file's own line 6
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("---\nsubject: x\n", ":1: front matter has no closing '---' line"),
        ("---\nfrom: a@b\n---\n", ":2: front matter lines are 'key: value'"),
        ("---\nsubject: a\nsubject: b\n---\n", ":3: subject is given twice"),
        ("---\nsubject: {{ x\n---\n", ": front matter subject: unexpected end of template"),
    ],
)
def test_bad_front_matter(tmp_path: Path, source: str, reason: str) -> None:
    page = write(tmp_path, "t.html", source)
    assert reason in error_of(page)


def test_undefined_in_an_included_file_names_that_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "part.html", "ok\n\n{{ user.name }}\n")
    page = write(tmp_path, "main.html", "<p>\n{% include 'part.html' %}</p>")
    assert error_of(page, {"user": {}}) == (
        f"{tmp_path / 'part.html'}:3: 'dict object' has no attribute 'name'"
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("<p>\n{% if %}</p>", "t.html:2: Expected an expression"),
        ("{% include 'absent.html' %}", "template not found: absent.html"),
        ("{% include '../outside.html' %}", "outside the template's folder"),
        ("{% include '/etc/passwd' %}", "template not found"),
        ("{{ 1 / 0 }}", "t.html:1: ZeroDivisionError: division by zero"),
    ],
)
def test_errors_are_one_line_with_file_and_line(tmp_path: Path, source: str, reason: str) -> None:
    write(tmp_path, "outside.html", "secret")
    page = write(tmp_path / "tpl", "t.html", source)
    assert reason in error_of(page)


def test_a_symbolic_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "secret.html", "secret")
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "link.html").symlink_to(tmp_path / "secret.html")
    page = write(tmp_path / "tpl", "t.html", "{% include 'link.html' %}")
    assert "link.html: outside the template's folder" in error_of(page)


def test_a_missing_or_binary_template(tmp_path: Path) -> None:
    assert error_of(tmp_path / "absent.html") == (
        f"{tmp_path / 'absent.html'}: template not found: absent.html"
    )
    (tmp_path / "bin.html").write_bytes(b"\xff\xfe<p>")
    assert error_of(tmp_path / "bin.html") == f"{tmp_path / 'bin.html'}: not UTF-8 text"


def test_trusted_templates_may_use_python_attributes(tmp_path: Path) -> None:
    page = write(tmp_path, "t.html", "{{ ''.__class__.__name__ }}")
    assert JinjaTemplate(page).render({}).markup == "str"


# Loops in every form Jinja2 compiles them: the deadline's checks change no output.
LOOPS = """{% macro row(x) %}<td>{{ x }}</td>{% endmacro %}
{% for x in items %}{{ loop.index }}/{{ loop.length }}{{ loop.cycle('a', 'b') }}{{ row(x) }}\
{% if loop.last %}.{% endif %}{% else %}none{% endfor %}
{% for x in items if x is odd %}{{ x }}{% else %}no odd{% endfor %}
{% for x in [] %}{{ x }}{% else %}empty{% endfor %}
{% for k, v in pairs|dictsort %}{{ k }}={{ v|upper }};{% endfor %}
{% for node in tree recursive %}[{{ node.name }}{% if node.kids %}{{ loop(node.kids) }}{% endif %}]\
{% endfor %}
{% for x in items %}{% for y in items if y > x %}{{ x }}{{ y }},{% endfor %}{% endfor %}
{{ items|map('string')|join('-') }} {{ lipsum(1, html=False, min=5, max=6)|wordcount > 0 }}
{% set ns = namespace(total=0) %}{% for x in items %}{% set ns.total = ns.total + x %}\
{% endfor %}{{ ns.total }}
"""


@pytest.mark.parametrize("untrusted", [False, True])
def test_loops_render_as_jinja2_renders_them(tmp_path: Path, untrusted: bool) -> None:
    import jinja2
    import jinja2.sandbox

    data: dict[str, object] = {
        "items": [1, 2, 3, 4],
        "pairs": {"b": "<x>", "a": "y"},
        "tree": [{"name": "r", "kids": [{"name": "c1", "kids": []}, {"name": "c2", "kids": []}]}],
    }
    kind = jinja2.sandbox.SandboxedEnvironment if untrusted else jinja2.Environment
    plain = kind(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    expected = plain.from_string(LOOPS).render(data)
    assert "1/4a<td>1</td>" in expected and "[r[c1][c2]]" in expected
    page = write(tmp_path, "t.html", LOOPS)
    assert JinjaTemplate(page, untrusted=untrusted).render(data).markup == expected


# --------------------------------------------------------------------------- MJML

MJML = """---
subject: Hello {{ name }}
---
<mjml>
  <mj-head><mj-preview>Your week in one page</mj-preview></mj-head>
  <mj-body>
    <mj-section><mj-column>
      <mj-text>Hello {{ name }}</mj-text>
      <mj-button href="https://example.test/go">Go</mj-button>
    </mj-column></mj-section>
  </mj-body>
</mjml>
"""


def test_mjml_is_rendered_then_compiled(tmp_path: Path) -> None:
    page = write(tmp_path, "news.mjml", MJML)
    mail = EmailTemplate(page).render({"name": "<Ann>"})
    assert mail.subject == "Hello <Ann>"
    assert mail.preheader == "Your week in one page"
    assert "Hello &lt;Ann&gt;" in mail.html
    assert "<table" in mail.html and "<mj-" not in mail.html
    assert mail.html.count("Your week in one page") == 1  # mrml placed it
    assert mail.text.startswith("Your week in one page\n\nHello <Ann>\n")
    assert "Go [1]" in mail.text
    assert mail.text.endswith("[1] https://example.test/go\n")


def test_mjml_errors_name_the_line(tmp_path: Path) -> None:
    page = write(
        tmp_path,
        "bad.mjml",
        "<mjml>\n<mj-body>\n  <mj-section>\n    <mj-include path='../secret.mjml'/>\n"
        "  </mj-section>\n</mj-body>\n</mjml>\n",
    )
    assert error_of(page) == (f"{page}:4: MJML: unable to load included template")
    page = write(tmp_path, "cut.mjml", "<mjml><mj-body>\n<mj-section>\n")
    assert error_of(page) == f"{page}: MJML: unexpected end of stream"


def test_mjml_includes_from_the_folder(tmp_path: Path) -> None:
    write(
        tmp_path,
        "part.mjml",
        "<mj-section><mj-column><mj-text>PART</mj-text></mj-column></mj-section>",
    )
    page = write(
        tmp_path, "n.mjml", "<mjml><mj-body><mj-include path='part.mjml'/></mj-body></mjml>"
    )
    assert "PART" in EmailTemplate(page).render({}).text
