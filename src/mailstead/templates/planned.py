"""What is worked out once per shape of a template's messages, not once per message.

The shape (:mod:`.shapes`) of a message is its markup with the data's
values masked where they are text or an address. For each shape, its
*skeleton* (a numbered placeholder for each value) has its CSS inlined
once, and its text part laid out once (:func:`.text.plan_text`); a message
of that shape then has its values filled in, escaped as the inliner
writes them. The first message of a shape is inlined whole as well, and
the filled skeleton used only if it is that message byte for byte. The
inlined skeleton also tells whether a message may have local images (an
``src`` that is not surely remote): if it has none, neither has any message
filled from it, as a value is written escaped and so cannot open a tag or
an attribute, and the scan for them is skipped. Not planned: a shape
whose ``<style>`` selects on an address (``a[href^=…]``: the values would
change the styles), and values the inliner would not write as they are
(control characters, lone surrogates).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailstead.templates.errors import TemplateError
from mailstead.templates.images import last_local_src
from mailstead.templates.shapes import Filler, fill, masked, rewritten, shape, skeleton
from mailstead.templates.text import TextPlan, finish_text, plan_text

__all__ = ["Planned", "ShapePlans"]

_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style", re.I | re.S)
_ADDRESS_SELECTOR = re.compile(r"\[\s*(?:href|src|alt|title)\b", re.I)
_PLANS_KEPT = 16  # a template whose shape keeps changing inlines and lays out each message


@dataclass(frozen=True, slots=True)
class _Plan:
    inlined: Filler | None  # the skeleton inlined, when filling it gives the message inlined
    text: TextPlan | None
    local_images: bool = True  # whether the filled skeleton may have local images


@dataclass(frozen=True, slots=True)
class Planned:
    """A message's HTML with its CSS inlined, and what is known from its shape's plan."""

    inlined: str
    text: str | None  # None: lay the text part out from the HTML
    local_images: bool = True  # False: surely none (images.last_local_src() < 0)


class ShapePlans:
    """The plans of one template's shapes; ``inline`` inlines a whole message's CSS."""

    def __init__(self, inline: Callable[[str], str], inline_fresh: Callable[[str], str]) -> None:
        self._inline = inline
        self._inline_fresh = inline_fresh
        self._plans: dict[str, _Plan] = {}
        # the last message's markup, its shape and its masked spans
        self._last: tuple[str, str, list[tuple[int, int, bool]]] | None = None

    def message(
        self, source: str, values: Sequence[tuple[int, int]], preheader: str | None
    ) -> Planned:
        """The message whose markup is ``source``, with the data's ``values`` at these spans."""
        spans = masked(source, values)
        if not spans:
            return Planned(self._inline(source), None)
        raw = [html.unescape(source[at:end]) for at, end, _ in spans]
        changed = rewritten(raw)
        key = shape(source, spans)
        self._last = (source, key, spans)
        plan = self._plans.get(key)
        inlined = None
        local_images = True
        if plan is None:
            if len(self._plans) >= _PLANS_KEPT:
                del self._plans[next(iter(self._plans))]
            inlined = self._inline(source)
            plan = self._plans[key] = self._plan(source, spans, raw, inlined, changed)
        elif plan.inlined is not None and not changed:
            inlined = plan.inlined.fill(_escaped(raw, spans))
            local_images = plan.local_images
        if inlined is None:
            inlined = self._inline(source)
        text = finish_text(plan.text, preheader, raw) if plan.text is not None else None
        return Planned(inlined, text, local_images)

    def shape_of(
        self, source: str, values: Sequence[tuple[int, int]]
    ) -> tuple[str, list[tuple[int, int, bool]]]:
        """The shape of ``source`` and its masked spans, known already if it is the last
        message's."""
        last = self._last
        if last is not None and last[0] is source:
            return last[1], last[2]
        spans = masked(source, values)
        return shape(source, spans), spans

    def _plan(
        self,
        source: str,
        spans: Sequence[tuple[int, int, bool]],
        raw: Sequence[str],
        inlined: str,
        changed: bool,
    ) -> _Plan:
        bones = skeleton(source, spans)
        if any(_ADDRESS_SELECTOR.search(block) for block in _STYLE_BLOCK.findall(bones)):
            return _Plan(None, None)
        try:
            bones_inlined = self._inline_fresh(bones)
        except TemplateError:  # the skeleton is a little longer than the message
            return _Plan(None, None)
        same = not changed and fill(bones_inlined, _escaped(raw, spans)) == inlined
        if not same:
            return _Plan(None, plan_text(bones_inlined))
        # a placeholder where an address starts may be local: last_local_src() says so
        local_images = last_local_src(bones_inlined) >= 0
        return _Plan(Filler(bones_inlined), plan_text(bones_inlined), local_images)


def _escaped(raw: Sequence[str], spans: Sequence[tuple[int, int, bool]]) -> list[str]:
    """The values as the inliner's HTML serialiser writes them, in attributes or in text
    (HTML Standard §13.3, "Escaping a string")."""
    out = []
    for value, (_, _, in_attribute) in zip(raw, spans, strict=True):
        value = value.replace("&", "&amp;").replace("\xa0", "&nbsp;")
        if in_attribute:
            out.append(value.replace('"', "&quot;"))
        else:
            out.append(value.replace("<", "&lt;").replace(">", "&gt;"))
    return out
