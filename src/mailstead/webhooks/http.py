"""One delivery attempt of a signed webhook POST, through the SSRF guard.

:class:`WebhookClient` keeps one ``httpx.AsyncClient`` (HTTP/1.1, kept-alive
connections) for every endpoint. For each attempt it resolves the URL's host
itself, checks every address with :class:`~mailstead.webhooks.ssrf.AddressGuard`
and hands the checked addresses to the connection layer, which dials those
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
import contextvars
import dataclasses
import datetime
import email.utils
import enum
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import httpcore
import httpx

from mailstead import __version__
from mailstead.webhooks.ssrf import AddressGuard, IPAddress, MalformedHost, Refused, parse_host

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_EXCERPT_LIMIT",
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

#: Seconds to set up TCP (and TLS) with one address.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds the endpoint may stay silent while we send or await its answer.
DEFAULT_READ_TIMEOUT = 30.0
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


@dataclass(frozen=True, slots=True)
class _Pin:
    host: str
    addresses: tuple[IPAddress, ...]


# The addresses checked for the request the current task is sending. The
# connection pool dials in the requesting task, so the backend sees them.
_PIN: contextvars.ContextVar[_Pin | None] = contextvars.ContextVar("webhook_pin", default=None)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Dials only the addresses pinned for the current request's host.

    They are tried in order, each with the full connect timeout.
    """

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pin = _PIN.get()
        if pin is None or pin.host != host or not pin.addresses:
            raise httpcore.ConnectError(f"no checked address for {host}")
        failure: Exception | None = None
        for address in pin.addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_stream():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


class _PinnedTransport(httpx.AsyncBaseTransport):
    """httpx over an httpcore pool that dials through :class:`_PinnedBackend`.

    httpcore errors pass through unmapped; :meth:`WebhookClient.post`
    classifies them.
    """

    def __init__(self, ssl_context: ssl.SSLContext, max_connections: int) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            # httpx's default; no longer than common server idle timeouts (Node's
            # is 5 s), so a kept connection is rarely reused just as it closes.
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            network_backend=_PinnedBackend(),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        response = await self._pool.handle_async_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=request.url.raw_scheme,
                    host=request.url.raw_host,
                    port=request.url.port,
                    target=request.url.raw_path,
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def _default_ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996
    return context


def _caused_by_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _classify(exc: Exception) -> tuple[ErrorKind, str]:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpcore.ConnectTimeout):
        return ErrorKind.TIMEOUT, f"connect timeout: {text}"
    if isinstance(exc, httpcore.PoolTimeout):
        return ErrorKind.TIMEOUT, f"no free connection: {text}"
    if isinstance(exc, httpcore.TimeoutException):
        return ErrorKind.TIMEOUT, f"read timeout: {text}"
    if _caused_by_tls(exc):
        return ErrorKind.TLS, text
    if isinstance(exc, httpcore.ConnectError):
        return ErrorKind.CONNECT, text
    if isinstance(exc, httpcore.ProtocolError):
        return ErrorKind.PROTOCOL, text
    return ErrorKind.NETWORK, text


class WebhookClient:
    """Owns the kept HTTP connections webhook POSTs use, and their SSRF guard.

    One instance serves every endpoint; :meth:`post` may run concurrently.
    ``max_connections`` bounds the connections open at once (the
    dispatcher's global concurrency cap should not exceed it).
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._guard = guard
        self._resolver = resolver
        self._excerpt_limit = excerpt_limit
        self._clock = clock
        self._client = httpx.AsyncClient(
            transport=_PinnedTransport(ssl_context or _default_ssl_context(), max_connections),
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
            ),
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        """Close every kept connection."""
        await self._client.aclose()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        """POST ``body`` with ``headers`` (the caller's signature headers) to ``url``."""
        started = time.monotonic()
        result = await self._attempt(url, body, headers)
        return dataclasses.replace(result, elapsed=time.monotonic() - started)

    async def _attempt(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            # httpx rejects some hostile IPv4 spellings (0177.0.0.1); say what they mean.
            hostile = self._check_literal(urllib.parse.urlsplit(url).hostname or "")
            if hostile is not None:
                return hostile
            return DeliveryResult(None, ErrorKind.INVALID_URL, str(exc))
        if target.scheme not in ("http", "https") or not target.raw_host:
            return DeliveryResult(None, ErrorKind.INVALID_URL, f"not an http(s) URL: {url}")
        host = target.raw_host.decode("ascii")
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            literal = parse_host(host)
        except MalformedHost as exc:
            return DeliveryResult(None, ErrorKind.INVALID_URL, str(exc))
        if literal is not None:
            addresses: Sequence[IPAddress] = (literal,)
        else:
            try:
                addresses = await self._resolver(host, port)
            except (OSError, UnicodeError) as exc:
                return DeliveryResult(None, ErrorKind.DNS, f"{host}: {exc}")
            if not addresses:
                return DeliveryResult(None, ErrorKind.DNS, f"{host}: no address")
        refused = self._guard.check_all(addresses)
        if refused is not None:
            return DeliveryResult(None, ErrorKind.REFUSED, str(refused), refused=refused)
        token = _PIN.set(_Pin(host, tuple(addresses)))
        try:
            return await self._send(target, body, headers)
        finally:
            _PIN.reset(token)

    def _check_literal(self, host: str) -> DeliveryResult | None:
        try:
            address = parse_host(host)
        except MalformedHost:
            return None
        refused = None if address is None else self._guard.check(address)
        if refused is None:
            return None
        return DeliveryResult(None, ErrorKind.REFUSED, str(refused), refused=refused)

    async def _send(
        self,
        target: httpx.URL,
        body: bytes,
        headers: Mapping[str, str],
    ) -> DeliveryResult:
        request = self._client.build_request("POST", target, content=body, headers=headers)
        request.headers["User-Agent"] = USER_AGENT
        # Raw bytes are kept, so a compressed body cannot inflate past the limit.
        request.headers["Accept-Encoding"] = "identity"
        try:
            response = await self._client.send(request, stream=True)
            try:
                peer = _peer(response)
                excerpt, truncated = await self._read_excerpt(response)
            finally:
                await response.aclose()
        # OSError: a socket error the network backend did not wrap.
        except (
            httpcore.NetworkError,
            httpcore.ProtocolError,
            httpcore.TimeoutException,
            OSError,
        ) as exc:
            kind, detail = _classify(exc)
            return DeliveryResult(None, kind, detail)
        retry_after = response.headers.get("Retry-After")
        status = response.status_code
        return DeliveryResult(
            status,
            detail=f"{status} {response.reason_phrase}".strip(),
            retry_after=None
            if retry_after is None
            else parse_retry_after(retry_after, self._clock()),
            location=response.headers.get("Location"),
            excerpt=excerpt,
            truncated=truncated,
            address=peer,
        )

    async def _read_excerpt(self, response: httpx.Response) -> tuple[bytes, bool]:
        kept = bytearray()
        async for chunk in response.aiter_raw():
            room = self._excerpt_limit - len(kept)
            if len(chunk) > room:
                kept += chunk[:room]
                return bytes(kept), True
            kept += chunk
        return bytes(kept), False


def _peer(response: httpx.Response) -> str | None:
    stream = response.extensions.get("network_stream")
    if not isinstance(stream, httpcore.AsyncNetworkStream):
        return None
    peer = stream.get_extra_info("server_addr")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None
