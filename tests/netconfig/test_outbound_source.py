"""Outbound SMTP leaves from an address added with ``live.add_address`` (issue 15, item 6).

Namespace ``ns`` gets a primary address and a second, added one on ``v0``;
a small SMTP sink in ``peer_ns`` records the peer address of each
connection. The real client (:class:`mailstead.net.smtp_client.SMTPTransport`)
runs inside ``ns`` with ``source_ip`` set to the added address, so the sink
sees that address rather than the primary one the kernel would pick.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from mailstead.netconfig import live
from tests.netconfig.netns import Pair

PRIMARY, ADDED, SINK, PORT = "10.201.7.1", "10.201.7.25", "10.201.7.2", 2525

# Answers 220/250/250/250/354/250/221 (RFC 5321 §4.2), one connection at a
# time; writes {"peer", "data"} per session to argv[3], "ready" to argv[4].
_SINK = r"""
import json, socket, sys
host, port, out, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
srv = socket.create_server((host, port))
srv.settimeout(60)
open(ready, "w").write("ready")
conn, (peer, _) = srv.accept()
conn.settimeout(30)
f = conn.makefile("rb")
say = lambda line: conn.sendall(line.encode() + b"\r\n")
say("220 sink ESMTP")
data = b""
for line in f:
    verb = line[:4].upper()
    if verb == b"DATA":
        say("354 go on")
        for body in f:
            if body == b".\r\n":
                break
            data += body
        say("250 2.0.0 taken")
    elif verb == b"QUIT":
        say("221 2.0.0 bye")
        break
    else:
        say("250 2.0.0 ok")
conn.close()
with open(out, "w") as fh:
    json.dump({"peer": peer, "data": data.decode()}, fh)
"""

# Runs inside ``ns``: one delivery with the given source address, the result as JSON.
_CLIENT = r"""
import asyncio, json, sys
from mailstead.mta.transport import OutboundMessage, SessionPolicy
from mailstead.net.smtp_client import SMTPTransport
from mailstead.proto.smtp.events import MailParams, Recipient, RcptParams

sink, port, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
content = b"Subject: source test\r\n\r\nsent from the added address\r\n"
message = OutboundMessage(
    "alice@src.test", (Recipient("bob@sink.test", RcptParams()),), content, MailParams()
)

async def on_result(index, result):
    pass

async def main():
    policy = SessionPolicy("mx.src.test", source_ip=source, require_tls=False)
    done = await SMTPTransport(connect_timeout=10).deliver(
        "sink.test", sink, port, [message], policy, on_result
    )
    outcomes = [[r.outcome.value for r in m.recipients] for m in done.results]
    print(json.dumps({"connected": done.connected, "failure": str(done.failure or ""),
                      "outcomes": outcomes}))

asyncio.run(main())
"""


def _wait_for(path: Path, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, f"sink exited early: {proc.returncode}"
        assert time.monotonic() < deadline, f"no {path.name} after {seconds}s"
        time.sleep(0.05)


def test_delivery_leaves_from_the_added_address(pair: Pair, tmp_path: Path) -> None:
    live.add_address(pair.iface, f"{PRIMARY}/24", netns=pair.ns)
    pair.run("addr", "add", f"{SINK}/24", "dev", pair.peer, ns=pair.peer_ns)
    outcome = live.add_address(pair.iface, f"{ADDED}/24", netns=pair.ns)
    assert outcome.changed and ADDED in {c.split("/")[0] for c in pair.cidrs()}

    (tmp_path / "sink.py").write_text(_SINK)
    (tmp_path / "client.py").write_text(_CLIENT)
    seen, ready = tmp_path / "seen.json", tmp_path / "ready"
    sink = subprocess.Popen(
        [pair.ip, "netns", "exec", pair.peer_ns, sys.executable,
         str(tmp_path / "sink.py"), SINK, str(PORT), str(seen), str(ready)],
    )  # fmt: skip
    try:
        _wait_for(ready, sink, 30)
        done = subprocess.run(
            [pair.ip, "netns", "exec", pair.ns, sys.executable,
             str(tmp_path / "client.py"), SINK, str(PORT), ADDED],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result == {"connected": True, "failure": "", "outcomes": [["delivered"]]}
        sink.wait(timeout=30)
        record = json.loads(seen.read_text())
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait(timeout=10)
    assert record["peer"] == ADDED
    assert record["data"] == "Subject: source test\r\n\r\nsent from the added address\r\n"
