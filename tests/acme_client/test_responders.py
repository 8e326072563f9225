"""The challenge responders on the wire: HTTP-01 (RFC 8555 §8.3) and TLS-ALPN-01 (RFC 8737)."""

from __future__ import annotations

import asyncio
import hashlib
import ssl

import pytest
from cryptography import x509

from mailstead.acme_client.responders import ACME_IDENTIFIER, ALPNResponder, HTTPResponder

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
KEY_AUTHZ = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    reply = await reader.read()
    writer.close()
    return reply


def test_http01_answers_the_token_and_nothing_else() -> None:
    async def scenario() -> None:
        responder = HTTPResponder((("127.0.0.1", 0),))
        await responder.start()
        try:
            responder.add("mx.example.test", TOKEN, KEY_AUTHZ)
            port = responder.bound()[0][1]
            reply = await exchange(
                port,
                f"GET /.well-known/acme-challenge/{TOKEN} HTTP/1.1\r\n"
                "Host: mx.example.test\r\nAccept: */*\r\n\r\n".encode(),
            )
            assert reply == (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: 87\r\nConnection: close\r\n\r\n" + KEY_AUTHZ.encode()
            )
            for request in (
                b"GET /.well-known/acme-challenge/other HTTP/1.1\r\n\r\n",
                b"GET /.well-known/acme-challenge/ HTTP/1.1\r\n\r\n",
                f"POST /.well-known/acme-challenge/{TOKEN} HTTP/1.1\r\n\r\n".encode(),
                f"GET /{TOKEN} HTTP/1.1\r\n\r\n".encode(),
            ):
                assert (await exchange(port, request)).startswith(b"HTTP/1.1 404 Not Found\r\n")
            # An endless header section is cut off, not buffered.
            assert await exchange(port, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 20000) == b""
        finally:
            await responder.stop()

    asyncio.run(scenario())


def test_tls_alpn01_presents_the_validation_certificate() -> None:
    async def scenario() -> None:
        responder = ALPNResponder((("127.0.0.1", 0),))
        await responder.start()
        try:
            responder.add("mx.example.test", TOKEN, KEY_AUTHZ)
            port = responder.bound()[0][1]
            client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client.check_hostname = False
            client.verify_mode = ssl.CERT_NONE
            client.set_alpn_protocols(["acme-tls/1"])
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname="MX.example.test"
            )
            tls = writer.get_extra_info("ssl_object")
            assert tls.selected_alpn_protocol() == "acme-tls/1"
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
            writer.close()
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert san.get_values_for_type(x509.DNSName) == ["mx.example.test"]
            ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER)
            assert ext.critical
            digest = hashlib.sha256(KEY_AUTHZ.encode()).digest()
            assert ext.value.public_bytes() == b"\x04\x20" + digest

            # A name with no challenge gets no certificate at all.
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client, server_hostname="other.example.test"
                )
        finally:
            await responder.stop()

    asyncio.run(scenario())


def test_a_taken_port_is_one_line_naming_the_address() -> None:
    async def scenario() -> None:
        first = HTTPResponder((("127.0.0.1", 0),))
        await first.start()
        try:
            port = first.bound()[0][1]
            with pytest.raises(OSError, match=rf"^\[Errno 98\] cannot listen on 127.0.0.1:{port}:"):
                await HTTPResponder((("127.0.0.1", port),)).start()
        finally:
            await first.stop()

    asyncio.run(scenario())
