"""CSS inlining: rules onto elements, @media kept in <style>, MSO comments untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.templates.errors import TemplateError
from mailstead.templates.inline import inline_css

PAGE = """<!doctype html>
<html><head>
<style>
  p { color: #333; font-family: Arial, sans-serif; }
  .cta { background-color: #0a6; }
  @media (max-width: 600px) { .col { width: 100% !important; } }
  @media (prefers-color-scheme: dark) { body { background: #111; } p { color: #eee; } }
</style>
<style data-css-inline="keep">a:hover { text-decoration: underline; }</style>
<!--[if mso]><style>td { font-family: Arial; }</style><![endif]-->
</head><body>
<!--[if mso]><table role="presentation" width="600"><tr><td><![endif]-->
<p class="col">Hello</p><a class="cta" href="https://example.test/">Go</a>
<!--[if mso]></td></tr></table><![endif]-->
<!--[if !mso]><!--><p>not Outlook</p><!--<![endif]-->
</body></html>
"""


def test_rules_are_inlined_and_at_rules_stay_in_a_style_block() -> None:
    out = inline_css(PAGE, Path("t.html"), 1_000_000)
    assert '<p class="col" style="color: #333;font-family: Arial, sans-serif;">Hello</p>' in out
    assert 'class="cta" href="https://example.test/" style="background-color: #0a6;"' in out
    assert "@media (max-width: 600px) { .col { width: 100% !important; } }" in out
    assert "@media (prefers-color-scheme: dark) { body { background: #111; }" in out
    assert "a:hover { text-decoration: underline; }" in out  # the kept block


def test_mso_conditional_comments_pass_through_untouched() -> None:
    out = inline_css(PAGE, Path("t.html"), 1_000_000)
    for comment in (
        "<!--[if mso]><style>td { font-family: Arial; }</style><![endif]-->",
        '<!--[if mso]><table role="presentation" width="600"><tr><td><![endif]-->',
        "<!--[if mso]></td></tr></table><![endif]-->",
        "<!--[if !mso]><!-->",
        "<!--<![endif]-->",
    ):
        assert comment in out


def test_no_stylesheet_is_fetched_and_links_are_kept() -> None:
    page = '<html><head><link rel="stylesheet" href="https://fonts.example.test/x.css">'
    page += "</head><body><p>x</p></body></html>"
    out = inline_css(page, Path("t.html"), 1_000_000)
    assert '<link rel="stylesheet" href="https://fonts.example.test/x.css">' in out


def test_inlining_that_grows_past_the_limit_is_refused() -> None:
    page = "<style>p { color: red; margin: 0; padding: 0 }</style>" + "<p>x</p>" * 2000
    with pytest.raises(TemplateError, match="larger than 20000 characters once inlined"):
        inline_css(page, Path("t.html"), 20_000)
