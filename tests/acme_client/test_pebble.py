"""Real ACME orders against Debian's pebble, served by a running Mailstead.

Pebble resolves the names in a DNS server of the test's own and validates
for real, on the ports its config names; the listeners are checked with
real handshakes that trust pebble's root and verify the hostname.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from mailstead import app
from mailstead.acme_client import CertificateKeeper, Outcome, keep_certificate
from mailstead.cli.tls import tls
from mailstead.config import Config, load_config
from mailstead.testing.clock import FakeClock
from tests.acme_client.pebble import Pebble, running_pebble
from tests.e2e.harness import free_port, write_config

HOST = "mx.example.test"
NAMES = [HOST, "mta-sts.example.test"]
YEAR = 365 * 86400.0


@pytest.fixture
def pebble(tmp_path: Path) -> Iterator[Pebble]:
    with running_pebble(tmp_path / "pebble", NAMES) as p:
        yield p


def acme_config(tmp_path: Path, pebble: Pebble, challenge: str, port: int) -> Config:
    return load_config(
        write_config(
            tmp_path,
            extra=(
                "[tls.acme]\n"
                f'directory = "{pebble.directory}"\n'
                'email = "postmaster@example.test"\n'
                f'challenge = "{challenge}"\n'
                f'listen = ["127.0.0.1:{port}"]\n'
                'names = ["mta-sts.example.test"]\n'
                f'ca_file = "{pebble.api_ca}"\n'
            ),
        )
    )


async def start_server(config: Config) -> tuple[app.RunningServer, ssl.SSLContext]:
    """The server without its own keeper (the test drives one), and its shared context."""
    plain = dataclasses.replace(config, tls=dataclasses.replace(config.tls, acme=None))
    running = await app.start(plain, outbound=False)
    contexts = {id(s.tls_context): s.tls_context for s in running.services}
    assert len(contexts) == 1  # every listener, STARTTLS and implicit, shares one
    context = next(iter(contexts.values()))
    assert context is not None
    return running, context


async def served(pebble: Pebble, running: app.RunningServer, listener: str, name: str) -> int:
    """Serial of the certificate ``listener`` presents to a client trusting only pebble."""
    host, port = running.address(listener)
    _, writer = await asyncio.open_connection(host, port, ssl=pebble.trust(), server_hostname=name)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der).serial_number


class IMAPClient:
    """Just enough IMAP over implicit TLS to hold a session open across a renewal."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.tag = reader, writer, 0

    async def command(self, text: str) -> bytes:
        self.tag += 1
        tag = f"a{self.tag}".encode()
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            if line.startswith(tag + b" ") or not line:
                return line


def test_http01_certificate_is_served_and_renewed_without_dropping_sessions(
    tmp_path: Path, pebble: Pebble
) -> None:
    config = acme_config(tmp_path, pebble, "http-01", pebble.http_port)
    clock = FakeClock(time.time())

    async def scenario() -> None:
        running, context = await start_server(config)
        try:
            with pytest.raises(ssl.SSLCertVerificationError):  # the self-signed stand-in
                await served(pebble, running, "imaps", HOST)
            keeper = CertificateKeeper(config, context, clock=clock)
            assert await keeper.step() is Outcome.RENEWED
            first = await served(pebble, running, "imaps", HOST)
            assert await served(pebble, running, "submissions", "mta-sts.example.test") == first
            assert await keeper.step() is None

            host, port = running.address("imaps")
            reader, writer = await asyncio.open_connection(
                host, port, ssl=pebble.trust(), server_hostname=HOST
            )
            imap = IMAPClient(reader, writer)
            assert (await reader.readline()).startswith(b"* OK")
            assert (await imap.command("LOGIN alice@example.test alice-pw")).startswith(b"a1 OK")

            clock.advance(4 * YEAR)  # pebble's certificates last five years
            assert await keeper.step() is Outcome.RENEWED
            second = await served(pebble, running, "imaps", HOST)
            assert second != first
            # The session opened under the first certificate goes on.
            assert (await imap.command("NOOP")).startswith(b"a2 OK")
            assert (await imap.command("SELECT INBOX")).startswith(b"a3 OK")
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            assert x509.load_der_x509_certificate(der).serial_number == first
            writer.close()
        finally:
            await running.stop()

    asyncio.run(scenario())


def test_tls_alpn01_from_the_command_line_then_served(tmp_path: Path, pebble: Pebble) -> None:
    config = acme_config(tmp_path, pebble, "tls-alpn-01", pebble.tls_port)
    runner = CliRunner()
    result = runner.invoke(tls, ["renew"], obj=config.path)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"renewed: {HOST}, mta-sts.example.test, valid until ")
    result = runner.invoke(tls, ["renew"], obj=config.path)
    assert result.output.startswith("not due: valid until ")
    status = json.loads(runner.invoke(tls, ["status", "--json"], obj=config.path).output)
    assert status["names"] == NAMES
    assert status["challenge"] == "tls-alpn-01"
    assert status["failures"] == 0
    assert status["certificate"] == str(config.data_dir / "acme" / "cert.pem")

    async def scenario() -> None:
        running, context = await start_server(config)
        task = keep_certificate(config, context)  # what serve does with [tls.acme]
        try:
            chain = (config.data_dir / "acme" / "cert.pem").read_bytes()
            stored = x509.load_pem_x509_certificate(chain).serial_number
            assert await served(pebble, running, "submissions", HOST) == stored
            assert await served(pebble, running, "imaps", HOST) == stored
        finally:
            task.cancel()
            await running.stop()

    asyncio.run(scenario())


def test_a_failed_validation_backs_off_and_is_logged(
    tmp_path: Path, pebble: Pebble, caplog: pytest.LogCaptureFixture
) -> None:
    # The responder listens where pebble does not look: validation fails.
    config = acme_config(tmp_path, pebble, "http-01", free_port())
    clock = FakeClock(time.time())
    keeper = CertificateKeeper(config, None, clock=clock)
    caplog.set_level(logging.INFO, "mailstead.acme")

    async def scenario() -> None:
        assert await keeper.step() is Outcome.FAILED
        assert await keeper.step() is None  # backing off
        clock.advance(300)
        assert await keeper.step() is Outcome.FAILED

    asyncio.run(scenario())
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failures) == 2
    assert failures[0].startswith(
        f"acme: order for {HOST}, mta-sts.example.test failed (1 in a row): validation failed: "
    )
    assert "connection refused" in failures[0]
    assert "(2 in a row)" in failures[1]
    backoff = keeper.files.backoff()
    assert backoff.failures == 2
    assert backoff.next_attempt == clock.time() + 600
    result = CliRunner().invoke(tls, ["status"], obj=config.path)
    assert "failures in a row: 2, last: validation failed: " in result.output
    assert not keeper.files.cert.exists()


def test_a_started_server_orders_and_serves_its_certificate_itself(
    tmp_path: Path, pebble: Pebble
) -> None:
    # app.start with [tls.acme]: the keeper runs in the server, no test drives it.
    config = acme_config(tmp_path, pebble, "http-01", pebble.http_port)

    async def scenario() -> int:
        running = await app.start(config, outbound=False)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    return await served(pebble, running, "imaps", HOST)
                except ssl.SSLCertVerificationError:  # still the self-signed stand-in
                    assert time.monotonic() < deadline, "no certificate within 60 s"
                    await asyncio.sleep(0.2)
        finally:
            await running.stop()

    assert asyncio.run(scenario()) > 0
