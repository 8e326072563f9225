"""``[pop3]``: the POP3 server's policy choices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mailstead.config.reader import Reader

__all__ = ["Pop3Config", "load_pop3"]


@dataclass(frozen=True, slots=True)
class Pop3Config:
    """Behaviour of the POP3 server that is a policy choice, not protocol."""

    #: Delete messages once a client has retrieved them (RETR), even if it
    #: never sends DELE; ``False`` leaves mail on the server as IMAP does.
    delete_retrieved: bool = False


def load_pop3(r: Reader, data: Mapping[str, object]) -> Pop3Config:
    """The ``[pop3]`` table of ``data``."""
    t = r.table(data, "pop3", "", ("delete_retrieved",))
    return Pop3Config(
        delete_retrieved=r.typed(
            t.get("delete_retrieved", False), "pop3.delete_retrieved", bool, "true or false"
        )
    )
