"""The outbound MTA across hosts on loopback: MX order, backup MX, bounces.

A small world: our server for example.test on 127.0.0.2, a second Mailstead
for other.test on 127.0.0.3, other.test's primary MX 127.0.0.4 where nothing
listens, and a DNS server of the test's own on 127.0.0.1 with MX records for
both domains. Every packet stays on 127.0.0.0/8.
"""

from __future__ import annotations

import email
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.directory import Directory
from mailstead.mta.queue import Queue
from mailstead.testing.dns import DNSServer
from mailstead.tlscert import ensure_self_signed
from tests.e2e.harness import ServerHandle, client_tls_context, running_config

ZONES = {
    "example.test": {"MX": [(10, "mx.example.test")]},
    "mx.example.test": {"A": ["127.0.0.2"]},
    "other.test": {"MX": [(10, "mx1.other.test"), (20, "mx2.other.test")]},
    "mx1.other.test": {"A": ["127.0.0.4"]},  # the primary: nothing listens there
    "mx2.other.test": {"A": ["127.0.0.3"]},
    "nullmx.test": {"MX": [(0, ".")]},
    "dead.test": {"MX": [(10, "mx1.other.test")]},
}


def _free_port_on(*hosts: str) -> int:
    """A port free on every one of ``hosts`` (the MX port is the same everywhere)."""
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


def _config(
    root: Path,
    *,
    domain: str,
    smtp: str,
    mx_port: int,
    dns: str,
    users: dict[str, str],
    retry: str = '"1m"',
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "mailstead.toml"
    sub = f'["{smtp.rsplit(":", 1)[0]}:0"]'
    path.write_text(
        f'hostname = "mx.{domain}"\ndata_dir = "var"\ndomains = ["{domain}"]\nworkers = 1\n'
        f'[listen]\nsmtp = ["{smtp}"]\nsubmission = {sub}\nsubmissions = []\n'
        "imap = []\nimaps = []\npop3 = []\npop3s = []\n"
        f'[delivery]\ndns_servers = ["{dns}"]\nsmtp_port = {mx_port}\n'
        f"retry_schedule = [{retry}]\n"
    )
    config = load_config(path)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_self_signed(config.tls.cert, config.tls.key, config.hostname)
    with Directory(config.db_path("directory"), config.domains) as directory:
        for address, password in users.items():
            directory.add_user(address, password)
    return path


@dataclass
class World:
    ours: ServerHandle
    theirs: ServerHandle

    def submit(
        self,
        to: list[str],
        body: bytes,
        *,
        via: str = "ours",
        user: tuple[str, str] = ("alice@example.test", "alice-pw"),
    ) -> None:
        server, host = (self.ours, "127.0.0.2") if via == "ours" else (self.theirs, "127.0.0.3")
        with smtplib.SMTP(host, server.ports["submission"], timeout=10) as smtp:
            smtp.starttls(context=client_tls_context())
            smtp.login(*user)
            smtp.sendmail(user[0], to, body)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    mx_port = _free_port_on("127.0.0.2", "127.0.0.3", "127.0.0.4")
    with DNSServer(ZONES) as (dns_host, dns_port):
        dns = f"{dns_host}:{dns_port}"
        theirs_cfg = _config(
            tmp_path / "theirs",
            domain="other.test",
            smtp=f"127.0.0.3:{mx_port}",
            mx_port=mx_port,
            dns=dns,
            users={"bob@other.test": "bob-pw"},
        )
        ours_cfg = _config(
            tmp_path / "ours",
            domain="example.test",
            smtp=f"127.0.0.2:{mx_port}",
            mx_port=mx_port,
            dns=dns,
            users={"alice@example.test": "alice-pw"},
        )
        with (
            running_config(load_config(theirs_cfg), outbound=True) as theirs,
            running_config(load_config(ours_cfg), outbound=True) as ours,
        ):
            yield World(ours, theirs)


def _wait_for(condition: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


MESSAGE = (
    b"From: alice@example.test\r\nTo: bob@other.test\r\nSubject: over the wire\r\n"
    b"Message-ID: <m1@example.test>\r\n\r\n.one dot\r\n..two dots\r\n.\r\nend\r\n"
)


def test_backup_mx_takes_the_mail_when_the_primary_is_down(world: World) -> None:
    world.submit(["bob@other.test"], MESSAGE)
    _wait_for(lambda: world.theirs.new_messages("bob@other.test"))
    (stored,) = world.theirs.new_messages("bob@other.test")
    # Dot-stuffing survived the round trip on the bytes the peer stored.
    assert stored.endswith(b"\n\n.one dot\n..two dots\n.\nend\n")
    assert b"DKIM-Signature: v=1; a=rsa-sha256" in stored
    assert b"a=ed25519-sha256" in stored
    assert b"by mx.other.test (Mailstead) with ESMTPS" in stored  # STARTTLS was used
    queued = world.ours.config.data_dir / "queue" / "msg"
    _wait_for(lambda: not any(queued.iterdir()))


def _bounces(world: World) -> list[email.message.EmailMessage]:
    out = []
    for raw in world.ours.new_messages("alice@example.test"):
        msg = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        out.append(msg)
    return out


def test_unknown_remote_user_bounces_to_the_sender(world: World) -> None:
    world.submit(["nobody@other.test"], MESSAGE.replace(b"bob@", b"nobody@"))
    _wait_for(lambda: _bounces(world))
    (bounce,) = _bounces(world)
    assert bounce.get_content_type() == "multipart/report"
    assert bounce["Return-Path"] == "<>"
    status = bounce.get_payload()[1]  # type: ignore[index]
    text = status.as_string()
    assert "Final-Recipient: rfc822; nobody@other.test" in text
    assert "Status: 5.1.1" in text
    assert "Remote-MTA: dns; mx2.other.test" in text


def test_null_mx_bounces_at_once(world: World) -> None:
    world.submit(["someone@nullmx.test"], MESSAGE)
    _wait_for(lambda: _bounces(world))
    text = _bounces(world)[0].as_string()
    assert "Status: 5.1.10" in text


def test_unreachable_domain_stays_queued_with_the_reason(world: World) -> None:
    world.submit(["bob@dead.test"], MESSAGE)

    def deferred() -> bool:
        with Queue(world.ours.config.data_dir) as queue:
            msgs = queue.list()
            return bool(msgs) and msgs[0].recipients[0].state == "deferred"

    _wait_for(deferred)
    with Queue(world.ours.config.data_dir) as queue:
        (status,) = queue.list()[0].recipients
    assert status.attempts == 1
    assert status.next_attempt > time.time() + 30  # the 1m retry schedule
    assert status.last_error is not None and "4.4.1" in status.last_error
    assert _bounces(world) == []


def test_the_other_side_replies_through_our_mx(world: World) -> None:
    world.submit(["bob@other.test"], MESSAGE)
    _wait_for(lambda: world.theirs.new_messages("bob@other.test"))
    reply = (
        b"From: bob@other.test\r\nTo: alice@example.test\r\nSubject: Re: over the wire\r\n"
        b"In-Reply-To: <m1@example.test>\r\n\r\nGot it.\r\n"
    )
    world.submit(["alice@example.test"], reply, via="theirs", user=("bob@other.test", "bob-pw"))
    _wait_for(lambda: world.ours.new_messages("alice@example.test"))
    (stored,) = world.ours.new_messages("alice@example.test")
    assert b"Subject: Re: over the wire" in stored
    assert b"d=other.test" in stored  # signed by their DKIM key
