"""Each lint check on one small document: the finding, where it is, and which client it names."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest

from mailstead.templates.lint import Finding, LintReport, lint
from mailstead.templates.lint.colour import contrast, parse_colour
from mailstead.templates.lint.gif import gif_frames

TEXT = "enough words " * 50


def page(body: str, head: str = "", lang: str = ' lang="en"') -> str:
    return (
        f'<!DOCTYPE html>\n<html{lang}>\n<head>\n<meta name="color-scheme" content="light">\n'
        f"{head}</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def findings(report: LintReport, check: str) -> list[Finding]:
    return [f for f in report.findings if f.check == check]


def one(html: str, check: str, **kw: object) -> Finding:
    report = lint(html, text=TEXT, **kw)  # type: ignore[arg-type]
    found = findings(report, check)
    assert found, report.to_text()
    return found[0]


def clients(finding: Finding) -> set[str]:
    return {f"{c.family}.{c.platform}" for c in finding.clients}


# -- structure, on the source as written ------------------------------------

STRUCTURE = [
    ("<div><b><i>x</b></i></div>", "structure-misnested", 7),
    ("<div>\n<span>never closed\n</div>", "structure-misnested", 9),
    ("<table><tr><td>a<td>b</td></tr></table>", "structure-unclosed", 7),
    ("<section>open", "structure-unclosed", 7),
    ("</div>", "structure-stray-end", 7),
    ("<td>loose cell</td>", "structure-table-context", 7),
    ("<tr><td>loose row</td></tr>", "structure-table-context", 7),
    ("<table><td>no row</td></table>", "structure-table-context", 7),
    ("<table><tr><td>a</td></tr><p>between rows</p></table>", "structure-cell-expected", 7),
    ("<table><tr>text in a row<td>a</td></tr></table>", "structure-cell-expected", 7),
    (
        '<table>\n<tr><td colspan="2">a</td></tr>\n<tr><td>b</td></tr>\n</table>',
        "structure-colspan",
        9,
    ),
]


@pytest.mark.parametrize(("body", "check", "line"), STRUCTURE)
def test_structure(body: str, check: str, line: int) -> None:
    finding = one(page(body), check)
    assert finding.line == line
    assert finding.fix


def test_structure_accepts_rowspan_and_optional_end_tags() -> None:
    body = (
        '<table role="presentation"><tr><td rowspan="2">a</td><td>b</td></tr>'
        "<tr><td>c</td></tr></table><ul><li>one<li>two</ul><p>para<p>graph"
    )
    report = lint(page(body), text=TEXT)
    assert not [f for f in report.findings if f.check.startswith("structure-")], report.to_text()


def test_structure_is_checked_before_repair_with_columns() -> None:
    finding = one(page("<div>  <td>x</td></div>"), "structure-table-context")
    assert (finding.line, finding.column) == (7, 8)
    assert "<td>x</td>" in finding.snippet


# -- the support table --------------------------------------------------------


def test_flexbox_names_outlook_windows_with_a_table_fix() -> None:
    finding = one(page('<div style="display:flex">a</div>'), "caniemail:css-display-flex")
    assert finding.severity == "error"
    assert "outlook.windows" in clients(finding)
    assert "table" in (finding.fix or "")
    assert finding.url and finding.url.startswith("https://www.caniemail.com/")
    assert (finding.line, finding.column) == (7, 1)


def test_padding_on_a_div_warns_for_outlook_but_not_on_a_cell() -> None:
    finding = one(page('<div style="padding:20px">a</div>'), "caniemail:css-padding")
    assert finding.severity == "warning" and "outlook.windows" in clients(finding)
    assert "cellpadding" in (finding.fix or "")
    notes = [n for c in finding.clients for n in c.notes]
    assert any("table cells" in n for n in notes)
    cell = '<table role="presentation"><tr><td style="padding:20px">a</td></tr></table>'
    assert not findings(lint(page(cell), text=TEXT), "caniemail:css-padding")


def test_width_on_a_div_warns_for_outlook() -> None:
    finding = one(page('<div style="width:300px">a</div>'), "caniemail:css-width")
    assert "outlook.windows" in clients(finding) and finding.severity == "warning"


def test_grid_and_position_are_errors() -> None:
    assert (
        one(page('<div style="display:grid">a</div>'), "caniemail:css-display-grid").severity
        == "error"
    )
    assert (
        one(page('<div style="position:absolute">a</div>'), "caniemail:css-position").severity
        == "error"
    )


def test_style_block_features_selectors_and_at_rules() -> None:
    head = (
        "<style>\n"
        "a:hover { color: #00f }\n"
        "div > p + p { color: #000 }\n"
        "@supports (display:grid) { .x { color: red } }\n"
        "</style>\n"
    )
    report = lint(page("<p>x</p>", head=head), text=TEXT)
    checks = {f.check for f in report.findings}
    assert {
        "caniemail:css-pseudo-class-hover",
        "caniemail:css-selector-child",
        "caniemail:css-selector-adjacent-sibling",
        "caniemail:css-at-supports",
    } <= checks
    hover = findings(report, "caniemail:css-pseudo-class-hover")[0]
    assert (hover.line, hover.column) == (6, 1)


def test_rules_inside_media_do_not_count_against_clients_without_media() -> None:
    head = "<style>\n@media (max-width:600px) { .c { display: flex } }\n</style>\n"
    finding = one(page("<p>x</p>", head=head), "caniemail:css-display-flex")
    assert "outlook.windows" not in clients(finding)


def test_web_fonts_link_and_font_face_name_the_clients() -> None:
    head = (
        '<link rel="stylesheet" href="https://fonts.example.test/css?family=X">\n'
        "<style>@font-face { font-family: X; src: url(x.woff2) }</style>\n"
    )
    report = lint(page("<p>x</p>", head=head), text=TEXT)
    link = findings(report, "caniemail:html-link")[0]
    assert "gmail.desktop-webmail" in clients(link)
    face = findings(report, "caniemail:css-at-font-face")[0]
    assert "gmail.desktop-webmail" in clients(face) and "apple-mail.ios" not in clients(face)


def test_clients_filter_keeps_only_the_chosen_clients() -> None:
    html = page('<div style="display:flex; box-shadow: 0 0 2px #000">a</div>')
    report = lint(html, text=TEXT, clients=["apple-mail"])
    assert not [f for f in report.findings if f.check.startswith("caniemail:css-display")]
    assert set(report.scores) == {"apple-mail"}
    only_outlook = lint(html, text=TEXT, clients=["outlook.windows"])
    flex = findings(only_outlook, "caniemail:css-display-flex")[0]
    assert clients(flex) == {"outlook.windows"}
    with pytest.raises(ValueError, match="unknown mail client"):
        lint(html, clients=["lotus-notes"])


# -- the checks of our own ----------------------------------------------------


def test_image_without_alt_and_without_width() -> None:
    html = page('<img src="https://example.test/a.png">')
    assert not one(html, "img-alt").clients
    assert clients(one(html, "img-size")) == {"outlook.windows"}
    fine = page('<img src="https://example.test/a.png" alt="" width="10" height="10">')
    report = lint(fine, text=TEXT)
    assert not findings(report, "img-alt") and not findings(report, "img-size")


def _gif(frames: int) -> bytes:
    head = b"GIF89a" + struct.pack("<HH", 1, 1) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x21\xf9\x04\x00\x0a\x00\x00\x00" + b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1)
    frame += b"\x00\x02\x02\x44\x01\x00"
    return head + frame * frames + b"\x3b"


def test_gif_frames_read_from_the_header_blocks() -> None:
    assert gif_frames(_gif(1)) == 1
    assert gif_frames(_gif(3)) == 2  # counting stops at the second frame
    assert gif_frames(b"not a gif") == 0
    assert gif_frames(_gif(3)[:30]) <= 2  # truncated: no error


def test_animated_gif_local_file_and_data_uri(tmp_path: Path) -> None:
    (tmp_path / "anim.gif").write_bytes(_gif(2))
    (tmp_path / "still.gif").write_bytes(_gif(1))
    img = '<img src="{}" alt="x" width="1" height="1">'
    finding = one(page(img.format("anim.gif")), "img-animated-gif", base_dir=tmp_path)
    assert clients(finding) == {"outlook.windows"}
    still = lint(page(img.format("still.gif")), text=TEXT, base_dir=tmp_path)
    assert not findings(still, "img-animated-gif")
    uri = "data:image/gif;base64," + base64.b64encode(_gif(2)).decode()
    one(page(img.format(uri)), "img-animated-gif")


def test_text_part_missing_or_much_shorter() -> None:
    html = page("<p>" + "word " * 200 + "</p>")
    assert findings(lint(html), "text-missing")
    assert findings(lint(html, text="word word"), "text-short")
    assert not findings(lint(html, text="word " * 200), "text-short")


@pytest.mark.parametrize(("html_words", "text_words"), [(100, 29), (100, 30), (101, 30), (101, 31)])
def test_a_text_part_under_three_tenths_of_the_html_is_much_shorter(
    html_words: int, text_words: int
) -> None:
    html = page("<p>" + "word " * html_words + "</p>")
    [finding] = findings(lint(html, text=" word\n" * text_words + " "), "text-short") or [None]
    if text_words < 0.3 * html_words:
        assert finding is not None
        assert f"the text part has {text_words} words, the HTML {html_words}" in finding.message
    else:
        assert finding is None


def test_gmail_clipping_over_102_kb() -> None:
    html = page("<p>" + "x" * (103 * 1024) + "</p>")
    finding = one(html, "size-gmail-clip")
    assert finding.severity == "error" and "gmail.desktop-webmail" in clients(finding)
    assert not findings(lint(page("<p>short</p>"), text=TEXT), "size-gmail-clip")


def test_style_blocks_gmail_drops() -> None:
    big = "<style>\n" + "@media (max-width:600px) { .a { color: red } }\n" * 400 + "</style>\n"
    assert "16 KB" in one(page("<p>x</p>", head=big), "style-gmail-dropped").message
    broken = "<style>\n@media (max-width:600px) { .a { color: red } }\n} }\n</style>\n"
    assert "invalid CSS" in one(page("<p>x</p>", head=broken), "style-gmail-dropped").message
    in_body = one(
        page("<style>@media (max-width:600px){.a{color:red}}</style><p>x</p>"),
        "style-gmail-dropped",
    )
    assert in_body.severity == "warning"


def test_layout_wider_than_640() -> None:
    finding = one(
        page('<table role="presentation" width="700"><tr><td>x</td></tr></table>'), "layout-width"
    )
    assert "700" in finding.message
    assert not findings(
        lint(page('<table role="presentation" width="600"><tr><td>x</td></tr></table>'), text=TEXT),
        "layout-width",
    )


@pytest.mark.parametrize(
    ("href", "check"),
    [
        ("/account", "link-relative"),
        ("reset.html", "link-relative"),
        ("javascript:alert(1)", "link-javascript"),
        ("JaVaScRiPt:void(0)", "link-javascript"),
    ],
)
def test_bad_links(href: str, check: str) -> None:
    assert one(page(f'<a href="{href}">x</a>'), check).severity == "error"


@pytest.mark.parametrize(
    "href",
    [
        "https://example.test/",
        "mailto:a@example.test",
        "#top",
        "tel:+1555",
        "{{ url }}",
        "cid:logo",
    ],
)
def test_good_links(href: str) -> None:
    report = lint(page(f'<a href="{href}">x</a>'), text=TEXT)
    assert not findings(report, "link-relative") and not findings(report, "link-javascript")


def test_missing_lang_and_layout_table_role() -> None:
    assert one(page("<p>x</p>", lang=""), "html-lang-missing").line == 2
    assert one(page("<table><tr><td>x</td></tr></table>"), "table-role")
    data_table = "<table><tr><th>h</th></tr><tr><td>x</td></tr></table>"
    assert not findings(lint(page(data_table), text=TEXT), "table-role")


def test_colour_contrast_from_inline_colours() -> None:
    finding = one(page('<p style="color:#cccccc; background-color:#ffffff">pale</p>'), "contrast")
    assert "1.6" in finding.message
    big = '<p style="color:#888888; background-color:#ffffff; font-size:28px">large</p>'
    assert not findings(lint(page(big), text=TEXT), "contrast")
    hidden = '<div style="display:none; color:#fff">preheader</div>'
    assert not findings(lint(page(hidden), text=TEXT), "contrast")


def test_contrast_maths() -> None:
    assert contrast((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)) == pytest.approx(21.0)
    assert parse_colour("red") == (1.0, 0.0, 0.0)
    assert parse_colour("transparent") is None and parse_colour("url(x.png)") is None


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ("<form action='https://example.test/'><input type='text'></form>", "caniemail:html-form"),
        ("<script>alert(1)</script>", "unsafe-script"),
        ('<p onclick="x()">x</p>', "unsafe-event-handler"),
        ('<video src="https://example.test/v.mp4"></video>', "caniemail:html-video"),
        ('<object data="https://example.test/x.swf"></object>', "caniemail:html-object"),
        ('<embed src="https://example.test/x.swf">', "unsafe-embed"),
    ],
)
def test_unsafe_or_unsupported_content(body: str, check: str) -> None:
    assert one(page(body), check).severity == "error"


def test_background_image_needs_vml() -> None:
    html = page(
        '<table role="presentation"><tr><td style="background-image:url(https://e.test/b.jpg)">x</td></tr></table>'
    )
    assert clients(one(html, "background-vml")) == {"outlook.windows"}
    vml = (
        '<!--[if gte mso 9]><v:rect fill="true" stroke="false"><v:fill type="frame" '
        'src="https://e.test/b.jpg"/><![endif]-->'
    )
    with_vml = html.replace("<body>\n", "<body>\n" + vml)
    assert not findings(lint(with_vml, text=TEXT), "background-vml")


def test_dark_mode_risks() -> None:
    report = lint(
        page('<p style="color:#111111">dark text, no background</p>').replace(
            '<meta name="color-scheme" content="light">\n', ""
        ),
        text=TEXT,
    )
    assert findings(report, "dark-mode-text")
    assert findings(report, "dark-mode-undeclared")


def test_fonts_without_web_safe_fallback() -> None:
    finding = one(page('<p style="font-family: Lobster">x</p>'), "font-fallback")
    assert clients(finding) == {"outlook.windows"}
    ok = lint(page("<p style=\"font-family: 'Brand', Arial, sans-serif\">x</p>"), text=TEXT)
    assert not findings(ok, "font-fallback")


def test_alignment_by_css_only() -> None:
    centred = page('<table role="presentation" style="margin:0 auto"><tr><td>x</td></tr></table>')
    assert clients(one(centred, "align-center")) == {"outlook.windows"}
    cell = page('<table role="presentation"><tr><td style="vertical-align:top">x</td></tr></table>')
    assert one(cell, "align-valign").fix == 'add valign="top"'
