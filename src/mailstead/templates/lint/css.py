"""CSS in use, read with tinycss2: properties, values, at-rules and selectors.

Each use becomes a :class:`Usage` naming the caniemail feature (its slug),
placed at an absolute line and column of the HTML. Syntax follows CSS Syntax Level 3
(tokens, §4; rules and declarations, §5) as tinycss2 implements it; the
selector grammar read here is Selectors Level 4 §§3-5 and §§14-16.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import tinycss2  # type: ignore[import-untyped]
import tinycss2.ast as css_ast  # type: ignore[import-untyped]

from mailstead.templates.lint.data import load_table

__all__ = [
    "Placed",
    "Sheet",
    "Usage",
    "declarations",
    "property_slug",
    "read_sheet",
    "style_attribute_usages",
]


class Usage(NamedTuple):  # a tuple: a page makes thousands, a dataclass is slower to build
    """One use of a feature: its slug, on which element, and what it says.

    Where it is goes beside it (:data:`Placed`): the uses of a repeated element or
    style="" are worked out once and placed at each occurrence.
    """

    slug: str
    tag: str | None  # the element of a style="" attribute; None in a <style> block
    detail: str  # the declaration, rule or selector, for the report
    in_media: bool = False  # inside an @media rule


Placed = tuple[Usage, int, int]  # a use, and the 1-based line and column it is at


@dataclass(slots=True)
class Sheet:
    """What one ``<style>`` block holds, for the checks that look past single features."""

    usages: list[Placed] = field(default_factory=list)
    errors: list[tuple[int, int, str]] = field(default_factory=list)  # invalid CSS
    font_faces: list[tuple[int, int]] = field(default_factory=list)
    declarations: list[tuple[str, str, int, int]] = field(default_factory=list)
    dark_mode: bool = False
    plain_rules: list[tuple[int, int]] = field(default_factory=list)  # style rules outside @media


_PREFIX = re.compile(r"^-(webkit|moz|ms|o)-")
# Properties named differently from their feature, or grouped under one.
_GROUPS: tuple[tuple[str, str], ...] = (
    ("padding-inline-", "css-padding-inline-start-end"),
    ("padding-block-", "css-padding-block-start-end"),
    ("padding-inline", "css-padding-inline-block"),
    ("padding-block", "css-padding-inline-block"),
    ("padding", "css-padding"),
    ("margin-inline-", "css-margin-inline-start-end"),
    ("margin-block-", "css-margin-block-start-end"),
    ("margin-inline", "css-margin-inline-block"),
    ("margin-block", "css-margin-inline-block"),
    ("margin", "css-margin"),
    ("border-start-", "css-border-radius-logical"),
    ("border-end-", "css-border-radius-logical"),
    ("border-inline-", "css-border-inline-block-longhand"),
    ("border-block-", "css-border-inline-block-longhand"),
    ("border-inline", "css-border-inline-block"),
    ("border-block", "css-border-inline-block"),
    ("border-image", "css-border-image"),
    ("border-", "css-border"),
    ("background-", "css-background"),
    ("inset", "css-inset"),
    ("grid", "css-grid-template"),
    ("flex", "css-display-flex"),
    ("order", "css-display-flex"),
    ("row-gap", "css-gap"),
    ("column-gap", "css-gap"),
    ("columns", "css-column-layout-properties"),
    ("column-", "css-column-layout-properties"),
    ("outline", "css-outline"),
    ("block-size", "css-block-inline-size"),
    ("inline-size", "css-block-inline-size"),
    ("mask", "css-mask-image"),
    ("scroll-snap", "css-scroll-snap"),
    ("transition", "css-transition"),
    ("animation", "css-animation"),
    ("transform", "css-transform"),
)
_SIDES = frozenset({"left", "right", "top", "bottom"})
_FUNCTIONS = {
    "linear-gradient": "css-linear-gradient",
    "repeating-linear-gradient": "css-linear-gradient",
    "radial-gradient": "css-radial-gradient",
    "repeating-radial-gradient": "css-radial-gradient",
    "conic-gradient": "css-conic-gradient",
    "calc": "css-unit-calc",
    "clamp": "css-function-clamp",
    "min": "css-function-min",
    "max": "css-function-max",
    "light-dark": "css-function-light-dark",
    "var": "css-variables",
    "rgb": "css-rgb",
    "rgba": "css-rgba",
    "lch": "css-modern-color",
    "oklch": "css-modern-color",
    "lab": "css-modern-color",
    "oklab": "css-modern-color",
}
_PLAIN_DISPLAY = frozenset(
    [
        "block",
        "inline",
        "inline-block",
        "none",
        "flex",
        "inline-flex",
        "grid",
        "inline-grid",
        "table",
        "table-row",
        "table-cell",
        "list-item",
    ]
)
_SYSTEM_FONTS = frozenset({"system-ui", "ui-serif", "ui-sans-serif", "ui-rounded", "ui-monospace"})
_INTRINSIC = frozenset({"fit-content", "min-content", "max-content"})
_MEDIA_FEATURES = {
    "prefers-color-scheme": "css-at-media-prefers-color-scheme",
    "prefers-reduced-motion": "css-at-media-prefers-reduced-motion",
    "orientation": "css-at-media-orientation",
    "hover": "css-at-media-hover",
    "-webkit-min-device-pixel-ratio": "css-at-media-device-pixel-ratio",
    "min-device-pixel-ratio": "css-at-media-device-pixel-ratio",
    "min-resolution": "css-at-media-device-pixel-ratio",
    "resolution": "css-at-media-device-pixel-ratio",
}
_PSEUDO_ELEMENTS = frozenset(
    {"before", "after", "first-letter", "first-line", "marker", "placeholder"}
)


def property_slug(name: str) -> str | None:
    """The feature a property belongs to, or None when the table has none for it."""
    name = _PREFIX.sub("", name.lower())
    if name.startswith("--"):
        return "css-variables"
    direct = f"css-{name}"
    if direct in load_table():
        return direct
    if name in _SIDES:
        return "css-left-right-top-bottom"
    if name.endswith("-radius") and name.startswith("border-"):
        return "css-border-radius"
    for prefix, slug in _GROUPS:
        if name.startswith(prefix):
            return slug
    return None


def _value_slugs(name: str, tokens: Iterable[css_ast.Node]) -> Iterator[str]:
    lower = name.lower()
    for token in tokens:
        if isinstance(token, css_ast.FunctionBlock):
            slug = _FUNCTIONS.get(token.lower_name)
            if slug:
                yield slug
            yield from _value_slugs(name, token.arguments)
        elif isinstance(token, css_ast.DimensionToken):
            if f"css-unit-{token.lower_unit}" in load_table():
                yield f"css-unit-{token.lower_unit}"
        elif isinstance(token, css_ast.PercentageToken):
            yield "css-unit-percent"
        elif isinstance(token, css_ast.IdentToken):
            value = token.lower_value
            if lower == "display":
                if value in ("flex", "inline-flex"):
                    yield "css-display-flex"
                elif value in ("grid", "inline-grid"):
                    yield "css-display-grid"
                elif value == "none":
                    yield "css-display-none"
            elif value == "initial":
                yield "css-unit-initial"
            elif value in _SYSTEM_FONTS and lower in ("font-family", "font"):
                yield "css-sytem-ui"
            elif value in _INTRINSIC:
                yield "css-intrinsic-size"


def _absolute(base: tuple[int, int], line: int, column: int) -> tuple[int, int]:
    if line == 1:
        return base[0], base[1] + column - 1
    return base[0] + line - 1, column


def _declaration_usages(
    decl: css_ast.Declaration, tag: str | None, media: bool = False
) -> Iterator[Usage]:
    value = tinycss2.serialize(decl.value).strip()
    detail = f"{decl.name}: {value}" + (" !important" if decl.important else "")
    slugs: list[str] = []
    prop = property_slug(decl.lower_name)
    if prop:
        slugs.append(prop)
    slugs.extend(_value_slugs(decl.lower_name, decl.value))
    if prop == "css-display" and value.lower() in _PLAIN_DISPLAY:
        slugs.remove("css-display")  # the partial notes are about the newer values only
    if decl.important:
        slugs.append("css-important")
    for slug in dict.fromkeys(slugs):
        yield Usage(slug, tag, detail, media)


MAX_NESTING = 64  # brackets inside brackets; tinycss2 recurses once per level
_BRACKETS = re.compile(r"[^()\[\]{}]+")


def too_deep(text: str) -> bool:
    """Whether blocks nest deeper than :data:`MAX_NESTING` (hostile, or broken beyond use)."""
    depth = 0
    for char in _BRACKETS.sub("", text):
        depth = depth + 1 if char in "([{" else max(0, depth - 1)
        if depth > MAX_NESTING:
            return True
    return False


@functools.lru_cache(maxsize=4096)
def declarations(style: str) -> tuple[css_ast.Declaration, ...]:
    """The declarations of a ``style`` attribute (CSS Style Attributes §3), invalid ones left out.

    Cached: a template repeats the same few style attributes many times.
    """
    if too_deep(style):
        return ()
    nodes = tinycss2.parse_declaration_list(style, skip_comments=True, skip_whitespace=True)
    return tuple(n for n in nodes if isinstance(n, css_ast.Declaration))


@functools.lru_cache(maxsize=4096)
def style_attribute_usages(style: str, tag: str) -> tuple[Usage, ...]:
    """Usages in one ``style=""`` of a ``tag``; the caller places them at the element."""
    return tuple(u for decl in declarations(style) for u in _declaration_usages(decl, tag))


def _selector_slugs(prelude: list[css_ast.Node]) -> Iterator[str]:
    tokens = [t for t in prelude if not isinstance(t, css_ast.Comment)]
    if any(isinstance(t, css_ast.LiteralToken) and t.value == "," for t in tokens):
        yield "css-selector-grouping"
    simple = 0  # simple selectors in the current compound selector
    pending_space = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if isinstance(token, css_ast.WhitespaceToken):
            pending_space = simple > 0
            i += 1
            continue
        if isinstance(token, css_ast.LiteralToken) and token.value in (">", "+", "~", ","):
            combinator = {
                ">": "css-selector-child",
                "+": "css-selector-adjacent-sibling",
                "~": "css-selector-general-sibling",
            }.get(token.value)
            if combinator:
                yield combinator
            simple, pending_space = 0, False
            i += 1
            continue
        if pending_space:
            yield "css-selector-descendant"
            simple, pending_space = 0, False
        if isinstance(token, css_ast.IdentToken):
            yield "css-selector-type"
        elif isinstance(token, css_ast.LiteralToken) and token.value == "*":
            yield "css-selector-universal"
        elif isinstance(token, css_ast.LiteralToken) and token.value == ".":
            yield "css-selector-class"
            i += 1
        elif isinstance(token, css_ast.HashToken):
            yield "css-selector-id"
        elif isinstance(token, css_ast.SquareBracketsBlock):
            yield "css-selector-attribute"
        elif isinstance(token, css_ast.LiteralToken) and token.value == ":":
            double = (
                i + 1 < len(tokens)
                and isinstance(tokens[i + 1], css_ast.LiteralToken)
                and getattr(tokens[i + 1], "value", "") == ":"
            )
            if double:
                i += 1
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            name = ""
            if isinstance(nxt, css_ast.IdentToken):
                name = nxt.lower_value
            elif isinstance(nxt, css_ast.FunctionBlock):
                name = nxt.lower_name
            i += 1
            if name in _PSEUDO_ELEMENTS:
                yield f"css-pseudo-element-{name}"
            elif name:
                yield f"css-pseudo-class-{name}"
            i += 1
            continue  # pseudo-classes do not count towards chaining
        simple += 1
        if simple == 2:
            yield "css-selector-chaining"
        i += 1


def _rules(
    nodes: Iterable[css_ast.Node], sheet: Sheet, base: tuple[int, int], depth: int, media: bool
) -> None:
    for node in nodes:
        if isinstance(node, css_ast.ParseError):
            sheet.errors.append(
                (*_absolute(base, node.source_line, node.source_column), node.message)
            )
        elif isinstance(node, css_ast.Comment):
            where = _absolute(base, node.source_line, node.source_column)
            sheet.usages.append((Usage("css-comments", None, "/* … */"), *where))
        elif isinstance(node, css_ast.AtRule):
            _at_rule(node, sheet, base, depth, media)
        elif isinstance(node, css_ast.QualifiedRule):
            where = _absolute(base, node.source_line, node.source_column)
            selector = tinycss2.serialize(node.prelude).strip()
            dotted = any(
                isinstance(t, css_ast.LiteralToken) and t.value == "." for t in node.prelude
            )
            if not media and depth == 0 and dotted:
                sheet.plain_rules.append(where)  # class rules: components meant to be inlined
            for slug in dict.fromkeys(_selector_slugs(node.prelude)):
                if slug in load_table():
                    sheet.usages.append((Usage(slug, None, selector, media), *where))
            _block(node.content, sheet, base, depth, media)


def _block(
    content: list[css_ast.Node] | None,
    sheet: Sheet,
    base: tuple[int, int],
    depth: int,
    media: bool,
    face: bool = False,
) -> None:
    for item in tinycss2.parse_blocks_contents(content or [], skip_whitespace=True):
        if isinstance(item, css_ast.Declaration):
            where = _absolute(base, item.source_line, item.source_column)
            sheet.usages.extend((u, *where) for u in _declaration_usages(item, None, media))
            if not face:  # a descriptor of @font-face names the font, it does not use one
                value = tinycss2.serialize(item.value).strip()
                sheet.declarations.append((item.lower_name, value, *where))
        elif isinstance(item, css_ast.ParseError):
            sheet.errors.append(
                (*_absolute(base, item.source_line, item.source_column), item.message)
            )
        elif isinstance(item, css_ast.QualifiedRule):
            # A style rule inside a style rule: CSS Nesting §2.
            where = _absolute(base, item.source_line, item.source_column)
            selector = tinycss2.serialize(item.prelude).strip()
            sheet.usages.append((Usage("css-nesting", None, selector, media), *where))
            if depth < 8:
                _rules([item], sheet, base, depth + 1, media)


def _at_rule(
    rule: css_ast.AtRule, sheet: Sheet, base: tuple[int, int], depth: int, media: bool
) -> None:
    where = _absolute(base, rule.source_line, rule.source_column)
    name = _PREFIX.sub("", rule.lower_at_keyword)
    prelude = tinycss2.serialize(rule.prelude).strip()
    detail = f"@{rule.at_keyword} {prelude}".strip()
    slug = {
        "font-face": "css-at-font-face",
        "import": "css-at-import",
        "keyframes": "css-at-keyframes",
        "media": "css-at-media",
        "supports": "css-at-supports",
    }.get(name)
    if slug:
        sheet.usages.append((Usage(slug, None, detail, media), *where))
    if name == "font-face":
        sheet.font_faces.append(where)
    if name == "media":
        for feature, media_slug in _MEDIA_FEATURES.items():
            if feature in prelude.lower():
                sheet.usages.append((Usage(media_slug, None, detail), *where))
                if feature == "prefers-color-scheme":
                    sheet.dark_mode = True
    if name in ("media", "supports") and depth < 8:
        _rules(
            tinycss2.parse_rule_list(rule.content or [], skip_whitespace=True, skip_comments=False),
            sheet,
            base,
            depth + 1,
            media or name == "media",
        )
    elif name == "font-face":
        _block(rule.content, sheet, base, depth, media, face=True)


def read_sheet(text: str, line: int, column: int, media: bool = False) -> Sheet:
    """Usages in a ``<style>`` block whose text starts at ``line``:``column``.

    ``media``: the block has a ``media`` attribute, so its rules apply like those
    of an @media rule.
    """
    sheet = Sheet()
    if too_deep(text):
        sheet.errors.append((line, column, f"blocks nested more than {MAX_NESTING} deep"))
        return sheet
    nodes = tinycss2.parse_stylesheet(text, skip_comments=False, skip_whitespace=True)
    _rules(nodes, sheet, (line, column), 0, media)
    return sheet
