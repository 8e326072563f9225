"""Linting rendered e-mail HTML against what each mail client supports.

``lint(html)`` reads the HTML as written (structure) and as a parser repairs
it (features in use), checks every element, attribute, CSS property, value,
at-rule and selector against the caniemail support table shipped in
``templates/data/``, adds the checks the table has no row for, and returns a
:class:`LintReport`. docs/templates.md ("Lint") documents the checks, the
JSON format and the scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lxml.etree

from mailstead.templates.lint.checks import GMAIL_CLIP_BYTES, check_all
from mailstead.templates.lint.colour import check_colours
from mailstead.templates.lint.css import Placed, Usage, style_attribute_usages
from mailstead.templates.lint.data import ClientIssue, parse_clients
from mailstead.templates.lint.document import Document, HostileInput
from mailstead.templates.lint.features import element_usages, findings_for
from mailstead.templates.lint.report import (
    FORMAT,
    Finding,
    LintReport,
    families_of,
    select_clients,
)

__all__ = ["FORMAT", "MAX_LINT_BYTES", "ClientIssue", "Finding", "LintReport", "lint"]

# Larger HTML is not linted (only its size is reported): five times Gmail's
# clipping point, and it bounds the time a hostile input can take.
MAX_LINT_BYTES = 512 * 1024


def _too_large(size: int) -> list[Finding]:
    return [
        Finding(
            "lint-too-large",
            "Message size",
            "error",
            1,
            1,
            "",
            f"the HTML is {size / 1024:.0f} KB, over the {MAX_LINT_BYTES // 1024} KB this linter"
            " reads: not linted",
            fix="no mail client shows this much HTML in full; shorten it",
        ),
        Finding(
            "size-gmail-clip",
            "Message size",
            "error",
            1,
            1,
            "",
            f"the HTML is {size / 1024:.0f} KB: Gmail clips it after about"
            f" {GMAIL_CLIP_BYTES // 1024} KB",
            clients=tuple(
                ClientIssue("gmail", p, "n", "", ("Clips HTML after about 102 KB.",))
                for p in ("desktop-webmail", "ios", "android", "mobile-webmail")
            ),
            fix="shorten the message",
        ),
    ]


def lint(
    html: str,
    *,
    text: str | None = None,
    clients: Sequence[str] | None = None,
    base_dir: Path | None = None,
    sent_bytes: int | None = None,
) -> LintReport:
    """Lint the rendered HTML of one message.

    ``text`` is the plain-text part, if the message has one. ``clients``
    limits the report to client families (``"gmail"``) or platforms
    (``"outlook.windows"``); an unknown name raises ``ValueError``.
    ``base_dir`` is where relative image paths point (animated GIFs are
    read from there). ``sent_bytes``: the size of the HTML part as sent
    (after CSS inlining), which Gmail's clipping depends on; without it the
    size of ``html`` stands in.
    """
    selection = parse_clients(clients)
    families = families_of(selection)
    # Lone surrogates (from a file read with surrogateescape) cannot be sent; count them as "?".
    html = html.encode("utf-8", "replace").decode("utf-8")
    size = len(html.encode("utf-8"))
    if size > MAX_LINT_BYTES:
        return LintReport(select_clients(_too_large(size), selection), families)
    if not html.strip():
        empty = Finding("empty", "Empty message", "error", 1, 1, "", "the HTML is empty")
        return LintReport([empty], families)
    try:
        doc = Document(html, base_dir)
    except HostileInput as exc:
        hostile = Finding("lint-hostile", "HTML", "error", 1, 1, "", f"not linted: {exc}")
        return LintReport([hostile], families)
    except (lxml.etree.ParserError, ValueError) as exc:
        broken = Finding(
            "unparsable", "HTML", "error", 1, 1, "", f"the HTML cannot be parsed: {exc}"
        )
        return LintReport([broken], families)
    placed: list[Placed] = []
    for el, tag, _ in doc.nodes:
        line, column = doc.where(el)
        for usage in element_usages(tag, tuple(el.items())):
            placed.append((usage, line, column))
        style = el.get("style")
        if style:
            for usage in style_attribute_usages(style, tag):
                placed.append((usage, line, column))
    if doc.scan.doctype:
        placed.append((Usage("html-doctype", None, "<!DOCTYPE>"), 1, 1))
    for sheet, _ in doc.sheets:
        placed.extend(sheet.usages)
    findings = findings_for(placed, selection, doc.snippet)
    for issue in doc.scan.issues:
        findings.append(
            Finding(
                issue.check,
                "HTML structure",
                issue.severity,
                issue.line,
                issue.column,
                doc.snippet(issue.line, issue.column),
                issue.message,
                fix=issue.fix,
            )
        )
    for check, more in doc.scan.suppressed.items():
        findings.append(
            Finding(
                check,
                "More findings",
                "info",
                1,
                1,
                "",
                f"{more} more {check} finding(s) not listed",
            )
        )
    findings.extend(check_all(doc, text, sent_bytes))
    findings.extend(check_colours(doc))
    return LintReport(select_clients(findings, selection), families)
