"""MTA-STS on the wire: policies fetched over HTTPS, MX hosts checked, certificates verified.

A small Internet on loopback, all of it the test's own:

* a DNS server on 127.0.0.1 with each domain's MX, its ``_mta-sts`` TXT
  record and the address of its policy host ``mta-sts.DOMAIN``;
* an HTTPS server on 127.0.0.1 serving every policy host, under a
  certificate from a CA made for the test (``[delivery] tls_ca_file``),
  scripted per host: a good policy, a huge one, one that drips a byte at a
  time, a redirect, the wrong media type;
* SMTP sinks with STARTTLS on 127.0.0.2 (a certificate the CA issued for
  the MX names) and 127.0.0.3 (one issued for another name).

The real outbound engine (:class:`~mailstead.mta.outbound.Outbound`) and SMTP
client deliver; the clock is fake, so cache lifetimes pass in an instant.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailstead.cli import main
from mailstead.config import Config, load_config
from mailstead.directory import Directory
from mailstead.dns import DNSResolver, MXRecord, Resolver
from mailstead.mta.envelope import QueuedRecipient
from mailstead.mta.mta_sts_cache import MtaStsStore
from mailstead.mta.mta_sts_fetch import PolicyFetcher, verifying_context
from mailstead.mta.mta_sts_lookup import MtaStsLookup
from mailstead.mta.outbound import Outbound
from mailstead.mta.queue import Queue
from mailstead.net.smtp_client import SMTPTransport
from mailstead.store import MaildirStore
from mailstead.testing.clock import FakeClock
from mailstead.testing.dns import DNSServer

ALICE = "alice@example.test"
DAY = 86400.0
GOOD_MX = "127.0.0.2"  # certificate for the mx.*.test names
WRONG_MX = "127.0.0.3"  # certificate for wrong-name.test
PLAIN_MX = "127.0.0.4"  # no STARTTLS
# Policy hosts missing from the HTTPS server's certificate.
NOT_ON_CERTIFICATE = {"webpki.test"}


def _policy(mode: str, *mx: str, max_age: int = 86400) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return ("\r\n".join(lines) + "\r\n").encode()


def _zones(policy_ids: dict[str, str]) -> dict[str, dict[str, list[object]]]:
    """Each domain: an MX on the good or the wrong sink, a TXT record, a policy host."""
    mx = {
        "enforce.test": ("mx.enforce.test", GOOD_MX),
        "mismatch.test": ("mx.evil.example", GOOD_MX),
        "badcert.test": ("mx.badcert.test", WRONG_MX),
        "testing.test": ("mx.testing.test", WRONG_MX),
        "plain.test": ("mx.plain.test", WRONG_MX),
        "huge.test": ("mx.huge.test", WRONG_MX),
        "drip.test": ("mx.drip.test", WRONG_MX),
        "redirect.test": ("mx.redirect.test", WRONG_MX),
        "html.test": ("mx.html.test", WRONG_MX),
        "status.test": ("mx.status.test", WRONG_MX),
        "garbage.test": ("mx.garbage.test", WRONG_MX),
        "webpki.test": ("mx.webpki.test", WRONG_MX),
        "notls.test": ("mx.notls.test", PLAIN_MX),
        "testmx.test": ("mx.elsewhere.test", GOOD_MX),
        "none.test": ("mx.none.test", WRONG_MX),
    }
    zones: dict[str, dict[str, list[object]]] = {}
    for domain, (host, address) in mx.items():
        zones[domain] = {"MX": [(10, host)]}
        zones[host] = {"A": [address]}
        zones[f"mta-sts.{domain}"] = {"A": ["127.0.0.1"]}
        if domain != "plain.test":
            zones[f"_mta-sts.{domain}"] = {"TXT": [f"v=STSv1; id={policy_ids.get(domain, '1')};"]}
    return zones


# ------------------------------------------------------------------- a CA of the test's own


class CA:
    """Issues certificates for names; its PEM file is what ``tls_ca_file`` names."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MTA-STS test CA")])
        self.name = name
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.cert = cert
        self.path = directory / "test-ca.pem"
        self.path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A server context presenting a certificate this CA issued for ``names``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        stem = self.directory / names[0]
        stem.with_suffix(".crt").write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + self.cert.public_bytes(serialization.Encoding.PEM)
        )
        stem.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(stem.with_suffix(".crt"), stem.with_suffix(".key"))
        return context


# ------------------------------------------------------------------- the policy hosts


@dataclass
class Answer:
    """What the HTTPS server answers one policy host."""

    body: bytes = b""
    status: str = "200 OK"
    content_type: str = "text/plain; charset=utf-8"
    headers: str = ""
    drip: bool = False  # one byte every 50 ms, never ending


class PolicyServer:
    """Every ``mta-sts.DOMAIN`` on one HTTPS port; records each request's Host."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.answers: dict[str, Answer] = {}
        self.requests: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> PolicyServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def fetches(self, domain: str) -> int:
        return self.requests.count(f"mta-sts.{domain}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            lines = head.decode("latin-1").split("\r\n")
            assert lines[0] == "GET /.well-known/mta-sts.txt HTTP/1.1", lines[0]
            host = next(v for k, _, v in (x.partition(": ") for x in lines) if k == "Host")
            self.requests.append(host)
            answer = self.answers.get(host, Answer(status="404 Not Found"))
            writer.write(
                f"HTTP/1.1 {answer.status}\r\nContent-Type: {answer.content_type}\r\n"
                f"{answer.headers}".encode()
            )
            if answer.drip:
                writer.write(b"Content-Length: 100000\r\n\r\n")
                for byte in (b"version: STSv1\n" * 10000)[:100000]:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)
            else:
                writer.write(b"Content-Length: %d\r\n\r\n" % len(answer.body) + answer.body)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client hung up: what a hostile server gets
        finally:
            writer.close()


# ------------------------------------------------------------------- the MX hosts


@dataclass(frozen=True)
class Outcome:
    state: str
    last_error: str | None


@dataclass
class Delivery:
    recipients: list[str]
    tls: bool


@dataclass
class StartTLSSink:
    """An MX that offers STARTTLS under ``context`` (if any) and takes every message."""

    host: str
    port: int
    context: ssl.SSLContext | None
    deliveries: list[Delivery] = field(default_factory=list)
    sessions: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> StartTLSSink:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        secure = False
        recipients: list[str] = []

        async def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        try:
            await say("220 sink ESMTP")
            while line := (await asyncio.wait_for(reader.readline(), 10)).decode().strip():
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    offer = not secure and self.context is not None
                    await say("250-sink\r\n250-STARTTLS" if offer else "250-sink")
                    await say("250 8BITMIME")
                elif verb == "STARTTLS":
                    assert self.context is not None
                    await say("220 2.0.0 go ahead")
                    await writer.start_tls(self.context)
                    secure = True
                elif verb == "RCPT":
                    recipients.append(line.split("<", 1)[1].split(">", 1)[0])
                    await say("250 2.1.5 OK")
                elif verb == "DATA":
                    await say("354 go on")
                    while await reader.readline() not in (b".\r\n", b""):
                        pass
                    self.deliveries.append(Delivery(recipients, secure))
                    recipients = []
                    await say("250 2.0.0 queued")
                elif verb == "QUIT":
                    await say("221 2.0.0 bye")
                    break
                else:
                    await say("250 2.0.0 OK")
        except (OSError, ssl.SSLError, TimeoutError, UnicodeDecodeError):
            pass  # e.g. the client refused our certificate
        finally:
            writer.close()


# ------------------------------------------------------------------- the world


class SwitchableDNS:
    """A :class:`Resolver` whose server the test can replace (a zone that changed)."""

    def __init__(self, target: Resolver) -> None:
        self.target = target

    async def mx(self, domain: str) -> list[MXRecord]:
        return await self.target.mx(domain)

    async def addresses(self, host: str) -> list[str]:
        return await self.target.addresses(host)

    async def txt(self, name: str) -> list[bytes]:
        return await self.target.txt(name)


def _free_port_on(*hosts: str) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


class World:
    def __init__(self, root: Path, dns: DNSServer) -> None:
        self.root = root
        self.dns_servers = [dns]
        self.ca = CA(root)
        self.port = _free_port_on(GOOD_MX, WRONG_MX, PLAIN_MX)
        self.config_path = root / "mailstead.toml"
        self.config_path.write_text(
            'hostname = "mx.example.test"\ndata_dir = "var"\ndomains = ["example.test"]\n'
            "[listen]\nsmtp = []\nsubmission = []\nsubmissions = []\n"
            "imap = []\nimaps = []\npop3 = []\npop3s = []\n"
            f"[delivery]\nsmtp_port = {self.port}\n"
            f'retry_schedule = ["1m"]\nmax_lifetime = "5d"\ntls_ca_file = "{self.ca.path}"\n'
        )
        self.config: Config = load_config(self.config_path)
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.clock = FakeClock()
        self.resolver = SwitchableDNS(DNSResolver([dns.address], timeout=2.0))
        self.queue = Queue(self.config.data_dir)
        self.directory = Directory(self.config.db_path("directory"), self.config.domains)
        self.directory.add_user(ALICE, "alice-pw")
        self.executor = ThreadPoolExecutor(2)
        self.store = MtaStsStore(self.config.db_path("mta_sts"))
        policy_hosts = [n for n in _zones({}) if n.startswith("mta-sts.")]
        self.https = PolicyServer(
            self.ca.server_context(
                *(h for h in policy_hosts if h.removeprefix("mta-sts.") not in NOT_ON_CERTIFICATE)
            )
        )
        self.sinks: dict[str, StartTLSSink] = {}

    async def start(self) -> None:
        await self.https.start()
        names = [n for n in _zones({}) if n.startswith("mx.")]
        good = await StartTLSSink(GOOD_MX, self.port, self.ca.server_context(*names)).start()
        wrong = StartTLSSink(WRONG_MX, self.port, self.ca.server_context("wrong-name.test"))
        plain = await StartTLSSink(PLAIN_MX, self.port, None).start()
        self.sinks = {GOOD_MX: good, WRONG_MX: await wrong.start(), PLAIN_MX: plain}
        fetcher = PolicyFetcher(
            self.resolver,
            ssl_context=verifying_context(str(self.ca.path)),
            port=self.https.port,
            timeout=1.0,
        )
        # What Outbound would make itself, but for the port of the policy server.
        lookup = MtaStsLookup(
            self.store,
            self.resolver,
            fetcher,
            self.clock,
            executor=self.executor,
            ca_file=self.config.delivery.tls_ca_file,
        )
        self.outbound = Outbound(
            self.config,
            self.queue,
            directory=self.directory,
            store=MaildirStore(self.config.mail_root),
            resolver=self.resolver,
            clock=self.clock,
            executor=self.executor,
            transport=SMTPTransport(_opportunistic()),
            mta_sts=lookup,
            rng=random.Random(1),
        )

    def change_dns(self, policy_ids: dict[str, str]) -> None:
        server = DNSServer(_zones(policy_ids))
        server.start()
        self.dns_servers.append(server)
        self.resolver.target = DNSResolver([server.address], timeout=2.0)

    def send(self, to: str) -> str:
        rcpts = [QueuedRecipient(to)]
        body = f"From: {ALICE}\r\nTo: {to}\r\nSubject: hi\r\n\r\nHello.\r\n".encode()
        return self.queue.enqueue(ALICE, rcpts, [body], received_at=self.clock.time())

    async def deliver(self, to: str) -> Outcome:
        """Queue one message to ``to``, run one pass, and say what became of it."""
        queue_id = self.send(to)
        await self.outbound.run_once()
        message = self.queue.get(queue_id)
        if message is None:
            return Outcome("delivered", None)  # done and gone
        (status,) = message.recipients
        return Outcome(status.state, status.last_error)

    def delivered(self, sink: str, to: str) -> list[Delivery]:
        return [d for d in self.sinks[sink].deliveries if to in d.recipients]

    async def aclose(self) -> None:
        await self.https.close()
        for sink in self.sinks.values():
            await sink.close()
        for server in self.dns_servers[1:]:
            server.stop()
        self.executor.shutdown(wait=True)
        self.queue.close()
        self.directory.close()
        self.store.close()


def _opportunistic() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    server = DNSServer(_zones({}))
    server.start()
    yield server
    server.stop()


def run(root: Path, dns: DNSServer, test: object) -> None:
    async def main() -> None:
        world = World(root, dns)
        await world.start()
        try:
            await test(world)  # type: ignore[operator]
        finally:
            await world.aclose()

    asyncio.run(main())


# ------------------------------------------------------------------- enforce


def test_enforce_matching_mx_with_a_valid_certificate_is_delivered(
    tmp_path: Path, dns: DNSServer
) -> None:
    async def test(w: World) -> None:
        w.https.answers["mta-sts.enforce.test"] = Answer(_policy("enforce", "mx.enforce.test"))
        status = await w.deliver("bob@enforce.test")
        assert status.state == "delivered"
        assert w.delivered(GOOD_MX, "bob@enforce.test") == [Delivery(["bob@enforce.test"], True)]
        assert [(r.mx_host, r.result_type, r.count) for r in w.store.results()] == [
            ("mx.enforce.test", "success", 1)
        ]

    run(tmp_path, dns, test)


def test_enforce_with_an_mx_outside_the_policy_defers_with_the_reason(
    tmp_path: Path, dns: DNSServer
) -> None:
    async def test(w: World) -> None:
        w.https.answers["mta-sts.mismatch.test"] = Answer(_policy("enforce", "mx.mismatch.test"))
        queue_id = w.send("bob@mismatch.test")
        await w.outbound.run_once()
        message = w.queue.get(queue_id)
        assert message is not None
        (status,) = message.recipients
        reason = (
            "451 4.7.0 MTA-STS policy of mismatch.test: mx.evil.example does not match"
            " the policy's mx patterns"
        )
        assert (status.state, status.last_error) == ("deferred", reason)
        assert w.sinks[GOOD_MX].sessions == 0  # never contacted
        shown = CliRunner().invoke(
            main, ["--config", str(w.config_path), "queue", "show", queue_id]
        )
        assert shown.exit_code == 0, shown.output
        assert "mx.evil.example does not match the policy's mx patterns" in shown.output
        # Days later, still deferred, never bounced, until max_lifetime.
        w.clock.set_time(w.clock.time() + 4 * DAY)
        await w.outbound.run_once()
        message = w.queue.get(queue_id)
        assert message is not None and message.recipients[0].state == "deferred"
        # The sender was told of the delay (after 4 h), not of a failure.
        (notice,) = [m for m in w.queue.due(w.clock.time() + DAY, 10) if m.id != queue_id]
        content = w.queue.open_message(notice.id)
        assert b"Action: delayed" in content and b"Action: failed" not in content

    run(tmp_path, dns, test)


def test_enforce_with_a_certificate_for_another_name_defers(tmp_path: Path, dns: DNSServer) -> None:
    async def test(w: World) -> None:
        w.https.answers["mta-sts.badcert.test"] = Answer(_policy("enforce", "mx.badcert.test"))
        status = await w.deliver("bob@badcert.test")
        assert status.state == "deferred"
        assert status.last_error is not None
        assert status.last_error.startswith(
            "451 4.7.5 MTA-STS policy of badcert.test: certificate of mx.badcert.test did not"
            " validate: Hostname mismatch"
        ), status.last_error
        assert w.sinks[WRONG_MX].deliveries == []
        assert [(r.mx_host, r.result_type) for r in w.store.results()] == [
            ("mx.badcert.test", "certificate-host-mismatch")
        ]

    run(tmp_path, dns, test)


# ------------------------------------------------------------------- testing


def test_testing_mode_delivers_and_logs_the_failure(
    tmp_path: Path, dns: DNSServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def test(w: World) -> None:
        w.https.answers["mta-sts.testing.test"] = Answer(_policy("testing", "mx.testing.test"))
        with caplog.at_level(logging.WARNING, logger="mailstead.mta_sts"):
            status = await w.deliver("bob@testing.test")
        assert status.state == "delivered"
        # Opportunistic TLS on a second connection, after the verified one failed.
        assert w.delivered(WRONG_MX, "bob@testing.test") == [Delivery(["bob@testing.test"], True)]
        assert [r.getMessage() for r in caplog.records] == [
            "MTA-STS policy of testing.test: certificate of mx.testing.test did not validate:"
            " Hostname mismatch, certificate is not valid for 'mx.testing.test'"
            " (testing mode: delivering anyway)"
        ]

    run(tmp_path, dns, test)


def test_testing_mode_delivers_to_an_mx_outside_the_policy(
    tmp_path: Path, dns: DNSServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def test(w: World) -> None:
        w.https.answers["mta-sts.testmx.test"] = Answer(_policy("testing", "mx.testmx.test"))
        with caplog.at_level(logging.WARNING, logger="mailstead.mta_sts"):
            assert (await w.deliver("bob@testmx.test")).state == "delivered"
        assert caplog.messages == [
            "MTA-STS policy of testmx.test: mx.elsewhere.test does not match the policy's"
            " mx patterns (testing mode: delivering anyway)"
        ]
        assert [(r.mx_host, r.result_type) for r in w.store.results()] == [
            ("mx.elsewhere.test", "success"),  # its certificate was fine
            ("mx.elsewhere.test", "validation-failure"),
        ]

    run(tmp_path, dns, test)


def test_mode_none_is_no_policy(tmp_path: Path, dns: DNSServer) -> None:
    async def test(w: World) -> None:
        w.https.answers["mta-sts.none.test"] = Answer(_policy("none", "mx.none.test"))
        assert (await w.deliver("bob@none.test")).state == "delivered"  # despite the certificate
        assert (await w.deliver("carol@none.test")).state == "delivered"
        assert w.https.fetches("none.test") == 1  # cached like any other
        assert w.store.results() == []

    run(tmp_path, dns, test)


# ------------------------------------------------------------------- the cache


def test_a_policy_is_fetched_once_until_its_id_changes_or_it_expires(
    tmp_path: Path, dns: DNSServer
) -> None:
    async def test(w: World) -> None:
        policy = _policy("enforce", "mx.enforce.test", max_age=DAY.__int__())
        w.https.answers["mta-sts.enforce.test"] = Answer(policy)
        assert (await w.deliver("a@enforce.test")).state == "delivered"
        assert (await w.deliver("b@enforce.test")).state == "delivered"
        assert w.https.fetches("enforce.test") == 1
        w.change_dns({"enforce.test": "2"})  # the domain published a new policy
        assert (await w.deliver("c@enforce.test")).state == "delivered"
        assert w.https.fetches("enforce.test") == 2
        w.clock.set_time(w.clock.time() + DAY + 1)  # max_age has passed
        assert (await w.deliver("d@enforce.test")).state == "delivered"
        assert w.https.fetches("enforce.test") == 3

    run(tmp_path, dns, test)


def test_a_cached_policy_survives_a_restart_and_a_policy_host_gone(
    tmp_path: Path, dns: DNSServer
) -> None:
    async def test(w: World) -> None:
        w.https.answers["mta-sts.badcert.test"] = Answer(_policy("enforce", "mx.badcert.test"))
        assert (await w.deliver("a@badcert.test")).state == "deferred"
        # The policy host breaks and the id changes: the cached policy still holds
        # (RFC 8461 §5.1), read back from the database by a new store.
        w.https.answers.clear()
        w.change_dns({"badcert.test": "2"})
        w.outbound.mta_sts.store = MtaStsStore(w.config.db_path("mta_sts"))  # type: ignore[union-attr]
        status = await w.deliver("b@badcert.test")
        assert status.state == "deferred"
        assert (
            status.last_error is not None and "MTA-STS policy of badcert.test" in status.last_error
        )
        assert w.https.fetches("badcert.test") == 2
        w.outbound.mta_sts.store.close()  # type: ignore[union-attr]

    run(tmp_path, dns, test)


# ------------------------------------------------------------------- hostile policy hosts


@pytest.mark.parametrize(
    ("domain", "answer", "result", "reason"),
    [
        ("huge.test", Answer(_policy("enforce", "mx.huge.test") + b"x: y\n" * 20000),
         "sts-policy-fetch-error", "mta-sts.huge.test: policy larger than 65536 bytes"),
        ("drip.test", Answer(drip=True),
         "sts-policy-fetch-error", "mta-sts.drip.test: no complete answer within 1s"),
        ("redirect.test", Answer(status="301 Moved", headers="Location: https://a.test/\r\n"),
         "sts-policy-fetch-error", "mta-sts.redirect.test: HTTP status 301, not 200"),
        ("html.test", Answer(_policy("enforce", "mx.html.test"), content_type="text/html"),
         "sts-policy-fetch-error", "mta-sts.html.test: media type 'text/html', not text/plain"),
        ("status.test", Answer(_policy("enforce", "mx.status.test"), status="203 OK"),
         "sts-policy-fetch-error", "mta-sts.status.test: HTTP status 203, not 200"),
        ("garbage.test", Answer(b"<html>mode: enforce</html>"),
         "sts-policy-invalid", "invalid policy line '<html>mode: enforce</html>'"),
        ("webpki.test", Answer(_policy("enforce", "mx.webpki.test")),
         "sts-webpki-invalid", "mta-sts.webpki.test [127.0.0.1]: certificate: Hostname mismatch"),
    ],
)  # fmt: skip
def test_a_hostile_policy_host_means_no_policy(
    tmp_path: Path,
    dns: DNSServer,
    caplog: pytest.LogCaptureFixture,
    domain: str,
    answer: Answer,
    result: str,
    reason: str,
) -> None:
    async def test(w: World) -> None:
        w.https.answers[f"mta-sts.{domain}"] = answer
        # Were the (enforce) policy applied, the wrong certificate would defer.
        with caplog.at_level(logging.WARNING, logger="mailstead.mta_sts"):
            status = await w.deliver(f"bob@{domain}")
        assert status.state == "delivered"
        (line,) = [r.getMessage() for r in caplog.records]
        assert line.startswith(f"MTA-STS policy of {domain} not fetched ({result}): {reason}")
        (row,) = w.store.results()
        assert (row.domain, row.mx_host, row.result_type) == (domain, "", result)
        # A second delivery within 5 minutes does not knock again.
        assert (await w.deliver(f"carol@{domain}")).state == "delivered"
        assert w.https.fetches(domain) == (0 if domain in NOT_ON_CERTIFICATE else 1)
        # The server is still there for the next domain.
        w.https.answers["mta-sts.enforce.test"] = Answer(_policy("enforce", "mx.enforce.test"))
        assert (await w.deliver("bob@enforce.test")).state == "delivered"

    run(tmp_path, dns, test)


def test_enforce_with_an_mx_without_starttls_defers(tmp_path: Path, dns: DNSServer) -> None:
    async def test(w: World) -> None:
        w.https.answers["mta-sts.notls.test"] = Answer(_policy("enforce", "mx.notls.test"))
        status = await w.deliver("bob@notls.test")
        assert status == Outcome(
            "deferred",
            "451 4.7.4 MTA-STS policy of notls.test: mx.notls.test does not offer STARTTLS",
        )
        assert w.sinks[PLAIN_MX].deliveries == []
        assert [(r.mx_host, r.result_type) for r in w.store.results()] == [
            ("mx.notls.test", "starttls-not-supported")
        ]

    run(tmp_path, dns, test)


def test_no_txt_record_means_no_policy_and_no_fetch(tmp_path: Path, dns: DNSServer) -> None:
    async def test(w: World) -> None:
        assert (await w.deliver("bob@plain.test")).state == "delivered"
        assert w.https.requests == []

    run(tmp_path, dns, test)
