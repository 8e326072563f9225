"""HAProxy in front of two ``serve`` nodes on one database (issue 25).

Debian's haproxy, started by the test on 127.0.0.1 in TCP mode, balances
SMTP and IMAP round-robin over nodes a and b with ``send-proxy-v2`` from
``source 127.0.0.2``, the one network both nodes' ``[listen]
proxy_protocol`` lists. The clients connect from 127.0.0.3. Whichever node
takes a message names 127.0.0.3 in its Received header and its log lines,
and an IMAP client that HAProxy sends to either node logs in and sees all
of its mail.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailstead.config import load_config
from mailstead.logs import parse_line
from tests.e2e.haproxy import (
    BALANCER,
    CLIENT,
    IMAPFromClient,
    proxy_protocol_line,
    running_haproxy,
)
from tests.e2e.harness import client_tls_context, free_port
from tests.e2e.process import ServerProcess
from tests.e2e.test_cluster import ALICE, PASSWORD, cluster, message

PROXIED = ("smtp", "imap")
MESSAGES = 4

_SECTION = """\
frontend {name}
    bind 127.0.0.1:{front}
    default_backend {name}
backend {name}
    balance roundrobin
    server a 127.0.0.1:{port_a} send-proxy-v2 source {source}
    server b 127.0.0.1:{port_b} send-proxy-v2 source {source}
"""


@contextmanager
def _haproxy(tmp_path: Path, a: ServerProcess, b: ServerProcess) -> Iterator[dict[str, int]]:
    fronts = {name: free_port() for name in PROXIED}
    sections = "".join(
        _SECTION.format(
            name=name,
            front=fronts[name],
            port_a=a.ports[name],
            port_b=b.ports[name],
            source=BALANCER,
        )
        for name in PROXIED
    )
    with running_haproxy(tmp_path, sections, fronts.values()):
        yield fronts


def _behind_the_balancer(server: ServerProcess) -> None:
    """List HAProxy's address in the node's ``[listen] proxy_protocol``."""
    text = server.config_path.read_text()
    server.config_path.write_text(
        text.replace("[listen]\n", "[listen]\n" + proxy_protocol_line(), 1)
    )
    server.config = load_config(server.config_path)


def _log(server: ServerProcess) -> list[dict[str, str]]:
    lines = (parse_line(line) for line in server.log_path.read_text().splitlines())
    return [line for line in lines if line is not None]


def test_haproxy_in_front_of_two_nodes_keeps_the_client_address(
    tmp_path: Path, pg_dsn: str
) -> None:
    with cluster(tmp_path, pg_dsn, prepare=_behind_the_balancer) as (a, b):
        with _haproxy(tmp_path, a, b) as fronts:
            # SMTP: one connection per message, HAProxy alternating the nodes.
            for n in range(MESSAGES):
                with smtplib.SMTP(
                    "127.0.0.1", fronts["smtp"], source_address=(CLIENT, 0), timeout=10
                ) as smtp:
                    smtp.ehlo("client.sender.test")
                    smtp.sendmail("carol@remote.test", [ALICE], message(f"lb{n}@cluster.test"))
            # IMAP: two logins, one on each node; each sees every message.
            seen = []
            for _ in range(2):
                imap = IMAPFromClient("127.0.0.1", fronts["imap"], timeout=10)
                imap.starttls(client_tls_context())
                imap.login(ALICE, PASSWORD)
                typ, data = imap.select("INBOX", readonly=True)
                assert (typ, data) == ("OK", [str(MESSAGES).encode()])
                typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (RECEIVED)])")
                assert typ == "OK", data
                seen.append([item[1] for item in data if isinstance(item, tuple)])
                imap.logout()
        logs = {"a": _log(a), "b": _log(b)}

    # Both logins read the same four messages, each received from the client's address.
    assert seen[0] == seen[1] and len(seen[0]) == MESSAGES
    for received in seen[0]:
        assert re.match(rb"Received: from client\.sender\.test \(\[127\.0\.0\.3\]\)", received)
    # Each node took half of the sessions, every one logged under the client's address.
    for name, lines in logs.items():
        # (ServerProcess.start's probes of every port connect from 127.0.0.1, unproxied.)
        connects = [
            line for line in lines if line.get("msg") == "connect" and line["ip"] != "127.0.0.1"
        ]
        assert sorted(line["protocol"] for line in connects) == ["imap"] + ["smtp"] * (
            MESSAGES // 2
        ), name
        assert {(line["ip"], line["proxy"]) for line in connects} == {(CLIENT, BALANCER)}, name
        assert {line["ip"] for line in lines if line.get("msg") == "login"} == {CLIENT}, name
        assert not [line for line in lines if line.get("ip") == BALANCER], name
