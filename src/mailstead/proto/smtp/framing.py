"""How the SMTP server cuts its input: command lines, DATA, BDAT chunks (RFC 5321, RFC 3030).

:class:`Reader` owns the bytes received and not yet consumed; the server
tells it which kind of unit comes next and decides what each one means.
"""

from __future__ import annotations

from mailstead.proto.smtp import replies as R
from mailstead.proto.smtp.dotstuff import DATA_END, received_line_ends, unstuff
from mailstead.proto.smtp.replies import Reply


class LineTooLong:
    """A line broke the limit; it is dropped as it arrives, and said once."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LINE_TOO_LONG"


LINE_TOO_LONG = LineTooLong()


class Reader:
    """Owns the input buffer of one SMTP server session and the state of the
    unit being read from it: an overlong line being dropped, how far DATA has
    been searched for its end, the octets a BDAT chunk still owes."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self._discarding_line = False
        self._data_scanned = 0
        self._data_oversize = False
        self._chunk_left = 0

    def __len__(self) -> int:
        return len(self.buffer)

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def clear(self) -> None:
        self.buffer.clear()

    def line(self, limit: int) -> bytes | LineTooLong | None:
        """The next line without its ending, or None until one is complete.

        A line longer than ``limit`` is reported once as :data:`LINE_TOO_LONG`
        and the rest of it is dropped as it arrives, so memory stays bounded.
        """
        buf = self.buffer
        while True:
            # While dropping an overlong line, its end may be anywhere.
            end = buf.find(b"\n") if self._discarding_line else buf.find(b"\n", 0, limit + 1)
            if end < 0:
                if len(buf) > limit:
                    first = not self._discarding_line
                    self._discarding_line = True
                    # The overlong line may end later in this same read: keep
                    # what follows its end, which is the next command.
                    end = buf.find(b"\n", limit + 1)
                    if end < 0:
                        del buf[:]
                    else:
                        del buf[: end + 1]
                        self._discarding_line = False
                    if first:
                        return LINE_TOO_LONG
                    if end < 0:
                        return None
                    continue
                return None
            if self._discarding_line:
                del buf[: end + 1]
                self._discarding_line = False
                continue
            line = bytes(buf[:end])
            del buf[: end + 1]
            # Commands may end in a bare LF, as Postfix accepts; only message
            # data insists on CRLF (see data()).
            return line[:-1] if line.endswith(b"\r") else line

    def start_data(self) -> None:
        """DATA was accepted (354): what follows is message content."""
        # The CRLF that ended the DATA line, so that a lone "." on the first
        # line also ends the data.
        self.buffer[0:0] = b"\r\n"
        self._data_scanned = 0

    def data(self, max_size: int) -> bytes | Reply | None:
        """The content up to <CRLF>.<CRLF> (RFC 5321 §4.1.1.4), unstuffed, or the
        reply that refuses it; None until the end has arrived.

        Nothing but CRLF.CRLF ends the data.
        """
        buf = self.buffer
        end = buf.find(DATA_END, self._data_scanned)
        if end < 0:
            # Dot-stuffing makes the stream longer than the message, so the
            # exact size is checked once unstuffed; this only bounds memory.
            if len(buf) > max_size + max_size // 8 + 1024:
                # Over the limit: keep reading, and keep only a tail long enough
                # to hold a terminator that straddles two reads.
                self._data_oversize = True
                del buf[: len(buf) - 4]
            self._data_scanned = max(0, len(buf) - 4)
            return None
        raw = bytes(buf[: end + 2])
        del buf[: end + len(DATA_END)]
        self._data_scanned = 0
        oversize, self._data_oversize = self._data_oversize, False
        if oversize:
            return R.MESSAGE_TOO_BIG
        normalized = received_line_ends(raw)
        if normalized is None:
            return R.BARE_CR
        # RFC 5321 §4.5.2: drop the first "." of every line that starts with one
        # (after the CRLF put in front by start_data).
        return unstuff(normalized[2:])

    def start_chunk(self, size: int) -> None:
        """BDAT announced ``size`` octets (RFC 3030 §2): no dot-stuffing, no line ends."""
        self._chunk_left = size

    @property
    def chunk_left(self) -> int:
        """Octets of the current BDAT chunk not received yet."""
        return self._chunk_left

    def chunk(self) -> bytearray:
        """As much of the current BDAT chunk as has arrived (maybe nothing)."""
        take = min(self._chunk_left, len(self.buffer))
        piece = self.buffer[:take]
        del self.buffer[:take]
        self._chunk_left -= take
        return piece


def chunked_content(chunks: bytes | bytearray) -> bytes | Reply:
    """The content BDAT chunks added up to (RFC 3030 §2: never dot-stuffed),
    with CRLF line ends, or the reply that refuses it."""
    normalized = received_line_ends(bytes(chunks))
    return R.BARE_CR if normalized is None else normalized
