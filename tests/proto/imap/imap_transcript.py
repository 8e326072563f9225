"""Drive the sans-IO IMAP server from a C:/S: transcript, byte for byte.

The player the SMTP and POP3 transcripts share
(:class:`tests.proto.transcript_player.Player`): consecutive ``C:`` lines go
to the server in one write, the ``S:`` lines after them must be everything it says
in answer, with CRLF. A literal's ``+`` continuation splits a command into
two ``C:`` groups, as it does on the wire.

The storage is real: a :class:`mailstead.store.account.Account` over
``<tmp>/Maildir``. Two :class:`IMAPTranscript` objects made with
``fresh_account=True`` on one directory stand for two processes (each with
its own index connection and in-memory mailboxes). ``alice@example.test`` /
``alice-pw`` logs in; every other password fails. One made with
``worker=`` another shares that one's account instead, as two sessions of
one worker process do.

``StorageWork`` runs in place unless ``hold_storage`` is set: then the server
stays paused, as behind a slow disk, until ``step_held`` or ``run_held``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mailstead.limits import IMAPLimits
from mailstead.proto.imap.events import (
    NEED_DATA,
    PAUSED,
    AuthRequest,
    Closing,
    Event,
    Idling,
    StartTLS,
    StorageWork,
)
from mailstead.proto.imap.server import IMAPServer, IMAPSettings
from mailstead.store.account import Account
from mailstead.store.maildir import Maildir
from tests.proto.transcript_player import Player

HOST = "mx.example.test"
USER = "alice@example.test"
PASSWORD = "alice-pw"

SECURE = IMAPSettings(HOST, secure=True)
PLAIN = IMAPSettings(HOST, secure=False, tls_available=True)

CAPS = (
    "IMAP4rev2 IMAP4rev1 LITERAL+ SASL-IR ENABLE ID IDLE NAMESPACE UIDPLUS MOVE UNSELECT"
    " CHILDREN SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES STATUS=SIZE BINARY"
    " COMPRESS=DEFLATE CONDSTORE QRESYNC"
    " SORT SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES OBJECTID PREVIEW"
)
APPENDLIMIT = f"APPENDLIMIT={IMAPLimits().append_limit}"
CAPS_PLAIN = f"{CAPS} STARTTLS LOGINDISABLED {APPENDLIMIT}"
CAPS_TLS = f"{CAPS} AUTH=PLAIN AUTH=LOGIN {APPENDLIMIT}"
CAPS_AUTHED = f"{CAPS} {APPENDLIMIT}"

# Three messages with fixed arrival times, so INTERNALDATE is known.
# 17-Jul-1996 09:44:25 UTC (the RFC 9051 example date) and the next two days.
WHEN = 837596665
MESSAGES = (
    b"From: Bob <bob@example.test>\nTo: alice@example.test\nSubject: one\n"
    b"Date: Wed, 17 Jul 1996 02:44:25 -0700\nMessage-ID: <1@example.test>\n\nfirst body\n",
    b"From: carol@example.test\nSubject: two\n\nsecond\n",
    b"From: dave@example.test\nSubject: =?UTF-8?Q?gr=C3=BC=C3=9Fe?=\n\nthird, with more text\n",
)


def deliver(root: Path, *messages: bytes, when: float | None = None) -> list[str]:
    """Deliver into ``root/new`` as the MDA does; the file names."""
    md = Maildir(root)
    md.create()
    names = []
    for i, data in enumerate(messages):
        name = md.deliver([data])
        if when is not None:
            os.utime(root / "new" / name, (when + i * 86400, when + i * 86400))
        names.append(name)
    # Make the directory stamp differ from any earlier scan, however fast the test.
    os.utime(root / "new", (0, 0))
    return names


class IMAPTranscript(Player):
    """One IMAP connection: the protocol object, its account, and the events it yielded."""

    def __init__(
        self,
        root: Path,
        settings: IMAPSettings = SECURE,
        *,
        limits: IMAPLimits | None = None,
        worker: IMAPTranscript | None = None,
    ) -> None:
        self.root = root
        # Another session of the same worker: its Account (and so its
        # mailbox objects) is this one's too, as store/account.py shares them.
        self.worker = worker
        self.accounts: list[Account] = []
        self.events: list[Event] = []
        # The last drive stopped at Idling: the client is in IDLE.
        self.idling = False
        # Hold StorageWork instead of running it (as a slow disk would): the
        # steps wait in `held` for run_held().
        self.hold_storage = False
        self.held: list[StorageWork] = []
        self.server = IMAPServer(settings, limits or IMAPLimits(), self._open)
        super().__init__(self.server)

    def _open(self, address: str) -> Account:
        assert address == USER
        account = Account(self.root) if self.worker is None else self.worker.account
        self.accounts.append(account)
        return account

    @property
    def account(self) -> Account:
        return self.accounts[-1]

    # -- driving -------------------------------------------------------------

    def drive(self) -> None:
        """Run the server until it needs bytes; answer AuthRequest and StartTLS."""
        conn = self.server
        while True:
            event = conn.next_event()
            self.idling = isinstance(event, Idling)
            if event is NEED_DATA or self.idling or event is PAUSED:
                return  # (PAUSED: held StorageWork)
            self.events.append(event)
            if isinstance(event, AuthRequest):
                creds = event.credentials
                ok = creds.authcid == USER and creds.password == PASSWORD
                conn.auth_result(USER if ok and creds.authzid in ("", USER) else None)
            elif isinstance(event, StartTLS):
                conn.tls_started()
            elif isinstance(event, StorageWork):
                if self.hold_storage:
                    self.held.append(event)
                    return  # paused: the server says nothing more for now
                conn.storage_done(_run_step(event))
            elif isinstance(event, Closing):
                return

    def step_held(self) -> bytes:
        """Run the first held step only (the next one is held in turn); what the server says."""
        self.server.storage_done(_run_step(self.held.pop(0)))
        self.drive()
        return self.output()

    def run_held(self) -> bytes:
        """Let the held StorageWork run, and every step after it; what the server says."""
        self.hold_storage = False
        while self.held:
            self.server.storage_done(_run_step(self.held.pop(0)))
            self.drive()
        return self.output()

    def say(self, line: str) -> str:
        """One command line in, the server's whole answer out (as text, CRLF kept)."""
        return self.feed(line.encode() + b"\r\n").decode("utf-8", "replace")

    # -- shortcuts ---------------------------------------------------------------

    def login(self) -> IMAPTranscript:
        """Greeting and LOGIN as alice, checked loosely."""
        assert self.output().startswith(b"* OK [CAPABILITY ")
        said = self.feed(f"L LOGIN {USER} {PASSWORD}\r\n".encode())
        assert said.startswith(b"L OK [CAPABILITY "), said
        return self

    def create(self, tag: str, name: str) -> IMAPTranscript:
        """CREATE ``name``, answered OK with its MAILBOXID (RFC 8474 §4.1)."""
        said = self.say(f"{tag} CREATE {name}")
        assert created(said, tag), said
        return self

    def select(self, name: str = "INBOX", *, enable_rev2: bool = False) -> IMAPTranscript:
        if enable_rev2:
            assert self.feed(b"E ENABLE IMAP4rev2\r\n").endswith(b"E OK ENABLE completed\r\n")
        said = self.feed(f"S SELECT {name}\r\n".encode())
        assert said.endswith(b"S OK [READ-WRITE] SELECT completed\r\n"), said
        return self

    @property
    def closed(self) -> bool:
        return self.server.closed

    def uidvalidity(self, name: str = "INBOX") -> int:
        return Account(self.root).mailbox(name).uidvalidity


def _run_step(work: StorageWork) -> Exception | None:
    """Run one off-loop step here, as the session's thread would; what it raised."""
    try:
        work.run()
    except Exception as exc:
        return exc
    return None


# -- for the transcript tests (the INBOX holds MESSAGES: conftest.py's `root`) --

FLAGS = r"\Answered \Flagged \Deleted \Seen \Draft $Forwarded"


def authed(root: Path) -> IMAPTranscript:
    return IMAPTranscript(root).login()


def selected(root: Path, *, rev2: bool = False) -> IMAPTranscript:
    return IMAPTranscript(root).login().select(enable_rev2=rev2)


def uidvalidity(root: Path, name: str = "INBOX") -> int:
    return IMAPTranscript(root).uidvalidity(name)


# RFC 8474 §4.1: the MAILBOXID ("F" and the UIDVALIDITY in hex) of a new mailbox.
_CREATED = re.compile(r"(\S+) OK \[MAILBOXID \(F[0-9a-f]{8}\)\] CREATE completed\r\n")


def created(said: str, tag: str) -> bool:
    """Whether ``said`` is the OK of CREATE ``tag``, with a MAILBOXID."""
    match = _CREATED.fullmatch(said)
    return match is not None and match.group(1) == tag
