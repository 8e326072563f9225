"""CONDSTORE and QRESYNC (RFC 7162) with real clients against the running server.

IMAPClient speaks CONDSTORE (``select_folder`` reads HIGHESTMODSEQ, ``fetch``
takes CHANGEDSINCE, ``search`` returns the MODSEQ, ``folder_status`` asks for
HIGHESTMODSEQ); QRESYNC and UNCHANGEDSINCE go through imaplib as raw
commands. :class:`CachingClient` is what a mail client does with QRESYNC: it
keeps UID → flags of the INBOX and resynchronises in one SELECT while another
session changes flags, expunges and receives mail between its visits.

mutt (2.x, with its header cache) is a real client that resynchronises with
QRESYNC between two runs. The sync tools at hand do not use CONDSTORE or
QRESYNC (mbsync 1.4 and offlineimap3 fetch every UID and flag);
tests/e2e/test_imap_mbsync.py shows they keep working against a mailbox
changed between their runs.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.e2e.harness import ServerHandle, client_tls_context
from tests.e2e.test_imap_mutt import Mutt
from tests.e2e.test_imap_mutt import _deliver as mutt_deliver
from tests.e2e.test_imap_mutt import _files as mutt_files

ALICE = ("alice@example.test", "alice-pw")
TIMEOUT = 10
_FETCH = re.compile(rb"\d+ \(UID (\d+) FLAGS \(([^)]*)\) MODSEQ \((\d+)\)\)")


def send(handle: ServerHandle, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", handle.ports["smtp"], timeout=TIMEOUT) as smtp:
        smtp.sendmail(
            "sender@other.example",
            ["alice@example.test"],
            f"From: sender@other.example\r\nSubject: {subject}\r\n\r\nHello.\r\n",
        )


def imaplib_client(handle: ServerHandle) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL(
        "127.0.0.1", handle.ports["imaps"], ssl_context=client_tls_context(), timeout=TIMEOUT
    )
    imap.login(*ALICE)
    return imap


@pytest.fixture
def alice(server: ServerHandle) -> Iterator[IMAPClient]:
    client = IMAPClient(
        "127.0.0.1",
        server.ports["imaps"],
        ssl=True,
        ssl_context=client_tls_context(),
        timeout=TIMEOUT,
    )
    client.login(*ALICE)
    yield client
    with contextlib.suppress(OSError, imaplib.IMAP4.error):
        client.logout()


def _command(imap: imaplib.IMAP4, name: str, *args: str) -> tuple[str, list[bytes]]:
    typ, data = imap._simple_command(name, *args)  # raw RFC 7162 syntax
    return typ, [d for d in data if isinstance(d, bytes)]


def _taken(imap: imaplib.IMAP4, name: str) -> list[bytes]:
    """The untagged responses ``name`` collected so far, and forget them."""
    return [d for d in imap.untagged_responses.pop(name, []) if isinstance(d, bytes)]


# -- CONDSTORE through IMAPClient ---------------------------------------------------------


def test_imapclient_condstore(server: ServerHandle, alice: IMAPClient) -> None:
    for subject in ("one", "two", "three"):
        send(server, subject)
    assert alice.has_capability("CONDSTORE") and alice.has_capability("QRESYNC")
    assert alice.enable("CONDSTORE") == [b"CONDSTORE"]
    start = alice.select_folder("INBOX")[b"HIGHESTMODSEQ"]
    other = imaplib_client(server)
    try:
        other.select("INBOX")
        other.store("2", "+FLAGS", "(\\Flagged)")
    finally:
        other.logout()
    changed = alice.fetch([1, 2, 3], ["FLAGS"], [f"CHANGEDSINCE {start}"])
    assert list(changed) == [2]
    assert b"\\Flagged" in changed[2][b"FLAGS"]
    modseq = changed[2][b"MODSEQ"][0]
    assert modseq > start
    found = alice.search(["MODSEQ", str(start + 1)])
    assert list(found) == [2] and found.modseq == modseq
    assert alice.folder_status("INBOX", ["HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"] == modseq
    assert alice.fetch([1, 2, 3], ["FLAGS"], [f"CHANGEDSINCE {modseq}"]) == {}


def test_conditional_store_loses_to_a_change_made_meanwhile(server: ServerHandle) -> None:
    send(server, "contested")
    first, second = imaplib_client(server), imaplib_client(server)
    try:
        _command(first, "ENABLE", "CONDSTORE")
        first.select("INBOX")
        [seen] = _taken(first, "HIGHESTMODSEQ")
        second.select("INBOX")
        second.store("1", "+FLAGS", "(\\Answered)")
        # The first client read the message at `seen`; its store must not win.
        typ, _ = _command(
            first, "UID", "STORE", "1", f"(UNCHANGEDSINCE {seen.decode()})", "+FLAGS", "(\\Deleted)"
        )
        assert typ == "OK"
        assert _taken(first, "MODIFIED") == [b"1"]
        typ, data = first.uid("FETCH", "1", "(FLAGS)")
        assert b"\\Deleted" not in data[0] and b"\\Answered" in data[0], data
    finally:
        first.logout()
        second.logout()


# -- QRESYNC: a client that keeps a cache -------------------------------------------------


class CachingClient:
    """What a mail client keeps of the INBOX: UIDVALIDITY, HIGHESTMODSEQ, UID → flags."""

    def __init__(self, handle: ServerHandle) -> None:
        self.handle = handle
        self.uidvalidity = 0
        self.modseq = 0
        self.flags: dict[int, set[str]] = {}
        self.vanished: set[int] = set()  # what the last sync said was expunged
        self.fetched: set[int] = set()  # what the last sync said changed

    def sync(self) -> None:
        imap = imaplib_client(self.handle)
        try:
            assert _command(imap, "ENABLE", "QRESYNC")[0] == "OK"
            if not self.uidvalidity:
                typ, _ = _command(imap, "SELECT", "INBOX")
            else:
                known = f"1:{max(self.flags)}" if self.flags else "1"
                typ, _ = _command(
                    imap, "SELECT", "INBOX", f"(QRESYNC ({self.uidvalidity} {self.modseq} {known}))"
                )
            assert typ == "OK"
            imap.state = "SELECTED"  # a SELECT imaplib did not send itself
            self.uidvalidity = int(_taken(imap, "UIDVALIDITY")[0])
            self.modseq = int(_taken(imap, "HIGHESTMODSEQ")[-1])
            self.vanished = set()
            for line in _taken(imap, "VANISHED"):
                assert line.startswith(b"(EARLIER) ")
                self.vanished |= _uids(line.removeprefix(b"(EARLIER) ").decode())
            changes = _taken(imap, "FETCH")
            # The QRESYNC answered for the known UIDs; new mail is above them
            # (on the first visit: everything).
            first_new = max(self.flags, default=0) + 1
            typ, data = imap.uid("FETCH", f"{first_new}:*", "(FLAGS MODSEQ)")
            changes += [d for d in data if isinstance(d, bytes)]
            self.fetched = set()
            for line in changes:
                match = _FETCH.fullmatch(line)
                assert match is not None, line
                uid = int(match[1])
                if line in data and uid < first_new:
                    continue  # n:* names the last message even below n
                self.fetched.add(uid)
                self.flags[uid] = set(match[2].decode().split()) - {"\\Recent"}
            for uid in self.vanished:
                self.flags.pop(uid, None)
        finally:
            imap.logout()

    def truth(self) -> dict[int, set[str]]:
        """UID → flags as a fresh full FETCH sees them."""
        imap = imaplib_client(self.handle)
        try:
            imap.select("INBOX", readonly=True)
            typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
            assert typ == "OK", data
            found = {}
            for line in data:
                assert isinstance(line, bytes)
                match = re.fullmatch(rb"\d+ \(UID (\d+) FLAGS \(([^)]*)\)\)", line)
                assert match is not None, line
                found[int(match[1])] = set(match[2].decode().split()) - {"\\Recent"}
            return found
        finally:
            imap.logout()


def _uids(text: str) -> set[int]:
    out: set[int] = set()
    for piece in text.split(","):
        first, _, last = piece.partition(":")
        out.update(range(int(first), int(last or first) + 1))
    return out


@pytest.mark.parametrize("storage", ["server", "mbox_server"])
def test_qresync_gets_exactly_what_another_session_changed(
    storage: str, request: pytest.FixtureRequest
) -> None:
    server: ServerHandle = request.getfixturevalue(storage)  # Maildir, then mbox
    for n in range(1, 7):
        send(server, f"message {n}")
    cache = CachingClient(server)
    cache.sync()
    assert sorted(cache.flags) == [1, 2, 3, 4, 5, 6]
    assert cache.flags == cache.truth()
    # Another session flags two messages, expunges two, and mail arrives.
    other = imaplib_client(server)
    try:
        other.select("INBOX")
        other.uid("STORE", "2,5", "+FLAGS", "(\\Seen $Important)")
        other.uid("STORE", "3,4", "+FLAGS", "(\\Deleted)")
        other.expunge()
    finally:
        other.logout()
    send(server, "message 7")
    cache.sync()
    assert cache.vanished == {3, 4}
    assert cache.fetched == {2, 5, 7}
    assert cache.flags == cache.truth()
    assert cache.flags[2] == {"\\Seen", "$Important"}
    # Nothing changed since: nothing to tell.
    cache.sync()
    assert (cache.vanished, cache.fetched) == (set(), set())


def test_a_selected_qresync_session_hears_vanished(server: ServerHandle) -> None:
    for subject in ("keep", "drop"):
        send(server, subject)
    watcher, other = imaplib_client(server), imaplib_client(server)
    try:
        _command(watcher, "ENABLE", "QRESYNC")
        watcher.select("INBOX")
        other.select("INBOX")
        other.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
        other.expunge()
        other.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
        watcher.noop()
        assert _taken(watcher, "VANISHED") == [b"2"]
        assert _taken(watcher, "EXPUNGE") == []
        [fetch] = _taken(watcher, "FETCH")
        assert re.fullmatch(rb"1 \(UID 1 FLAGS \(\\Flagged \\Recent\) MODSEQ \(\d+\)\)", fetch)
        typ, _ = _command(watcher, "UID", "FETCH", "1:*", "(FLAGS)", "(CHANGEDSINCE 1 VANISHED)")
        assert typ == "OK"
        assert _taken(watcher, "VANISHED") == [b"(EARLIER) 2"]
    finally:
        watcher.logout()
        other.logout()


# -- mutt with its header cache: QRESYNC between two runs -----------------------------------


def test_mutt_resynchronises_with_qresync(server: ServerHandle, tmp_path: Path) -> None:
    # mutt 2.x keeps UIDVALIDITY, HIGHESTMODSEQ and each message's flags in
    # its header cache; with imap_qresync it resynchronises instead of
    # fetching every flag again.
    for subject in ("foo one", "foo two", "bar three"):
        mutt_deliver(server, subject)
    mutt = Mutt(server, tmp_path / "mutt")
    cache = tmp_path / "mutt" / "hcache"
    cache.mkdir()
    mutt.muttrc.write_text(
        mutt.muttrc.read_text()
        + f"set header_cache={cache}/\nset imap_condstore=yes\nset imap_qresync=yes\n"
    )
    mutt.run("<quit>")
    assert "< * ENABLED QRESYNC" in mutt.transcript(), mutt.transcript()
    # Between the runs another client flags one message and expunges another.
    other = imaplib_client(server)
    try:
        other.select("INBOX")
        other.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
        other.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
        other.expunge()
    finally:
        other.logout()
    # mutt learns both from one UID FETCH … (CHANGEDSINCE … VANISHED) after
    # SELECT … (CONDSTORE) (§3.2.6), and acts on what it learnt: it unflags
    # every message it believes flagged.
    screen = mutt.run("<tag-pattern>~F<enter><tag-prefix><flag-message><sync-mailbox><quit>")
    transcript = mutt.transcript()
    assert re.search(r"> a\d+ UID FETCH 1:3 \(FLAGS\) \(CHANGEDSINCE 2 VANISHED\)", transcript)
    assert "< * VANISHED (EARLIER) 3" in transcript, transcript
    assert re.search(r"< \* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)", transcript)
    # No flag download of the whole mailbox: every FETCH of FLAGS is conditional.
    fetches = re.findall(r"> a\d+ (?:UID )?FETCH .*", transcript)
    assert fetches and all("CHANGEDSINCE" in f for f in fetches if "FLAGS" in f), fetches
    assert "bar three" not in screen
    assert mutt_files(server.maildir(ALICE[0])) == {"foo one": "", "foo two": ""}
