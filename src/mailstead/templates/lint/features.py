"""HTML features in use, and turning every usage into findings against the support table."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mailstead.templates.lint.css import Placed, Usage
from mailstead.templates.lint.data import ClientIssue, load_table
from mailstead.templates.lint.report import Finding

__all__ = ["ADDRESS_FEATURES", "element_usages", "findings_for"]

_LISTS = frozenset(["ul", "ol", "li", "dl", "dt", "dd"])
_SEMANTIC = frozenset(
    [
        "article",
        "aside",
        "details",
        "figcaption",
        "figure",
        "footer",
        "header",
        "main",
        "mark",
        "nav",
        "section",
        "summary",
        "time",
    ]
)
_ATTRIBUTES = {
    "align": "html-align",
    "valign": "html-valign",
    "width": "html-width",
    "height": "html-height",
    "cellpadding": "html-cellpadding",
    "cellspacing": "html-cellspacing",
    "background": "html-background",
    "lang": "html-lang",
    "dir": "html-dir",
    "role": "html-role",
    "hidden": "html-hidden",
    "target": "html-target",
    "srcset": "html-srcset",
    "loading": "html-loading-attribute",
    "popover": "html-popover",
    "required": "html-required",
    "inert": "css-inert-attribute",
}
_IMAGE_TYPES = {
    "png": "image-png",
    "jpg": "image-jpg",
    "jpeg": "image-jpg",
    "gif": "image-gif",
    "webp": "image-webp",
    "svg": "image-svg",
    "avif": "image-avif",
    "bmp": "image-bmp",
    "ico": "image-ico",
    "tif": "image-tiff",
    "tiff": "image-tiff",
    "heif": "image-heif",
    "heic": "image-heif",
    "apng": "image-apng",
    "hdr": "image-hdr",
    "mp4": "image-mp4",
}
# The features an element's address (href, src) alone decides.
ADDRESS_FEATURES = frozenset(
    {*_IMAGE_TYPES.values(), "image-base64", "html-anchor-links", "html-mailto-links"}
)
_EXTENSION = re.compile(r"\.([a-z0-9]{2,5})(?:[?#].*)?$", re.IGNORECASE)

# Features whose absence costs nothing but an enhancement: the mail reads the
# same without them (an unsupported <style> rule falls back to the inlined
# style, a lang or role attribute to none), so they are reported as info.
_PROGRESSIVE_PREFIXES = (
    "html-doctype",
    "html-lang",
    "html-dir",
    "html-role",
    "html-aria-",
    "html-meta-color-scheme",
    "css-at-media",
    "css-pseudo-class-",
    "css-pseudo-element-",
    "css-selector-",
    "html-style",
    "css-comments",
    "html-loading-attribute",
    "html-srcset",
    "html-picture",
    "css-at-supports",
    "css-color-scheme",
    "html-target",
    "css-important",
    "html-comments",
    "html-body",
)
# CSS whose loss breaks the layout: lacking in a major client, an error. Any
# other declaration a client lacks is ignored there and the element keeps its
# default look, so at most a warning (docs/templates.md, "Severity").
_LAYOUT = frozenset(
    {
        "css-display",
        "css-display-flex",
        "css-display-grid",
        "css-flex-direction",
        "css-flex-wrap",
        "css-justify-content",
        "css-align-items",
        "css-gap",
        "css-grid-template",
        "css-position",
        "css-float",
        "css-width",
        "css-max-width",
        "css-min-width",
        "css-padding",
        "css-margin",
        "css-column-count",
        "css-column-layout-properties",
        "css-variables",
        "css-unit-calc",
        "css-function-clamp",
        "css-function-min",
        "css-function-max",
        "css-function-light-dark",
        "css-left-right-top-bottom",
        "css-inset",
        "css-display-none",
    }
)
# A declaration that restates the initial value changes nothing where it is dropped.
_DEFAULT_VALUE = re.compile(
    r"^[\w-]+:\s*(auto|normal|none|initial|inherit|unset|visible|0(px)?)(\s+0(px)?)*"
    r"\s*(!important)?$"
)
# Outlook for Windows draws background images only through VML, which the
# background-vml check looks for; the table's verdict would repeat it.
_LEFT_TO_VML = frozenset({"css-background-image", "css-background", "html-background"})

_FIX_TABLE = 'lay the columns out with a <table role="presentation">, one <td> per column'
FIXES: dict[str, str] = {
    "css-padding": "Outlook for Windows ignores padding on <div> and <p>: put the content in a"
    ' <table role="presentation"> and set padding on its <td> (or cellpadding on the table)',
    "css-width": "Outlook for Windows ignores CSS width on <div>, <p>, <span> and <img>: give the"
    ' <table>/<td> a width attribute (width="600"), or wrap the <div> in an <!--[if mso]>'
    " fixed-width table",
    "css-max-width": "Outlook for Windows applies max-width to tables only: keep max-width for the"
    ' others and add an <!--[if mso]><table width="600"> wrapper',
    "css-margin": "use padding on a table cell or a spacer row instead of margin",
    "css-display-flex": f"flexbox is ignored by Outlook for Windows: {_FIX_TABLE}",
    "css-display-grid": f"grid is ignored by Outlook for Windows: {_FIX_TABLE}",
    "css-flex-direction": _FIX_TABLE,
    "css-flex-wrap": _FIX_TABLE,
    "css-justify-content": _FIX_TABLE,
    "css-align-items": _FIX_TABLE,
    "css-gap": "use cellpadding or spacer cells between the columns",
    "css-grid-template": _FIX_TABLE,
    "css-position": "positioning is stripped by most webmails: build the layout from tables",
    "css-float": 'use align="left"/"right" on a <table> or <td> instead of float',
    "css-border-radius": "Outlook for Windows draws square corners: accept them, or draw the"
    " button as a VML <v:roundrect> inside <!--[if mso]>",
    "css-box-shadow": "do not rely on shadows: a border shows everywhere",
    "css-at-font-face": "web fonts show in Apple Mail, iOS and a few others only: end every"
    " font-family with web-safe fonts (Arial, Helvetica, sans-serif) and add mso-font-alt"
    " for Outlook for Windows",
    "html-link": "most clients drop <link>: put the CSS in a <style> block and inline it;"
    " for web fonts keep a web-safe fallback in font-family",
    "css-linear-gradient": "set a solid background-color before the gradient as a fallback",
    "css-radial-gradient": "set a solid background-color before the gradient as a fallback",
    "css-variables": "write the values out (custom properties are dropped by Gmail and Outlook)",
    "css-unit-calc": "write the computed value out",
    "html-form": "link to a form on the web instead: most clients disable or strip forms",
    "html-video": "show a linked poster image instead, with a play button drawn into it",
    "html-object": "link to the content instead: embedded objects are stripped",
    "css-background-color": "use a hex colour (#rrggbb)",
    "html-svg": "use a PNG: SVG is stripped by Gmail and Outlook",
    "image-svg": "use a PNG or JPEG",
    "image-webp": "use a PNG or JPEG: Outlook for Windows does not show WebP",
    "image-avif": "use a PNG or JPEG",
    "css-display-none": "hide Outlook-only content with mso-hide:all too",
    "css-rgba": "use a solid hex colour; Outlook for Windows drops rgba()",
}


@functools.lru_cache(maxsize=4096)
def element_usages(tag: str, attrs: tuple[tuple[str, str], ...]) -> tuple[Usage, ...]:
    """The features an element and its attributes use.

    Cached: a template repeats the same elements with the same attributes.
    """
    return tuple(_element_usages(tag, {str(k).lower(): str(v) for k, v in attrs}))


def _element_usages(tag: str, attrs: dict[str, str]) -> Iterator[Usage]:
    table = load_table()
    detail = f"<{tag}>"
    if f"html-{tag}" in table:
        yield Usage(f"html-{tag}", tag, detail)
    elif re.fullmatch(r"h[1-6]", tag):
        yield Usage("html-h1-h6", tag, detail)
    elif tag in _LISTS:
        yield Usage("html-lists", tag, detail)
    elif tag in _SEMANTIC:
        yield Usage("html-semantics", tag, detail)
    elif tag == "map":
        yield Usage("html-image-maps", tag, detail)
    kind = attrs.get("type", "").lower()
    if tag == "input" and f"html-input-{kind or 'text'}" in table:
        yield Usage(f"html-input-{kind or 'text'}", tag, f'<input type="{kind}">')
    if tag == "button" and kind in ("reset", "submit"):
        yield Usage(f"html-button-{kind}", tag, f'<button type="{kind}">')
    if tag == "meta" and attrs.get("name", "").lower() == "color-scheme":
        yield Usage("html-meta-color-scheme", tag, '<meta name="color-scheme">')
    if tag == "img":
        src = attrs.get("src", "").strip()
        if src.lower().startswith("data:"):
            yield Usage("image-base64", tag, src[:40])
        match = _EXTENSION.search(src)
        if match and match.group(1).lower() in _IMAGE_TYPES:
            yield Usage(_IMAGE_TYPES[match.group(1).lower()], tag, src[:80])
    if tag == "a":
        href = attrs.get("href", "").strip().lower()
        if href.startswith("#") and len(href) > 1:
            yield Usage("html-anchor-links", tag, f'href="{href[:40]}"')
        elif href.startswith("mailto:"):
            yield Usage("html-mailto-links", tag, 'href="mailto:…"')
    for name, value in attrs.items():
        slug = _ATTRIBUTES.get(name)
        if slug is None and name.startswith("aria-") and f"html-{name}" in table:
            slug = f"html-{name}"
        if slug is not None:
            yield Usage(slug, tag, f'{name}="{value[:40]}"')


_ZERO = re.compile(r"^[\w-]+:\s*(0(px)?\s*)+(!important)?$")
_BEARING_RANK = {"partial": 0, "confirmed": 1, "none": 2}


def _bearing(
    usage: Usage, issue: ClientIssue, without_media: frozenset[tuple[str, str]]
) -> str | None:
    """How a client's verdict bears on this use: None (not at all), "partial" (a caveat
    that may not apply), "confirmed" (a partial support whose caveat this use hits),
    or "none" (the client lacks the feature)."""
    client = (issue.family, issue.platform)
    if usage.slug in _LEFT_TO_VML and client == ("outlook", "windows"):
        return None
    if usage.in_media and client in without_media:
        return None  # the rule is inside an @media query this client skips altogether
    tag, value = usage.tag, usage.detail.lower()
    if usage.slug in ("css-padding", "css-margin", "css-border") and _ZERO.match(value):
        return None
    if issue.support == "n":
        default = usage.slug != "css-display-none" and _DEFAULT_VALUE.match(value)
        return "partial" if default else "none"
    if usage.slug == "css-padding" and tag is not None:
        return None if tag in ("td", "th") else "confirmed"
    notes = " ".join(issue.notes).lower()
    if usage.slug in ("css-width", "css-height") and tag is not None:
        if tag in ("table", "td", "th"):
            return None
        return "confirmed" if f"`<{tag}>`" in notes else "partial"
    if usage.slug == "css-max-width" and tag is not None and "`<table>`" in notes:
        only_tables = "only works on `<table>`" in notes
        return ("confirmed" if tag != "table" else None) if only_tables else "partial"
    if usage.slug == "css-margin":
        negative = re.search(r"(?<![\w-])-\d", value) is not None
        hit = (
            (negative and "negative" in notes)
            or ("auto" in value and "auto" in notes)
            or (tag in ("span", "body") and "span" in notes)
        )
        return "confirmed" if hit else "partial"
    return "partial"


def _severity(slug: str, bearings: Iterable[tuple[ClientIssue, str]], chosen: bool) -> str:
    """Error: a major client lacks it; warning: a major client's caveat applies, or a minor
    client lacks it; info: caveats that may not apply."""
    level = "info"
    for issue, bearing in bearings:
        major = chosen or issue.major
        if bearing == "none" and major:
            level = "error"
            break
        if bearing == "none" or (bearing == "confirmed" and major):
            level = "warning"
    if level != "info" and slug.startswith(_PROGRESSIVE_PREFIXES):
        return "info"
    if level == "error" and slug.startswith("css-") and slug not in _LAYOUT:
        return "warning"
    if level == "error" and slug == "html-link":
        return "warning"  # a web-font stylesheet; font-fallback reports a missing fallback
    return level


_Bearings = tuple[tuple[tuple[ClientIssue, str], ...], int]


@functools.cache
def _skipping_media() -> frozenset[tuple[str, str]]:
    """The clients that ignore @media rules altogether."""
    table = load_table()
    media = table.feature("css-at-media") if "css-at-media" in table else None
    return frozenset(
        (i.family, i.platform) for i in (media.issues if media else ()) if i.support == "n"
    )


@functools.lru_cache(maxsize=8192)
def _bearings(usage: Usage, selection: frozenset[tuple[str, str]] | None) -> _Bearings:
    """The chosen clients' verdicts that bear on a use, and the strongest bearing's rank.

    Cached across messages: renders of one template use the same features.
    """
    table = load_table()
    if usage.slug not in table:
        return (), -1
    without_media = _skipping_media()
    bearings = tuple(
        (issue, bearing)
        for issue in table.feature(usage.slug).issues
        if selection is None or (issue.family, issue.platform) in selection
        for bearing in [_bearing(usage, issue, without_media)]
        if bearing is not None
    )
    return bearings, max((_BEARING_RANK[b] for _, b in bearings), default=-1)


@dataclass(slots=True)
class _Group:
    """The uses of one feature, gathered into its finding."""

    first: Placed  # the first use with the strongest bearing
    rank: int
    verdicts: dict[tuple[str, str], tuple[ClientIssue, str]] = field(default_factory=dict)
    lines: list[int] = field(default_factory=list)


def findings_for(
    placed: Iterable[Placed],
    selection: frozenset[tuple[str, str]] | None,
    snippet: Callable[[int, int], str],
) -> list[Finding]:
    """One finding per feature that some chosen client lacks, at its first use."""
    table = load_table()
    grouped: dict[str, _Group] = {}  # by slug
    # A page repeats a few uses many times: each is looked up once, and merged into its
    # feature's verdicts once (merging it again would change nothing).
    memo: dict[Usage, _Bearings] = {}
    merged: set[Usage] = set()
    for usage, line, column in placed:
        known = memo.get(usage)
        if known is None:
            known = memo[usage] = _bearings(usage, selection)
        bearings, rank = known
        if not bearings:
            continue
        group = grouped.get(usage.slug)
        if group is None:
            group = grouped[usage.slug] = _Group((usage, line, column), rank)
        elif rank > group.rank:
            group.first, group.rank = (usage, line, column), rank
        if usage not in merged:
            merged.add(usage)
            verdicts = group.verdicts
            for issue, bearing in bearings:
                client = (issue.family, issue.platform)
                if (
                    client not in verdicts
                    or _BEARING_RANK[bearing] > _BEARING_RANK[verdicts[client][1]]
                ):
                    verdicts[client] = (issue, bearing)
        group.lines.append(line)
    out: list[Finding] = []
    for slug, group in grouped.items():
        (first, line, column), verdicts, lines = group.first, group.verdicts, group.lines
        feature = table.feature(slug)
        clients = tuple(
            sorted(
                (i for i, _ in verdicts.values()), key=lambda i: (not i.major, i.family, i.platform)
            )
        )
        lacking = sum(1 for c in clients if c.support == "n")
        message = (
            f"{first.detail}: not supported in {lacking} and partly in {len(clients) - lacking}"
            " of the client platforms tested"
        )
        out.append(
            Finding(
                check=f"caniemail:{slug}",
                feature=feature.title,
                severity=_severity(slug, verdicts.values(), selection is not None),
                line=line,
                column=column,
                snippet=snippet(line, column),
                message=message,
                clients=clients,
                fix=FIXES.get(slug),
                url=feature.url,
                occurrences=len(lines),
                lines=tuple(sorted(set(lines)))[:50],
            )
        )
    return out
