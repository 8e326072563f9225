"""The text part: readable, in reading order, links numbered, hidden things dropped."""

from __future__ import annotations

import textwrap

import pytest

from mailstead.templates.text import WIDTH, _wrap, html_to_text

RECEIPT = """<html><head><title>Receipt</title><style>p { color: red }</style></head><body>
<div class="preheader" style="display:none;max-height:0">Your receipt, order 42</div>
<img src="https://track.example.test/open.gif" width="1" height="1" alt="">
<table role="presentation" width="600"><tr>
  <td><img src="logo.png" alt="Acme" width="120"><h1>Thanks, Ann!</h1>
    <p>Your order ships today. Track it <a href="https://example.test/t/42">here</a>.</p></td>
  <td><p>Questions? <a href="mailto:help@example.test">help@example.test</a></p></td>
</tr></table>
<table><tr><th>Item</th><th>Price</th></tr><tr><td>Tea</td><td>3.00</td></tr>
<tr><td>Cups</td><td>12.50</td></tr></table>
<p style="display: none">internal note</p><span hidden>hidden too</span>
<div style="mso-hide:all">Outlook-hidden</div>
<p>Read <a href="https://example.test/terms">the terms</a> or
<a href="https://example.test/t/42">track again</a>. <a href="javascript:evil()">Unsafe</a>.</p>
</body></html>"""


def test_a_receipt_reads_in_order_with_numbered_links() -> None:
    assert html_to_text(RECEIPT) == (
        "Your receipt, order 42\n"
        "\n"
        "[Acme]\n"
        "\n"
        "Thanks, Ann!\n"
        "\n"
        "Your order ships today. Track it here [1].\n"
        "\n"
        "Questions? help@example.test\n"
        "\n"
        "Item  Price\n"
        "Tea   3.00\n"
        "Cups  12.50\n"
        "\n"
        "Read the terms [2] or track again [1]. Unsafe.\n"
        "\n"
        "[1] https://example.test/t/42\n"
        "[2] https://example.test/terms\n"
    )


def test_a_given_preheader_comes_first_and_hidden_copies_are_dropped() -> None:
    markup = '<body><div style="display:none">Pre</div><p>Body</p></body>'
    assert html_to_text(markup, preheader="Pre") == "Pre\n\nBody\n"


def test_columns_of_a_layout_table_are_read_one_after_the_other() -> None:
    long = "word " * 30
    markup = f"<table><tr><td><p>{long}</p></td><td><p>Right</p></td></tr></table>"
    text = html_to_text(markup)
    assert text.endswith("\n\nRight\n")
    assert all(len(line) <= 78 for line in text.splitlines())


def test_lines_are_wrapped_at_78_but_urls_stay_whole() -> None:
    url = "https://example.test/" + "a" * 90
    text = html_to_text(f"<p>{'lorem ipsum ' * 20}</p><p>{url}</p>")
    lines = text.splitlines()
    assert max(len(line) for line in lines if line != url) <= 78
    assert url in lines


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("", ""),
        ("   ", ""),
        ("plain", "plain\n"),
        ("a<br>b", "a\nb\n"),
        ("<p>a</p><p>b</p>", "a\n\nb\n"),
        ("<script>x()</script><p>shown</p>", "shown\n"),
        ("<a href='https://x.test'>https://x.test</a>", "https://x.test\n"),
        ("<a href='javascript:evil()'>click</a>", "click\n"),
        ("<a href='mailto:a@x.test'>a@x.test</a>", "a@x.test\n"),
        ("<a href='/relative'>rel</a>", "rel\n"),
        ("&lt;b&gt; &amp;amp;", "<b> &amp;\n"),
        ("<table><tr><td>1</td><td>2</td></tr></table>", "1  2\n"),
        ("<table role='presentation'><tr><td>Tea</td><td>3.00</td></tr></table>", "Tea  3.00\n"),
        ("<img src='p.gif' style='width:1px;height:1px' alt='pixel'><p>x</p>", "x\n"),
        ("<p style='visibility:hidden'>no</p><p>yes</p>", "yes\n"),
        ("<ul><li>one</li><li>two</li></ul>", "  * one\n  * two\n"),
    ],
)
def test_html_to_text(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


def test_a_style_decides_by_its_own_text_whatever_came_before() -> None:
    # each distinct style attribute is read once in a process: the same
    # markup with another style must not get the first one's reading
    shown = '<p style="display:block;margin-top:2em">a</p><p>b</p>'
    hidden = shown.replace("display:block", "DISPLAY: none")
    assert html_to_text(shown) == "a\n\nb\n"
    assert html_to_text(hidden) == "b\n"
    assert html_to_text(shown) == "a\n\nb\n"


def test_ampersands_in_every_text_node_stay_single() -> None:
    markup = "<p>a &amp;lt; b<!-- c & d -->e &amp; f<img alt='g &amp;amp; h'>i</p>"
    assert html_to_text(markup) == "a &lt; be & f[g &amp; h]i\n"


@pytest.mark.parametrize("indent", [0, 2, 8, 77, 78, 90])
@pytest.mark.parametrize(
    "words",
    [
        ["word"] * 40,
        ["a", "bb", "x" * 77, "ccc", "y" * 78, "z" * 79, "d"],
        ["https://example.test/" + "p" * 70, "after", "u" * 120],
        ["ünïcode", "mots", "très", "longs"] * 12,
    ],
)
@pytest.mark.parametrize("gap", [" ", "  ", " " * 80])
def test_wrapping_is_textwraps(indent: int, words: list[str], gap: str) -> None:
    line = " " * indent + gap.join(words)
    assert _wrap(line, " " * indent) == textwrap.wrap(
        line, WIDTH, subsequent_indent=" " * indent, break_long_words=False, break_on_hyphens=False
    )


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<ol><li value='5'>five</li><li>six</li></ol>", " 5. five\n 6. six\n"),
        (
            "<ul><li>a<ol><li>one<ul><li>deep</li></ul></li></ol></li><li></li></ul>",
            "  * a\n     1. one\n          o deep\n  *\n",
        ),
        ("<ul><li><p>first</p></li><li>second</li></ul>", "  * first\n\n  * second\n"),
        ("<ul><li><pre>code\n  more</pre></li></ul>", "  * code\n      more\n"),
        # a definition list reads term, then definition
        ("<dl><dt>Term</dt><dd>What it means</dd></dl>", "Term\nWhat it means\n"),
        ("<p>say <q>hi</q></p>", 'say "hi"\n'),
        ("<p>a <span style='display:block'>b</span> c</p>", "a\n\nb\nc\n"),
        ("<div style='display:inline'>x</div><div style='display:inline-block'>y</div>", "xy\n"),
        ("<div style='margin-bottom:16px'>a</div><div>b</div>", "a\n\nb\n"),
        ("<p style='margin-bottom:0px'>a</p><p style='margin-top:0'>b</p>", "a\n\nb\n"),
        (
            "<div style='padding-left:2em'>in<div style='padding-left:8px'>more</div></div>",
            "  in\n   more\n",
        ),
        ("<div style='white-space:pre'>a  b\n c</div>", "a  b\n c\n"),
        (
            "<table><tr><th align='right'>N</th><th>Name</th></tr>"
            "<tr><td align='right'>1</td><td>Ann<br>Lee<br>Ray</td></tr>"
            "<tr><td>10</td><td>Bob</td></tr></table><p>after</p>",
            " N  Name\n    Ann\n 1  Lee\n    Ray\n10  Bob\n\nafter\n",
        ),
        (
            "<table><caption>Prices</caption>"
            "<tr><td valign='top'>x</td><td>1<br>2</td></tr></table>",
            "Prices\nx  1\n   2\n",
        ),
        (
            "<table><tr><td>a</td></tr></table><table><tr><td>b</td><td></td><td>c</td></tr></table>",
            "a\n\nb    c\n",
        ),
        ("<p>x<!-- note -->y</p><p>&nbsp;nb&nbsp;&nbsp;sp</p>", "xy\n\nnb sp\n"),
    ],
)
def test_layout(markup: str, text: str) -> None:
    assert html_to_text(markup) == text
