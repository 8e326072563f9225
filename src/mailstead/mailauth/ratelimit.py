"""Message and recipient rates: per client address on ``smtp``, per user and domain on submission.

Each limit is a token bucket (Postfix's anvil rates and Exim's ratelimit
are of this kind): a rate of ``60/1m`` is a bucket of 60 that refills one
token a second, so a client may send a burst of 60 and then one a second.
MAIL FROM takes a token from the message buckets, each accepted RCPT TO
one from the recipient buckets; an empty bucket answers ``450 4.7.1``, a
temporary refusal a real server retries later (RFC 5321 §4.2.5), and
nothing is taken from the other buckets then.

On the ``smtp`` listener an address has its own buckets and shares its
network's (IPv4 /24, IPv6 /64, as the connection gate counts them), which
hold ``network_share`` times as much, so spreading over many addresses of
one network does not multiply the rate. On ``submission`` and
``submissions`` the buckets are the authenticated user's and the sender
domain's.

The buckets are rows of the shared abuse database (abuse_db.py), so every
worker process, and every node of a cluster, draws from the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailstead.config.abuse import AbuseConfig, Rate
from mailstead.mailauth.abuse_db import AbuseDB, Unavailable
from mailstead.mailauth.hook import Client, Verdict
from mailstead.mailauth.refusals import Refusals
from mailstead.peernet import network_of
from mailstead.proto.smtp.replies import Reply
from mailstead.sqlconn import SQLConnection

__all__ = ["Bucket", "ClientRates", "SenderRates", "TokenBuckets"]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket to take from: its row's key, its rate, and what to tell the client when empty."""

    key: str
    rate: Rate
    #: The reply's text ("Too much mail from your address").
    text: str
    #: For the log and the event ("ip_messages 60/1m", "user_messages 200/1h for a@b.example").
    reason: str


class TokenBuckets:
    """Takes tokens from buckets in the abuse database, all or none."""

    def __init__(self, db: AbuseDB) -> None:
        self.db = db
        db.on_sweep(lambda conn, now: _sweep(db, conn, now))

    def take(self, buckets: Sequence[Bucket]) -> Bucket | None:
        """One token from each of ``buckets``; the first that had none (and nothing taken).

        Raises :class:`Unavailable` when the database stays locked or is broken.
        """
        db = self.db
        keys = sorted({b.key: b for b in buckets}.items())
        with db.write() as conn:
            now = db.clock()
            if db.lock_rows:
                # Where writers run side by side, a bucket nobody has a row for
                # gets one (full) first, so the SELECT below can lock it; rows
                # are taken in key order, the same on every node.
                conn.executemany(
                    "INSERT INTO rate (key, tokens, updated, full_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (key) DO NOTHING",
                    [(key, b.rate.count, now, now) for key, b in keys],
                )
            marks = ",".join("?" * len(keys))
            stored = {
                key: (tokens, updated)
                for key, tokens, updated in conn.execute(
                    f"SELECT key, tokens, updated FROM rate WHERE key IN ({marks})"
                    f" ORDER BY key{db.lock_rows}",
                    [key for key, _ in keys],
                )
            }
            left: list[float] = []
            for bucket in buckets:
                size, per_second = bucket.rate.count, bucket.rate.count / bucket.rate.seconds
                tokens, updated = stored.get(bucket.key, (size, now))
                # A clock set back refills nothing; it never takes tokens away.
                tokens = min(size, tokens + max(0.0, now - updated) * per_second)
                if tokens < 1:
                    return bucket
                left.append(tokens - 1)
            conn.executemany(
                "INSERT INTO rate (key, tokens, updated, full_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens,"
                " updated = excluded.updated, full_at = excluded.full_at",
                [
                    (
                        b.key,
                        tokens,
                        now,
                        now + (b.rate.count - tokens) * b.rate.seconds / b.rate.count,
                    )
                    for b, tokens in zip(buckets, left, strict=True)
                ],
            )
        return None


def _sweep(db: AbuseDB, conn: SQLConnection, now: float) -> None:
    """Rows of full buckets are the same as no row: drop them."""
    conn.execute(
        f"DELETE FROM rate WHERE key IN (SELECT key FROM rate WHERE full_at < ?{db.skip_locked})",
        (now,),
    )


class _Rates:
    """What both rate checks share: taking tokens, refusing, and no say at the other stages."""

    check_name = "ratelimit"

    def __init__(self, buckets: TokenBuckets, refusals: Refusals) -> None:
        self.buckets = buckets
        self.refusals = refusals

    def _take(
        self,
        stage: str,
        client: Client,
        buckets: Sequence[Bucket],
        sender: str,
        recipient: str | None = None,
    ) -> Verdict | None:
        if not buckets:
            return None
        try:
            empty = self.buckets.take(buckets)
        except Unavailable as exc:
            self.buckets.db.skipped("rate limits", exc)
            return None
        if empty is None:
            return None
        reply = Reply(450, "4.7.1", f"{empty.text}, try again later")
        return self.refusals.refuse(
            self.check_name,
            stage,
            client,
            reply,
            empty.reason,
            sender=sender,
            recipient=recipient,
        )

    def connection(self, client: Client) -> Verdict | None:
        return None

    def body(
        self, client: Client, sender: str, recipients: Sequence[str], content: bytes
    ) -> Verdict | None:
        return None


class ClientRates(_Rates):
    """Per client address and network, on the ``smtp`` listener: mail from other servers."""

    def __init__(self, config: AbuseConfig, buckets: TokenBuckets, refusals: Refusals) -> None:
        super().__init__(buckets, refusals)
        self.config = config

    def _buckets(self, ip: str, what: str, rate: Rate | None, noun: str) -> list[Bucket]:
        if rate is None:
            return []
        network = network_of(ip)
        wider = Rate(rate.count * self.config.network_share, rate.seconds)
        return [
            Bucket(f"ip:{ip}:{what}", rate, noun + " from your address", f"ip_{what} {rate}"),
            Bucket(
                f"net:{network}:{what}",
                wider,
                noun + " from your network",
                f"ip_{what} {wider} for network {network}",
            ),
        ]

    def sender(self, client: Client, sender: str) -> Verdict | None:
        if self.config.is_exempt(client.ip):
            return None
        rate = self.config.ip_messages
        buckets = self._buckets(client.ip, "messages", rate, "Too much mail")
        return self._take("sender", client, buckets, sender)

    def recipient(self, client: Client, sender: str, recipient: str) -> Verdict | None:
        if self.config.is_exempt(client.ip):
            return None
        rate = self.config.ip_recipients
        buckets = self._buckets(client.ip, "recipients", rate, "Too many recipients")
        return self._take("recipient", client, buckets, sender, recipient)


class SenderRates(_Rates):
    """Per authenticated user and per sender domain, on the submission listeners."""

    def __init__(self, config: AbuseConfig, buckets: TokenBuckets, refusals: Refusals) -> None:
        super().__init__(buckets, refusals)
        self.config = config

    def _buckets(self, client: Client, sender: str, what: str) -> list[Bucket]:
        config = self.config
        user_rate: Rate | None = getattr(config, f"user_{what}")
        domain_rate: Rate | None = getattr(config, f"domain_{what}")
        noun = "Too much mail" if what == "messages" else "Too many recipients"
        buckets: list[Bucket] = []
        user = (client.user or sender).lower()
        if user_rate is not None and user:
            buckets.append(
                Bucket(
                    f"user:{user}:{what}",
                    user_rate,
                    f"{noun} from {user}: at most {user_rate.count} {what} per {_per(user_rate)}",
                    f"user_{what} {user_rate} for {user}",
                )
            )
        domain = sender.rpartition("@")[2].lower()
        if domain_rate is not None and domain:
            buckets.append(
                Bucket(
                    f"domain:{domain}:{what}",
                    domain_rate,
                    f"{noun} from domain {domain}: "
                    f"at most {domain_rate.count} {what} per {_per(domain_rate)}",
                    f"domain_{what} {domain_rate} for {domain}",
                )
            )
        return buckets

    def sender(self, client: Client, sender: str) -> Verdict | None:
        return self._take("sender", client, self._buckets(client, sender, "messages"), sender)

    def recipient(self, client: Client, sender: str, recipient: str) -> Verdict | None:
        buckets = self._buckets(client, sender, "recipients")
        return self._take("recipient", client, buckets, sender, recipient)


def _per(rate: Rate) -> str:
    """``1h`` → "hour", ``10m`` → "10m"."""
    names = {60: "minute", 3600: "hour", 86400: "day"}
    return names.get(rate.seconds) or str(rate).partition("/")[2]
