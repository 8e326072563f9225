"""Colours: text contrast from the inline colours, and what dark mode may do to them."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import tinycss2.color4  # type: ignore[import-untyped]

from mailstead.templates.lint.document import Document, Element
from mailstead.templates.lint.report import Finding

__all__ = ["check_colours"]

Rgb = tuple[float, float, float]
WHITE: Rgb = (1.0, 1.0, 1.0)
BLACK: Rgb = (0.0, 0.0, 0.0)
MAX_REPORTED = 20


@functools.lru_cache(maxsize=1024)
def parse_colour(value: str) -> Rgb | None:
    """An opaque colour in sRGB (CSS Color 4), or None for anything else."""
    for candidate in [value.strip(), *value.split()]:
        if not candidate or "url(" in candidate:
            continue
        colour = tinycss2.color4.parse_color(candidate)
        if isinstance(colour, tinycss2.color4.Color) and colour.alpha >= 1:
            r, g, b = colour.to("srgb").coordinates
            return (min(max(r, 0.0), 1.0), min(max(g, 0.0), 1.0), min(max(b, 0.0), 1.0))
    return None


@functools.lru_cache(maxsize=1024)
def luminance(rgb: Rgb) -> float:
    """Relative luminance, WCAG 2.1 §1.4.3 (definition of relative luminance)."""

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: Rgb, b: Rgb) -> float:
    """Contrast ratio, WCAG 2.1 (definition of contrast ratio): 1 to 21."""
    la, lb = luminance(a), luminance(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def _own_text(el: Element) -> bool:
    if (el.text or "").strip():
        return True
    return any((child.tail or "").strip() for child in el)


def _background(style: Mapping[str, str], el: Element) -> Rgb | None:
    for value in (style.get("background-color"), style.get("background"), el.get("bgcolor")):
        if value:
            colour = parse_colour(value)
            if colour is not None:
                return colour
    return None


def _foreground(style: Mapping[str, str], el: Element, tag: str) -> Rgb | None:
    value = style.get("color") or (el.get("color") if tag == "font" else None)
    return parse_colour(value) if value else None


_NO_TEXT = frozenset({"style", "script", "head", "title"})  # their text is not shown
_ZERO_SIZE = re.compile(r"0(px)?\b")


def _hides(style: Mapping[str, str], node: Element) -> bool:
    """Hidden from view with what it holds (a preheader, an Outlook-only block)."""
    return (
        style.get("display", "").startswith("none")
        or style.get("visibility", "").startswith("hidden")
        or style.get("opacity", "").strip() in ("0", "0.0")
        or _ZERO_SIZE.match(style.get("max-height", "")) is not None
        or (_ZERO_SIZE.match(style.get("font-size", "")) is not None and bool(node.text))
        or node.get("hidden") is not None
    )


_FONT_SIZE = re.compile(r"([\d.]+)\s*(px|pt)")


def _large(style: Mapping[str, str], tag: str) -> bool:
    """Large text in WCAG's sense: 18pt (24px), or 14pt (18.66px) bold."""
    match = _FONT_SIZE.match(style.get("font-size", ""))
    if not match:
        return tag in ("h1", "h2")
    size = float(match.group(1)) * (4 / 3 if match.group(2) == "pt" else 1)
    bold = style.get("font-weight", "") in ("bold", "bolder", "600", "700", "800", "900")
    return (
        size >= 24 or (bold and size >= 18.66) or (tag in ("b", "strong", "th") and size >= 18.66)
    )


def _hex(rgb: Rgb) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


def check_colours(doc: Document) -> list[Finding]:
    out: list[Finding] = []
    dark_text: list[tuple[int, int]] = []
    low: list[tuple[int, int, float, Rgb, Rgb, float]] = []
    uses_colour = False
    # One walk in document order, parents first: what an element inherits (the
    # nearest colours, being hidden) is its parent's, already worked out.
    inherited: dict[int, tuple[Rgb | None, Rgb | None, bool]] = {}
    for el, tag, style in doc.nodes:
        own_fg, own_bg = _foreground(style, el, tag), _background(style, el)
        if own_fg is not None or own_bg is not None:
            uses_colour = True
        parent = el.getparent()
        above = inherited.get(id(parent)) if parent is not None else None
        if above is None:
            fg, bg, hidden = own_fg, own_bg, False
        else:
            fg = own_fg if own_fg is not None else above[0]
            bg = own_bg if own_bg is not None else above[1]
            hidden = above[2]
        hidden = hidden or _hides(style, el)
        inherited[id(el)] = (fg, bg, hidden)
        if hidden or (fg is None and bg is None) or tag in _NO_TEXT or not _own_text(el):
            continue
        need = 3.0 if _large(style, tag) else 4.5
        ratio = contrast(fg or BLACK, bg or WHITE)
        if ratio < need:
            low.append((*doc.where(el), ratio, fg or BLACK, bg or WHITE, need))
        if fg is not None and bg is None and luminance(fg) < 0.2:
            dark_text.append(doc.where(el))
    for line, column, ratio, fg, bg, need in low[:MAX_REPORTED]:
        out.append(
            Finding(
                "contrast",
                "Colour contrast",
                "warning",
                line,
                column,
                doc.snippet(line, column),
                f"text {_hex(fg)} on {_hex(bg)} has a contrast of {ratio:.2f}:1, below {need:g}:1"
                " (WCAG 2.1 §1.4.3)",
                fix=f"darken the text or lighten the background until the ratio reaches {need:g}:1",
            )
        )
    if dark_text:
        line, column = dark_text[0]
        out.append(
            Finding(
                "dark-mode-text",
                "Dark mode",
                "warning",
                line,
                column,
                doc.snippet(line, column),
                "dark text colour set without a background colour behind it: clients that darken"
                " the background in dark mode but keep your text colour show dark on dark",
                fix="set a background-color on the cell or table that holds the text (or on"
                " <body>), so dark-mode clients invert both or neither",
                occurrences=len(dark_text),
                lines=tuple(sorted({ln for ln, _ in dark_text}))[:50],
            )
        )
    declared = any(sheet.dark_mode for sheet, _ in doc.sheets) or any(
        str(el.get("name", "")).lower() == "color-scheme"
        for el, tag, _ in doc.nodes
        if tag == "meta"
    )
    if uses_colour and not declared:
        out.append(
            Finding(
                "dark-mode-undeclared",
                "Dark mode",
                "info",
                1,
                1,
                doc.snippet(1, 1),
                "the message sets colours but declares no dark-mode support: Outlook.com, the"
                " Outlook and Gmail apps will invert its colours on their own",
                fix='add <meta name="color-scheme" content="light dark"> and a'
                " @media (prefers-color-scheme: dark) block for the clients that honour it",
            )
        )
    return out
