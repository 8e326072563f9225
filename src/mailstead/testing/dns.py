"""DNS for tests: a fake :class:`~mailstead.dns.Resolver` and a tiny real server.

Both take the same zone data, a mapping from owner name to record type to
values::

    ZONES = {
        "other.test": {"MX": [(10, "mx1.other.test"), (20, "mx2.other.test")]},
        "mx1.other.test": {"A": ["127.0.0.2"], "AAAA": ["::1"]},
        "alias.other.test": {"CNAME": ["mx1.other.test"]},
        "nomail.test": {"MX": [(0, ".")]},                 # null MX, RFC 7505
        "_dmarc.other.test": {"TXT": ["v=DMARC1; p=none"]},
    }

MX values are ``(preference, exchange)``; A, AAAA, CNAME, NS, PTR and TXT
values are plain strings (TXT: the text, split into 255-octet strings as
needed); any other type takes its zone-file RDATA text. Names are absolute,
with or without the final dot, and compared case-insensitively. A name that
is not in the zones (nor an ancestor of one, RFC 8020) is NXDOMAIN; a name
that is, but lacks the type asked for, is NODATA.

* :class:`FakeResolver` answers in memory, for unit tests of routing.
* :class:`DNSServer` is an authoritative server on ``127.0.0.1``, UDP and TCP
  on one port chosen by the kernel, for tests of the real
  :class:`~mailstead.dns.DNSResolver`. It runs in a thread, so it
  serves synchronous tests and any event loop alike::

      with DNSServer(ZONES, servfail={"broken.test"}) as (host, port):
          resolver = DNSResolver([(host, port)], timeout=1.0)
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import struct
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rrset

from mailstead.addresses import AddressError, normalize_domain
from mailstead.dns import (
    MXRecord,
    NoAnswer,
    NXDomain,
    TemporaryDNSError,
    combine_address_lookups,
)

__all__ = ["DNSServer", "FakeResolver", "NameOrQuestion", "RecordValue", "Zones"]

#: One record's data: ``(preference, exchange)`` for MX, text otherwise.
RecordValue = str | tuple[int, str]
#: Owner name -> record type (``"MX"``, ``"A"`` …) -> values.
Zones = Mapping[str, Mapping[str, Sequence[RecordValue]]]
#: A knob applies to a name (every type) or to one ``(name, type)`` question.
NameOrQuestion = str | tuple[str, str]

_TTL = 300
# CNAME chains longer than this are answered as far as they go.
_MAX_CNAME_CHAIN = 8
# A response to a UDP query without EDNS fits in 512 octets (RFC 1035 §4.2.1).
_UDP_CLASSIC_SIZE = 512


def _key(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _question_set(items: Iterable[NameOrQuestion]) -> set[tuple[str, str]]:
    """Knob entries as ``(name, TYPE)`` pairs, ``"*"`` standing for every type."""
    out: set[tuple[str, str]] = set()
    for item in items:
        if isinstance(item, str):
            out.add((_key(item), "*"))
        else:
            out.add((_key(item[0]), item[1].upper()))
    return out


def _matches(knob: set[tuple[str, str]], name: str, rdtype: str) -> bool:
    return (name, "*") in knob or (name, rdtype) in knob


def _rdata_text(rdtype: str, value: RecordValue) -> str:
    """Zone-file RDATA text for one value of the zone mapping."""
    if rdtype == "MX":
        if not isinstance(value, tuple):
            raise ValueError(f"MX value must be (preference, exchange), got {value!r}")
        preference, exchange = value
        target = exchange if exchange.endswith(".") else exchange + "."
        return f"{preference} {target}"
    if not isinstance(value, str):
        raise ValueError(f"{rdtype} value must be a string, got {value!r}")
    if rdtype in ("CNAME", "NS", "PTR"):
        return value if value.endswith(".") else value + "."
    if rdtype == "TXT":
        data = value.encode("utf-8")
        chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
        return " ".join(_quote(chunk) for chunk in chunks)
    return value


def _quote(chunk: bytes) -> str:
    out = []
    for byte in chunk:
        if byte in (0x22, 0x5C):  # " and \
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


class _ZoneData:
    """The zones compiled to rdata, with the lookups both fakes need."""

    def __init__(self, zones: Zones) -> None:
        self.records: dict[tuple[str, str], list[dns.rdata.Rdata]] = {}
        self.names: set[str] = set()
        for owner, types in zones.items():
            name = _key(owner)
            labels = name.split(".")
            # Every ancestor exists too (empty non-terminals, RFC 8020).
            self.names.update(".".join(labels[i:]) for i in range(len(labels)))
            for rdtype, values in types.items():
                kind = rdtype.upper()
                self.records[(name, kind)] = [
                    dns.rdata.from_text(
                        dns.rdataclass.IN,
                        dns.rdatatype.from_text(kind),
                        _rdata_text(kind, value),
                        origin=dns.name.root,
                        relativize=False,
                    )
                    for value in values
                ]

    def exists(self, name: str) -> bool:
        return name in self.names

    def lookup(self, name: str, rdtype: str) -> tuple[list[tuple[str, str]], str, bool]:
        """Follow CNAMEs from ``name``: ``(aliases, final name, final name exists)``.

        ``aliases`` lists ``(owner, target)`` of each CNAME followed.
        """
        aliases: list[tuple[str, str]] = []
        current = name
        while rdtype != "CNAME" and len(aliases) < _MAX_CNAME_CHAIN:
            cname = self.records.get((current, "CNAME"))
            if not cname or (current, rdtype) in self.records:
                break
            target = _key(cname[0].to_text())
            aliases.append((current, target))
            current = target
        return aliases, current, self.exists(current)


# --------------------------------------------------------------------------- FakeResolver


class FakeResolver:
    """An in-memory :class:`~mailstead.dns.Resolver` over zone data.

    ``fail`` names (or ``(name, type)`` questions) raise
    :class:`~mailstead.dns.TemporaryDNSError`, as SERVFAIL or a
    timeout would. Every question asked is appended to :attr:`queries` as
    ``(name, TYPE)``, so tests can check what was (not) looked up.
    """

    def __init__(self, zones: Zones, *, fail: Collection[NameOrQuestion] = ()) -> None:
        self._data = _ZoneData(zones)
        self._fail = _question_set(fail)
        #: ``(name, TYPE)`` of every lookup, in order.
        self.queries: list[tuple[str, str]] = []

    async def _rdatas(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        await asyncio.sleep(0)  # a real lookup yields to the loop; so does this one
        qname = _fake_query_name(name)
        self.queries.append((qname, rdtype))
        aliases, final, exists = self._data.lookup(qname, rdtype)
        for owner in [qname, *(target for _, target in aliases)]:
            if _matches(self._fail, owner, rdtype):
                raise TemporaryDNSError(name, f"{name}: {rdtype} lookup failed")
        if not exists:
            raise NXDomain(name, f"{name}: no such domain")
        found = self._data.records.get((final, rdtype), [])
        if not found:
            raise NoAnswer(name, f"{name}: no {rdtype} record")
        return found

    async def mx(self, domain: str) -> list[MXRecord]:
        return [
            MXRecord(
                rdata.preference,
                "." if rdata.exchange == dns.name.root else _key(rdata.exchange.to_text()),
            )
            for rdata in await self._rdatas(domain, "MX")
            if isinstance(rdata, dns.rdtypes.ANY.MX.MX)
        ]

    async def _family(self, host: str, rdtype: str) -> list[str]:
        return [
            rdata.address
            for rdata in await self._rdatas(host, rdtype)
            if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA)
        ]

    async def addresses(self, host: str) -> list[str]:
        results = await asyncio.gather(
            self._family(host, "A"), self._family(host, "AAAA"), return_exceptions=True
        )
        return combine_address_lookups(host, results)

    async def txt(self, name: str) -> list[bytes]:
        return [
            b"".join(rdata.strings)
            for rdata in await self._rdatas(name, "TXT")
            if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
        ]


def _fake_query_name(name: str) -> str:
    """The key a real resolver would ask for: IDN as A-labels, like DNSResolver."""
    try:
        text = normalize_domain(name)
    except AddressError:
        text = _key(name)
        if not text or not text.isascii():
            raise NXDomain(name, f"invalid domain name {name!r}") from None
    if text.startswith("["):
        raise NXDomain(name, f"an address literal is not a DNS name: {name!r}")
    return text


# --------------------------------------------------------------------------- DNSServer


class DNSServer:
    """An authoritative DNS server for tests, on UDP and TCP of one loopback port.

    Owns its sockets and a thread that answers from the zone data. Knobs,
    each a collection of names or ``(name, type)`` questions:

    * ``servfail`` — answer SERVFAIL (RFC 1035 §4.1.1 RCODE 2);
    * ``refuse`` — answer REFUSED (RCODE 5);
    * ``drop`` — never answer, so the client times out.

    Responses too large for the client's UDP payload (512 octets, or its
    EDNS size) are sent truncated (TC), and the client retries over TCP.
    :attr:`queries` records ``(transport, name, TYPE)`` for each question.
    """

    def __init__(
        self,
        zones: Zones,
        *,
        servfail: Collection[NameOrQuestion] = (),
        refuse: Collection[NameOrQuestion] = (),
        drop: Collection[NameOrQuestion] = (),
        host: str = "127.0.0.1",
    ) -> None:
        self._data = _ZoneData(zones)
        self._servfail = _question_set(servfail)
        self._refuse = _question_set(refuse)
        self._drop = _question_set(drop)
        self._host = host
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = socket.socketpair()
        self._lock = threading.Lock()
        self._queries: list[tuple[str, str, str]] = []
        #: Exceptions raised while answering (a test may assert there were none).
        self.errors: list[Exception] = []

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on (after :meth:`start`)."""
        if self._udp is None:
            raise RuntimeError("DNSServer is not running")
        host, port = self._udp.getsockname()[:2]
        return str(host), int(port)

    @property
    def queries(self) -> list[tuple[str, str, str]]:
        """``(transport, name, TYPE)`` of every question received so far."""
        with self._lock:
            return list(self._queries)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Bind UDP and TCP to one free port and start answering; returns the address."""
        if self._thread is not None or self._stop_r.fileno() == -1:
            raise RuntimeError("a DNSServer can be started once")
        self._udp, self._tcp = self._bind()
        self._thread = threading.Thread(target=self._serve, name="DNSServer", daemon=True)
        self._thread.start()
        return self.address

    def stop(self) -> None:
        """Stop answering and close every socket (idempotent)."""
        if self._thread is not None:
            self._stop_w.send(b"x")
            self._thread.join(timeout=5)
            self._thread = None
        for sock in (self._udp, self._tcp, self._stop_r, self._stop_w):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = None

    def __enter__(self) -> tuple[str, int]:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        # The kernel picks a free UDP port; TCP must then get the same one,
        # which another process may hold, so try a few times.
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self._host, 0))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.bind((self._host, udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            return udp, tcp
        raise OSError("no port free for both UDP and TCP")

    # -- serving -------------------------------------------------------------

    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None
        connections: dict[socket.socket, bytearray] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self._udp, selectors.EVENT_READ)
            selector.register(self._tcp, selectors.EVENT_READ)
            selector.register(self._stop_r, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._stop_r:
                        for conn in connections:
                            conn.close()
                        return
                    if sock is self._udp:
                        self._serve_udp(sock)
                    elif sock is self._tcp:
                        conn, _ = sock.accept()
                        conn.setblocking(False)
                        connections[conn] = bytearray()
                        selector.register(conn, selectors.EVENT_READ)
                    elif not self._serve_tcp(sock, connections[sock]):
                        selector.unregister(sock)
                        del connections[sock]
                        sock.close()

    def _serve_udp(self, sock: socket.socket) -> None:
        try:
            wire, peer = sock.recvfrom(65535)
        except OSError:
            return
        reply = self._answer(wire, "udp")
        if reply is not None:
            sock.sendto(reply, peer)

    def _serve_tcp(self, conn: socket.socket, buffer: bytearray) -> bool:
        """Read from one TCP connection and answer complete queries; False when closed."""
        try:
            data = conn.recv(65535)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        buffer.extend(data)
        # RFC 1035 §4.2.2: each message is prefixed by its two-octet length.
        while len(buffer) >= 2:
            (length,) = struct.unpack("!H", buffer[:2])
            if len(buffer) < 2 + length:
                break
            wire = bytes(buffer[2 : 2 + length])
            del buffer[: 2 + length]
            reply = self._answer(wire, "tcp")
            if reply is not None:
                try:
                    conn.setblocking(True)
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
                    conn.setblocking(False)
                except OSError:
                    return False
        return True

    def _answer(self, wire: bytes, transport: str) -> bytes | None:
        """The response to one query in wire format, or None to stay silent."""
        try:
            return self._respond(wire, transport)
        except Exception as exc:  # a bug here must not kill the thread: log, stay silent
            with self._lock:
                self.errors.append(exc)
            return None

    def _respond(self, wire: bytes, transport: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not a DNS message: ignore it, as a real server may
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response.set_rcode(dns.rcode.NOTIMP if len(query.question) == 1 else dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        name = _key(question.name.to_text())
        rdtype = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self._queries.append((transport, name, rdtype))
        if _matches(self._drop, name, rdtype):
            return None
        if _matches(self._servfail, name, rdtype):
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        if _matches(self._refuse, name, rdtype):
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        self._fill(response, name, rdtype)
        if transport == "tcp":
            return response.to_wire(max_size=65535)
        limit = max(_UDP_CLASSIC_SIZE, query.payload) if query.edns >= 0 else _UDP_CLASSIC_SIZE
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            # RFC 1035 §4.2.1 / RFC 7766 §5: truncate, the client retries over TCP.
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire()

    def _fill(self, response: dns.message.Message, name: str, rdtype: str) -> None:
        aliases, final, exists = self._data.lookup(name, rdtype)
        for owner, target in aliases:
            response.answer.append(
                dns.rrset.from_text(owner + ".", _TTL, "IN", "CNAME", target + ".")
            )
        records = self._data.records.get((final, rdtype), [])
        if records:
            rrset = dns.rrset.from_rdata_list(
                dns.name.from_text(final, origin=dns.name.root), _TTL, records
            )
            response.answer.append(rrset)
        elif not exists:
            response.set_rcode(dns.rcode.NXDOMAIN)
