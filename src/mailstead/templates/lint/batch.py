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

Per message, nothing is parsed, nor any text filled in whole: the links'
addresses with a value in them are filled in one by one, the body's words
counted from the skeleton's (:class:`_Words`), and the message split into
lines only as far as a finding's snippet needs.
"""

from __future__ import annotations

import html as html_escape
from collections import Counter
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
from mailstead.templates.shapes import PLACEHOLDER, Filler, fill, rewritten, skeleton

__all__ = ["TemplateLint"]

_SHAPES_KEPT = 16  # a template whose shapes keep changing costs a full lint each
_MESSAGE_CHECKS = MESSAGE_CHECK_NAMES | {f"caniemail:{slug}" for slug in ADDRESS_FEATURES}
# A lint that stopped early (too large, hostile, unparsable, empty) is not split.
_WHOLE = frozenset({"lint-too-large", "lint-hostile", "unparsable", "empty"})
_ADDRESSED = ("a", "area", "img")
_PLACED = "\ue000"  # starts a placeholder (shapes.PLACEHOLDER)


@dataclass(frozen=True, slots=True)
class _Words:
    """How many words the text of a skeleton's body has once its values are filled in.

    The skeleton's white space stays where it is: a word without a placeholder stays
    one word, and a word with some gets, for each value it holds, that value's words
    less one, if the value is neither empty nor starts or ends with white space (it
    then joins the text on either side). Any other value: the words are filled in.
    """

    fixed: int  # the words without a placeholder
    placed: tuple[str, ...]  # the words with one or more
    uses: dict[int, int]  # how often each value's placeholder is in them

    @classmethod
    def of(cls, body: str) -> _Words:
        words = body.split()
        placed = tuple(word for word in words if _PLACED in word)
        uses = Counter(int(n, 16) for word in placed for n in PLACEHOLDER.findall(word))
        return cls(len(words) - len(placed), placed, dict(uses))

    def count(self, values: Sequence[str]) -> int:
        """``len(fill(body, values).split())``."""
        more = 0
        for n, uses in self.uses.items():
            value = values[n]
            if not value or value[0].isspace() or value[-1].isspace():
                return self.fixed + sum(len(fill(word, values).split()) for word in self.placed)
            more += uses * (len(value.split()) - 1)
        return self.fixed + len(self.placed) + more


@dataclass(frozen=True, slots=True)
class _Known:
    """What the lint of a shape's first message left to do for the next ones."""

    findings: list[Finding]  # of the checks the values cannot change
    # the skeleton's links and images, each with its address to fill in if a value is
    # in it, and its body's words; None if the skeleton could not be read
    addressed: list[tuple[Addressed, Filler | None]] | None
    words: _Words


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
    ) -> tuple[list[tuple[Addressed, Filler | None]] | None, _Words]:
        try:
            doc = Document(skeleton(html, spans), self._base_dir, only=_ADDRESSED)
        except (lxml.etree.ParserError, ValueError):
            return None, _Words.of("")
        body = doc.root.find("body")
        links = [(a, Filler(a.address) if _PLACED in a.address else None) for a in addressed(doc)]
        return links, _Words.of((body if body is not None else doc.root).text_content())

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
                a if filler is None else Addressed(a.tag, filler.fill(values), a.where)
                for a, filler in known.addressed
            ]
            words = known.words.count(values)
            where = _Snippets(html).snippet
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


class _Snippets:
    """Snippets of one message's source, split into lines only as far as they ask."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._lines: list[str] = []
        self._split = 0  # how much of the source is split into self._lines

    def snippet(self, line: int, column: int) -> str:
        while self._split < len(self._source) and len(self._lines) <= line:
            # the first lines of a prefix are the source's if another starts after them
            self._split = max(4096, 4 * self._split)
            self._lines = self._source[: self._split].splitlines()
        return snippet(self._lines, line, column)
