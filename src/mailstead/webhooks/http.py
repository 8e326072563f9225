"""One delivery attempt of a signed webhook POST, through the SSRF guard.

:class:`WebhookClient` speaks HTTP/1.1 with h11 (the sans-IO protocol engine
httpx is built on) over asyncio streams, with kept-alive connections shared
by every endpoint. httpx's own layers cost about 1.3 ms of CPU per POST
here, ten times h11 alone; at the thousands of events per second a mail
server can produce, that was most of the dispatcher's work.

For each attempt the client resolves the URL's host itself, checks every
address with :class:`~mailstead.webhooks.ssrf.AddressGuard` and dials those
and nothing else: there is no second DNS lookup between check and connect.
The URL keeps its host name, so the ``Host`` header, TLS SNI and certificate
verification all use the name, and pooled connections are shared only by
requests for the same name and port.

The caller builds the body and the signature headers; this module adds the
``User-Agent`` and reports what happened as a :class:`DeliveryResult`. It
never raises for anything the network or the endpoint does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email.utils
import enum
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import h11

from mailstead import __version__
from mailstead.webhooks.ssrf import AddressGuard, IPAddress, MalformedHost, Refused, parse_host

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_EXCERPT_LIMIT",
    "DEFAULT_KEEPALIVE_EXPIRY",
    "DEFAULT_READ_TIMEOUT",
    "USER_AGENT",
    "DeliveryResult",
    "ErrorKind",
    "Resolver",
    "WebhookClient",
    "parse_retry_after",
    "system_resolver",
]

USER_AGENT = f"Mailstead-Webhooks/{__version__}"
_USER_AGENT = USER_AGENT.encode("ascii")
# Headers this module sets itself; the caller's copies are not sent.
_OURS = frozenset(
    {"host", "user-agent", "accept-encoding", "content-length", "transfer-encoding", "connection"}
)
_END = h11.EndOfMessage()
_READ_CHUNK = 64 * 1024
# Parsed URLs and addresses the guard let through, remembered (one or two per
# endpoint in practice); forgotten all at once past this many.
_KNOWN_TARGETS = 256

#: Seconds to set up TCP (and TLS) with one address.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds the endpoint may stay silent while we send or await its answer.
DEFAULT_READ_TIMEOUT = 30.0
#: Seconds an idle connection is kept for the next POST: no longer than common
#: server idle timeouts (Node's is 5 s), so one is rarely reused just as it closes.
DEFAULT_KEEPALIVE_EXPIRY = 5.0
#: Bytes of the response body kept for the delivery log; the rest is not read.
DEFAULT_EXCERPT_LIMIT = 64 * 1024

#: Resolves a host name to addresses; the port is passed for getaddrinfo's sake.
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]


class ErrorKind(enum.Enum):
    """Why an attempt produced no HTTP status."""

    INVALID_URL = "invalid-url"
    REFUSED = "refused"  # by the SSRF guard; see DeliveryResult.refused
    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    TIMEOUT = "timeout"
    NETWORK = "network"  # the connection broke after it was set up
    PROTOCOL = "protocol"  # the endpoint did not speak HTTP/1.1 correctly


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one POST came to: an HTTP status, or the kind of failure.

    ``retry_after`` is the endpoint's Retry-After in seconds from the
    response, ``location`` its Location (a redirect is reported, never
    followed), ``excerpt`` the first bytes of the body (``truncated`` if it
    was longer), ``address`` the address the request went to.
    """

    status: int | None
    error: ErrorKind | None = None
    detail: str = ""
    refused: Refused | None = None
    retry_after: float | None = None
    location: str | None = None
    excerpt: bytes = b""
    truncated: bool = False
    elapsed: float = 0.0
    address: str | None = None

    @property
    def ok(self) -> bool:
        """A 2xx answer: delivered."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the endpoint asks to be disabled."""
        return self.status == 410


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The host's addresses from the system resolver (``loop.getaddrinfo``)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = parse_host(str(sockaddr[0]))
        if address is not None and address not in addresses:
            addresses.append(address)
    return addresses


_DELAY_SECONDS = re.compile(r"[0-9]+", re.ASCII)


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait per a Retry-After value, or None if it is unreadable.

    RFC 9110 §10.2.3: delay-seconds or an HTTP-date; a date in the past
    means "now" (0). §5.6.7: all three date formats are accepted;
    ``email.utils`` reads IMF-fixdate, RFC 850 and asctime alike.
    """
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime carries no zone; HTTP dates are GMT
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


def _default_ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996
    return context


@dataclass(slots=True)
class _Connection:
    """One kept-alive HTTP/1.1 connection and its h11 state."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: h11.Connection
    peer: str
    idle_since: float = 0.0
    used: bool = False  # has carried a request before this one

    def reusable(self, now: float, expiry: float) -> bool:
        # The peer may have closed it while idle (its FIN is read as EOF).
        return (
            now - self.idle_since < expiry
            and not self.reader.at_eof()
            and self.protocol.our_state is h11.IDLE
            and self.protocol.their_state is h11.IDLE
        )

    def close(self) -> None:
        self.writer.close()


_Key = tuple[str, str, int]  # scheme, host name (not address), port


class _Failure(Exception):
    """An attempt that produced no HTTP status; carries the DeliveryResult."""

    def __init__(self, kind: ErrorKind, detail: str, *, before_response: bool = False) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        # A kept connection failed before any answer: the peer had probably
        # closed it meanwhile, so one more try on a fresh one is worth it.
        self.before_response = before_response


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str  # as in the URL (lower case, IDNA), no brackets
    port: int
    path: bytes  # path and query, the request-target of RFC 9112 §3.2.1
    host_header: bytes


def _parse_url(url: str) -> _Target | DeliveryResult:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return DeliveryResult(None, ErrorKind.INVALID_URL, f"{url}: {exc}")
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host:
        return DeliveryResult(None, ErrorKind.INVALID_URL, f"not an http(s) URL: {url}")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:
        return DeliveryResult(None, ErrorKind.INVALID_URL, f"{url}: {exc}")
    default = 443 if scheme == "https" else 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != default:
        shown += f":{port}"
    try:
        return _Target(scheme, host, port or default, path.encode("ascii"), shown.encode("ascii"))
    except UnicodeError:
        return DeliveryResult(None, ErrorKind.INVALID_URL, f"not an ASCII URL: {url}")


class WebhookClient:
    """Owns the kept HTTP connections webhook POSTs use, and their SSRF guard.

    One instance serves every endpoint; :meth:`post` may run concurrently.
    At most ``max_connections`` requests are in flight at once (the
    dispatcher's global concurrency cap should not exceed it), and at most
    as many idle connections are kept, each for ``keepalive_expiry`` seconds.
    """

    def __init__(
        self,
        guard: AddressGuard,
        *,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_connections: int = 100,
        excerpt_limit: int = DEFAULT_EXCERPT_LIMIT,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._guard = guard
        self._resolver = resolver
        self._ssl = ssl_context or _default_ssl_context()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._excerpt_limit = excerpt_limit
        self._expiry = keepalive_expiry
        self._max_idle = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[_Key, list[_Connection]] = {}
        self._targets: dict[str, tuple[_Target, IPAddress | None]] = {}
        self._passed: set[IPAddress] = set()
        self._clock = clock

    async def aclose(self) -> None:
        """Close every kept connection."""
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        """POST ``body`` with ``headers`` (the caller's signature headers) to ``url``."""
        started = time.monotonic()
        result = await self._attempt(url, body, headers)
        return dataclasses.replace(result, elapsed=time.monotonic() - started)

    def _target(self, url: str) -> tuple[_Target, IPAddress | None] | DeliveryResult:
        """The URL's parts and its host as an address literal (None: a name), or why
        it cannot be used; remembered per URL, since every POST to an endpoint asks."""
        known = self._targets.get(url)
        if known is not None:
            return known
        target = _parse_url(url)
        if isinstance(target, DeliveryResult):
            return target
        try:
            parsed = (target, parse_host(target.host))
        except MalformedHost as exc:
            return DeliveryResult(None, ErrorKind.INVALID_URL, str(exc))
        if len(self._targets) >= _KNOWN_TARGETS:
            self._targets.clear()
        self._targets[url] = parsed
        return parsed

    def _check(self, addresses: Sequence[IPAddress]) -> Refused | None:
        """The guard's verdict on ``addresses``; those it let through are remembered
        (its verdict on an address never changes)."""
        if all(a in self._passed for a in addresses):
            return None
        refused = self._guard.check_all(addresses)
        if refused is None:
            if len(self._passed) >= _KNOWN_TARGETS:
                self._passed.clear()
            self._passed.update(addresses)
        return refused

    async def _attempt(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        known = self._target(url)
        if isinstance(known, DeliveryResult):
            return known
        target, literal = known
        if literal is not None:
            addresses: Sequence[IPAddress] = (literal,)
        else:
            try:
                addresses = await self._resolver(target.host, target.port)
            except (OSError, UnicodeError) as exc:
                return DeliveryResult(None, ErrorKind.DNS, f"{target.host}: {exc}")
            if not addresses:
                return DeliveryResult(None, ErrorKind.DNS, f"{target.host}: no address")
        refused = self._check(addresses)
        if refused is not None:
            return DeliveryResult(None, ErrorKind.REFUSED, str(refused), refused=refused)
        request = self._request(target, body, headers)
        if isinstance(request, DeliveryResult):
            return request
        if self._slots.locked():  # else acquire() returns at once: no timer needed
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                return DeliveryResult(None, ErrorKind.TIMEOUT, "no free connection")
        else:
            await self._slots.acquire()
        try:
            return await self._exchange(target, addresses, request, body)
        except _Failure as failure:
            return DeliveryResult(None, failure.kind, failure.detail)
        finally:
            self._slots.release()

    def _request(
        self, target: _Target, body: bytes, headers: Mapping[str, str]
    ) -> h11.Request | DeliveryResult:
        fields: list[tuple[bytes, bytes]] = [
            (b"Host", target.host_header),
            (b"User-Agent", _USER_AGENT),
            # Raw bytes are kept, so a compressed body cannot inflate past the limit.
            (b"Accept-Encoding", b"identity"),
            (b"Content-Length", b"%d" % len(body)),
        ]
        try:
            fields += [
                (name.encode("ascii"), value.encode("ascii"))
                for name, value in headers.items()
                if name.lower() not in _OURS
            ]
            return h11.Request(method=b"POST", target=target.path, headers=fields)
        except (UnicodeError, h11.LocalProtocolError) as exc:  # e.g. a control character
            return DeliveryResult(None, ErrorKind.INVALID_URL, str(exc))

    async def _exchange(
        self,
        target: _Target,
        addresses: Sequence[IPAddress],
        request: h11.Request,
        body: bytes,
    ) -> DeliveryResult:
        key = (target.scheme, target.host, target.port)
        connection = self._take_idle(key)
        if connection is not None:
            try:
                return await self._send(key, connection, request, body)
            except _Failure as failure:
                if not failure.before_response:
                    raise
            # The kept connection had been closed by the peer: one fresh try.
        connection = await self._connect(target, addresses)
        return await self._send(key, connection, request, body)

    def _take_idle(self, key: _Key) -> _Connection | None:
        connections = self._idle.get(key)
        now = time.monotonic()
        while connections:
            connection = connections.pop()
            if connection.reusable(now, self._expiry):
                return connection
            connection.close()
        return None

    def _keep(self, key: _Key, connection: _Connection) -> None:
        now = connection.idle_since = time.monotonic()
        kept = self._idle.setdefault(key, [])
        for stale in [c for c in kept if not c.reusable(now, self._expiry)]:
            kept.remove(stale)
            stale.close()
        if sum(len(c) for c in self._idle.values()) >= self._max_idle:
            connection.close()
        else:
            kept.append(connection)

    async def _connect(self, target: _Target, addresses: Sequence[IPAddress]) -> _Connection:
        """Dial the checked addresses in order, each with the full connect timeout.

        Only these addresses are dialled (no second lookup: no DNS rebinding
        window); TLS uses the URL's name for SNI and certificate checks.
        """
        tls = self._ssl if target.scheme == "https" else None
        failure: _Failure | None = None
        for address in addresses:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    reader, writer = await asyncio.open_connection(
                        str(address),
                        target.port,
                        ssl=tls,
                        server_hostname=target.host if tls else None,
                        limit=_READ_CHUNK,
                    )
            except TimeoutError:
                failure = _Failure(ErrorKind.TIMEOUT, f"connect timeout: {address}")
            except OSError as exc:  # ssl.SSLError is one
                kind = ErrorKind.TLS if isinstance(exc, ssl.SSLError) else ErrorKind.CONNECT
                failure = _Failure(kind, f"{address}: {exc}")
            else:
                return _Connection(reader, writer, h11.Connection(h11.CLIENT), str(address))
        assert failure is not None
        raise failure

    async def _send(
        self, key: _Key, connection: _Connection, request: h11.Request, body: bytes
    ) -> DeliveryResult:
        protocol = connection.protocol
        reused, connection.used = connection.used, True
        answered = False
        try:
            connection.writer.write(
                protocol.send(request) + protocol.send(h11.Data(body)) + protocol.send(_END)
            )
            async with asyncio.timeout(self._read_timeout):
                await connection.writer.drain()
                response = await self._head(connection)
                answered = True
                excerpt, truncated = await self._read_excerpt(connection)
        except TimeoutError:
            connection.close()
            raise _Failure(ErrorKind.TIMEOUT, "read timeout: no complete answer") from None
        except h11.ProtocolError as exc:
            connection.close()
            raise _Failure(ErrorKind.PROTOCOL, str(exc) or type(exc).__name__) from None
        except _Failure as failure:
            connection.close()
            failure.before_response = reused and not answered
            raise
        except OSError as exc:
            connection.close()
            raise _Failure(
                ErrorKind.NETWORK,
                str(exc) or type(exc).__name__,
                before_response=reused and not answered,
            ) from None
        if truncated or protocol.our_state is not h11.DONE or protocol.their_state is not h11.DONE:
            connection.close()
        else:
            protocol.start_next_cycle()
            self._keep(key, connection)
        return _result(response, excerpt, truncated, connection.peer, self._clock())

    async def _head(self, connection: _Connection) -> h11.Response:
        """The final response head (1xx informational answers are skipped)."""
        while True:
            event = await self._event(connection)
            if isinstance(event, h11.Response):
                return event

    async def _event(self, connection: _Connection) -> object:
        protocol = connection.protocol
        while True:
            event = protocol.next_event()
            if isinstance(event, h11.ConnectionClosed):
                raise _Failure(ErrorKind.NETWORK, "connection closed before the answer ended")
            if event is not h11.NEED_DATA:
                return event
            data = await connection.reader.read(_READ_CHUNK)
            if not data and protocol.their_state is h11.SEND_RESPONSE:
                # h11 would call this a protocol error; it is a closed connection.
                raise _Failure(ErrorKind.NETWORK, "connection closed without an answer")
            protocol.receive_data(data)

    async def _read_excerpt(self, connection: _Connection) -> tuple[bytes, bool]:
        kept = bytearray()
        while True:
            event = await self._event(connection)
            if isinstance(event, h11.EndOfMessage):
                return bytes(kept), False
            if isinstance(event, h11.Data):
                room = self._excerpt_limit - len(kept)
                if len(event.data) > room:
                    kept += event.data[:room]
                    return bytes(kept), True
                kept += event.data


def _result(
    response: h11.Response, excerpt: bytes, truncated: bool, peer: str, now: float
) -> DeliveryResult:
    retry_after = location = None
    for name, value in response.headers:
        if name == b"retry-after":
            retry_after = parse_retry_after(value.decode("latin-1"), now)
        elif name == b"location":
            location = value.decode("latin-1")
    status = response.status_code
    reason = response.reason.decode("latin-1")
    return DeliveryResult(
        status,
        detail=f"{status} {reason}".strip(),
        retry_after=retry_after,
        location=location,
        excerpt=excerpt,
        truncated=truncated,
        address=peer,
    )
