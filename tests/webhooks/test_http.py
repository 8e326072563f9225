"""One webhook POST against real servers on 127.0.0.1, through the SSRF guard."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailstead import __version__
from mailstead.webhooks.http import (
    DeliveryResult,
    ErrorKind,
    WebhookClient,
    parse_retry_after,
    system_resolver,
)
from mailstead.webhooks.ssrf import AddressGuard, IPAddress, Reason

LOOPBACK_ALLOWED = AddressGuard(["127.0.0.0/8"])
NOW = 1_700_000_000.0
BODY = b'{"type":"message.received"}'
SIGNED = {
    "Content-Type": "application/json",
    "webhook-id": "msg_1",
    "webhook-timestamp": "1700000000",
    "webhook-signature": "v1,c2ln",
}


def reply(status: str, *headers: str, body: bytes = b"") -> bytes:
    head = [f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Endpoint:
    """An HTTP/1.1 server on 127.0.0.1:0 answering every request with ``answer``.

    ``answer=None`` never answers. Records each connection and each request.
    """

    def __init__(self, answer: bytes | None, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self.handlers: list[tuple[asyncio.Task[None], asyncio.StreamWriter]] = []
        self.closing = asyncio.Event()

    async def __aenter__(self) -> Endpoint:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        self.closing.set()
        for _task, writer in self.handlers:
            writer.close()
        await asyncio.gather(*(task for task, _writer in self.handlers))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.handlers.append((asyncio.current_task(), writer))  # type: ignore[arg-type]
        try:
            while not self.closing.is_set():
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                self.requests.append(head + await reader.readexactly(length))
                if self.answer is None:
                    await self.closing.wait()
                    break
                writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def fixed(*addresses: str) -> Callable[[str, int], Awaitable[Sequence[IPAddress]]]:
    """A resolver answering every name with ``addresses``; records the names asked."""

    async def resolve(host: str, port: int) -> Sequence[IPAddress]:
        asked.append(host)
        return [ipaddress.ip_address(a) for a in addresses]

    asked: list[str] = []
    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


async def post(
    url: str,
    guard: AddressGuard = LOOPBACK_ALLOWED,
    **options: Any,
) -> DeliveryResult:
    client = WebhookClient(guard, clock=lambda: NOW, **options)
    try:
        return await client.post(url, BODY, SIGNED)
    finally:
        await client.aclose()


def run(
    answer: bytes | None, path: str = "/hooks", **options: Any
) -> tuple[DeliveryResult, Endpoint]:
    async def main() -> tuple[DeliveryResult, Endpoint]:
        async with Endpoint(answer) as endpoint:
            result = await post(f"http://127.0.0.1:{endpoint.port}{path}", **options)
            return result, endpoint

    return asyncio.run(main())


def test_200_sends_the_signed_post_as_given() -> None:
    result, endpoint = run(reply("200 OK", body=b"thanks"), path="/hooks?app=1")
    assert (result.status, result.ok, result.error, result.excerpt) == (200, True, None, b"thanks")
    assert result.address == "127.0.0.1"
    assert result.elapsed > 0
    assert endpoint.requests == [
        b"POST /hooks?app=1 HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"User-Agent: Mailstead-Webhooks/%s\r\n"
        b"Accept-Encoding: identity\r\n"
        b"Content-Length: 27\r\n"
        b"Content-Type: application/json\r\n"
        b"webhook-id: msg_1\r\n"
        b"webhook-timestamp: 1700000000\r\n"
        b"webhook-signature: v1,c2ln\r\n"
        b"\r\n" % (endpoint.port, __version__.encode()) + BODY
    ]


def test_500_is_reported_with_its_body() -> None:
    result, _ = run(reply("500 Internal Server Error", body=b"boom"))
    assert (result.status, result.ok, result.gone, result.excerpt) == (500, False, False, b"boom")
    assert result.detail == "500 Internal Server Error"


def test_410_gone() -> None:
    result, _ = run(reply("410 Gone"))
    assert (result.status, result.gone, result.ok) == (410, True, False)


def test_redirect_is_not_followed() -> None:
    result, endpoint = run(reply("302 Found", "Location: http://127.0.0.1:1/elsewhere"))
    assert (result.status, result.ok, result.location) == (
        302,
        False,
        "http://127.0.0.1:1/elsewhere",
    )
    assert len(endpoint.requests) == 1


def test_retry_after_in_seconds() -> None:
    result, _ = run(reply("503 Service Unavailable", "Retry-After: 120"))
    assert (result.status, result.retry_after) == (503, 120.0)


def test_retry_after_as_http_date() -> None:
    date = email.utils.formatdate(NOW + 90, usegmt=True)
    result, _ = run(reply("429 Too Many Requests", f"Retry-After: {date}"))
    assert (result.status, result.retry_after) == (429, 90.0)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        (" 3600 ", 3600.0),
        ("Tue, 14 Nov 2023 22:15:00 GMT", 100.0),  # IMF-fixdate, NOW + 100
        ("Tuesday, 14-Nov-23 22:15:00 GMT", 100.0),  # RFC 850
        ("Tue Nov 14 22:15:00 2023", 100.0),  # asctime
        ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0),  # in the past: now
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
    ],
)
def test_parse_retry_after(value: str, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_response_excerpt_is_bounded() -> None:
    result, _ = run(reply("200 OK", body=b"x" * 100_000), excerpt_limit=1000)
    assert (result.status, len(result.excerpt), result.truncated) == (200, 1000, True)


def test_read_timeout_when_the_endpoint_never_answers() -> None:
    result, endpoint = run(None, read_timeout=0.2)
    assert (result.status, result.error) == (None, ErrorKind.TIMEOUT)
    assert result.detail.startswith("read timeout")
    assert len(endpoint.requests) == 1


def test_connect_error_on_a_closed_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = asyncio.run(post(f"http://127.0.0.1:{port}/"))
    assert (result.status, result.error) == (None, ErrorKind.CONNECT)


def test_kept_connection_is_reused() -> None:
    async def main() -> int:
        async with Endpoint(reply("204 No Content")) as endpoint:
            client = WebhookClient(LOOPBACK_ALLOWED)
            for _ in range(3):
                result = await client.post(f"http://127.0.0.1:{endpoint.port}/", BODY, SIGNED)
                assert result.status == 204
            await client.aclose()
            return endpoint.connections

    assert asyncio.run(main()) == 1


def test_connections_are_kept_per_name_not_per_address() -> None:
    async def main() -> int:
        async with Endpoint(reply("204 No Content")) as endpoint:
            client = WebhookClient(LOOPBACK_ALLOWED, resolver=fixed("127.0.0.1"))
            for host in ("a.test", "b.test", "a.test"):
                result = await client.post(f"http://{host}:{endpoint.port}/", BODY, SIGNED)
                assert result.status == 204
            await client.aclose()
            return endpoint.connections

    assert asyncio.run(main()) == 2


def test_system_resolver_answers_addresses() -> None:
    addresses = asyncio.run(system_resolver("localhost", 80))
    assert addresses and all(a.is_loopback for a in addresses)
    assert len(set(addresses)) == len(addresses)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "2130706433", "0x7f.1", "127.1", "0177.0.0.1", "[::ffff:127.0.0.1]", "[::1]"],
)
def test_loopback_refused_without_allow_list_before_any_connection(host: str) -> None:
    async def main() -> tuple[DeliveryResult, Endpoint, list[str]]:
        async with Endpoint(reply("200 OK")) as endpoint:
            resolver = fixed("127.0.0.1")
            result = await post(
                f"http://{host}:{endpoint.port}/", AddressGuard(), resolver=resolver
            )
            await asyncio.sleep(0.05)  # a connection, had one been made, would be counted
            return result, endpoint, resolver.asked  # type: ignore[attr-defined]

    result, endpoint, asked = asyncio.run(main())
    assert (result.status, result.error) == (None, ErrorKind.REFUSED)
    assert result.refused is not None and result.refused.reason is Reason.LOOPBACK
    assert endpoint.connections == 0
    assert asked == []  # an IP literal in any spelling never reaches the resolver


def test_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = fixed("10.0.0.1")
    result = asyncio.run(post("https://hooks.example/x", resolver=resolver))
    assert (result.error, result.detail) == (ErrorKind.REFUSED, "10.0.0.1 is private")
    assert result.refused is not None and result.refused.reason is Reason.PRIVATE
    assert resolver.asked == ["hooks.example"]  # type: ignore[attr-defined]


def test_every_resolved_address_is_checked() -> None:
    async def main() -> tuple[DeliveryResult, Endpoint]:
        async with Endpoint(reply("200 OK")) as endpoint:
            resolver = fixed("8.8.8.8", "127.0.0.1")
            result = await post(
                f"http://hooks.example:{endpoint.port}/", AddressGuard(), resolver=resolver
            )
            return result, endpoint

    result, endpoint = asyncio.run(main())
    assert (result.error, result.detail) == (ErrorKind.REFUSED, "127.0.0.1 is loopback")
    assert endpoint.connections == 0


def test_dns_failure() -> None:
    async def failing(host: str, port: int) -> Sequence[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    result = asyncio.run(post("https://nowhere.example/", resolver=failing))
    assert (result.status, result.error) == (None, ErrorKind.DNS)
    assert "nowhere.example" in result.detail


def test_no_address_is_a_dns_failure() -> None:
    result = asyncio.run(post("https://nowhere.example/", resolver=fixed()))
    assert result.error is ErrorKind.DNS


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/", "http:///path", "not a url", "http://1.2.3.256/"]
)
def test_invalid_url(url: str) -> None:
    result = asyncio.run(post(url, resolver=fixed("127.0.0.1")))
    assert (result.status, result.error) == (None, ErrorKind.INVALID_URL)


def test_connects_to_the_resolved_address_with_the_name_in_host() -> None:
    async def main() -> tuple[DeliveryResult, Endpoint]:
        async with Endpoint(reply("200 OK")) as endpoint:
            result = await post(f"http://hooks.test:{endpoint.port}/", resolver=fixed("127.0.0.1"))
            return result, endpoint

    result, endpoint = asyncio.run(main())
    assert result.status == 200
    assert endpoint.requests[0].split(b"\r\n")[1] == b"Host: hooks.test:%d" % endpoint.port


# HTTPS: a certificate for hooks.test only (no IP in it), served on 127.0.0.1.


@pytest.fixture(scope="module")
def hooks_test_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def https_post(
    cert: tuple[Path, Path], host: str, trust: bool = True
) -> tuple[DeliveryResult, Endpoint, list[str | None]]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(*cert)
    sni: list[str | None] = []

    def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sni.append(name)

    server.sni_callback = record_sni
    client = ssl.create_default_context(cafile=str(cert[0]) if trust else None)

    async def main() -> tuple[DeliveryResult, Endpoint]:
        async with Endpoint(reply("200 OK", body=b"secure"), tls=server) as endpoint:
            result = await post(
                f"https://{host}:{endpoint.port}/hooks",
                resolver=fixed("127.0.0.1"),
                ssl_context=client,
            )
            return result, endpoint

    result, endpoint = asyncio.run(main())
    return result, endpoint, sni


def test_https_uses_the_name_for_sni_host_and_verification(
    hooks_test_cert: tuple[Path, Path],
) -> None:
    result, endpoint, sni = https_post(hooks_test_cert, "hooks.test")
    assert (result.status, result.excerpt, result.address) == (200, b"secure", "127.0.0.1")
    assert sni == ["hooks.test"]
    assert endpoint.requests[0].split(b"\r\n")[1] == b"Host: hooks.test:%d" % endpoint.port


def test_https_certificate_for_another_name_fails_verification(
    hooks_test_cert: tuple[Path, Path],
) -> None:
    result, endpoint, sni = https_post(hooks_test_cert, "other.test")
    assert (result.status, result.error) == (None, ErrorKind.TLS)
    assert sni == ["other.test"]
    assert endpoint.requests == []


def test_https_untrusted_certificate_fails(hooks_test_cert: tuple[Path, Path]) -> None:
    result, endpoint, _ = https_post(hooks_test_cert, "hooks.test", trust=False)
    assert (result.status, result.error) == (None, ErrorKind.TLS)
    assert endpoint.requests == []


# The connection layer (h11 over asyncio streams): answers a plain
# Content-Length server would not give.


async def serve_script(
    script: Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]],
) -> tuple[asyncio.Server, int]:
    """A server running ``script(reader, writer, n)`` for its n-th connection."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        try:
            await script(reader, writer, count)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + await reader.readexactly(length)


def post_twice(
    script: Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]],
) -> list[DeliveryResult]:
    async def main() -> list[DeliveryResult]:
        server, port = await serve_script(script)
        client = WebhookClient(LOOPBACK_ALLOWED)
        try:
            return [await client.post(f"http://127.0.0.1:{port}/", BODY, SIGNED) for _ in "12"]
        finally:
            await client.aclose()
            server.close()

    return asyncio.run(main())


def test_a_kept_connection_closed_unanswered_is_retried_once_on_a_fresh_one() -> None:
    # The peer dropped its idle connection just as the next POST went out.
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(reply("204 No Content"))
        await writer.drain()
        await read_request(reader)  # then closes without an answer

    assert [r.status for r in post_twice(script)] == [204, 204]


def test_chunked_body_and_interim_responses_are_read() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await read_request(reader)
            writer.write(
                b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )
            await writer.drain()

    results = post_twice(script)
    assert [(r.status, r.excerpt) for r in results] == [(202, b"abcde")] * 2


def test_connection_close_is_honoured() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(reply("200 OK", "Connection: close"))
        await writer.drain()

    assert [r.status for r in post_twice(script)] == [200, 200]


def test_a_connection_closed_without_an_answer_is_a_network_error() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)

    first, _ = post_twice(script)
    assert (first.status, first.error) == (None, ErrorKind.NETWORK)


def test_an_answer_that_is_not_http_is_a_protocol_error() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"220 mail.example.test ESMTP\r\n\r\n")
        await writer.drain()

    first, _ = post_twice(script)
    assert (first.status, first.error) == (None, ErrorKind.PROTOCOL)


def test_requests_beyond_max_connections_wait_then_time_out() -> None:
    async def main() -> list[DeliveryResult]:
        async with Endpoint(None) as endpoint:  # never answers: every slot stays taken
            client = WebhookClient(
                LOOPBACK_ALLOWED, max_connections=2, connect_timeout=0.2, read_timeout=1.0
            )
            url = f"http://127.0.0.1:{endpoint.port}/"
            results = await asyncio.gather(*(client.post(url, BODY, SIGNED) for _ in range(3)))
            await client.aclose()
            assert len(endpoint.requests) == 2
            return results

    results = asyncio.run(main())
    assert sorted(r.detail for r in results)[0] == "no free connection"
    assert {r.error for r in results} == {ErrorKind.TIMEOUT}


def test_control_characters_in_the_url_are_refused() -> None:
    result = asyncio.run(post("http://127.0.0.1:1/a\x01b"))
    assert (result.status, result.error) == (None, ErrorKind.INVALID_URL)
