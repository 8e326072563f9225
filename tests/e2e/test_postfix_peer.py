"""Debian's Postfix as a real peer, in both directions.

A small world on loopback: our Mailstead for example.test on 127.0.0.1, a
private Postfix (``postfix -c DIR``, see mailstead.testing.postfix) for
pf.test on 127.0.0.2 that also relays example.test to us, and a DNS server
of the test's own on 127.0.0.1 that points pf.test's MX at that Postfix.
Postfix offers STARTTLS with a self-signed certificate, so both directions
run over TLS as between real MTAs. Every packet stays on 127.0.0.0/8; the
system Postfix (/etc/postfix, port 25) is not touched.
"""

from __future__ import annotations

import smtplib
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.directory import Directory
from mailstead.mta.queue import Queue
from mailstead.testing.dns import DNSServer
from mailstead.testing.postfix import PostfixInstance, running_postfix
from mailstead.tlscert import ensure_self_signed
from tests.e2e.harness import ServerHandle, client_tls_context, running_config
from tests.tools import require


@pytest.fixture(autouse=True)
def _postfix_installed() -> None:
    require("postfix")


PF_HOST = "127.0.0.2"
ZONES = {
    "pf.test": {"MX": [(10, "mx.pf.test")]},
    "mx.pf.test": {"A": [PF_HOST]},
}


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _mailstead_config(root: Path, *, dns: str, mx_port: int) -> Path:
    root.mkdir(parents=True)
    path = root / "mailstead.toml"
    path.write_text(
        'hostname = "mx.example.test"\ndata_dir = "var"\ndomains = ["example.test"]\n'
        "workers = 1\n"
        '[listen]\nsmtp = ["127.0.0.1:0"]\nsubmission = ["127.0.0.1:0"]\nsubmissions = []\n'
        "imap = []\nimaps = []\npop3 = []\npop3s = []\n"
        f'[delivery]\ndns_servers = ["{dns}"]\nsmtp_port = {mx_port}\n'
        'retry_schedule = ["1m"]\n'
    )
    config = load_config(path)
    config.data_dir.mkdir(parents=True)
    ensure_self_signed(config.tls.cert, config.tls.key, config.hostname)
    with Directory(config.db_path("directory"), config.domains) as directory:
        directory.add_user("alice@example.test", "alice-pw")
    return path


@dataclass
class World:
    ours: ServerHandle
    postfix: PostfixInstance


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("postfix-peer")
    pf_port = _free_port(PF_HOST)
    with DNSServer(ZONES) as (dns_host, dns_port):
        config = load_config(
            _mailstead_config(root / "ours", dns=f"{dns_host}:{dns_port}", mx_port=pf_port)
        )
        with running_config(config, outbound=True) as ours:
            tls = (root / "pf-tls" / "cert.pem", root / "pf-tls" / "key.pem")
            ensure_self_signed(*tls, "mx.pf.test")
            # Not under pytest's tmp_path: Postfix's unprivileged processes
            # cannot walk through its 0700 directories.
            with (
                tempfile.TemporaryDirectory(prefix="mailstead-postfix-") as pf_root,
                running_postfix(
                    Path(pf_root),
                    host=PF_HOST,
                    port=pf_port,
                    hostname="mx.pf.test",
                    mailboxes=["user@pf.test"],
                    transports={"example.test": f"smtp:[127.0.0.1]:{ours.ports['smtp']}"},
                    tls=tls,
                ) as postfix,
            ):
                yield World(ours, postfix)


def _wait_for(what: str, condition: Callable[[], object], log: Callable[[], str]) -> None:
    deadline = time.monotonic() + 15.0
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; Postfix log:\n{log()}")
        time.sleep(0.05)


def _files(maildir: Path) -> list[bytes]:
    new = maildir / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []


BODY = b".one dot\r\n..two dots\r\n.\r\nend\r\n"


def test_mailstead_relays_to_postfix_by_mx(world: World) -> None:
    message = (
        b"From: alice@example.test\r\nTo: user@pf.test\r\nSubject: to postfix\r\n"
        b"Message-ID: <to-postfix@example.test>\r\n\r\n" + BODY
    )
    # C: a mail client submits to our MSA, as alice, over STARTTLS.
    with smtplib.SMTP("127.0.0.1", world.ours.ports["submission"], timeout=10) as smtp:
        smtp.starttls(context=client_tls_context())
        smtp.login("alice@example.test", "alice-pw")
        smtp.sendmail("alice@example.test", ["user@pf.test"], message)
    maildir = world.postfix.maildir("user@pf.test")
    _wait_for("Postfix's Maildir", lambda: _files(maildir), world.postfix.log_text)
    (stored,) = _files(maildir)
    # virtual(8) stores LF line ends; the dot-stuffed lines came through intact.
    assert stored.endswith(b"\n\n.one dot\n..two dots\n.\nend\n")
    assert b"Subject: to postfix\n" in stored
    assert b"DKIM-Signature: v=1; a=rsa-sha256" in stored
    assert b"d=example.test" in stored
    assert b"Return-Path: <alice@example.test>" in stored
    # Postfix's smtpd took it from us over STARTTLS.
    assert b"by mx.pf.test (Postfix) with ESMTPS" in stored
    queued = world.ours.config.data_dir / "queue" / "msg"
    _wait_for("our queue to empty", lambda: not any(queued.iterdir()), world.postfix.log_text)
    with Queue(world.ours.config.data_dir) as queue:
        assert queue.list() == []


def test_postfix_relays_to_our_mx(world: World) -> None:
    message = (
        b"From: carol@pf.test\r\nTo: alice@example.test\r\nSubject: from postfix\r\n"
        b"Message-ID: <from-postfix@pf.test>\r\n\r\n" + BODY
    )
    # C: a client on 127.0.0.0/8 (mynetworks) hands the mail to Postfix to relay.
    with smtplib.SMTP(PF_HOST, world.postfix.port, timeout=10) as smtp:
        smtp.sendmail("carol@pf.test", ["alice@example.test"], message)
    received = lambda: world.ours.new_messages("alice@example.test")  # noqa: E731
    _wait_for("alice's Maildir", received, world.postfix.log_text)
    (stored,) = received()
    assert stored.endswith(b"\n\n.one dot\n..two dots\n.\nend\n")
    assert b"Subject: from postfix\n" in stored
    # Postfix's own trace header, then ours: it used STARTTLS towards us.
    assert b"by mx.pf.test (Postfix) with ESMTP" in stored
    assert b"from mx.pf.test" in stored
    assert b"by mx.example.test (Mailstead) with ESMTPS" in stored
    assert stored.index(b"by mx.example.test") < stored.index(b"by mx.pf.test")
