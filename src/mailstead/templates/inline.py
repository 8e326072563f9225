"""CSS inlining with ``css-inline``: ``<style>`` rules moved into ``style`` attributes.

Many clients (Gmail's apps for other accounts, older Outlooks) drop or
ignore ``<style>`` blocks, so each rule is copied onto the elements it
selects. What cannot be inlined stays in a ``<style>`` block: ``@media``
queries, ``prefers-color-scheme`` among them. A ``<style
data-css-inline="keep">`` block stays as well (for ``:hover`` rules and
the like, which would otherwise be dropped). Comments, and so MSO conditional comments
(``<!--[if mso]>…<![endif]-->``), pass through untouched. No stylesheet
is fetched: ``<link>`` elements are kept for the client to load.
"""

from __future__ import annotations

from pathlib import Path

from mailstead.templates.errors import TemplateError

__all__ = ["inline_css"]


def inline_css(html: str, path: Path, output_bytes: int) -> str:
    """``html`` with its CSS inlined, or TemplateError if it grows past ``output_bytes``."""
    import css_inline

    inliner = css_inline.CSSInliner(
        keep_at_rules=True, keep_link_tags=True, load_remote_stylesheets=False
    )
    try:
        out = inliner.inline(html)
    except css_inline.InlineError as exc:
        raise TemplateError(f"{path}: CSS inlining: {exc}") from None
    if len(out) > output_bytes:
        raise TemplateError(f"{path}: HTML larger than {output_bytes} characters once inlined")
    return out
