"""SEARCH and UID SEARCH: parsing the arguments, matching, and the response.

RFC 9051 §6.4.4 (search keys, including the IMAP4rev1 ones of RFC 3501
§6.4.4: NEW, OLD, RECENT), RFC 4731 (``RETURN (MIN MAX ALL COUNT)`` and the
ESEARCH response), RFC 5182 (``RETURN (SAVE)`` and ``$``).

    query = parse_search(command.args, uid_mode=command.uid)
    hits = [m.uid for m in messages if query.matches(m)]
    out = format_search(hits, query, tag=command.tag, uid_mode=command.uid)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from mailstead.proto.errors import RemoteProtocolError
from mailstead.proto.imap.search_match import (
    All,
    And,
    DateKey,
    HasFlag,
    HeaderKey,
    InSet,
    Matcher,
    ModSeq,
    Not,
    Or,
    SearchKey,
    SearchTarget,
    Size,
    TextKey,
    _Message,
    compile_key,
    walk,
)
from mailstead.proto.imap.sequence import SequenceSet, SequenceSetError, format_set
from mailstead.proto.imap.tokens import Atom, ParenList, String, Token

__all__ = [
    "All",
    "And",
    "BadCharset",
    "DateKey",
    "HasFlag",
    "HeaderKey",
    "InSet",
    "ModSeq",
    "Not",
    "Or",
    "SearchKey",
    "SearchQuery",
    "SearchSyntaxError",
    "SearchTarget",
    "Size",
    "TextKey",
    "format_search",
    "parse_search",
]

MAX_DEPTH = 32
"""How deeply NOT, OR and parentheses may nest in one search."""
MAX_KEYS = 1000
"""How many search keys one command may hold."""
MAX_NUMBER64 = 2**63 - 1  # RFC 9051 §9 number64 (LARGER/SMALLER)

RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
"""RFC 4731 §3.1 and RFC 5182 §2.4 result options."""
CHARSETS = frozenset({"UTF-8", "US-ASCII"})

_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

_FLAG_KEYS = {
    # RFC 9051 §6.4.4: name -> (flag, present)
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
    # RFC 3501 §6.4.4 (IMAP4rev1 only): \Recent is whatever the caller puts in flags.
    "RECENT": ("\\Recent", True),
    "OLD": ("\\Recent", False),
}
_HEADER_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATE_KEYS = {
    "BEFORE": ("BEFORE", False),
    "ON": ("ON", False),
    "SINCE": ("SINCE", False),
    "SENTBEFORE": ("BEFORE", True),
    "SENTON": ("ON", True),
    "SENTSINCE": ("SINCE", True),
}


class SearchSyntaxError(RemoteProtocolError):
    """The SEARCH arguments break RFC 9051 §6.4.4 (or our limits): answer BAD."""


class BadCharset(RemoteProtocolError):
    """CHARSET names a charset we do not search in: answer ``NO [BADCHARSET (UTF-8)]``.

    RFC 9051 §6.4.4 and §7.1: the response code lists the supported charsets.
    """

    def __init__(self, charset: str) -> None:
        super().__init__(f"Unsupported charset {charset}")
        self.charset = charset

    @property
    def response_code(self) -> str:
        """The text inside the brackets of the NO response."""
        return "BADCHARSET (UTF-8)"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One parsed SEARCH: what to return and the program every message is matched with.

    ``return_options`` is None for a plain SEARCH (answered with ``* SEARCH``)
    and otherwise the RFC 4731 options (``RETURN ()`` is ``{"ALL"}``).
    """

    program: SearchKey
    return_options: frozenset[str] | None = None
    uid_mode: bool = False
    charset: str | None = None
    _matcher: Matcher = field(init=False, repr=False, compare=False, hash=False)
    _whole: bool = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_matcher", compile_key(self.program))
        object.__setattr__(self, "_whole", self.needs_body)

    def matches(self, msg: SearchTarget) -> bool:
        """Whether ``msg`` satisfies the program; reads only what the program needs."""
        return self._matcher(_Message(msg, self._whole))

    @property
    def needs_headers(self) -> bool:
        """Some key reads header fields (header keys, SENT* dates, TEXT)."""
        return any(
            isinstance(k, HeaderKey | TextKey) or (isinstance(k, DateKey) and k.sent)
            for k in walk(self.program)
        )

    @property
    def needs_body(self) -> bool:
        """Some key reads the whole message (BODY, TEXT)."""
        return any(isinstance(k, TextKey) for k in walk(self.program))

    @property
    def needs_sent_date(self) -> bool:
        """Some key compares the Date: field (SENTBEFORE, SENTON, SENTSINCE)."""
        return any(isinstance(k, DateKey) and k.sent for k in walk(self.program))

    @property
    def uses_modseq(self) -> bool:
        """RFC 7162 §3.1.5: a MODSEQ key, so the response tells the highest MODSEQ found."""
        return any(isinstance(k, ModSeq) for k in walk(self.program))

    @property
    def uses_saved(self) -> bool:
        """The program refers to the RFC 5182 saved result ``$``."""
        return any(isinstance(k, InSet) and k.numbers.is_saved for k in walk(self.program))

    @property
    def saves(self) -> bool:
        """``RETURN (SAVE ...)``: the session must keep :meth:`to_save` of the result."""
        return self.return_options is not None and "SAVE" in self.return_options

    def to_save(self, uids: Sequence[int]) -> list[int]:
        """What the saved result becomes, from the matching UIDs in ascending order.

        RFC 5182 §2.4: with SAVE and only MIN and/or MAX besides, just those
        are saved; otherwise every match.
        """
        opts = self.return_options or frozenset()
        if not uids or opts & {"ALL", "COUNT"} or not opts & {"MIN", "MAX"}:
            return list(uids)
        out = []
        if "MIN" in opts:
            out.append(uids[0])
        if "MAX" in opts and (not out or uids[-1] != out[0]):
            out.append(uids[-1])
        return out


# --- parsing -----------------------------------------------------------------------


def _word(token: Token) -> str | None:
    return token.value.upper() if isinstance(token, Atom) else None


def _astring(token: Token, what: str) -> str:
    """RFC 9051 §9 astring as text; strings must be UTF-8."""
    if isinstance(token, Atom):
        return token.value
    if isinstance(token, String):
        try:
            return token.value.decode("utf-8")
        except UnicodeDecodeError:
            raise SearchSyntaxError(f"Invalid UTF-8 in {what}") from None
    raise SearchSyntaxError(f"Expected a string for {what}")


def parse_date(token: Token) -> int:
    """RFC 9051 §9 ``date`` (``d-mmm-yyyy``, optionally quoted) as days since 1970-01-01."""
    text = _astring(token, "date")
    parts = text.split("-")
    day, month, year = parts if len(parts) == 3 else ("", "", "")
    number = _MONTHS.get(month.upper())
    if (
        number is None
        or not (1 <= len(day) <= 2 and day.isdigit() and day.isascii())
        or not (len(year) == 4 and year.isdigit() and year.isascii())
    ):
        raise SearchSyntaxError(f"Invalid date {text[:40]!r}")
    try:
        return date(int(year), number, int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise SearchSyntaxError(f"Invalid date {text[:40]!r}") from None


def _number(token: Token, what: str) -> int:
    text = token.value if isinstance(token, Atom) else ""
    if not text.isdigit() or not text.isascii() or len(text) > 19 or int(text) > MAX_NUMBER64:
        raise SearchSyntaxError(f"{what} needs a number")
    return int(text)


def _sequence_set(token: Token, uid: bool) -> InSet:
    text = token.value if isinstance(token, Atom) else ""
    try:
        return InSet(SequenceSet.parse(text), uid)
    except SequenceSetError as e:
        raise SearchSyntaxError(str(e)) from None


class _Cursor:
    """Position in one token list: the arguments, or the inside of parentheses."""

    __slots__ = ("pos", "tokens")

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.tokens)

    def take(self, what: str) -> Token:
        if self.pos >= len(self.tokens):
            raise SearchSyntaxError(f"Missing {what}")
        token = self.tokens[self.pos]
        self.pos += 1
        return token


class _Parser:
    """Recursive descent over the tokens, depth and key count bounded."""

    def __init__(self) -> None:
        self.keys = 0

    def program(self, tokens: Sequence[Token], depth: int) -> SearchKey:
        """One or more keys, all of which must match (RFC 9051 §6.4.4)."""
        cur = _Cursor(tokens)
        keys = [self.key(cur, depth)]
        while cur.more():
            keys.append(self.key(cur, depth))
        return keys[0] if len(keys) == 1 else And(tuple(keys))

    def key(self, cur: _Cursor, depth: int) -> SearchKey:
        # Bounded depth: a NOT NOT NOT ... bomb fails here, far from Python's stack limit.
        if depth > MAX_DEPTH:
            raise SearchSyntaxError("Search keys nested too deeply")
        self.keys += 1
        if self.keys > MAX_KEYS:
            raise SearchSyntaxError("Too many search keys")
        token = cur.take("search key")
        if isinstance(token, ParenList):  # RFC 9051 §9: "(" search-key *(SP search-key) ")"
            if not token.items:
                raise SearchSyntaxError("Empty parenthesized search key")
            return self.program(token.items, depth + 1)
        name = _word(token)
        if not name:
            raise SearchSyntaxError("Expected a search key")
        if name in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[name]
            return HasFlag(flag, present)
        if name == "ALL":
            return All()
        if name == "NEW":  # RFC 3501 §6.4.4: RECENT UNSEEN
            return And((HasFlag("\\Recent"), HasFlag("\\Seen", False)))
        if name in ("KEYWORD", "UNKEYWORD"):
            return HasFlag(_astring(cur.take("flag"), "flag"), name == "KEYWORD")
        if name in _HEADER_KEYS:
            return HeaderKey(_HEADER_KEYS[name], _astring(cur.take("string"), name))
        if name == "HEADER":
            field_name = _astring(cur.take("field name"), "HEADER")
            return HeaderKey(field_name, _astring(cur.take("string"), "HEADER"))
        if name in ("BODY", "TEXT"):
            return TextKey(_astring(cur.take("string"), name), name == "TEXT")
        if name in _DATE_KEYS:
            op, sent = _DATE_KEYS[name]
            return DateKey(op, parse_date(cur.take("date")), sent)
        if name in ("LARGER", "SMALLER"):
            return Size(name == "LARGER", _number(cur.take("number"), name))
        if name == "UID":
            return _sequence_set(cur.take("UID set"), uid=True)
        if name == "MODSEQ":
            return _modseq(cur)
        if name == "NOT":
            return Not(self.key(cur, depth + 1))
        if name == "OR":
            left = self.key(cur, depth + 1)
            return Or(left, self.key(cur, depth + 1))
        if name[0] in "0123456789*$":
            return _sequence_set(token, uid=False)
        raise SearchSyntaxError(f"Unknown search key {name[:40]}")


_ENTRY_TYPES = frozenset({"PRIV", "SHARED", "ALL"})


def _modseq(cur: _Cursor) -> ModSeq:
    """RFC 7162 §3.1.5 ``MODSEQ [entry-name entry-type-req] mod-sequence-valzer``."""
    token = cur.take("mod-sequence")
    if isinstance(token, String):  # "/flags/\\draft": one modseq per message here
        if not token.value.lower().startswith(b"/flags/"):
            raise SearchSyntaxError("MODSEQ entry names start with /flags/")
        if _word(cur.take("entry type")) not in _ENTRY_TYPES:
            raise SearchSyntaxError("MODSEQ entry type is priv, shared or all")
        token = cur.take("mod-sequence")
    return ModSeq(_number(token, "MODSEQ"))


def _return_options(token: Token) -> frozenset[str]:
    if not isinstance(token, ParenList):
        raise SearchSyntaxError("RETURN needs a parenthesized list")
    opts = set()
    for item in token.items:
        word = _word(item)
        if word not in RETURN_OPTIONS:
            raise SearchSyntaxError("Unknown search return option")
        opts.add(word)
    # RFC 4731 §3.1: "RETURN ()" is the same as "RETURN (ALL)".
    return frozenset(opts) if opts else frozenset({"ALL"})


def parse_search(args: tuple[Token, ...], *, uid_mode: bool) -> SearchQuery:
    """The query of ``SEARCH`` / ``UID SEARCH`` from the tokens after the command name.

    Raises :class:`SearchSyntaxError` (answer BAD) or :class:`BadCharset`
    (answer ``NO [BADCHARSET (UTF-8)]``).
    """
    pos = 0
    return_options: frozenset[str] | None = None
    charset: str | None = None
    # RFC 4466 §2.6 / RFC 9051 §9: search = "SEARCH" [search-return-opts] SP search-program
    if len(args) > pos and _word(args[pos]) == "RETURN":
        if len(args) <= pos + 1:
            raise SearchSyntaxError("RETURN needs options")
        return_options = _return_options(args[pos + 1])
        pos += 2
    if len(args) > pos and _word(args[pos]) == "CHARSET":
        if len(args) <= pos + 1:
            raise SearchSyntaxError("CHARSET needs a name")
        charset = _astring(args[pos + 1], "CHARSET").upper()
        if charset not in CHARSETS:
            raise BadCharset(charset)
        pos += 2
    program = _Parser().program(args[pos:], 0)
    return SearchQuery(program, return_options, uid_mode, charset)


# --- the response ------------------------------------------------------------------


def format_search(
    results: Sequence[int],
    query: SearchQuery,
    *,
    tag: str,
    uid_mode: bool,
    esearch: bool = False,
    modseq: int | None = None,
) -> bytes:
    """The untagged response for ``results`` (ascending sequence numbers or UIDs).

    Plain SEARCH: ``* SEARCH 2 5 9`` (RFC 9051 §7.3.5, IMAP4rev1). With
    RETURN, or ``esearch`` (an IMAP4rev2 session, where SEARCH means
    RETURN (ALL)): ``* ESEARCH (TAG "a1") UID MIN 2 MAX 9 COUNT 3 ALL 2,5,9``
    (RFC 4731 §3.1): MIN, MAX and ALL are left out when nothing matched,
    COUNT 0 is not. RETURN (SAVE) alone gives no response (RFC 5182 §2.4).
    ``modseq``: RFC 7162 §3.1.5, the highest MODSEQ of the messages
    returned, after a search with a MODSEQ key that matched something.
    """
    opts = query.return_options
    if opts is None and not esearch:
        tail = b" (MODSEQ %d)" % modseq if modseq is not None and results else b""
        return b"* SEARCH" + b"".join(b" %d" % n for n in results) + tail + b"\r\n"
    if opts is None:
        opts = frozenset({"ALL"})
    if opts == {"SAVE"}:
        return b""
    quoted = tag.replace("\\", "\\\\").replace('"', '\\"')
    out = [b'* ESEARCH (TAG "%s")' % quoted.encode("ascii", "replace")]
    if uid_mode:
        out.append(b"UID")
    if results and "MIN" in opts:
        out.append(b"MIN %d" % min(results))
    if results and "MAX" in opts:
        out.append(b"MAX %d" % max(results))
    if "COUNT" in opts:
        out.append(b"COUNT %d" % len(results))
    if results and "ALL" in opts:
        out.append(b"ALL " + format_set(results).encode("ascii"))
    if results and modseq is not None:
        out.append(b"MODSEQ %d" % modseq)
    return b" ".join(out) + b"\r\n"
