"""Answering the ACME server's validation requests while an order runs.

* :class:`HTTPResponder`: HTTP-01 (RFC 8555 §8.3), a minimal HTTP/1.1
  server that returns the key authorization at
  ``/.well-known/acme-challenge/<token>`` and 404 for anything else.
* :class:`ALPNResponder`: TLS-ALPN-01 (RFC 8737), a TLS server that, for a
  ClientHello offering only ``acme-tls/1``, presents a self-signed
  certificate carrying the SHA-256 of the key authorization.

Both listen only for the length of an order. The order itself runs in a
thread; it hands each challenge to :meth:`Responder.add` from there, while
the responder serves on the event loop, so the table is guarded by a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from mailstead.config.values import HostPort

__all__ = ["ALPNResponder", "HTTPResponder", "Responder"]

log = logging.getLogger("mailstead.acme")

# RFC 8737 §6.1: the ALPN protocol ID and id-pe-acmeIdentifier.
ACME_TLS_ALPN = "acme-tls/1"
ACME_IDENTIFIER = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
_HTTP_PREFIX = "/.well-known/acme-challenge/"
# A validation request is a request line and a few header fields.
_MAX_REQUEST = 8192
_REQUEST_TIMEOUT = 10.0


class Responder(Protocol):
    """Serves challenge responses while an order runs."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def add(self, name: str, token: str, key_authorization: str) -> None:
        """Answer the challenge ``token`` for ``name`` from now on (callable from any thread)."""
        ...


_Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class _Listening:
    def __init__(self, addresses: tuple[HostPort, ...]) -> None:
        self.addresses = addresses
        self._servers: list[asyncio.Server] = []
        self._lock = threading.Lock()

    async def _serve(self, handle: _Handler, ssl_context: ssl.SSLContext | None) -> None:
        try:
            for host, port in self.addresses:
                self._servers.append(
                    await asyncio.start_server(
                        handle, host, port, ssl=ssl_context, reuse_address=True, limit=_MAX_REQUEST
                    )
                )
        except OSError as exc:
            await self.stop()
            where = ", ".join(f"{h}:{p}" for h, p in self.addresses)
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise OSError(exc.errno, f"cannot listen on {where}: {reason}") from None

    def bound(self) -> list[HostPort]:
        """The addresses actually listened on (after port 0)."""
        return [s.getsockname()[:2] for server in self._servers for s in server.sockets]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


class HTTPResponder(_Listening):
    """HTTP-01: owns the listening sockets and the token -> key authorization table."""

    def __init__(self, addresses: tuple[HostPort, ...]) -> None:
        super().__init__(addresses)
        self._answers: dict[str, str] = {}

    async def start(self) -> None:
        await self._serve(self._handle, None)

    def add(self, name: str, token: str, key_authorization: str) -> None:
        with self._lock:
            self._answers[token] = key_authorization

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()  # silent, over-long or malformed: not a validation request
            return
        method, _, rest = head.partition(b" ")
        target = rest.partition(b" ")[0].decode("ascii", "replace")
        # RFC 8555 §8.3: GET http://<domain>/.well-known/acme-challenge/<token>
        token = target[len(_HTTP_PREFIX) :] if target.startswith(_HTTP_PREFIX) else ""
        with self._lock:
            answer = self._answers.get(token) if token else None
        if method != b"GET" or answer is None:
            log.info("acme: http-01 request from %s for %r: not found", peer, target[:100])
            self._reply(writer, 404, b"")
            return
        log.info("acme: answered http-01 challenge %s for %s", token, peer)
        self._reply(writer, 200, answer.encode("ascii"))

    @staticmethod
    def _reply(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        reason = "OK" if status == 200 else "Not Found"
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii")
            + body
        )
        writer.close()


class ALPNResponder(_Listening):
    """TLS-ALPN-01: owns the listening sockets and one validation certificate per name."""

    def __init__(self, addresses: tuple[HostPort, ...]) -> None:
        super().__init__(addresses)
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def start(self) -> None:
        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # RFC 8737 §4: TLS 1.2 or later, and only the acme-tls/1 protocol.
        base.minimum_version = ssl.TLSVersion.TLSv1_2
        base.set_alpn_protocols([ACME_TLS_ALPN])
        base.sni_callback = self._pick
        await self._serve(self._handle, base)

    def add(self, name: str, token: str, key_authorization: str) -> None:
        context = _validation_context(name, key_authorization)
        with self._lock:
            self._contexts[name.lower()] = context

    def _pick(self, sock: ssl.SSLObject, name: str | None, _base: ssl.SSLContext) -> int | None:
        with self._lock:
            context = self._contexts.get((name or "").lower())
        if context is None:
            log.info("acme: tls-alpn-01 handshake for unknown name %r", name)
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        sock.context = context
        log.info("acme: answered tls-alpn-01 challenge for %s", name)
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # RFC 8737 §3: the handshake is the whole validation; the server closes.
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def _validation_context(name: str, key_authorization: str) -> ssl.SSLContext:
    """A context serving the RFC 8737 §3 certificate for ``name``."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        # RFC 8737 §3: exactly one dNSName, the one being validated ...
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        # ... and the critical acmeIdentifier: an ASN.1 OCTET STRING of the digest.
        .add_extension(
            x509.UnrecognizedExtension(ACME_IDENTIFIER, b"\x04\x20" + digest), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ACME_TLS_ALPN])
    # ssl loads certificates from files only: a private directory, gone at once.
    with tempfile.TemporaryDirectory(prefix="mailstead-acme-") as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context.load_cert_chain(cert_path, key_path)
    return context
