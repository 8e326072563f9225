"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §3), and the THREAD response.

Both take the matching messages as :class:`Item` (the number the client
sees, the sequence number for ties, the summary) and give the thread
response's body, e.g. ``(2)(3 6 (4 23)(44 7 96))``.

Every walk over the trees is iterative and every step is linear in the
number of messages (the loop check of REFERENCES step 1 climbs only from a
message that already has children), so a hostile chain of 100,000 replies
neither overflows the stack nor takes quadratic time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailstead.proto.imap.summary import Summary

__all__ = ["Item", "ordered_subject", "references"]


@dataclass(frozen=True, slots=True)
class Item:
    """One message to thread: what the response shows, the tie-breaker, the keys."""

    number: int  # sequence number, or UID for UID THREAD
    seq: int
    summary: Summary


class _Node:
    """A message, or a dummy (``item`` None) standing for one only referenced."""

    __slots__ = ("children", "item", "parent")

    def __init__(self, item: Item | None = None) -> None:
        self.item = item
        self.parent: _Node | None = None
        self.children: list[_Node] = []


def _adopt(parent: _Node, child: _Node) -> None:
    child.parent = parent
    parent.children.append(child)


def _orphan(child: _Node) -> None:
    parent = child.parent
    if parent is not None:
        parent.children.remove(child)
        child.parent = None


def _would_loop(parent: _Node, child: _Node) -> bool:
    """Making ``child`` a child of ``parent`` would close a circle."""
    if child is parent:
        return True
    if not child.children:
        return False  # a leaf is nobody's ancestor: no climb needed
    node: _Node | None = parent
    while node is not None:
        if node is child:
            return True
        node = node.parent
    return False


def _date_key(node: _Node) -> tuple[float, int]:
    """RFC 5256 §2.2 sent date, ties by sequence number; a dummy sorts as its first child."""
    while node.item is None:
        node = node.children[0]
    return node.item.summary.sent, node.item.seq


def _preorder(root: _Node) -> list[_Node]:
    out = [root]
    i = 0
    while i < len(out):
        out.extend(out[i].children)
        i += 1
    return out


def _render(roots: Sequence[_Node]) -> bytes:
    """RFC 5256 §4 thread-list for each tree: ``(a b (c)(d e))``; a dummy shows no number."""
    out: list[bytes] = []
    stack: list[_Node | bytes] = []
    for root in reversed(roots):
        stack += (b")", root, b"(")
    while stack:
        top = stack.pop()
        if isinstance(top, bytes):
            out.append(top)
            continue
        kids = top.children
        pending: list[_Node | bytes] = []
        if top.item is not None:
            out.append(b"%d" % top.item.number)
            if kids:
                pending.append(b" ")
        if len(kids) == 1:
            pending.append(kids[0])
        else:
            for kid in kids:
                pending += (b"(", kid, b")")
        stack.extend(reversed(pending))
    return b"".join(out)


# -- ORDEREDSUBJECT ------------------------------------------------------------------


def ordered_subject(items: Sequence[Item]) -> bytes:
    """RFC 5256 §3 ORDEREDSUBJECT: threads of one base subject, each the first
    message with the others as its children, ordered by the first's date."""
    ordered = sorted(items, key=lambda i: (i.summary.subject, i.summary.sent, i.seq))
    roots: list[_Node] = []
    subject: str | None = None
    for item in ordered:
        node = _Node(item)
        if roots and item.summary.subject == subject:
            _adopt(roots[-1], node)
        else:
            roots.append(node)
            subject = item.summary.subject
    roots.sort(key=_date_key)
    return _render(roots)


# -- REFERENCES ----------------------------------------------------------------------


def references(items: Sequence[Item]) -> bytes:
    """RFC 5256 §3 REFERENCES, steps 1 to 6."""
    root = _link(items)
    _prune(root)
    for node in root.children:  # step 4: a dummy sorts as its first child
        if node.item is None:
            node.children.sort(key=_date_key)
    root.children.sort(key=_date_key)
    _merge_subjects(root)
    for node in reversed(_preorder(root)):  # step 6, children before parents
        node.children.sort(key=_date_key)
    return _render(root.children)


def _link(items: Sequence[Item]) -> _Node:
    """Steps 1 and 2: the parent/child links the IDs give, under one root."""
    table: dict[str, _Node] = {}
    for n, item in enumerate(items):
        summary = item.summary
        own = summary.message_id
        if not own or (own in table and table[own].item is not None):
            # No ID, or a duplicate one: a unique ID of its own (no "<" in real ones).
            own = f"<{n}"
        node = table.get(own)
        if node is None:
            node = table[own] = _Node(item)
        else:
            node.item = item  # a dummy made for a reference: now the real message
        # 1A: each reference is the parent of the next, unless that one has a
        # parent already or the link would close a circle.
        previous: _Node | None = None
        for ref in summary.parents:
            ref_node = table.get(ref)
            if ref_node is None:
                ref_node = table[ref] = _Node()
            if (
                previous is not None
                and ref_node.parent is None
                and not _would_loop(previous, ref_node)
            ):
                _adopt(previous, ref_node)
            previous = ref_node
        # 1B: the last reference is the message's parent, replacing a guess
        # that an earlier message's References made.
        if previous is not None and previous is not node.parent:
            _orphan(node)
            if not _would_loop(previous, node):
                _adopt(previous, node)
    root = _Node()
    root.children = [node for node in table.values() if node.parent is None]  # step 2
    for node in root.children:
        node.parent = root
    return root


def _prune(root: _Node) -> None:
    """Step 3: dummies without children go; the others give way to their
    children, except a dummy at the top with more than one."""
    for node in reversed(_preorder(root)):
        kept: list[_Node] = []
        for child in node.children:
            if child.item is not None:
                kept.append(child)
            elif not child.children:
                continue
            elif node is root and len(child.children) > 1:
                kept.append(child)
            else:
                for grandchild in child.children:
                    grandchild.parent = node
                kept += child.children
        node.children = kept


def _subject_of(node: _Node) -> Item:
    while node.item is None:
        node = node.children[0]
    return node.item


def _merge_subjects(root: _Node) -> None:
    """Step 5: threads at the top with the same base subject become one."""
    table: dict[str, _Node] = {}
    for node in root.children:  # 5B: pick the thread that leads each subject
        subject = _subject_of(node).summary.subject
        if not subject:
            continue
        held = table.get(subject)
        if held is None or (
            held.item is not None
            and (node.item is None or (held.item.summary.reply and not node.item.summary.reply))
        ):
            table[subject] = node
    # Who stays at the top is read from the parent links at the end: no
    # list removals, which would make many threads of one subject quadratic.
    made: list[_Node] = []
    for node in root.children:  # 5C: merge the others into it
        if node.parent is not root:
            continue  # merged already, as the thread of the table
        subject = _subject_of(node).summary.subject
        held = table.get(subject) if subject else None
        if held is None or held is node:
            continue
        node.parent = None
        if held.item is None and node.item is None:
            for child in node.children:
                _adopt(held, child)
        elif held.item is None or (
            # A reply joins the thread of the message it replies to.
            node.item is not None and node.item.summary.reply and not held.item.summary.reply
        ):
            _adopt(held, node)
        else:
            dummy = _Node()
            dummy.parent = root
            made.append(dummy)
            _adopt(dummy, held)
            _adopt(dummy, node)
            table[subject] = dummy
    root.children = [node for node in (*root.children, *made) if node.parent is root]
