"""Binds the sans-IO :class:`SMTPClient` to one outbound TCP connection.

:class:`SMTPTransport` is the outbound MTA's
:class:`~mailstead.mta.transport.HostTransport`: it connects to one address
of one MX host, hands it every message of a batch over that one connection
(the client sends RSET between them when needed), and returns what became
of each. It owns the things only I/O can know: the connect timeout, the
source address, the per-reply timeouts the client asks for, TLS, and flow
control.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from mailstead.limits import SMTPClientLimits
from mailstead.mta.mta_sts_fetch import verifying_context
from mailstead.mta.transport import (
    HostResult,
    OnResult,
    OutboundMessage,
    SessionPolicy,
    TLSCheck,
    TLSFailure,
)
from mailstead.net.flow import FlowProtocol
from mailstead.proto.smtp import replies as R
from mailstead.proto.smtp.client import SMTPClient
from mailstead.proto.smtp.client_events import (
    Closed,
    MessageResult,
    Ready,
    SessionFailed,
    StartTLSRequested,
)
from mailstead.proto.smtp.events import NEED_DATA, PAUSED
from mailstead.proto.smtp.replies import Reply

# RFC 5321 §4.5.3.2 gives no connect timeout; Postfix uses 30 s.
CONNECT_TIMEOUT = 30.0


class _Pipe(FlowProtocol):
    """Received bytes and connection state, for one awaiting reader."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray()
        self.eof = False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._ended()

    async def read(self, timeout: float) -> bytes | None:
        """Buffered bytes, ``b""`` at end of stream, None on timeout."""
        if not self.buffer and not self.eof:
            self._readable = self.loop.create_future()
            try:
                await asyncio.wait_for(self._readable, timeout)
            except TimeoutError:
                return None
            finally:
                self._readable = None
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    async def drain(self, timeout: float) -> bool:
        if self._writable is None or self._writable.done():
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._writable), timeout)
        except TimeoutError:
            return False
        return True


class SMTPTransport:
    """Delivers over SMTP on TCP, with STARTTLS under ``tls_context`` when offered.

    Owns the client TLS context and the client's limits; one instance serves
    every session of the outbound MTA.
    """

    def __init__(
        self,
        tls_context: ssl.SSLContext | None = None,
        *,
        limits: SMTPClientLimits | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.tls_context = tls_context
        self.limits = limits
        self.connect_timeout = connect_timeout
        # Contexts that verify certificates (MTA-STS), per CA file (None: the system's).
        self._verifying_contexts: dict[Path | None, ssl.SSLContext] = {}

    async def deliver(
        self,
        host: str,
        address: str,
        port: int,
        messages: Sequence[OutboundMessage],
        policy: SessionPolicy,
        on_result: OnResult,
    ) -> HostResult:
        """Deliver ``messages`` to ``address`` (an IP of MX ``host``) over one session.

        ``on_result(i, result)`` is awaited as soon as the host has answered
        for message ``i``, before the next one goes out. TLS is demanded
        only when there is a context to do it with, or when the policy's
        :class:`TLSCheck` (MTA-STS) asks for a verified certificate.
        """
        check = policy.tls_check
        plain = policy.require_tls and self.tls_context is not None
        if check is None:
            return await self._session(
                host, address, port, messages, policy, on_result, self.tls_context, plain, None
            )
        context = self._verifying(check.ca_file)
        require = check.enforce or policy.require_tls
        result = await self._session(
            host, address, port, messages, policy, on_result, context, require, check
        )
        failed = result.tls_failure
        if check.enforce or failed is None or failed.result_type == STARTTLS_NOT_SUPPORTED:
            return result
        # RFC 8461 §5 "testing": the certificate failed and is reported; the
        # mail goes as it would without a policy, on a new connection.
        again = await self._session(
            host, address, port, messages, policy, on_result, self.tls_context, plain, None
        )
        return dataclasses.replace(again, tls_failure=failed)

    def _verifying(self, ca_file: Path | None) -> ssl.SSLContext:
        """A context checking chain and host name against ``ca_file`` or the system's roots."""
        context = self._verifying_contexts.get(ca_file)
        if context is None:
            context = verifying_context(str(ca_file) if ca_file else None)
            self._verifying_contexts[ca_file] = context
        return context

    async def _session(
        self,
        host: str,
        address: str,
        port: int,
        messages: Sequence[OutboundMessage],
        policy: SessionPolicy,
        on_result: OnResult,
        tls_context: ssl.SSLContext | None,
        require_tls: bool,
        check: TLSCheck | None,
    ) -> HostResult:
        client = SMTPClient(
            policy.helo_name,
            require_tls=require_tls and tls_context is not None,
            tls_available=tls_context is not None,
            limits=self.limits,
        )
        tls_failure: TLSFailure | None = None
        loop = asyncio.get_running_loop()
        try:
            transport, pipe = await asyncio.wait_for(
                loop.create_connection(
                    _Pipe,
                    address,
                    port,
                    local_addr=(policy.source_ip, 0) if policy.source_ip else None,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            # Postfix's words: "connect to mx.example[192.0.2.1]:25: Connection
            # refused", the system's error text rather than asyncio's.
            reply = Reply(451, "4.4.1", f"connect to {_where(host, address, port)}: {_reason(exc)}")
            return HostResult((), SessionFailed(reply, remote=False), connected=False)

        pending = list(messages)
        results: list[MessageResult] = []
        failure: SessionFailed | None = None
        try:
            while True:
                event = client.next_event()
                # Whatever the client has to say goes out before we wait on the host.
                out = client.data_to_send()
                if out and not transport.is_closing():
                    transport.write(out)
                    if not await pipe.drain(client.write_timeout):
                        client.timed_out()
                        continue
                if event is NEED_DATA:
                    data = await pipe.read(client.timeout or client.limits.command_timeout)
                    if data is None:
                        client.timed_out()
                    else:
                        client.receive_data(data)
                elif event is PAUSED:
                    if pending:
                        m = pending.pop(0)
                        client.send_message(m.sender, m.recipients, m.content, m.params)
                    else:
                        client.quit()
                elif isinstance(event, MessageResult):
                    results.append(event)
                    await on_result(len(results) - 1, event)
                elif isinstance(event, StartTLSRequested):
                    assert tls_context is not None
                    # Plaintext already read behind the 220 went to the client,
                    # which aborts on it; from here the SSL layer owns the socket.
                    if pipe.buffer:
                        client.receive_data(bytes(pipe.buffer))
                        pipe.buffer.clear()
                        continue
                    try:
                        new = await asyncio.wait_for(
                            loop.start_tls(
                                transport, pipe, tls_context, server_hostname=host or None
                            ),
                            client.limits.tls_handshake_timeout,
                        )
                    except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
                        if check is not None and isinstance(exc, ssl.SSLCertVerificationError):
                            tls_failure = _certificate_failure(host, exc)
                            client.connection_lost(tls_failure.detail)
                            continue
                        where = _where(host, address, port)
                        client.connection_lost(f"TLS handshake with {where} failed: {_reason(exc)}")
                        continue
                    if new is None:
                        client.connection_lost("Connection lost during TLS handshake")
                        continue
                    assert isinstance(new, asyncio.Transport)
                    transport = new
                    client.tls_started()
                elif isinstance(event, SessionFailed):
                    failure = event
                elif isinstance(event, Closed):
                    break
                elif isinstance(event, Ready):
                    if check is not None and not event.secure:
                        # "testing": the host has no STARTTLS; mail goes in clear text.
                        tls_failure = _no_starttls(host)
                    continue
        finally:
            transport.close()
        if check is None:
            return HostResult(tuple(results), failure, connected=True)
        if failure is not None and failure.reply in (R.TLS_NOT_OFFERED, R.TLS_REFUSED):
            tls_failure = _no_starttls(host)
        if check.enforce and tls_failure is not None:
            # RFC 8461 §4.2: no delivery to this host; a deferral that says why.
            code = "4.7.4" if tls_failure.result_type == STARTTLS_NOT_SUPPORTED else "4.7.5"
            text = f"MTA-STS policy of {check.policy_domain}: {tls_failure.detail}"
            failure = SessionFailed(Reply(451, code, text), remote=False)
        return HostResult(
            tuple(results),
            failure,
            connected=True,
            tls_failure=tls_failure,
            tls_verified=client.secure and tls_failure is None,
        )


STARTTLS_NOT_SUPPORTED = "starttls-not-supported"

# OpenSSL's verify codes (x509_vfy.h) and the RFC 8460 §4.3.2.1 result types they are.
_VERIFY_RESULTS = {
    9: "certificate-expired",  # X509_V_ERR_CERT_NOT_YET_VALID
    10: "certificate-expired",  # X509_V_ERR_CERT_HAS_EXPIRED
    62: "certificate-host-mismatch",  # X509_V_ERR_HOSTNAME_MISMATCH
    2: "certificate-not-trusted",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
    18: "certificate-not-trusted",  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19: "certificate-not-trusted",  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    20: "certificate-not-trusted",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "certificate-not-trusted",  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
}


def _certificate_failure(host: str, exc: ssl.SSLCertVerificationError) -> TLSFailure:
    result = _VERIFY_RESULTS.get(exc.verify_code, "validation-failure")
    why = (exc.verify_message or _reason(exc)).rstrip(".")
    return TLSFailure(result, f"certificate of {host} did not validate: {why}")


def _no_starttls(host: str) -> TLSFailure:
    return TLSFailure(STARTTLS_NOT_SUPPORTED, f"{host} does not offer STARTTLS")


def _where(host: str, address: str, port: int) -> str:
    """``mx.example[192.0.2.1]:25``: the host, the address tried and the port."""
    name = host if host and not host.startswith("[") else ""
    return f"{name}[{address}]:{port}"


def _reason(exc: BaseException) -> str:
    """The system's words for a failed connect or handshake.

    asyncio's texts name its own calls ("[Errno 111] Connect call failed
    ('192.0.2.1', 25)"); an operator wants "Connection refused".
    """
    if isinstance(exc, TimeoutError):
        return os.strerror(errno.ETIMEDOUT)
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__
