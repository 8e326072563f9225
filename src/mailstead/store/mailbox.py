"""One mailbox (a Maildir folder) as IMAP and POP3 see it: UIDs, flags, content.

The files are the truth for content and flags; the account's
:class:`~mailstead.store.index.AccountIndex` keeps what the files cannot
(UIDs, UIDVALIDITY, the modification sequence). :meth:`Mailbox.refresh`
reconciles the two: a file another program put into ``new/`` gets the next
UID, a file that disappeared is expunged, a flag rename becomes a flag
change. It rescans only when the directories changed since the last scan.

Each process keeps one :class:`Mailbox` per open mailbox, shared by all its
sessions, with every message's record in memory so that ``FETCH 1:*
(UID FLAGS)`` on a large mailbox touches neither disk nor SQLite.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mailstead.durable import DirectorySyncer, fsync_dir
from mailstead.proto.imap.search_plan import Prefilter
from mailstead.proto.imap.storage import (
    FlagLimitError,
)
from mailstead.store.changes import NO_REPORTS, ChangeReporter
from mailstead.store.index import AccountIndex, MailboxState, Row, write
from mailstead.store.mailbox_arrivals import Arrivals
from mailstead.store.maildir import crlf_size
from mailstead.store.maildir_names import (
    Keywords,
    arrival_order,
    crlf_size_named,
    split_name,
)
from mailstead.store.maildir_records import (
    SNAPSHOT_MIN,
    UNKNOWN_DATE,
    Message,
    decode_snapshot,
    encode_snapshot,
    file_date,
    read_file,
)
from mailstead.store.records import flag_tuple, flags_after, with_changes
from mailstead.store.retention import ExpungedFiles, Retained, retained_location
from mailstead.store.search_indexer import AccountTextIndex

# How new/ and cur/ differ from a mailbox's records (Mailbox._compare_files).
_AS_KNOWN, _ARRIVING, _CHANGED = "as known", "arriving", "changed"

# A directory whose mtime is this close to the scan may still change within
# the same timestamp tick; its stamp is not trusted until it is older.
_DIRTY_WINDOW = 1.0


class Mailbox(Arrivals):
    """Owns one Maildir folder of one account and its part of the index.

    New messages (APPEND, COPY) come in through :class:`Arrivals`.
    """

    def __init__(self, index: AccountIndex, state: MailboxState, path: Path) -> None:
        self.index = index
        self.name = state.name
        self.id = state.id
        self.uidvalidity = state.uidvalidity
        self.path = Path(path)
        self.keywords = Keywords(self.path, index.transaction)
        # Ascending; replaced, never changed in place (views share it).
        self.uids: list[int] = []
        self.messages: dict[int, Message] = {}
        # Expunged messages that sessions may still number (RFC 2180 §4.1).
        self.retained: Retained[Message] = Retained()
        # Summary header fields SEARCH has read (UIDs are never reused, so
        # entries of expunged messages are only dead weight until reopen).
        self.header_summaries: dict[int, bytes] = {}
        self.highestmodseq = 0
        self.uidnext = state.uidnext
        # Set by the account that opened it: changes become events.
        self.reporter: ChangeReporter = NO_REPORTS
        # Set by the account: the full-text index SEARCH narrows with.
        self.text_index: AccountTextIndex | None = None
        self._cur_sync = DirectorySyncer(self.path / "cur")
        self._expunged_files = ExpungedFiles(f"{self.path}/tmp")
        # Plain strings, not Path: joined for every message read or renamed
        # (a Path join cost more than the open), and stat'ed by every SELECT.
        self._root = str(self.path)
        self._new_dir = f"{self._root}/new"
        self._cur_dir = f"{self._root}/cur"
        # The stamp of new/ and cur/ at which the files last matched
        # messages (and the index), with the look (_stamp) it was taken with,
        # "" while untrusted (dirty, or after a change of this process's
        # own: see _changing_files). Then the looks at which new/ was empty
        # and the keyword names were read: neither can have changed since
        # unless new/ or cur/ did.
        self._matched = ("", "")
        self._diverged = False
        self._new_empty_at = "-"
        self._keywords_at = "-"
        self._keyword_names: list[str] = []
        self._refreshed = -1e9
        # The stamp and modseq at which new/ and cur/ last held only files in
        # flight from another process (see refresh).
        self._arriving_at = ("", -1)
        self._arriving_since: float | None = None  # (monotonic) waiting since
        self._letters_text: dict[str, str] = {}

    # -- keeping up with the disk and with other processes -----------------

    def refresh(self, max_age: float = 0.0) -> None:
        """Bring :attr:`messages` up to date with the files and the index.

        ``max_age``: skip the check if the last one is younger (sessions in
        IDLE share one look per interval).
        """
        now = time.monotonic()
        if max_age and now - self._refreshed < max_age:
            return
        self._refreshed = now
        stamp, look = self._stamp()
        matched, matched_look = self._matched
        if look and look == matched_look:
            # Neither directory changed since this process last matched them
            # with the index, and every index change of a Maildir folder
            # comes after a change in new/ or cur/ (docs/durability.md).
            return
        state = self.index.mailbox(self.name)
        if state is None or state.id != self.id:
            raise FileNotFoundError(f"mailbox {self.name!r} no longer exists")
        if state.highestmodseq != self.highestmodseq:
            self._pull()
        if stamp == matched and (matched_look or not look):
            pass  # as this process left them; checked again once trusted
        elif stamp == state.stamp:
            pass  # as some process matched them with the index
        elif self._arriving_at == (stamp, self.highestmodseq) and self._may_wait(look, now):
            return  # as at the last refresh: another process's arrival, in flight
        else:
            differ = self._compare_files() if self.messages else _CHANGED
            if differ is _ARRIVING and self._may_wait(look, now):
                # Another process's APPEND or COPY, between its rename and
                # its index commit: its commit (pulled at a later refresh)
                # gives the UID; a scan now would only race it for the
                # write lock. For a dirty window at most (a file another
                # program put there, or one left by a crash, is then scanned).
                self._arriving_at = (stamp, self.highestmodseq)
                if self._arriving_since is None:
                    self._arriving_since = now
                return
            if differ is _AS_KNOWN:
                # Changed, but only in ways this process knows of: its own
                # changes, and other processes' ones pulled from the index.
                if look:
                    self.index.set_stamp(self.id, stamp)
            else:
                self._scan(stamp, dirty=not look)
        self._matched = (stamp, look)
        self._arriving_since = None

    def _may_wait(self, look: str, now: float) -> bool:
        """Whether files in flight in cur/ may still wait for their own commit."""
        since = self._arriving_since
        return not look and (since is None or now - since < _DIRTY_WINDOW)

    def _compare_files(self) -> str:
        """How ``new/`` and ``cur/`` differ from :attr:`messages`: not at all
        (_AS_KNOWN), only by files in ``cur/`` no record knows (_ARRIVING),
        or otherwise (_CHANGED). A directory read and a set lookup per file:
        a fifth of a full scan."""
        try:
            new = os.listdir(self._new_dir)
            cur = os.listdir(self._cur_dir)
        except FileNotFoundError:
            return _CHANGED
        known = {msg.location for msg in self.messages.values()}
        listed = 0
        for name in new:
            if not name.startswith("."):
                listed += 1
                if f"new/{name}" not in known:
                    return _CHANGED
        unknown = 0
        for name in cur:
            if not name.startswith("."):
                listed += 1
                unknown += f"cur/{name}" not in known
        if listed - unknown != len(known):
            return _CHANGED  # a known file is gone, or renamed
        return _ARRIVING if unknown else _AS_KNOWN

    @contextmanager
    def _changing_files(self) -> Iterator[None]:
        """Around a change of this process's own to new/ or cur/, told to
        :attr:`messages` and the index as it goes.

        Files that matched before match after, unless the change called
        :meth:`_diverge`. The new stamp counts as matched but untrusted: the
        first refresh after the dirty window checks the files once more, for
        another program may have changed them within the same mtime tick.
        """
        before = self._stamp()[0]
        self._diverged = False
        yield
        after = self._stamp()[0]
        if after != before and before == self._matched[0] and not self._diverged:
            self._matched = (after, "")

    def _diverge(self) -> None:
        """The files no longer match :attr:`messages` (one vanished under a change)."""
        self._diverged = True

    def _stamp(self) -> tuple[str, str]:
        """The mtimes of new/ and cur/ (the index's stamp), and this process's look.

        The look adds the directories' inode numbers and is empty while
        either changed within the last second (the same mtime tick may
        still hold another change).
        """
        now = time.time()
        new, cur = os.stat(self._new_dir), os.stat(self._cur_dir)
        stamp = f"{new.st_mtime_ns}:{cur.st_mtime_ns}"
        if now - new.st_mtime < _DIRTY_WINDOW or now - cur.st_mtime < _DIRTY_WINDOW:
            return stamp, ""
        return stamp, f"{stamp}:{new.st_ino}:{cur.st_ino}"

    def _pull(self) -> None:
        """Apply index changes made by other processes since :attr:`highestmodseq`."""
        # Counters first: rows committed after this read are applied again
        # by the next pull, which is harmless; the reverse would lose them.
        state = self.index.mailbox(self.name)
        if state is None:
            raise FileNotFoundError(f"mailbox {self.name!r} no longer exists")
        if not self.messages:
            self._load_snapshot()
        gone = self.index.expunged_since(self.id, self.highestmodseq)
        if gone is None or not self.messages:
            self._load_all(state)
            return
        rows = self.index.rows(self.id, self.highestmodseq)
        added = []
        for row in rows:
            if row.uid not in self.messages:
                added.append(row.uid)
            self.messages[row.uid] = self._message(row)
        self._retain([uid for uid in gone if uid in self.messages])
        self.uids = with_changes(self.uids, added, set(gone))
        self.highestmodseq = state.highestmodseq
        self.uidnext = state.uidnext
        if len(rows) + len(gone) > len(self.messages) // 4 >= SNAPSHOT_MIN // 4:
            self._save_snapshot()  # the next process would catch up as long

    def _load_all(self, state: MailboxState) -> None:
        messages: dict[int, Message] = {}
        for uid, location, flags, size, internaldate, modseq in self.index.all_rows(self.id):
            messages[uid] = Message(
                uid, location, flag_tuple(flags), size, internaldate, modseq, self
            )
        self._retain([uid for uid in self.messages if uid not in messages])
        self.messages = messages
        self.uids = list(messages)  # all_rows is in UID order
        self.highestmodseq = state.highestmodseq
        self.uidnext = state.uidnext
        self._save_snapshot()

    def _load_snapshot(self) -> None:
        """Take the records from the index's snapshot; the pull brings what
        changed after it (a record moved since is found as in :meth:`read`)."""
        found = self.index.snapshot(self.id)
        if found is None:
            return
        modseq, data = found
        messages = decode_snapshot(data, self)
        if messages:
            self.messages = messages
            self.uids = list(messages)  # saved in UID order
            self.highestmodseq = modseq

    def _save_snapshot(self) -> None:
        if len(self.messages) >= SNAPSHOT_MIN:
            records = (self.messages[uid] for uid in self.uids)
            self.index.save_snapshot(self.id, self.highestmodseq, encode_snapshot(records))

    def _retain(self, uids: list[int]) -> None:
        """Move expunged messages' records to :attr:`retained`, pointing at their
        kept files."""
        records = [self.messages.pop(uid) for uid in uids]
        for msg in records:
            msg.location = retained_location(msg.location)
        self.retained.add(records)

    def _message(self, row: Row) -> Message:
        return Message(
            row.uid,
            row.location,
            flag_tuple(row.flags),
            row.size,
            row.internaldate,
            row.modseq,
            self,
        )

    def _scan(self, stamp: str, dirty: bool) -> None:
        """Reconcile the index with ``new/`` and ``cur/`` (one index transaction)."""
        flag_text = self._flag_text
        messages = self.messages
        with write(self.index, self.id) as w:
            known = w.keys()
            seen: set[str] = set()
            fresh: list[tuple[str, str, str]] = []
            for sub in ("new", "cur"):
                for name in os.listdir(f"{self._root}/{sub}"):
                    if name.startswith("."):
                        continue
                    base, letters = split_name(name)
                    if base in seen:
                        continue  # the same message in new/ and cur/ mid-rename
                    seen.add(base)
                    location = f"{sub}/{name}"
                    old = known.get(base)
                    if old is None:
                        fresh.append((base, location, letters))
                        continue
                    uid, old_location, old_flags = old
                    msg = messages.get(uid)
                    if msg is not None and msg.location != location:
                        # Moved without a new modseq (another process's
                        # SELECT took it from new/): the pull will not say.
                        msg.location = location
                    if old_location != location:
                        flags = flag_text(letters)
                        if flags != old_flags:
                            w.update(uid, location, flags)
                        else:
                            w.move(uid, location)
            gone = [uid for base, (uid, _, _) in known.items() if base not in seen]
            if gone:
                w.remove(gone)
            # Unique names begin with the delivery time: sorted by it, new
            # UIDs follow arrival order (RFC 9051 §2.3.1.1 asks only for ascending).
            added = []
            for base, location, letters in sorted(fresh, key=arrival_order):
                described = self._describe(base, location)
                if described is not None:  # else it vanished since listdir
                    added.append((base, location, flag_text(letters), *described))
            first_uid = w.uidnext
            w.add_many(added)
            w.set_stamp("" if dirty else stamp)
        if not known and not messages:
            # A first scan: the rows are just the ones added, so build the
            # records from them instead of reading them all back (0.2 s at
            # 100,000 messages); the pull then brings only later changes.
            self.messages = {
                first_uid + i: Message(
                    first_uid + i, loc, flag_tuple(flags), size, when, w.modseq, self
                )
                for i, (_, loc, flags, size, when) in enumerate(added)
            }
            self.uids = list(self.messages)
            self.highestmodseq, self.uidnext = w.modseq, w.uidnext
            self._save_snapshot()
        self._pull()

    def _flag_text(self, letters: str) -> str:
        """The index's flag text for Maildir flag letters.

        System-flag letters have few combinations and a fixed meaning, so
        their text is memoised; keyword letters depend on the keywords file.
        """
        text = self._letters_text.get(letters)
        if text is None:
            text = " ".join(sorted(self.keywords.flags(letters)))
            if letters.isupper() or not letters:
                self._letters_text[letters] = text
        return text

    def _describe(self, base: str, location: str) -> tuple[int, float] | None:
        # Most names carry the size; the date waits for file_date().
        vsize = crlf_size_named(base)
        if vsize is None:
            try:
                with open(f"{self._root}/{location}", "rb") as f:
                    vsize = crlf_size([f.read()])
            except FileNotFoundError:
                return None
        return vsize, UNKNOWN_DATE

    def file_date(self, msg: Message) -> float:
        def moved() -> list[str]:  # by a flag change or a SELECT elsewhere
            return list(self.index.locations(self.id, [msg.uid]).values())

        return file_date(self._root, msg.location, moved)

    # -- reading -------------------------------------------------------------

    def read(self, uid: int) -> bytes:
        """The stored bytes of message ``uid`` (line ends as on disk).

        A message expunged here or elsewhere is read from its retained file
        (RFC 2180 §4.1). Raises ``FileNotFoundError`` when that is gone too,
        or the message was never in this mailbox.
        """
        msg = self.messages.get(uid) or self.retained.get(uid)
        if msg is None:
            raise FileNotFoundError(f"no message with UID {uid}")
        try:
            return read_file(self._root, msg.location)
        except FileNotFoundError:
            if uid not in self.messages:
                raise
        # Renamed by a flag change or a SELECT elsewhere: ask the index.
        location = self._current_location(uid)
        if location is not None:
            msg.location = location
            try:
                return read_file(self._root, location)
            except FileNotFoundError:
                pass
        # Expunged meanwhile, perhaps not yet committed: the file waits in tmp/.
        return read_file(self._root, retained_location(msg.location))

    def _current_location(self, uid: int) -> str | None:
        """Where the index says the file of ``uid`` is now (None: expunged).

        Another process's SELECT moves files from new/ to cur/ without a new
        modseq (no client-visible change), so this process's record can be
        stale; the index, after a scan, is not.
        """
        self.refresh()
        found = self.index.locations(self.id, [uid])
        return found.get(uid)

    def cached(self, uid: int, item: str) -> bytes | None:
        return self.index.cached(self.id, uid, item)

    def remember(self, uid: int, item: str, value: bytes) -> None:
        self.index.remember(self.id, uid, item, value)

    def summaries(self) -> dict[int, bytes]:
        return self.index.summaries(self.id)

    def save_summaries(self, found: dict[int, bytes]) -> None:
        self.index.save_summaries(self.id, found)

    # -- changing ------------------------------------------------------------

    def take_new(self) -> list[int]:
        """A read-write SELECT: move messages from ``new/`` to ``cur/``, and claim
        the \\Recent ones (:meth:`claim_recent`); their UIDs."""
        self._move_new()
        return self.claim_recent()

    def claim_recent(self) -> list[int]:
        """RFC 3501 §2.3.2: the messages new since any session last claimed them,
        \\Recent for the caller's session alone."""
        floor = self.index.claim_recent(self.id, self.uidnext)
        return self.uids[bisect.bisect_left(self.uids, floor) :]

    def recent_uids(self) -> list[int]:
        """The messages the next read-write SELECT would claim (EXAMINE, STATUS)."""
        floor = self.index.recent_floor(self.id)
        return self.uids[bisect.bisect_left(self.uids, floor) :]

    def _move_new(self) -> None:
        self._expunged_files.sweep()  # also where no session expunges again
        # Usually new/ is empty (every SELECT empties it), and known to be
        # since the last look; else a directory read spares both the walk
        # over every message and a commit.
        look = self._matched[1]
        if look and look == self._new_empty_at:
            return
        try:
            waiting = {split_name(name)[0] for name in os.listdir(self._new_dir)}
        except FileNotFoundError:
            return
        if not waiting:
            self._new_empty_at = look
            return
        with self._changing_files(), write(self.index, self.id, durable=False) as w:
            for uid in self.uids:
                msg = self.messages[uid]
                if (
                    not msg.location.startswith("new/")
                    or split_name(msg.location[4:])[0] not in waiting
                ):
                    continue
                name = msg.location[4:]
                if ":" not in name:
                    name += ":2,"
                location = "cur/" + name
                try:
                    os.rename(f"{self._root}/{msg.location}", f"{self._root}/{location}")
                except FileNotFoundError:
                    self._diverge()
                    continue
                w.move(uid, location)
                msg.location = location

    def store(
        self,
        uids: Iterable[int],
        flags: Sequence[str],
        mode: str,
        unchanged_since: int | None = None,
    ) -> list[int]:
        """Add (``+``), remove (``-``) or set (``=``) flags; the UIDs whose flags changed.

        ``unchanged_since`` (RFC 7162 §3.1.3 UNCHANGEDSINCE): leave alone a
        message whose modseq is above it, tested inside the transaction.
        """
        changed = []
        with self._changing_files(), write(self.index, self.id, durable=False) as w:
            if w.modseq != self.highestmodseq:
                # Inside the transaction no other process changes flags: take
                # theirs first, or ours would be computed from stale ones and
                # undo them (a lost update).
                self._pull()
            for uid in uids:
                msg = self.messages.get(uid)
                if msg is None or (unchanged_since is not None and msg.modseq > unchanged_since):
                    continue
                new = flags_after(msg.flags, flags, mode)
                if new is None:
                    continue
                letters = self.keywords.letters(sorted(new))
                if letters is None:
                    raise FlagLimitError()
                base, _ = split_name(msg.location[4:])
                location = f"cur/{base}:2,{letters}"
                try:
                    os.rename(f"{self._root}/{msg.location}", f"{self._root}/{location}")
                except FileNotFoundError:
                    # Moved elsewhere since we looked (a SELECT, a flag
                    # change): the index, read in this transaction, knows.
                    current = w.location(uid)
                    if current is None or current == msg.location:
                        self._diverge()
                        continue  # expunged; the next scan tells
                    try:
                        os.rename(f"{self._root}/{current}", f"{self._root}/{location}")
                    except FileNotFoundError:
                        self._diverge()
                        continue
                flag_text = " ".join(sorted(new))
                w.update(uid, location, flag_text)
                msg.location = location
                msg.flags = flag_tuple(flag_text)
                msg.modseq = w.modseq
                changed.append(uid)
        self.reporter.flags_changed(self.name, changed, flags, mode)
        return changed

    def expunge(self, uids: Iterable[int]) -> list[int]:
        """Remove messages (files first, then the index); the UIDs removed.

        Each file moves to ``tmp/``, where no reader looks, for the sessions
        that may still fetch it (RFC 2180 §4.1); :class:`ExpungedFiles`
        deletes it later.
        """
        wanted = [uid for uid in uids if uid in self.messages]
        # Locations from the index, not our records: a file moved by another
        # process and unlinked under its old name would survive the expunge
        # and come back at the next scan as a new message.
        if not wanted:
            return []
        # Files first, then the index, in one transaction: no other process
        # finds a row whose file is gone (a STORE would answer stale flags).
        with write(self.index, self.id, durable=False) as w, self._changing_files():
            current = self.index.locations(self.id, wanted)
            for uid in wanted:
                location = current.get(uid, self.messages[uid].location)
                try:
                    os.rename(
                        f"{self._root}/{location}", f"{self._root}/{retained_location(location)}"
                    )
                except FileNotFoundError:
                    self._diverge()  # gone already, or moved where the index has not seen
            fsync_dir(self.path / "cur")
            w.remove(wanted)
            self._retain(wanted)
            self.uids = with_changes(self.uids, [], set(wanted))
        self._expunged_files.sweep()
        self.reporter.expunged(self.name, wanted)
        return wanted

    def expunged_since(self, modseq: int) -> list[int] | None:
        """UIDs expunged after ``modseq`` (RFC 7162 QRESYNC); None when the
        index's expunge log no longer reaches back that far."""
        return self.index.expunged_since(self.id, modseq)

    def text_candidates(self, prefilter: Prefilter) -> Container[int] | None:
        """The UIDs that may match a SEARCH's text keys (store/search_index.py)."""
        if self.text_index is None:
            return None
        return self.text_index.candidates(self.id, self.uidvalidity, self.path, prefilter)

    def keyword_names(self) -> list[str]:
        # A keyword is defined for a STORE that renames a file in cur/.
        look = self._matched[1]
        if not look or look != self._keywords_at:
            self._keyword_names = self.keywords.names()
            self._keywords_at = look
        return self._keyword_names

    def deleted_uids(self) -> list[int]:
        return [uid for uid in self.uids if "\\Deleted" in self.messages[uid].flags]
