"""The text layouts of ``mailstead queue list`` and ``queue show``, after Postfix's ``mailq``.

``list``: a header; per message a line with the id (``*`` when it is being
delivered, ``!`` when held), size in bytes, arrival time (local time) and
sender (``MAILER-DAEMON`` for a bounce); then each recipient still to be
delivered on its own line, indented by 4, those that share a last reason
grouped under that reason once, in parentheses, indented by 2 and wrapped at
78 columns; a blank line between messages; and a totals line. Unlike
Postfix, recipients are not aligned under the sender: our queue ids are 24
characters, and a recipient in that column would pass 80 for most addresses.
Addresses are never broken, so they stay whole for copy and paste.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Sequence

from mailstead.mta.envelope import QueuedMessage, RecipientStatus
from mailstead.mta.queue_select import message_state

__all__ = ["EMPTY", "NO_MATCH", "listing", "printable", "span"]

EMPTY = "Mail queue is empty"
NO_MATCH = "No queued message matches"
_WIDTH = 78
_ID_WIDTH = 25  # 24 characters of queue id and the state marker
_ARRIVAL_WIDTH = 20
_HEADER = (
    f"{'-Queue ID-':<{_ID_WIDTH}} {'--Size--':>8} {'----Arrival Time----':<{_ARRIVAL_WIDTH}}"
    " -Sender/Recipient-"
)
_RECIPIENT_INDENT = " " * 4
_REASON_INDENT = " " * 2
_MARKERS = {"active": "*", "held": "!", "deferred": ""}


def printable(text: str) -> str:
    """``text`` with control characters escaped: remote replies and headers
    must not be able to move the cursor or recolour the operator's terminal."""
    return "".join(c if c.isprintable() or c == "\t" else f"\\x{ord(c):02x}" for c in text)


def span(seconds: float) -> str:
    """A short human duration: 45s, 12m, 3h, 2d."""
    s = max(0, round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _arrival(when: float) -> str:
    # Postfix's form, in the host's local time: "Mon Dec  7 18:40:01".
    return time.strftime("%a %b %e %H:%M:%S", time.localtime(when))


def _reason_lines(reason: str) -> list[str]:
    return textwrap.wrap(
        f"({printable(reason.strip())})",
        width=_WIDTH,
        initial_indent=_REASON_INDENT,
        subsequent_indent=_REASON_INDENT + " ",
        break_long_words=True,
        break_on_hyphens=False,
    )


def _grouped(recipients: Sequence[RecipientStatus]) -> list[tuple[str | None, list[str]]]:
    """Open recipients grouped by last reason: not yet tried first, then by first appearance."""
    groups: dict[str | None, list[str]] = {None: []}
    for r in recipients:
        if r.open:
            groups.setdefault(r.last_error, []).append(r.address)
    return [(reason, addresses) for reason, addresses in groups.items() if addresses]


def _message_lines(m: QueuedMessage, now: float) -> list[str]:
    marker = _MARKERS[message_state(m, now)]
    sender = printable(m.sender) if m.sender else "MAILER-DAEMON"
    lines = [
        f"{m.id + marker:<{_ID_WIDTH}} {m.size:>8} {_arrival(m.received_at):<{_ARRIVAL_WIDTH}}"
        f" {sender}"
    ]
    for reason, addresses in _grouped(m.recipients):
        if reason is not None:
            lines += _reason_lines(reason)
        lines += [f"{_RECIPIENT_INDENT}{printable(a)}" for a in addresses]
    return lines


def _kib(size: int) -> int:
    return -(-size // 1024)  # rounded up, as Postfix does: 1 byte is 1 KiB


def listing(messages: Sequence[QueuedMessage], now: float, *, queue_empty: bool) -> str:
    """The whole ``queue list`` text for ``messages``, ending in a newline."""
    if not messages:
        return f"{EMPTY if queue_empty else NO_MATCH}\n"
    lines = [_HEADER]
    for m in messages:
        lines += _message_lines(m, now)
        lines.append("")
    total = sum(m.size for m in messages)
    count = len(messages)
    lines.append(f"-- {_kib(total)} KiB in {count} message{'s' if count != 1 else ''}")
    return "\n".join(lines) + "\n"
