"""From a template file to a complete e-mail: every stage, in order.

Jinja2 (``render``), then MJML for ``.mjml`` files (``mjml``), the
Subject taken from the front matter, else ``<mj-title>`` or ``<title>``, the
preheader placed at the top of the body, CSS inlined (``inline``), local
images turned into ``cid:`` parts (``images``) and the text part derived
from the final HTML (``text``). The template is compiled once;
:meth:`EmailTemplate.render` runs once per recipient's data. What only
the shape of the markup decides (the data's values masked) is worked out
once per shape (``planned``): the inlined skeleton that each message's
values fill in, the layout of the text part, and most of the lint
(:meth:`EmailTemplate.lint`). A message whose markup is the previous
one's (a mailing without personal data) reuses its inlined HTML and text
part; images are read every time, and looked for unless the shape's plan
says there are none.
"""

from __future__ import annotations

import base64
import html as html_escape
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailstead.limits import TemplateLimits
from mailstead.message.compose import Body, Related
from mailstead.templates.images import embed_images
from mailstead.templates.inline import inline_css
from mailstead.templates.lint.batch import TemplateLint
from mailstead.templates.lint.report import LintReport
from mailstead.templates.mjml import compile_mjml
from mailstead.templates.planned import ShapePlans
from mailstead.templates.render import JinjaTemplate
from mailstead.templates.text import html_to_text

__all__ = ["EmailTemplate", "RenderedEmail"]

_BODY_TAG = re.compile(r"<body\b[^>]*>", re.I)
_TITLE = re.compile(r"<title\b[^>]*>([^<]*)</title", re.I)

# The usual way to hide a preheader in every client, Outlook (mso-hide) too.
_PREHEADER = (
    '<div class="preheader" style="display:none;font-size:1px;line-height:1px;'
    'max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all">{}</div>'
)


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """One rendered e-mail: the final HTML, its text part, the header values the
    template set, and the images the HTML refers to by ``cid:``.

    ``source_html`` is the HTML as the template made it (after Jinja2 and
    MJML, before inlining and images): the markup as written, which the
    lint reads so that unclosed tags and line numbers are the author's.
    ``values``: where the data's values are in it (start, end), for the lint.
    """

    html: str
    text: str
    subject: str | None
    preheader: str | None
    images: tuple[Related, ...]
    source_html: str
    values: tuple[tuple[int, int], ...] = ()

    @property
    def body(self) -> Body:
        """The content for :func:`~mailstead.message.compose.build_message`."""
        return Body(text=self.text, html=self.html, related=self.images)

    def viewable_html(self) -> str:
        """The final HTML with each ``cid:`` image as a ``data:`` URL, for a browser."""
        markup = self.html
        for image in self.images:
            encoded = base64.b64encode(image.content).decode("ascii")
            url = f"data:{image.maintype}/{image.subtype};base64,{encoded}"
            markup = markup.replace(f'"cid:{image.content_id}"', f'"{url}"')
        return markup


class EmailTemplate:
    """A template file (Jinja2 HTML, or MJML if it ends in ``.mjml``), compiled once."""

    def __init__(
        self, path: Path, *, untrusted: bool = False, limits: TemplateLimits | None = None
    ) -> None:
        self.path = path
        self.limits = limits or TemplateLimits()
        self._jinja = JinjaTemplate(path, untrusted=untrusted, limits=self.limits)
        self._mjml = path.suffix.lower() == ".mjml"
        # the last message's results, kept with their whole input: never stale
        self._last_inlined: tuple[str, str] | None = None
        self._last_text: tuple[str, str | None, str] | None = None
        self._lints: dict[tuple[str, ...] | None, TemplateLint] = {}
        self._shapes = ShapePlans(self._inline, self._inline_fresh)

    def render(self, data: Mapping[str, object]) -> RenderedEmail:
        """The e-mail for ``data``; TemplateError (one line, file and line) if it fails."""
        out = self._jinja.render(data)
        markup, subject, preheader = out.markup, out.subject, out.preheader
        placed = False
        if self._mjml:
            compiled = compile_mjml(markup, self.path)
            markup = compiled.html
            subject = subject or compiled.title
            placed = preheader is None and compiled.preview is not None
            preheader = preheader or compiled.preview
        if subject is None:
            subject = _title(markup)
        values = () if self._mjml else out.values  # mrml writes its own markup
        if preheader and not placed:
            markup, values = _with_preheader(markup, preheader, values)
        source = markup
        planned = self._shapes.message(source, values, preheader)
        markup = planned.inlined
        images: tuple[Related, ...] = ()
        if planned.local_images:
            markup, images = embed_images(markup, self.path, self.limits.image_bytes)
        text = planned.text if planned.text is not None else self._text(markup, preheader)
        return RenderedEmail(markup, text, subject, preheader, images, source, values)

    def lint(self, email: RenderedEmail, *, clients: Sequence[str] | None = None) -> LintReport:
        """The lint of ``email``, rendered from this template, as ``lint()`` reads its source.

        What a recipient's values cannot change is linted once per shape of the
        markup, the rest for every message (see ``lint.batch``). ValueError
        for an unknown client name.
        """
        chosen = tuple(clients) if clients is not None else None
        linter = self._lints.get(chosen)
        if linter is None:
            linter = self._lints[chosen] = TemplateLint(self.path.parent, clients)
        shape, spans = self._shapes.shape_of(email.source_html, email.values)
        sent = len(email.html.encode("utf-8", "replace"))
        return linter.lint(email.source_html, email.text, shape, spans, sent)

    def _inline(self, source: str) -> str:
        last = self._last_inlined
        if last is None or last[0] != source:
            last = self._last_inlined = (source, self._inline_fresh(source))
        return last[1]

    def _inline_fresh(self, source: str) -> str:
        return inline_css(source, self.path, self.limits.output_bytes)

    def _text(self, markup: str, preheader: str | None) -> str:
        last = self._last_text
        if last is None or last[0] != markup or last[1] != preheader:
            last = self._last_text = (markup, preheader, html_to_text(markup, preheader=preheader))
        return last[2]


def _title(markup: str) -> str | None:
    found = _TITLE.search(markup)
    return " ".join(html_escape.unescape(found.group(1)).split()) or None if found else None


def _with_preheader(
    markup: str, preheader: str, values: tuple[tuple[int, int], ...]
) -> tuple[str, tuple[tuple[int, int], ...]]:
    """``markup`` with the hidden preheader at the top of its body, and where the values
    are in it then: the preheader's text is the data's too."""
    text = html_escape.escape(preheader)
    hidden = _PREHEADER.format(text)
    body = _BODY_TAG.search(markup)
    at = body.end() if body is not None else 0
    start = at + hidden.index(text)
    moved = [(a, b) if a < at else (a + len(hidden), b + len(hidden)) for a, b in values]
    return markup[:at] + hidden + markup[at:], tuple(sorted([*moved, (start, start + len(text))]))
