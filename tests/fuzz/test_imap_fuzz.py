"""Fuzz: the IMAP server under streams of real and mutated commands, cut anywhere.

Each example gets a fresh real account (a Maildir of three messages on
tmpfs, as :mod:`tests.proto.imap.imap_transcript` sets them up): commands
change it. ``al``/``pw`` logs in; ``down``/``pw`` logs in to a store that
cannot be opened.

Properties (for every stream, every cut into reads, every point where the
client closes):

* every call returns after at most a few events per octet fed, and
  nothing is raised: a bad command is answered BAD/NO, never thrown;
* every response starts with a tag, ``*`` or ``+``; each line ends in
  CRLF; a ``{n}`` literal in a response is followed by exactly n octets;
  a tagged status is ``OK``/``NO``/``BAD`` with text free of control
  characters, for a tag the client could have sent;
* at most one unfinished line or literal is buffered between reads;
* when input ends ``next_event()`` keeps returning ``NEED_DATA`` (or
  ``Idling`` in IDLE, ``Closing`` once closed) and says nothing; the
  autologout (``timeout()``) says one ``* BYE`` unless the connection was
  over, and then ``next_event()`` says ``Closing`` for good.

The unterminated quoted string and ``[`` section of the IMAP parser used to
backtrack exponentially (fixed in parser.py by possessive repetitions);
the watchdog turns a return of it into a failure instead of a hang.
"""

from __future__ import annotations

import base64
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st

from mailstead.limits import IMAPLimits
from mailstead.proto.imap.events import (
    NEED_DATA,
    AuthRequest,
    Closing,
    Idling,
    StartTLS,
    StorageWork,
)
from mailstead.proto.imap.server import IMAPServer, IMAPSettings
from mailstead.store.account import Account
from tests.fuzz.wire import (
    DEADLINE_MS,
    Case,
    cases,
    event_budget,
    mutated,
    watchdog,
    weighted,
)
from tests.proto.imap.imap_transcript import HOST, MESSAGES, WHEN, deliver

TIGHT = IMAPLimits(
    command_line=120,
    literal_before_auth=40,
    append_limit=300,
    nesting_depth=4,
    tokens_per_command=30,
    errors_per_session=5,
    auth_failures_per_session=2,
    sasl_line=60,
)
_IMAPS = (IMAPSettings(HOST, secure=True), IMAPLimits())
ROLES = st.sampled_from(
    [
        _IMAPS,
        _IMAPS,
        _IMAPS,
        (IMAPSettings(HOST, tls_available=True), IMAPLimits()),
        (IMAPSettings(HOST, tls_available=True), IMAPLimits()),
        (IMAPSettings(HOST), IMAPLimits()),  # no TLS: nobody may log in
        (IMAPSettings(HOST, secure=True), TIGHT),
    ]
)
# tmpfs when there is one: the store fsyncs, and each example has its own.
_TMP = "/dev/shm" if Path("/dev/shm").is_dir() else None


@contextmanager
def fresh_maildir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir=_TMP, prefix="imap-fuzz-") as tmp:
        root = Path(tmp) / "Maildir"
        deliver(root, *MESSAGES, when=WHEN)
        yield root


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- real commands (RFC 9051 §6, with RFC 7888 literals and RFC 4959 SASL-IR) ---------

_APPENDED = b"Subject: new\r\n\r\nbody\r\n"
_creds = st.sampled_from([("al", "pw"), ("al", "bad"), ("down", "pw")])
_login = weighted(
    (2, _creds.map(lambda c: f"LOGIN {c[0]} {c[1]}")),
    (1, _creds.map(lambda c: f'LOGIN "{c[0]}" "{c[1]}"')),
    (1, _creds.map(lambda c: f"LOGIN {{{len(c[0])}}}\r\n{c[0]} {{{len(c[1])}+}}\r\n{c[1]}")),
    (1, _creds.map(lambda c: f"AUTHENTICATE PLAIN {_b64(chr(0).join(('', *c)))}")),
    (1, _creds.map(lambda c: f"AUTHENTICATE PLAIN\r\n{_b64(chr(0).join((c[0], *c)))}")),
    (1, _creds.map(lambda c: f"AUTHENTICATE LOGIN\r\n{_b64(c[0])}\r\n{_b64(c[1])}")),
    (1, st.sampled_from(["AUTHENTICATE PLAIN\r\n*", "AUTHENTICATE PLAIN =", "AUTHENTICATE X"])),
)
_anywhere = st.sampled_from(
    ["CAPABILITY", "NOOP", "ID NIL", 'ID ("name" "fuzz")', "STARTTLS", "LOGOUT"]
)
_authenticated = st.sampled_from(
    [
        "ENABLE IMAP4rev2",
        "ENABLE UTF8=ACCEPT",
        "NAMESPACE",
        'LIST "" *',
        'LIST "" %',
        'LIST (SUBSCRIBED) "" * RETURN (CHILDREN STATUS (MESSAGES))',
        'LSUB "" *',
        "STATUS INBOX (MESSAGES UIDNEXT UNSEEN SIZE)",
        "SELECT INBOX",
        "SELECT INBOX",
        "EXAMINE INBOX",
        "SELECT Trash",
        "CREATE Trash",
        "CREATE foo",
        "CREATE foo/bar",
        "DELETE foo",
        "RENAME foo baz",
        "SUBSCRIBE foo",
        "UNSUBSCRIBE foo",
        f"APPEND INBOX (\\Seen) {{{len(_APPENDED)}}}\r\n" + _APPENDED.decode(),
        f"APPEND INBOX {{{len(_APPENDED)}+}}\r\n" + _APPENDED.decode(),
        f'APPEND Trash () "17-Jul-1996 02:44:25 -0700" {{{len(_APPENDED)}}}\r\n'
        + _APPENDED.decode(),
        "IDLE\r\nDONE",
        "IDLE\r\nNOPE",
    ]
)
_selected = st.sampled_from(
    [
        "FETCH 1:* (FLAGS UID)",
        "FETCH 1 BODY[]",
        "FETCH 2 BODY.PEEK[HEADER]",
        "FETCH 1:2 (ENVELOPE BODYSTRUCTURE RFC822.SIZE INTERNALDATE)",
        "FETCH 1 BODY[TEXT]<0.5>",
        "FETCH * BINARY[1]",
        "FETCH 3 BODY[HEADER.FIELDS (Subject)]",
        "UID FETCH 1:* FLAGS",
        "STORE 1 +FLAGS (\\Deleted)",
        "STORE 1:* -FLAGS.SILENT (\\Seen)",
        "UID STORE 2 FLAGS (foo)",
        "SEARCH ALL",
        'SEARCH SUBJECT "one"',
        "SEARCH OR SEEN UNSEEN",
        "UID SEARCH 1:*",
        "SEARCH RETURN (MIN MAX COUNT) ALL",
        "COPY 1 Trash",
        "MOVE 2 Trash",
        "UID MOVE 1:* Trash",
        "EXPUNGE",
        "UID EXPUNGE 1",
        "CLOSE",
        "UNSELECT",
        "CHECK",
    ]
)
_command = weighted((1, _anywhere), (1, _login), (2, _authenticated), (3, _selected))


@st.composite
def _session(draw: st.DrawFn) -> bytes:
    """Usually TLS, a login and SELECT first; each command with its own tag."""
    prelude = draw(
        st.sampled_from(
            [
                [],
                ["LOGIN al pw"],
                ["STARTTLS", "LOGIN al pw", "SELECT INBOX"],
                ["STARTTLS", "LOGIN al pw", "SELECT INBOX"],
                ["STARTTLS", "LOGIN al pw", "SELECT INBOX"],
                ["STARTTLS", "LOGIN al pw", "ENABLE IMAP4rev2", "SELECT INBOX"],
                ["STARTTLS", "LOGIN al pw", "CREATE Trash", "SELECT INBOX"],
            ]
        )
    )
    commands = [*prelude, *draw(st.lists(_command, min_size=2, max_size=16))]
    return b"".join(f"t{i} {c}\r\n".encode() for i, c in enumerate(commands))


VALID = _session()
STARTTLS = b"STARTTLS\r\n"


# -- the driver (as net/imap_session.py) and what it checks ---------------------------

# RFC 9051 §9: tag = 1*<any ASTRING-CHAR except "+">.
_TAGGED = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+ (OK|NO|BAD)( [^\x00-\x1f\x7f]*)?')
_LITERAL_AT_END = re.compile(rb"~?\{([0-9]+)\}\Z")


def check_responses(out: bytes) -> None:
    """Whole responses (RFC 9051 §2.2.2, §7): tagged, untagged or continuation."""
    pos = 0
    while pos < len(out):
        first = True
        while True:  # the lines of one response, joined by literals
            end = out.find(b"\r\n", pos)
            assert end >= 0, f"unterminated response {out[pos : pos + 80]!r}"
            line = out[pos:end]
            assert b"\n" not in line and b"\r" not in line, f"bare CR or LF in {line!r}"
            if first:
                assert line.startswith((b"* ", b"+ ")) or line == b"+" or _TAGGED.fullmatch(line), (
                    f"not a response: {line!r}"
                )
                first = False
            pos = end + 2
            m = _LITERAL_AT_END.search(line)
            if m is None:
                break
            pos += int(m[1])
            assert pos <= len(out), "literal shorter than announced"


class Session:
    """One IMAPServer driven as the asyncio session drives it."""

    def __init__(
        self, root: Path, role: IMAPSettings, limits: IMAPLimits, poll_every: int | None
    ) -> None:
        self.root = root
        self.accounts: list[Account] = []
        self.server = IMAPServer(role, limits, self.open)
        self.limits = limits
        self.poll_every = poll_every  # the IDLE timer fires after every n-th read
        self.reads = 0
        self.kinds: set[str] = set()
        self.said = bytearray()
        self.over = False
        self.idling = False  # the last drain stopped at Idling
        self.flush()  # the greeting

    def open(self, address: str) -> Account:
        if address != "al@example.test":
            raise OSError("store unavailable")
        account = Account(self.root)
        self.accounts.append(account)
        return account

    def close(self) -> None:
        for account in self.accounts:
            account.index.close()

    def flush(self) -> bytes:
        out = self.server.data_to_send()
        check_responses(out)
        self.said += out
        return out

    def feed(self, read: bytes) -> None:
        conn = self.server
        conn.receive_data(read)
        self.drain(event_budget(read))
        self.reads += 1
        if conn.session.view is not None:
            self.kinds.add("(a mailbox selected)")
        if self.idling:
            self.kinds.add("(idling)")
        if self.idling and self.poll_every and self.reads % self.poll_every == 0:
            conn.poll()
        self.flush()
        parser = conn._parser
        if not self.over:
            bound = max(parser.max_line, parser.max_literal, self.limits.sasl_line) + 2
            assert len(parser._buf) <= bound, f"{len(parser._buf)} octets buffered"

    def drain(self, budget: int) -> None:
        conn = self.server
        for _ in range(budget):
            ev = conn.next_event()
            self.idling = isinstance(ev, Idling)
            if ev is NEED_DATA or self.idling:
                return
            self.kinds.add(type(ev).__name__)
            if isinstance(ev, AuthRequest):
                self.flush()  # the session writes before the slow password check
                creds = ev.credentials
                ok = creds.password == "pw" and creds.authzid in ("", creds.authcid)
                conn.auth_result(f"{creds.authcid}@example.test" if ok else None)
            elif isinstance(ev, StartTLS):
                assert self.flush().endswith(b" OK Begin TLS negotiation now\r\n")
                conn.tls_started()
            elif isinstance(ev, StorageWork):
                error = None
                try:
                    ev.run()  # in the session's thread pool
                except OSError as exc:
                    error = exc
                conn.storage_done(error)
            elif isinstance(ev, Closing):
                self.over = True
                return
        raise AssertionError(f"more than {budget} events from one read: it spins")

    def end(self) -> None:
        """The client is gone, or silent until the autologout."""
        conn = self.server
        for _ in range(3):
            ev = conn.next_event()
            if self.over:
                assert isinstance(ev, Closing)
            else:
                assert ev is NEED_DATA or isinstance(ev, Idling)
        assert conn.data_to_send() == b""
        conn.timeout()
        said = conn.data_to_send()
        assert said == (b"" if self.over else b"* BYE Autologout; idle for too long\r\n")
        conn.receive_data(b"x NOOP\r\n")
        for _ in range(3):
            assert isinstance(conn.next_event(), Closing)
        assert conn.data_to_send() == b""


_OUR_COMMAND = re.compile(rb"^(t[0-9]+) [A-Z]", re.MULTILINE)
_OUR_TAG = re.compile(rb"^(t[0-9]+) (?:OK|NO|BAD)", re.MULTILINE)


def check_completions(case: Case, said: bytes, over: bool) -> None:
    """Each command of a real stream is completed once, in order (RFC 9051 §2.2.2).

    (Only tags ``t<n>``: an AUTHENTICATE or IDLE refused at once makes the
    lines meant for it commands, with tags of their own.)
    """
    sent = [int(m[1][1:]) for m in _OUR_COMMAND.finditer(case.data)]
    done = [int(m[1][1:]) for m in _OUR_TAG.finditer(said)]
    assert done == sorted(set(done)), f"completed twice or out of order: {done}"
    if case.stop is None and not over:
        assert done == sent, f"sent {sent}, completed {done}"


def run(
    role: tuple[IMAPSettings, IMAPLimits], case: Case, poll_every: int | None, *, real: bool
) -> None:
    with fresh_maildir() as root:
        session = Session(root, *role, poll_every)
        try:
            with watchdog():
                for read in case.reads():
                    if session.over:
                        break  # the session closed the connection
                    session.feed(read)
                session.end()
        finally:
            session.close()
    if real:
        check_completions(case, bytes(session.said), session.over)
    for kind in sorted(session.kinds):
        event(kind)


_POLL = st.none() | st.integers(1, 3)


@settings(max_examples=200, deadline=DEADLINE_MS)
@given(role=ROLES, case=cases(VALID, STARTTLS), poll_every=_POLL)
def test_real_commands_in_any_reads_keep_imap_well_formed(
    role: tuple[IMAPSettings, IMAPLimits], case: Case, poll_every: int | None
) -> None:
    run(role, case, poll_every, real=True)


@settings(max_examples=200, deadline=DEADLINE_MS)
@given(role=ROLES, case=cases(mutated(VALID), STARTTLS), poll_every=_POLL)
def test_mutated_commands_in_any_reads_keep_imap_well_formed(
    role: tuple[IMAPSettings, IMAPLimits], case: Case, poll_every: int | None
) -> None:
    run(role, case, poll_every, real=False)


def test_check_responses_follows_literals() -> None:
    check_responses(b"* 1 FETCH (BODY[] {8}\r\nab\r\ncd\r\n FLAGS ())\r\nt1 OK done\r\n+ go\r\n")
    for broken in (b"* 1 FETCH (BODY[] {9}\r\nab\r\n", b"hello world\r\n", b"t1 OK\rx\r\n"):
        try:
            check_responses(broken)
        except AssertionError:
            continue
        raise AssertionError(f"accepted {broken!r}")
