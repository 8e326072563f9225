"""Linting many messages of one template: the template's findings once, the data's per message.

The markup's shape (:mod:`mailstead.templates.shapes`: the data's values
masked where they are text or an address) keys the full lint's findings
but those the values can change: Gmail's clipping, the text part's
length, the links' schemes, animated GIFs and the caniemail features an
address decides. Those are checked for every message, on the links,
images and body text of the shape's skeleton with the message's values
filled in (on the message itself, parsed, if a value holds what a parser
rewrites). Another value in a style, a class or a ``<style>`` block is
another shape: a full lint.

The findings taken from the cache keep the positions and snippets of the
first message of their shape; the others have the skeleton's positions.
"""

from __future__ import annotations

import html as html_escape
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lxml.etree

from mailstead.templates.lint import MAX_LINT_BYTES, lint
from mailstead.templates.lint.checks import (
    MESSAGE_CHECK_NAMES,
    Addressed,
    addressed,
    html_words,
    message_checks,
)
from mailstead.templates.lint.css import Placed
from mailstead.templates.lint.data import parse_clients
from mailstead.templates.lint.document import Document, snippet
from mailstead.templates.lint.features import ADDRESS_FEATURES, element_usages, findings_for
from mailstead.templates.lint.report import Finding, LintReport, families_of, select_clients
from mailstead.templates.shapes import fill, rewritten, skeleton

__all__ = ["TemplateLint"]

_SHAPES_KEPT = 16  # a template whose shapes keep changing costs a full lint each
_MESSAGE_CHECKS = MESSAGE_CHECK_NAMES | {f"caniemail:{slug}" for slug in ADDRESS_FEATURES}
# A lint that stopped early (too large, hostile, unparsable, empty) is not split.
_WHOLE = frozenset({"lint-too-large", "lint-hostile", "unparsable", "empty"})
_ADDRESSED = ("a", "area", "img")
_PLACED = "\ue000"  # starts a placeholder (shapes.PLACEHOLDER)


@dataclass(frozen=True, slots=True)
class _Known:
    """What the lint of a shape's first message left to do for the next ones."""

    findings: list[Finding]  # of the checks the values cannot change
    # the skeleton's links and images, and its body's text, with the placeholders
    # the values fill in; None if the skeleton could not be read
    addressed: list[Addressed] | None
    body: str


class TemplateLint:
    """The lint of the messages of one template, for :meth:`EmailTemplate.lint`."""

    def __init__(self, base_dir: Path | None, clients: Sequence[str] | None = None) -> None:
        self._base_dir = base_dir
        self._clients = clients
        self._selection = parse_clients(clients)  # ValueError for an unknown name
        self._families = families_of(self._selection)
        self._known: dict[str, _Known] = {}

    def lint(
        self,
        html: str,
        text: str | None,
        key: str,
        spans: Sequence[tuple[int, int, bool]],
        sent_bytes: int | None = None,
    ) -> LintReport:
        """The report on one message: its markup, its text part, its shape and the spans of
        the values masked in it (``shapes.shape``, ``shapes.masked``); ``sent_bytes`` as
        for :func:`~mailstead.templates.lint.lint`."""
        known = self._known.get(key)
        encoded = html.encode("utf-8", "replace")
        if known is not None and len(encoded) <= MAX_LINT_BYTES:
            # as lint() reads it: lone surrogates as "?"
            findings = self._message_findings(
                encoded.decode("utf-8"), text, known, spans, sent_bytes
            )
            return LintReport(known.findings + findings, self._families)
        report = lint(
            html, text=text, clients=self._clients, base_dir=self._base_dir, sent_bytes=sent_bytes
        )
        if not any(f.check in _WHOLE for f in report.findings):
            if len(self._known) >= _SHAPES_KEPT:
                del self._known[next(iter(self._known))]
            kept = [f for f in report.findings if f.check not in _MESSAGE_CHECKS]
            self._known[key] = _Known(kept, *self._skeleton(html, spans))
        return report

    def _skeleton(
        self, html: str, spans: Sequence[tuple[int, int, bool]]
    ) -> tuple[list[Addressed] | None, str]:
        try:
            doc = Document(skeleton(html, spans), self._base_dir, only=_ADDRESSED)
        except (lxml.etree.ParserError, ValueError):
            return None, ""
        body = doc.root.find("body")
        return addressed(doc), (body if body is not None else doc.root).text_content()

    def _message_findings(
        self,
        html: str,
        text: str | None,
        known: _Known,
        spans: Sequence[tuple[int, int, bool]],
        sent_bytes: int | None,
    ) -> list[Finding]:
        values = [html_escape.unescape(html[at:end]) for at, end, _ in spans]
        if known.addressed is not None and not rewritten(values):
            # the skeleton's, with this message's values
            links = [
                Addressed(a.tag, fill(a.address, values), a.where) if _PLACED in a.address else a
                for a in known.addressed
            ]
            words = len(fill(known.body, values).split())
            lines: list[str] = []

            def where(line: int, column: int) -> str:
                if not lines:
                    lines.extend(html.splitlines())
                return snippet(lines, line, column)

        else:  # the message itself, parsed
            try:
                doc = Document(html, self._base_dir, only=_ADDRESSED)
            except (lxml.etree.ParserError, ValueError):  # pragma: no cover - parsed before
                return []
            links, words, where = addressed(doc), html_words(doc), doc.snippet
        placed: list[Placed] = []
        for link in links:
            name = "src" if link.tag == "img" else "href"
            for usage in element_usages(link.tag, ((name, link.address),)):
                if usage.slug in ADDRESS_FEATURES:
                    placed.append((usage, *link.where))
        findings = findings_for(placed, self._selection, where)
        findings.extend(message_checks(html, self._base_dir, words, links, text, where, sent_bytes))
        return select_clients(findings, self._selection)
