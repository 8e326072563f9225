"""The maildrop as a session sees it: the listing taken at login, and marks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

# Lines of a LIST or UIDL response produced per piece of output.
_LINES_PER_PIECE = 2048


class Snapshot:
    """Message numbers fixed at login (RFC 1939 §4) with per-message deleted and
    retrieved marks, and the count and size of the messages not deleted."""

    def __init__(self, listing: Sequence[tuple[str, int]] = ()) -> None:
        self.listing = listing
        self.deleted = bytearray(len(listing))
        self.retrieved = bytearray(len(listing))
        self.live_count = len(listing)
        self.live_size = sum(size for _, size in listing)

    def find(self, number: int) -> int | str:
        """The 0-based index of live message ``number``, or the -ERR text."""
        if not 1 <= number <= len(self.listing):
            return "No such message"
        if self.deleted[number - 1]:
            return f"Message {number} already deleted"
        return number - 1

    def delete(self, index: int) -> None:
        self.deleted[index] = 1
        self.live_count -= 1
        self.live_size -= self.listing[index][1]

    def reset(self) -> None:
        """RFC 1939 §5 RSET: unmark every message marked as deleted."""
        self.deleted = bytearray(len(self.listing))
        self.live_count = len(self.listing)
        self.live_size = sum(size for _, size in self.listing)

    def scan(self, column: int) -> Iterator[bytes]:
        """The lines of LIST (``column`` 1, sizes) or UIDL (0) and the ``.``,
        in pieces; a DELE pipelined behind does not change them."""
        # The marks are copied now, not when the first piece is asked for.
        return self._lines(self.listing, bytes(self.deleted), column)

    @staticmethod
    def _lines(listing: Sequence[tuple[str, int]], deleted: bytes, column: int) -> Iterator[bytes]:
        for start in range(0, len(listing), _LINES_PER_PIECE):
            stop = min(start + _LINES_PER_PIECE, len(listing))
            yield "".join(
                f"{i + 1} {listing[i][column]}\r\n" for i in range(start, stop) if not deleted[i]
            ).encode()
        yield b".\r\n"

    def update(self, *, delete_retrieved: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """What the UPDATE state does (RFC 1939 §6): (to delete, to mark seen)."""
        doomed = self.deleted
        if delete_retrieved:
            doomed = bytearray(d | r for d, r in zip(self.deleted, self.retrieved, strict=True))
        deleted = tuple(i for i, d in enumerate(doomed) if d)
        seen = tuple(i for i, r in enumerate(self.retrieved) if r and not doomed[i])
        return deleted, seen
