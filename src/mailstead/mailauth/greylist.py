"""Greylisting on the ``smtp`` listener: a stranger's first attempt is put off, its retry accepted.

After postgrey: the triplet of the client's network (IPv4 /24, IPv6 /64:
a sending farm retries from another address of its pool), the sender and
the recipient is answered ``451 4.7.1`` at RCPT TO the first time. A real
server retries (RFC 5321 §4.5.4.1); a retry after ``greylist_delay`` and
within ``greylist_window`` of that first attempt passes, and the triplet
then passes at once for ``greylist_remember`` since it was last seen. Spam
software that never retries never gets through.

A network whose triplets have passed ``greylist_whitelist_after`` times is
whitelisted: its mail is no longer delayed, for as long as it keeps coming
(``greylist_remember`` since last seen). Authenticated sessions are never
greylisted.

The state is in the shared abuse database (abuse_db.py), durable across
restarts and shared by the workers and the nodes of a cluster; times are
wall-clock Unix times (the nodes' clocks are expected to agree, as NTP keeps
them, to well under the delay).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mailstead.config.abuse import AbuseConfig
from mailstead.mailauth.abuse_db import AbuseDB, Unavailable
from mailstead.mailauth.hook import Client, Verdict
from mailstead.mailauth.refusals import Refusals
from mailstead.peernet import network_of
from mailstead.proto.smtp.replies import Reply
from mailstead.sqlconn import SQLConnection

__all__ = ["Greylist"]


# Seconds between refreshes of a passed triplet's or a network's "last seen":
# a busy correspondent then costs one write an hour, not one per message.
_REFRESH = 3600.0


class Greylist:
    """Decides, per RCPT TO, whether a triplet has waited long enough (see the module docstring)."""

    def __init__(self, config: AbuseConfig, db: AbuseDB, refusals: Refusals) -> None:
        self.config = config
        self.db = db
        self.refusals = refusals
        db.on_sweep(self._sweep)

    def connection(self, client: Client) -> Verdict | None:
        return None

    def sender(self, client: Client, sender: str) -> Verdict | None:
        return None

    def body(
        self, client: Client, sender: str, recipients: Sequence[str], content: bytes
    ) -> Verdict | None:
        return None

    def recipient(self, client: Client, sender: str, recipient: str) -> Verdict | None:
        if client.user is not None or self.config.is_exempt(client.ip):
            return None
        network = network_of(client.ip)
        try:
            wait = self._wait(network, sender.lower(), recipient.lower())
        except Unavailable as exc:
            self.db.skipped("greylisting", exc)
            return None
        if wait is None:
            return None
        seconds = max(1, math.ceil(wait))
        # RFC 5321 §4.2.5: a 4yz reply to RCPT; the client keeps the message and retries.
        reply = Reply(451, "4.7.1", f"Greylisted, try again in {seconds} seconds")
        reason = f"greylisted for {seconds}s ({network}, <{sender}>, <{recipient}>)"
        return self.refusals.refuse(
            "greylist", "recipient", client, reply, reason, sender=sender, recipient=recipient
        )

    def _wait(self, network: str, sender: str, recipient: str) -> float | None:
        """Seconds the triplet must still wait, or None when it may pass."""
        config, db = self.config, self.db
        with db.write() as conn:
            now = db.clock()
            if self._whitelisted(conn, network, now):
                return None
            triplet = db.triplet_separator.join((network, sender, recipient))
            row = conn.execute(
                f"SELECT first, passed, last FROM greylist WHERE triplet = ?{db.lock_rows}",
                (triplet,),
            ).fetchone()
            if row is not None:
                first, passed, last = row
                if passed is not None and now - last <= config.greylist_remember:
                    if now - last >= _REFRESH:
                        conn.execute(
                            "UPDATE greylist SET last = ? WHERE triplet = ?", (now, triplet)
                        )
                    return None
                waited = now - float(first)
                if passed is None and waited <= config.greylist_window:
                    if waited < config.greylist_delay:
                        conn.execute(
                            "UPDATE greylist SET last = ? WHERE triplet = ?", (now, triplet)
                        )
                        return config.greylist_delay - waited
                    # The retry came in time: the triplet passes from now on.
                    conn.execute(
                        "UPDATE greylist SET passed = ?, last = ? WHERE triplet = ?",
                        (now, now, triplet),
                    )
                    conn.execute(
                        "INSERT INTO greylist_network (network, passed, last) VALUES (?, 1, ?) "
                        "ON CONFLICT (network) DO UPDATE"
                        " SET passed = greylist_network.passed + 1, last = excluded.last",
                        (network, now),
                    )
                    return None
            # New, or its window (or its memory) has run out: the wait starts now.
            conn.execute(
                "INSERT INTO greylist (triplet, first, passed, last) VALUES (?, ?, NULL, ?)"
                " ON CONFLICT (triplet) DO UPDATE"
                " SET first = excluded.first, passed = NULL, last = excluded.last",
                (triplet, now, now),
            )
            return float(config.greylist_delay)

    def _whitelisted(self, conn: SQLConnection, network: str, now: float) -> bool:
        after = self.config.greylist_whitelist_after
        if after <= 0:
            return False
        row = conn.execute(
            "SELECT passed, last FROM greylist_network WHERE network = ?", (network,)
        ).fetchone()
        if row is None or row[0] < after or now - row[1] > self.config.greylist_remember:
            return False
        if now - row[1] >= _REFRESH:
            conn.execute("UPDATE greylist_network SET last = ? WHERE network = ?", (now, network))
        return True

    def _sweep(self, conn: SQLConnection, now: float) -> None:
        """Forget triplets whose window or memory ran out, and networks not seen for long."""
        config, skip_locked = self.config, self.db.skip_locked
        conn.execute(
            "DELETE FROM greylist WHERE triplet IN (SELECT triplet FROM greylist"
            f" WHERE (passed IS NULL AND first < ?) OR last < ?{skip_locked})",
            (now - config.greylist_window, now - config.greylist_remember),
        )
        conn.execute(
            "DELETE FROM greylist_network WHERE network IN (SELECT network FROM greylist_network"
            f" WHERE last < ?{skip_locked})",
            (now - config.greylist_remember,),
        )
