"""Fetching an MTA-STS policy file over HTTPS (RFC 8461 §3.3), with h11.

One GET per fetch, no connection kept: a policy is fetched at most once per
domain per ``max_age`` or policy id. The rules of §3.3 are enforced here:
TLS with a certificate valid for ``mta-sts.DOMAIN`` (checked by ``ssl``
against the system roots or a configured CA file), status 200 only (a
redirect is never followed), media type ``text/plain``, at most 64 KiB of
body, and one deadline over the whole exchange, so a server that drips a
byte at a time gets no more than it.

The policy host is resolved through the MTA's own :class:`~mailstead.dns.Resolver`
(``delivery.dns_servers``). Like the SMTP connections to MX hosts, the
fetch may reach any address the DNS names: it is a GET of one fixed path
whose answer only ever tightens delivery.

The HTTP handling is a small cousin of the webhook client's
(:mod:`mailstead.webhooks.http`), which sits in a higher layer and speaks
POST with kept-alive connections; this one needs neither.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import h11

from mailstead import __version__
from mailstead.dns import DNSError, Resolver
from mailstead.mta.mta_sts import MAX_POLICY_BYTES, POLICY_PATH, policy_host

__all__ = ["DEFAULT_FETCH_TIMEOUT", "FetchError", "PolicyFetcher", "verifying_context"]

#: Seconds a whole fetch may take: DNS, connect, TLS, request and answer.
#: RFC 8461 §3.3 suggests "a timeout of at least one minute".
DEFAULT_FETCH_TIMEOUT = 60.0
_USER_AGENT = f"Mailstead-MTA-STS/{__version__}".encode("ascii")
_READ_CHUNK = 16 * 1024
# Response head bytes h11 buffers at most (its default is 16 KiB as well).
_MAX_HEAD = 16 * 1024


class FetchError(Exception):
    """No usable policy file was served; the text says why (for logs and TLS-RPT).

    ``result_type`` is the RFC 8460 §4.3.2.3 name of the failure:
    ``sts-webpki-invalid`` when the policy host's certificate did not
    validate, ``sts-policy-fetch-error`` otherwise.
    """

    def __init__(self, text: str, result_type: str = "sts-policy-fetch-error") -> None:
        super().__init__(text)
        self.result_type = result_type


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    content_type: bytes
    body: bytes


class PolicyFetcher:
    """Fetches ``https://mta-sts.DOMAIN/.well-known/mta-sts.txt``; owns the TLS context.

    ``port`` is 443 on the Internet (other values for tests); ``ssl_context``
    defaults to the system roots with host name checks.
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        ssl_context: ssl.SSLContext | None = None,
        port: int = 443,
        timeout: float = DEFAULT_FETCH_TIMEOUT,
        max_bytes: int = MAX_POLICY_BYTES,
    ) -> None:
        self.resolver = resolver
        self.ssl_context = ssl_context or verifying_context(None)
        self.port = port
        self.timeout = timeout
        self.max_bytes = max_bytes

    async def fetch(self, domain: str) -> bytes:
        """The policy file body of ``domain``, or :class:`FetchError`."""
        host = policy_host(domain)
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._get(host)
        except TimeoutError:
            raise FetchError(f"{host}: no complete answer within {self.timeout:g}s") from None
        # RFC 8461 §3.3: "HTTP 200 response code" only; "Senders MUST NOT
        # follow HTTP redirects".
        if answer.status != 200:
            raise FetchError(f"{host}: HTTP status {answer.status}, not 200")
        # §3.3: "senders SHOULD validate that the media type is text/plain".
        media_type = answer.content_type.split(b";", 1)[0].strip().lower()
        if media_type != b"text/plain":
            shown = answer.content_type[:60].decode("latin-1")
            raise FetchError(f"{host}: media type {shown!r}, not text/plain")
        return answer.body

    async def _get(self, host: str) -> _Answer:
        try:
            addresses = await self.resolver.addresses(host)
        except DNSError as exc:
            raise FetchError(f"{host}: {exc}") from None
        failure = FetchError(f"{host}: no address")
        for address in addresses[:4]:
            try:
                reader, writer = await asyncio.open_connection(
                    address,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=host,  # SNI and the certificate's name (§3.3)
                    limit=_READ_CHUNK,
                )
            except ssl.SSLCertVerificationError as exc:
                text = f"{host} [{address}]: certificate: {exc.verify_message or exc}"
                failure = FetchError(text, "sts-webpki-invalid")
                continue
            except ssl.SSLError as exc:
                failure = FetchError(f"{host} [{address}]: TLS: {exc.reason or exc}")
                continue
            except OSError as exc:
                failure = FetchError(f"{host} [{address}]: {exc.strerror or exc}")
                continue
            try:
                return await self._exchange(host, reader, writer)
            finally:
                writer.close()
        raise failure

    async def _exchange(
        self, host: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Answer:
        protocol = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        request = h11.Request(
            method=b"GET",
            target=POLICY_PATH.encode("ascii"),
            headers=[
                (b"Host", host.encode("ascii")),
                (b"User-Agent", _USER_AGENT),
                (b"Accept", b"text/plain"),
                (b"Accept-Encoding", b"identity"),  # the size limit is on what is sent
                (b"Cache-Control", b"no-cache"),  # §3.3: no cached HTTP responses
                (b"Connection", b"close"),
            ],
        )
        try:
            writer.write(protocol.send(request) + protocol.send(h11.EndOfMessage()))
            await writer.drain()
            head: h11.Response | None = None
            body = bytearray()
            ended = False
            while True:
                event = protocol.next_event()
                if event is h11.NEED_DATA:
                    protocol.receive_data(await reader.read(_READ_CHUNK))
                elif isinstance(event, h11.Response):
                    head = event
                    if head.status_code != 200:
                        break  # the body of a refusal or redirect is not read
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > self.max_bytes:
                        raise FetchError(f"{host}: policy larger than {self.max_bytes} bytes")
                elif isinstance(event, h11.EndOfMessage):
                    ended = True
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    break
                # 1xx InformationalResponse: wait for the final one.
        except h11.ProtocolError as exc:
            raise FetchError(f"{host}: not HTTP/1.1: {exc}") from None
        except ssl.SSLError as exc:
            raise FetchError(f"{host}: TLS: {exc.reason or exc}") from None
        except OSError as exc:
            raise FetchError(f"{host}: {exc.strerror or exc}") from None
        if head is None:
            raise FetchError(f"{host}: connection closed without an answer")
        if head.status_code == 200 and not ended:
            raise FetchError(f"{host}: the answer ended early")
        content_type = b""
        for name, value in head.headers:
            if name == b"content-type":
                content_type = value
        return _Answer(head.status_code, content_type, bytes(body))


def verifying_context(ca_file: str | None) -> ssl.SSLContext:
    """A client context that checks the chain and the host name: the system roots, or ``ca_file``.

    RFC 8461 §3.3 and §4.2: the policy host and the MX hosts must present
    certificates valid for their names; TLS 1.2 at least (RFC 8996).
    """
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
