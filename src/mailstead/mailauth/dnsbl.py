"""DNS block lists (RFC 5782) for clients of the ``smtp`` listener.

A client at ``192.0.2.99`` is looked up as ``99.2.0.192.<list>`` (IPv6:
32 reversed nibbles, §2.4); an A record in 127.0.0.0/8 means "listed"
(§2.1), and the TXT record at the same name says why (§2.1), which goes
into the refusal: ``554 5.7.1 Service unavailable; client [192.0.2.99]
blocked using zen.example; <the list's text>``, as Postfix words it.
Answers in 127.255.255.0/24 are the lists' own error codes (Spamhaus: a
query through a public resolver, or over quota), not listings, and
anything outside 127.0.0.0/8 is a resolver that lies: neither refuses.

The hook's first three stages run on the event loop, which must never wait
for DNS. The lookup starts in a small thread pool the first time a client
is seen (its first MAIL FROM) and every later stage looks whether the
answer is in: a listed client is refused at the first command after it
is — usually its first RCPT TO, as Postfix refuses by default — and at the
latest at the end of DATA, where the body stage (in a worker thread) waits
for it within the DNS budget. A lookup that fails or runs out of time
lets the mail through. Answers are kept for five minutes per address.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from mailstead.mailauth.hook import Client, Verdict
from mailstead.mailauth.lookups import AuthDNS, Budget
from mailstead.mailauth.refusals import Refusals
from mailstead.mailauth.spf import Query
from mailstead.proto.smtp.replies import Reply

__all__ = ["DNSBL", "Listing", "is_listing", "query_name"]

log = logging.getLogger("mailstead.abuse")

#: Seconds an answer about an address is kept (listed or not).
_KEEP = 300.0
#: Addresses whose answers are kept (the oldest go first).
_MAX_ENTRIES = 4096
#: Lookups running at once per worker process.
_THREADS = 4
#: Longest list text put into a reply.
_MAX_TEXT = 200

_LISTING = ipaddress.IPv4Network("127.0.0.0/8")
_LIST_ERRORS = ipaddress.IPv4Network("127.255.255.0/24")


@dataclass(frozen=True, slots=True)
class Listing:
    """A block list's "yes": which list, the code it answered, and its reason (maybe "")."""

    zone: str
    code: str
    text: str


def query_name(ip: str, zone: str) -> str | None:
    """The name to look up for ``ip`` in ``zone`` (RFC 5782 §2.1, §2.4); None if not an address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        labels = str(address).split(".")
    else:
        labels = list(address.exploded.replace(":", ""))
    return ".".join(reversed(labels)) + "." + zone


def is_listing(record: str) -> bool:
    """An A record that says "listed": in 127.0.0.0/8, not one of the lists' error codes."""
    try:
        address = ipaddress.IPv4Address(record)
    except ValueError:
        return False
    return address in _LISTING and address not in _LIST_ERRORS


class DNSBL:
    """Owns the lookups about clients in ``zones``, their threads and their answers.

    ``budget`` is the seconds all lookups about one client may take together;
    clients for which ``exempt`` is true are never looked up.
    """

    check_name = "dnsbl"

    def __init__(
        self,
        zones: Sequence[str],
        dns: AuthDNS,
        refusals: Refusals,
        *,
        budget: float,
        exempt: Callable[[str], bool] = lambda ip: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.zones = tuple(zones)
        self.exempt = exempt
        self.dns = dns
        self.refusals = refusals
        self.budget = budget
        self._clock = clock
        self._lock = threading.Lock()
        # Address -> (expiry, lookup); the expiry is set when the answer is in.
        self._answers: collections.OrderedDict[str, tuple[float, Future[Listing | None]]] = (
            collections.OrderedDict()
        )
        self._pool: ThreadPoolExecutor | None = None

    def lookup(self, ip: str) -> Future[Listing | None]:
        """The lookup about ``ip``: the one running or answered, or a new one."""
        now = self._clock()
        with self._lock:
            entry = self._answers.get(ip)
            if entry is not None and entry[0] > now:
                return entry[1]
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="dnsbl")
            future = self._pool.submit(self._ask, ip)
            self._answers[ip] = (float("inf"), future)
            self._answers.move_to_end(ip)
            while len(self._answers) > _MAX_ENTRIES:
                self._answers.popitem(last=False)
        future.add_done_callback(lambda done: self._answered(ip, done))
        return future

    def _answered(self, ip: str, future: Future[Listing | None]) -> None:
        # A lookup that failed is asked again at once; an answer is kept.
        failed = future.exception() is not None
        with self._lock:
            entry = self._answers.get(ip)
            if entry is not None and entry[1] is future:
                self._answers[ip] = (self._clock() + (0.0 if failed else _KEEP), future)

    def _ask(self, ip: str) -> Listing | None:
        """Ask every list in turn (in a pool thread); the first listing."""
        budget = Budget.of(self.budget)
        for zone in self.zones:
            name = query_name(ip, zone)
            if name is None:
                return None
            answer = self.dns.lookup(Query(name, "A"), budget)
            codes = [record for record in answer.records if is_listing(record)]
            if not codes:
                continue  # not listed, or no answer in time: mail goes through
            reason = self.dns.lookup(Query(name, "TXT"), budget)
            text = _clean(reason.records[0]) if reason.records else ""
            return Listing(zone, codes[0], text)
        return None

    def _verdict(self, stage: str, client: Client, listing: Listing | None) -> Verdict | None:
        if listing is None:
            return None
        text = f"Service unavailable; client [{client.ip}] blocked using {listing.zone}"
        if listing.text:
            text += f"; {listing.text}"
        reason = f"listed by {listing.zone} ({listing.code})"
        return self.refusals.refuse(
            self.check_name, stage, client, Reply(554, "5.7.1", text), reason
        )

    def _known(self, stage: str, client: Client) -> Verdict | None:
        """The refusal if the answer about the client is in and says listed (never waits)."""
        if self.exempt(client.ip):
            return None
        future = self.lookup(client.ip)
        if not future.done() or future.exception() is not None:
            return None
        return self._verdict(stage, client, future.result())

    def connection(self, client: Client) -> Verdict | None:
        return self._known("connection", client)

    def sender(self, client: Client, sender: str) -> Verdict | None:
        return self._known("sender", client)

    def recipient(self, client: Client, sender: str, recipient: str) -> Verdict | None:
        return self._known("recipient", client)

    def body(
        self, client: Client, sender: str, recipients: Sequence[str], content: bytes
    ) -> Verdict | None:
        """In a worker thread: wait for the answer (within the budget) before taking the mail."""
        if self.exempt(client.ip):
            return None
        try:
            listing = self.lookup(client.ip).result(timeout=self.budget)
        except FutureTimeout:
            return None
        except Exception as exc:  # a broken lookup lets mail through, as a timeout does
            log.warning("DNSBL lookup about %s failed: %s", client.ip, exc)
            return None
        return self._verdict("body", client, listing)


def _clean(text: str) -> str:
    """A list's text, safe in a reply line: printable ASCII, short."""
    return "".join(ch for ch in text if " " <= ch < "\x7f")[:_MAX_TEXT].strip()
