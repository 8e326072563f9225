"""One mailbox kept as an mbox file, as IMAP and POP3 see it: UIDs, flags, content.

The same interface as :class:`mailstead.store.mailbox.Mailbox`, over one
mboxrd file (:mod:`mailstead.store.mbox` writes it, :mod:`.mbox_format`
reads it) and the account's :class:`~mailstead.store.index.AccountIndex`.

What the index holds per message:

* **key**: a fingerprint of the message (sha1 of its From_ line, its first
  4 KiB and its length; ``#2``, ``#3`` … for identical copies), which survives
  rewrites of the file by us or by another program, so UIDs do too;
* **location**: ``"offset:length"`` of the (escaped) message bytes in the
  file, checked against the key on every read;
* **flags**. A known deviation from docs/durability.md: in mbox mode **the index is
  the truth for flags**. mbox has no cheap place for them (rewriting the file
  on every STORE would cost a copy of the mailbox), so the index is precious
  for them here, unlike with Maildir. ``Status:``/``X-Status:`` headers are
  read once, when a message is first indexed, and never written.

:meth:`MboxMailbox.refresh` reconciles file and index when the file's stamp
(inode, size, mtime) changed: if the file only grew it parses just the new
tail, otherwise it re-parses the whole file and matches messages to UIDs by
fingerprint (new ones get new UIDs, missing ones are expunged). It reads the
file under the delivery locks (dotlock, then fcntl; :class:`~.mbox.Mbox`), so
a half-written delivery is never indexed. Lock order everywhere: the mbox
locks, then the index transaction.

The stored stamp is ``[~]<inode>:<size>:<mtime_ns>/<generation>``: ``~``
marks a stamp taken within a second of the file's mtime (not trusted: the
file may change again within the same tick, so the next refresh looks
again); the generation grows whenever messages move in the file, telling
other processes that the locations they hold in memory are stale (moves do
not take a modseq, as clients see nothing).
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailstead.durable import fsync_dir
from mailstead.proto.imap.storage import Appender, FlagLimitError
from mailstead.store.changes import NO_REPORTS, ChangeReporter
from mailstead.store.index import AccountIndex, MailboxState, MailboxWriter, Row, write
from mailstead.store.maildir import crlf_size
from mailstead.store.maildir_names import MAX_KEYWORDS
from mailstead.store.mbox import (
    FINGERPRINT_HEAD,
    Mbox,
    escape_mboxrd,
    fingerprint,
    from_line,
    staged_fingerprint,
)
from mailstead.store.mbox_format import (
    MboxBuffer,
    MboxRecord,
    from_line_date,
    from_line_start,
    hold_locks,
    key_fingerprint,
    mapped,
    message_size,
    parse,
    parse_location,
    pread_all,
    record_fingerprint,
    status_flags,
    unescape_mboxrd,
    write_copy,
)
from mailstead.store.records import flag_tuple, flags_after, with_changes
from mailstead.store.retention import Retained

INBOX = "INBOX"
# A file whose mtime is this close to the scan may still change within the
# same timestamp tick; its stamp is not trusted until it is older.
_DIRTY_WINDOW = 1.0
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
# The longest From_ line a read looks back for.
_FROM_LINE_MAX = 64 * 1024


@dataclass(slots=True)
class MboxMessage:
    """One message of an mbox mailbox as this process last saw it."""

    uid: int
    location: str  # "offset:length" of the escaped message bytes in the file
    flags: tuple[str, ...]  # sorted, interned
    size: int  # RFC822.SIZE: unescaped, with CRLF line ends
    internaldate: float
    modseq: int
    key: str  # fingerprint ("#n" for the n-th identical copy)


@dataclass(frozen=True, slots=True)
class _Stamp:
    trusted: bool
    file: str  # "<inode>:<size>:<mtime_ns>", "absent", or "" (never scanned)
    generation: int


def _parse_stamp(text: str) -> _Stamp:
    body = text.removeprefix("~")
    file, _, generation = body.rpartition("/")
    try:
        gen = int(generation)
    except ValueError:
        return _Stamp(False, "", 0)
    return _Stamp(not text.startswith("~"), file, gen)


def _format_stamp(file: str, generation: int, dirty: bool) -> str:
    return f"{'~' if dirty else ''}{file}/{generation}"


def _file_stamp(st: os.stat_result | None) -> str:
    return "absent" if st is None else f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _is_dirty(st: os.stat_result | None) -> bool:
    return st is not None and time.time() - st.st_mtime < _DIRTY_WINDOW


class MboxMailbox:
    """Owns one mbox file of one account and its part of the index."""

    def __init__(
        self, index: AccountIndex, state: MailboxState, path: Path, *, lock_timeout: float = 30.0
    ) -> None:
        self.index = index
        self.name = state.name
        self.id = state.id
        self.uidvalidity = state.uidvalidity
        self.path = Path(path)
        self.mbox = Mbox(self.path, lock_timeout=lock_timeout)
        self.uids: list[int] = []  # ascending
        self.messages: dict[int, MboxMessage] = {}
        # Records of expunged messages sessions may still number (RFC 2180
        # §4.1); an mbox rewrite drops their bytes, so only these remain.
        self.retained: Retained[MboxMessage] = Retained()
        # Summary header fields SEARCH has read (UIDs are never reused).
        self.header_summaries: dict[int, bytes] = {}
        self.highestmodseq = 0
        self.uidnext = state.uidnext
        # Set by the account that opened it: changes become events.
        self.reporter: ChangeReporter = NO_REPORTS
        self._generation = -1  # of the locations in self.messages
        self._refreshed = -1e9

    # -- keeping up with the file and with other processes -----------------

    def refresh(self, max_age: float = 0.0) -> None:
        """Bring :attr:`messages` up to date with the file and the index.

        Reads nothing of the file unless its stamp changed. ``max_age``:
        skip the check if the last one is younger.
        """
        now = time.monotonic()
        if max_age and now - self._refreshed < max_age:
            return
        self._refreshed = now
        st = self._stat()
        state = self._state()
        stamp = _parse_stamp(state.stamp)
        if not stamp.trusted or stamp.file != _file_stamp(st):
            self._scan()
        elif state.highestmodseq != self.highestmodseq or stamp.generation != self._generation:
            self._pull()

    def _stat(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except FileNotFoundError:
            if self.name == INBOX:
                return None  # nothing delivered yet
            raise FileNotFoundError(f"mailbox {self.name!r} no longer exists") from None

    def _state(self) -> MailboxState:
        state = self.index.mailbox(self.name)
        if state is None or state.id != self.id:
            raise FileNotFoundError(f"mailbox {self.name!r} no longer exists")
        return state

    def _pull(self) -> None:
        """Apply index changes made by other processes since :attr:`highestmodseq`."""
        state = self._state()
        generation = _parse_stamp(state.stamp).generation
        gone = self.index.expunged_since(self.id, self.highestmodseq)
        if gone is None or not self.messages or generation != self._generation:
            self._load_all(state, generation)
            return
        added = []
        for row in self.index.rows(self.id, self.highestmodseq):
            if row.uid not in self.messages:
                added.append(row.uid)
            self.messages[row.uid] = self._message(row)
        self.retained.add([self.messages.pop(uid) for uid in gone if uid in self.messages])
        self.uids = with_changes(self.uids, added, set(gone))
        self.highestmodseq = state.highestmodseq
        self.uidnext = state.uidnext

    def _load_all(self, state: MailboxState, generation: int) -> None:
        messages = {row.uid: self._message(row) for row in self.index.rows(self.id)}
        self.retained.add([msg for uid, msg in self.messages.items() if uid not in messages])
        self.messages = messages
        self.uids = list(self.messages)  # rows come in UID order
        self.highestmodseq = state.highestmodseq
        self.uidnext = state.uidnext
        self._generation = generation

    @staticmethod
    def _message(row: Row) -> MboxMessage:
        return MboxMessage(
            row.uid,
            row.location,
            flag_tuple(row.flags),
            row.size,
            row.internaldate,
            row.modseq,
            row.key,
        )

    def _scan(self, *, full: bool = False) -> None:
        with hold_locks(self.mbox) as held:
            self._reconcile(held.fd, full=full)
        self._pull()

    def _reconcile(self, fd: int | None, *, full: bool = False) -> list[tuple[MboxRecord, int]]:
        """Make the index match the file (locks held); (record, UID) pairs of a full parse.

        One index transaction. ``full``: re-parse the whole file even if it
        only grew.
        """
        if fd is None and self.name != INBOX:
            raise FileNotFoundError(f"mailbox {self.name!r} no longer exists")
        st = os.fstat(fd) if fd is not None else None
        size = st.st_size if st is not None else 0
        old = _parse_stamp(self._state().stamp)
        pairs: list[tuple[MboxRecord, int]] = []
        with write(self.index, self.id) as w, mapped(fd if fd is not None else -1, size) as buf:
            known = w.keys()
            generation = old.generation
            tail = None if full else self._tail(buf, st, old, known)
            if tail is not None:
                self._add_new(w, buf, [(r, record_fingerprint(buf, r)) for r in tail], known, st)
            else:
                pairs, moved = self._match_all(w, buf, parse(buf, 0, size), known, st)
                generation += moved
            w.set_stamp(_format_stamp(_file_stamp(st), generation, _is_dirty(st)))
        return pairs

    @staticmethod
    def _tail(
        buf: MboxBuffer,
        st: os.stat_result | None,
        old: _Stamp,
        known: dict[str, tuple[int, str, str]],
    ) -> list[MboxRecord] | None:
        """The messages after the last known one if the file only grew, else None."""
        if st is None or not known:
            return None
        parts = old.file.split(":")
        if len(parts) != 3 or int(parts[0]) != st.st_ino or int(parts[1]) > st.st_size:
            return None
        key, (_, location, _) = max(known.items(), key=lambda kv: parse_location(kv[1][1])[0])
        offset, length = parse_location(location)
        if offset + length > st.st_size:
            return None
        start = from_line_start(buf, offset)
        if start is None:
            return None
        records = parse(buf, start, st.st_size)
        if (
            not records
            or records[0].location != location
            or record_fingerprint(buf, records[0]) != key_fingerprint(key)
        ):
            return None
        return records[1:]

    def _match_all(
        self,
        w: MailboxWriter,
        buf: MboxBuffer,
        records: list[MboxRecord],
        known: dict[str, tuple[int, str, str]],
        st: os.stat_result | None,
    ) -> tuple[list[tuple[MboxRecord, int]], bool]:
        """Match every record to a known UID by fingerprint; the rest are new, the
        unmatched UIDs expunged. Identical copies match in UID order."""
        by_print: dict[str, list[tuple[int, str]]] = {}
        for key, (uid, location, _) in known.items():
            by_print.setdefault(key_fingerprint(key), []).append((uid, location))
        for candidates in by_print.values():
            candidates.sort(reverse=True)  # pop() takes the lowest UID
        matched: list[tuple[MboxRecord, int]] = []
        fresh: list[tuple[MboxRecord, str]] = []
        moved = False
        for rec in records:
            print_ = record_fingerprint(buf, rec)
            same = by_print.get(print_)
            if not same:
                fresh.append((rec, print_))
                continue
            uid, location = same.pop()
            if location != rec.location:
                w.move(uid, rec.location)
                moved = True
            matched.append((rec, uid))
        gone = [uid for candidates in by_print.values() for uid, _ in candidates]
        if gone:
            w.remove(gone)
        added = self._add_new(w, buf, fresh, known, st)
        pairs = sorted(matched + added, key=lambda pair: pair[0].offset)
        return pairs, moved

    @staticmethod
    def _add_new(
        w: MailboxWriter,
        buf: MboxBuffer,
        fresh: list[tuple[MboxRecord, str]],
        known: dict[str, tuple[int, str, str]],
        st: os.stat_result | None,
    ) -> list[tuple[MboxRecord, int]]:
        """Give new messages the next UIDs, in file order (RFC 9051 §2.3.1.1)."""
        used = set(known)
        fallback_date = st.st_mtime if st is not None else time.time()
        rows = []
        for rec, print_ in fresh:
            key, n = print_, 1
            while key in used:
                n += 1
                key = f"{print_}#{n}"
            used.add(key)
            raw = buf[rec.offset : rec.offset + rec.length]
            when = from_line_date(rec.from_line)
            rows.append(
                (
                    key,
                    rec.location,
                    status_flags(raw),
                    message_size(raw),
                    when if when is not None else fallback_date,
                )
            )
        first = w.uidnext
        w.add_many(rows)
        return [(rec, first + i) for i, (rec, _) in enumerate(fresh)]

    # -- reading -------------------------------------------------------------

    def read(self, uid: int) -> bytes:
        """The message ``uid`` as delivered (LF line ends, mboxrd quoting undone).

        Raises ``FileNotFoundError`` when the message is gone: expunged by
        someone else since the last refresh, or not known at all (a read may
        reload :attr:`messages` while a caller still walks an older copy).
        """
        msg = self.messages.get(uid)
        if msg is None:
            raise FileNotFoundError(f"message {uid} of {self.name!r} is gone")
        for attempt in range(3):
            data = self._read_checked(msg)
            if data is not None:
                return data
            if attempt == 2:
                break
            # The bytes at the location are not this message: the file was
            # rewritten since this view last looked.
            if attempt == 0:
                self.refresh()
            else:
                # The index disagrees with the file although its stamp did
                # not change: re-parse and match by fingerprint.
                self._scan(full=True)
            self._load_all(self._state(), self._generation_now())
            found = self.messages.get(uid)
            if found is None:
                break
            msg = found
        raise FileNotFoundError(f"message {uid} of {self.name!r} is gone")

    def _generation_now(self) -> int:
        return _parse_stamp(self._state().stamp).generation

    def _read_checked(self, msg: MboxMessage) -> bytes | None:
        """The message at ``msg.location`` if its From_ line and fingerprint match."""
        offset, length = parse_location(msg.location)
        try:
            fd = os.open(self.path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        try:
            before = min(offset, 1024)
            while True:
                chunk = pread_all(fd, before + length, offset - before)
                if len(chunk) < before + length:
                    return None
                start = from_line_start(chunk, before)
                # The line must begin inside the chunk (after a newline) or
                # at the start of the file, else it may be longer than we read.
                if start is not None and (start > 0 or before == offset):
                    break
                if before == offset or before >= _FROM_LINE_MAX:
                    return None
                before = min(offset, before * 8)
        finally:
            os.close(fd)
        raw = chunk[before:]
        line = chunk[start : before - 1].rstrip(b"\r")
        if fingerprint(line, raw[:FINGERPRINT_HEAD], length) != key_fingerprint(msg.key):
            return None
        return unescape_mboxrd(raw)

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
        """A read-write SELECT claims the \\Recent messages (an mbox has no ``new/``)."""
        return self.claim_recent()

    def claim_recent(self) -> list[int]:
        """RFC 3501 §2.3.2, as for Maildir (mailbox.py)."""
        floor = self.index.claim_recent(self.id, self.uidnext)
        return self.uids[bisect.bisect_left(self.uids, floor) :]

    def recent_uids(self) -> list[int]:
        floor = self.index.recent_floor(self.id)
        return self.uids[bisect.bisect_left(self.uids, floor) :]

    def expunged_since(self, modseq: int) -> list[int] | None:
        """UIDs expunged after ``modseq`` (RFC 7162 QRESYNC); None when the
        index's expunge log no longer reaches back that far."""
        return self.index.expunged_since(self.id, modseq)

    def keyword_names(self) -> list[str]:
        """The keywords set on some message of the mailbox, sorted."""
        found: set[str] = set()
        for flags in {msg.flags for msg in self.messages.values()}:
            found.update(f for f in flags if not f.startswith("\\"))
        return sorted(found)

    def _check_keywords(self, flags: Iterable[str]) -> None:
        # As many keywords as a Maildir folder can name (a-z), so both formats
        # accept the same; a client cannot grow the FLAGS list without bound.
        wanted = {f for f in flags if not f.startswith("\\")}
        if wanted and len(wanted | set(self.keyword_names())) > MAX_KEYWORDS:
            raise FlagLimitError()

    def store(
        self,
        uids: Iterable[int],
        flags: Sequence[str],
        mode: str,
        unchanged_since: int | None = None,
    ) -> list[int]:
        """Add (``+``), remove (``-``) or set (``=``) flags; the UIDs whose flags changed.

        Only the index changes (it is the truth for flags in mbox mode).
        ``unchanged_since``: RFC 7162 UNCHANGEDSINCE, as in the Maildir store.
        """
        if mode != "-":
            self._check_keywords(flags)
        changed = []
        with write(self.index, self.id) as w:
            # Inside the transaction nobody else moves messages or changes
            # flags: take what others did since our last look before writing
            # ours, or their flag changes would be lost.
            state = self._state()
            generation = _parse_stamp(state.stamp).generation
            if generation != self._generation:
                self._load_all(state, generation)
            elif w.modseq != self.highestmodseq:
                self._pull()
            for uid in uids:
                msg = self.messages.get(uid)
                if msg is None or (unchanged_since is not None and msg.modseq > unchanged_since):
                    continue
                new = flags_after(msg.flags, flags, mode)
                if new is None:
                    continue
                flag_text = " ".join(sorted(new))
                w.update(uid, msg.location, flag_text)
                msg.flags = flag_tuple(flag_text)
                msg.modseq = w.modseq
                changed.append(uid)
        self.reporter.flags_changed(self.name, changed, flags, mode)
        return changed

    def append(self, data: bytes, flags: Sequence[str], internaldate: float | None) -> int:
        """Store a new message (APPEND, COPY); its UID. Durable when this returns.

        Appended under the delivery locks in delivery's format (the From_
        sender is ``MAILER-DAEMON``), after indexing whatever was delivered
        before it, so UIDs follow the order in the file.
        """
        flag_set = sorted(set(flags))
        self._check_keywords(flag_set)
        body = data.replace(b"\r\n", b"\n") if b"\r" in data else data
        when = internaldate if internaldate is not None else time.time()
        escaped = escape_mboxrd(body)
        trailer = b"\n" if escaped.endswith(b"\n") or not escaped else b"\n\n"
        line = from_line("", when)
        record = [line, escaped, trailer]
        raw_length = len(escaped) + len(trailer) - 1  # as a reader finds it
        unescaped = body if len(trailer) == 1 else body + b"\n"
        with hold_locks(self.mbox, create=True) as held:
            fd = held.fd
            assert fd is not None
            state = self._state()
            stamp = _parse_stamp(state.stamp)
            if stamp.file != _file_stamp(os.fstat(fd)):
                # Under the locks nobody else writes: an equal stamp, even a
                # young one, means the index already knows every message.
                self._reconcile(fd)
                stamp = _parse_stamp(self._state().stamp)
            self.mbox._append(fd, record, held.created)
            st = os.fstat(fd)
            offset = st.st_size - sum(map(len, record)) + len(line)
            print_ = staged_fingerprint(record)
            with write(self.index, self.id) as w:
                key, n = print_, 1
                while w.find(key) is not None:
                    n += 1
                    key = f"{print_}#{n}"
                uid = w.add(
                    key, f"{offset}:{raw_length}", " ".join(flag_set), crlf_size([unescaped]), when
                )
                w.set_stamp(_format_stamp(_file_stamp(st), stamp.generation, _is_dirty(st)))
        self._pull()
        return uid

    def copy_to(self, uids: Iterable[int], dest: Appender) -> list[tuple[int, int]]:
        """Copy messages into ``dest`` keeping flags and dates; (source, new) UID pairs."""
        pairs = []
        for uid in uids:
            msg = self.messages.get(uid)
            if msg is None:
                continue
            try:
                data = self.read(uid)
            except (FileNotFoundError, KeyError):
                continue
            pairs.append((uid, dest.append(data, msg.flags, msg.internaldate)))
        return pairs

    def expunge(self, uids: Iterable[int]) -> list[int]:
        """Remove messages for good; the UIDs removed.

        Under the locks: re-parse, write the remaining messages byte for
        byte to a temporary file beside the mbox, fsync, rename it over the
        mbox, fsync the directory; then remove the UIDs and record the new
        locations in one index transaction. A crash between the rename and
        the commit loses nothing: the next refresh sees a new inode,
        re-parses, and matches the messages to their UIDs by fingerprint.
        """
        wanted = {uid for uid in uids if uid in self.messages}
        if not wanted:
            return []
        with hold_locks(self.mbox) as held:
            pairs = self._reconcile(held.fd, full=True)
            gone = [uid for _, uid in pairs if uid in wanted]
            if gone and held.fd is not None:
                self._rewrite(held.fd, pairs, set(gone))
        self._pull()
        removed = sorted(uid for uid in wanted if uid not in self.messages)
        self.reporter.expunged(self.name, removed)
        return removed

    def _rewrite(self, fd: int, pairs: list[tuple[MboxRecord, int]], doomed: set[int]) -> None:
        kept = [(rec, uid) for rec, uid in pairs if uid not in doomed]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        locations = write_copy(fd, tmp, [rec for rec, _ in kept])
        os.rename(tmp, self.path)
        fsync_dir(self.path.parent)
        moves = [
            (uid, new)
            for (rec, uid), new in zip(kept, locations, strict=True)
            if new != rec.location
        ]
        generation = _parse_stamp(self._state().stamp).generation + 1
        stamp = _format_stamp(_file_stamp(os.stat(self.path)), generation, True)
        self._commit_rewrite(sorted(doomed), moves, stamp)

    def _commit_rewrite(self, gone: list[int], moves: list[tuple[int, str]], stamp: str) -> None:
        with write(self.index, self.id) as w:
            w.remove(gone)
            for uid, location in moves:
                w.move(uid, location)
            w.set_stamp(stamp)

    def deleted_uids(self) -> list[int]:
        return [uid for uid in self.uids if "\\Deleted" in self.messages[uid].flags]
