"""What a fuzz session sends and how it is played: plans, mutations, the client.

A plan is a realistic SMTP, IMAP or POP3 session (steps: bytes to write and
the reply to wait for), then mutated deterministically from a seed: the same
(seed, protocol, index) always gives the same bytes. ``play`` runs one plan
over one loopback connection with a deadline and says how it ended. Used by
``fuzz_network.py``, which owns the server, the load and the checks.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import functools
import random
import re
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

PROTOCOLS = ("smtp", "imap", "pop3")
LISTENERS = {"smtp": (("smtp", 40), ("submission", 35), ("submissions", 25))}
LISTENERS |= {"imap": (("imap", 50), ("imaps", 50)), "pop3": (("pop3", 50), ("pop3s", 50))}
IMPLICIT_TLS = frozenset({"submissions", "imaps", "pop3s"})
DOMAIN = "example.test"
HOSTNAME = "mx.example.test"
PASSWORD = "Fuzz-pass-1"
USERS = tuple(f"u{i}@{DOMAIN}" for i in range(10))
SINK = f"sink@{DOMAIN}"
CRLF = b"\r\n"
PLAN_NAME = r"(smtp|imap|pop3)-[0-9]+"

# Seconds a session step waits for its reply before it goes on regardless (a
# failed login answers after 1 s plus a scrypt check).
STEP_WAIT = 1.5
# Seconds a finished session keeps reading before it closes.
LINGER = 0.3


# --------------------------------------------------------------------------- session plans


@dataclass
class Step:
    """Bytes one write sends, and the reply the session waits for after it."""

    data: bytes
    wait: str = ""  # "", "smtp", "imap", "imap-greeting", "pop", "pop-multi"
    tag: str = ""  # the IMAP tag whose tagged reply ends the wait
    tls: bool = False  # STARTTLS/STLS: a positive reply starts the TLS handshake
    pause: float = 0.0  # seconds to wait before sending (inside IDLE)


@dataclass
class Plan:
    """One fuzz session: the steps, how they are written, and how it ends."""

    name: str
    proto: str
    role: str
    ip: str
    steps: list[Step]
    mode: str = "sync"  # sync: wait for replies; pipeline: write all, then read; deaf: never read
    chunk: int = 0  # largest write in bytes (0: a step in one write)
    stop_at: tuple[int, int] | None = None  # (step, offset): close there
    close: str = "fin"  # fin | rst | half
    tls_plain: bool = False  # an implicit-TLS port spoken to in clear text
    hello: tuple[int, int] | None = None  # (cut, flip) of a raw ClientHello; nothing else
    mutations: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """An unmutated, synchronous session: every step must be answered."""
        return (
            not self.mutations
            and self.mode == "sync"
            and self.stop_at is None
            and not self.tls_plain
            and self.hello is None
        )

    def describe(self) -> str:
        parts = [f"{self.role}", self.mode]
        if self.chunk:
            parts.append(f"chunks<={self.chunk}")
        if self.stop_at is not None:
            parts.append(f"close({self.close}) at step {self.stop_at[0]}+{self.stop_at[1]}")
        elif self.close != "fin":
            parts.append(f"close={self.close}")
        if self.tls_plain:
            parts.append("clear text on TLS port")
        if self.hello is not None:
            parts.append(f"ClientHello cut={self.hello[0]} flip={self.hello[1]}")
        return ", ".join(parts + self.mutations)

    def to_json(self) -> dict[str, object]:
        steps = [
            {"data": s.data.decode("latin-1"), "wait": s.wait, "tag": s.tag, "tls": s.tls}
            | ({"pause": s.pause} if s.pause else {})
            for s in self.steps
        ]
        return {
            "name": self.name,
            "proto": self.proto,
            "role": self.role,
            "ip": self.ip,
            "mode": self.mode,
            "chunk": self.chunk,
            "stop_at": list(self.stop_at) if self.stop_at else None,
            "close": self.close,
            "tls_plain": self.tls_plain,
            "hello": list(self.hello) if self.hello else None,
            "mutations": self.mutations,
            "steps": steps,
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Plan:
        raw_steps = d["steps"]
        assert isinstance(raw_steps, list)
        steps = [
            Step(
                s["data"].encode("latin-1"),
                s.get("wait", ""),
                s.get("tag", ""),
                bool(s.get("tls")),
                float(s.get("pause", 0.0)),
            )
            for s in raw_steps
        ]
        stop, hello = d.get("stop_at"), d.get("hello")
        return cls(
            name=str(d["name"]),
            proto=str(d["proto"]),
            role=str(d["role"]),
            ip=str(d["ip"]),
            steps=steps,
            mode=str(d.get("mode", "sync")),
            chunk=int(d.get("chunk", 0)),  # type: ignore[call-overload]
            stop_at=(int(stop[0]), int(stop[1])) if isinstance(stop, list) else None,
            close=str(d.get("close", "fin")),
            tls_plain=bool(d.get("tls_plain")),
            hello=(int(hello[0]), int(hello[1])) if isinstance(hello, list) else None,
            mutations=list(d.get("mutations") or []),  # type: ignore[call-overload]
        )

    def transcript(self) -> str:
        lines = [f"# {self.name} -> {self.role} from {self.ip}: {self.describe()}"]
        for i, step in enumerate(self.steps):
            data = step.data
            if self.stop_at is not None and i == self.stop_at[0]:
                data = data[: self.stop_at[1]]
            shown = repr(data) if len(data) <= 600 else f"{data[:500]!r} ... {data[-80:]!r}"
            extra = " [TLS]" if step.tls else ""
            lines.append(f"C{i:02d} ({len(data)} B, wait {step.wait or '-'}{extra}): {shown}")
            if self.stop_at is not None and i == self.stop_at[0]:
                lines.append(f"-- close ({self.close})")
                break
        return "\n".join(lines) + "\n"


# Every session connects from its own address, in its own /24 (127.20.0.x up to
# 127.255.255.x): the server's log names it by "[ip]", and the per-address and
# per-network limits (connection gate, failed-login penalty) see each session as
# a newcomer, so mutated logins of earlier sessions do not throttle later ones.
_NETWORKS = 236 * 256


def session_ip(number: int) -> str:
    """The loopback address session ``number`` connects from (never in 127.0.0.0/24)."""
    host, network = divmod(number, _NETWORKS)
    high, low = divmod(network, 256)
    return f"127.{20 + high}.{low}.{host % 250 + 1}"


def session_number(ip: str) -> int | None:
    """The inverse of ``session_ip``; None for other addresses."""
    parts = ip.split(".")
    if len(parts) != 4 or parts[0] != "127" or not all(p.isdigit() for p in parts):
        return None
    high, low, host = int(parts[1]) - 20, int(parts[2]), int(parts[3]) - 1
    if not (0 <= high < 236 and 0 <= low < 256 and 0 <= host < 250):
        return None
    return host * _NETWORKS + high * 256 + low


def _b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


def _plain(user: str) -> bytes:
    return _b64(f"\0{user}\0{PASSWORD}")


_WORDS = re.findall(
    r"\S+",
    "lorem ipsum dolor sit amet invoice meeting report quarterly draft budget "
    'Zürich naïve Grüße déjà-vu 東京 <b>bold</b> a=b&c=d 100% "quoted" (paren) {brace}',
)


def message(rng: random.Random, sender: str, rcpt: str) -> bytes:
    """A realistic message: headers, text or multipart, dots and long lines (CRLF)."""
    subject = rng.choice(
        (
            "Quarterly report",
            "Re: Fwd: meeting notes",
            "=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_Z=C3=BCrich?=",
            "Ünïcödé subject",
            "x" * rng.choice((80, 300)),
        )
    )
    head = [
        f'From: "Fuzz Sender" <{sender}>',
        f"To: <{rcpt}>",
        f"Subject: {subject}",
        "Date: Mon, 01 Jul 2024 10:00:00 +0000",
        f"Message-ID: <{rng.getrandbits(64):x}@fuzz.test>",
        "MIME-Version: 1.0",
    ]
    count = rng.choice((3, 10, 40, 200)) if rng.random() > 0.03 else 2500
    body = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.05:
            body.append("." * rng.randint(1, 3) + " ".join(rng.choices(_WORDS, k=3)))
        elif kind < 0.08:
            body.append("From the desk of the fuzzer")
        elif kind < 0.1 and count < 1000:
            body.append("y" * 998)
        elif kind < 0.2:
            body.append("")
        else:
            body.append(" ".join(rng.choices(_WORDS, k=rng.randint(1, 12))))
    if rng.random() < 0.3:
        boundary = f"=_b{rng.getrandbits(32):x}"
        attachment = base64.encodebytes(rng.randbytes(rng.choice((60, 3000)))).decode()
        head.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        body = [
            f"--{boundary}",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            *body,
            f"--{boundary}",
            'Content-Type: application/octet-stream; name="a.bin"',
            "Content-Transfer-Encoding: base64",
            "",
            *attachment.splitlines(),
            f"--{boundary}--",
        ]
    else:
        head.append("Content-Type: text/plain; charset=utf-8")
    return "\r\n".join([*head, "", *body, ""]).encode()


def dot_stuffed(msg: bytes) -> bytes:
    """RFC 5321 §4.5.2: a leading dot doubled, then the end-of-data line."""
    stuffed = re.sub(rb"(?m)^\.", b"..", msg)
    if not stuffed.endswith(CRLF):
        stuffed += CRLF
    return stuffed + b".\r\n"


def _smtp_steps(rng: random.Random, role: str) -> list[Step]:
    steps = [Step(b"", "smtp")]
    ehlo = rng.choice((b"EHLO client.fuzz.test", b"EHLO [127.0.0.1]", b"HELO client.fuzz.test"))
    if role != "smtp":  # AUTH is an extension: the MSA needs EHLO
        ehlo = ehlo.replace(b"HELO", b"EHLO")
    steps.append(Step(ehlo + CRLF, "smtp"))
    if role == "submission" or (role == "smtp" and rng.random() < 0.25):
        steps.append(Step(b"STARTTLS\r\n", "smtp", tls=True))
        steps.append(Step(b"EHLO client.fuzz.test\r\n", "smtp"))
    user = rng.choice(USERS)
    # The MSA requires AUTH (mutations may still break it); the MTA rarely sees it.
    if role != "smtp" or rng.random() < 0.05:
        steps += rng.choice(
            (
                [Step(b"AUTH PLAIN " + _plain(user) + CRLF, "smtp")],
                [Step(b"AUTH PLAIN\r\n", "smtp"), Step(_plain(user) + CRLF, "smtp")],
                [
                    Step(b"AUTH LOGIN\r\n", "smtp"),
                    Step(_b64(user) + CRLF, "smtp"),
                    Step(_b64(PASSWORD) + CRLF, "smtp"),
                ],
                [
                    Step(b"AUTH LOGIN " + _b64(user) + CRLF, "smtp"),
                    Step(_b64(PASSWORD) + CRLF, "smtp"),
                ],
            )
        )
    sender = user if role != "smtp" else f"sender{rng.randrange(100)}@remote.test"
    for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
        steps += _smtp_transaction(rng, sender, extended=ehlo.startswith(b"EHLO"))
    extras = (b"NOOP", b"RSET", b"VRFY sink", b"HELP", b"EXPN staff")
    # Before a transaction or at the end, never inside AUTH or DATA; the last place first.
    between = [i for i in range(2, len(steps)) if steps[i].data.startswith(b"MAIL")]
    between.append(len(steps))
    for at in sorted(
        rng.sample(between, min(len(between), rng.choice((0, 0, 1, 2)))), reverse=True
    ):
        steps.insert(at, Step(rng.choice(extras) + CRLF, "smtp"))
    steps.append(Step(b"QUIT\r\n", "smtp"))
    return steps


def _smtp_transaction(rng: random.Random, sender: str, extended: bool) -> list[Step]:
    rcpts = [rng.choice((SINK, SINK, rng.choice(USERS)))]  # one valid, as a real client has
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        r = rng.random()
        rcpts.append(
            SINK
            if r < 0.6
            else rng.choice(USERS)
            if r < 0.75
            else "nobody@example.test"
            if r < 0.85
            else "Sink@EXAMPLE.TEST"
            if r < 0.95
            else "someone@remote.test"
        )
    msg = message(rng, sender, rcpts[0])
    params = rng.choice((b"", b" SIZE=%d" % len(msg), b" BODY=8BITMIME", b" SMTPUTF8"))
    params = params if extended else b""
    steps = [Step(b"MAIL FROM:<%s>%s\r\n" % (sender.encode(), params), "smtp")]
    steps += [Step(b"RCPT TO:<%s>\r\n" % r.encode(), "smtp") for r in rcpts]
    if rng.random() < 0.7 or not extended:  # BDAT is CHUNKING, an extension
        steps += [Step(b"DATA\r\n", "smtp"), Step(dot_stuffed(msg), "smtp")]
    else:
        cuts = sorted(rng.sample(range(1, len(msg)), min(len(msg) - 1, rng.choice((0, 1, 2)))))
        pieces = [msg[a:b] for a, b in zip([0, *cuts], [*cuts, len(msg)], strict=True)]
        for i, piece in enumerate(pieces):
            last = b" LAST" if i == len(pieces) - 1 else b""
            steps.append(Step(b"BDAT %d%s\r\n" % (len(piece), last) + piece, "smtp"))
    if rng.random() < 0.2:
        steps.append(Step(b"RSET\r\n", "smtp"))
    return steps


class _Tags:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"a{self.n}"

    def cmd(self, text: bytes, **kw: object) -> Step:
        tag = self.next()
        return Step(tag.encode() + b" " + text + CRLF, "imap", tag, **kw)  # type: ignore[arg-type]


def _imap_login(rng: random.Random, t: _Tags, user: str) -> list[Step]:
    u, p = user.encode(), PASSWORD.encode()
    choice = rng.randrange(7)
    if choice == 0:
        return [t.cmd(b"LOGIN " + u + b" " + p)]
    if choice == 1:
        return [t.cmd(b'LOGIN "' + u + b'" "' + p + b'"')]
    tag = t.next()
    tb = tag.encode()
    if choice == 2:  # synchronizing literals: wait for "+" each time
        return [
            Step(tb + b" LOGIN {%d}\r\n" % len(u), "imap", tag),
            Step(u + b" {%d}\r\n" % len(p), "imap", tag),
            Step(p + CRLF, "imap", tag),
        ]
    if choice == 3:  # RFC 7888 LITERAL+
        return [
            Step(tb + b" LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(u), u, len(p), p), "imap", tag)
        ]
    if choice == 4:
        return [
            Step(tb + b" AUTHENTICATE PLAIN\r\n", "imap", tag),
            Step(_plain(user) + CRLF, "imap", tag),
        ]
    if choice == 5:  # RFC 4959 SASL-IR
        return [Step(tb + b" AUTHENTICATE PLAIN " + _plain(user) + CRLF, "imap", tag)]
    return [
        Step(tb + b" AUTHENTICATE LOGIN\r\n", "imap", tag),
        Step(_b64(user) + CRLF, "imap", tag),
        Step(_b64(PASSWORD) + CRLF, "imap", tag),
    ]


_FETCH_SETS = (b"1", b"1:3", b"2,4", b"*", b"1:*", b"3:2")
_FETCH_ITEMS = (
    b"FLAGS",
    b"(UID FLAGS RFC822.SIZE)",
    b"(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])",
    b"BODY.PEEK[]",
    b"(ENVELOPE BODYSTRUCTURE)",
    b"BODY.PEEK[1]<0.100>",
    b"BINARY.PEEK[1]",
    b"(INTERNALDATE BODY.PEEK[TEXT])",
    b"ALL",
)
_SEARCHES = (
    b"SEARCH ALL",
    b"SEARCH SUBJECT report",
    b'SEARCH OR FROM "fuzz" TEXT lorem',
    b"UID SEARCH SINCE 1-Jan-2020 NOT SEEN",
    'SEARCH CHARSET UTF-8 SUBJECT "Grüße"'.encode(),
    b"SEARCH LARGER 1000 SMALLER 100000",
    b"SEARCH HEADER Message-ID fuzz",
    b"SEARCH 1:3 UNDELETED (OR FLAGGED ANSWERED)",
    b"UID SEARCH RETURN (MIN MAX COUNT) ALL",
)
_IMAP_MISC = (
    b"NOOP",
    b"CHECK",
    b'LIST "" "*"',
    b'LSUB "" *',
    b"STATUS INBOX (MESSAGES UIDNEXT UNSEEN)",
    b"NAMESPACE",
    b'ID ("name" "fuzz")',
    b"ENABLE UTF8=ACCEPT",
    b"STORE 1 +FLAGS (\\Seen)",
    b"STORE 1:2 -FLAGS.SILENT (\\Flagged)",
    b"UID STORE 1 +FLAGS ($Fuzz)",
    b"COPY 1 Archive",
    b"UNSELECT",
    b"EXAMINE INBOX",
)


def _imap_steps(rng: random.Random, role: str) -> list[Step]:
    t = _Tags()
    steps = [Step(b"", "imap-greeting")]
    if rng.random() < 0.5:
        steps.append(t.cmd(b"CAPABILITY"))
    cleartext = role == "imap" and rng.random() < 0.1
    if role == "imap" and not cleartext:
        steps.append(t.cmd(b"STARTTLS", tls=True))
    user = rng.choice(USERS)
    steps += _imap_login(rng, t, user)
    if cleartext:  # LOGINDISABLED: a client that tried gives up
        return [*steps, t.cmd(b"LOGOUT")]
    if rng.random() < 0.85:
        steps.append(t.cmd(rng.choice((b"SELECT INBOX", b'SELECT "INBOX"', b"EXAMINE INBOX"))))
    for _ in range(rng.choice((1, 2, 3, 5, 8))):
        r = rng.random()
        if r < 0.25:
            uid = b"UID " if rng.random() < 0.3 else b""
            fetch = b"FETCH %s %s" % (rng.choice(_FETCH_SETS), rng.choice(_FETCH_ITEMS))
            steps.append(t.cmd(uid + fetch))
        elif r < 0.45:
            steps.append(t.cmd(rng.choice(_SEARCHES)))
        elif r < 0.6:
            steps += _imap_append(rng, t, user)
        elif r < 0.7:
            tag = t.next()
            steps.append(Step(tag.encode() + b" IDLE\r\n", "imap", tag))
            steps.append(Step(b"DONE\r\n", "imap", tag, pause=rng.choice((0.0, 0.1, 0.6))))
        elif r < 0.78:
            box = b"Fuzz%d" % rng.randrange(1000)
            steps += [t.cmd(b"CREATE " + box), t.cmd(b"SELECT " + box), t.cmd(b"DELETE " + box)]
        else:
            steps.append(t.cmd(rng.choice(_IMAP_MISC)))
    if rng.random() < 0.9:
        steps.append(t.cmd(b"LOGOUT"))
    return steps


def _imap_append(rng: random.Random, t: _Tags, user: str) -> list[Step]:
    msg = message(rng, user, user)
    if len(msg) > 60_000:
        msg = msg[:60_000] + CRLF
    flags = rng.choice((b"", b" (\\Seen)", b' (\\Flagged) "14-Jul-2024 02:44:25 +0200"'))
    tag = t.next()
    head = tag.encode() + b" APPEND INBOX" + flags
    if rng.random() < 0.5:
        return [
            Step(head + b" {%d}\r\n" % len(msg), "imap", tag),
            Step(msg + CRLF, "imap", tag),
        ]
    return [Step(head + b" {%d+}\r\n" % len(msg) + msg + CRLF, "imap", tag)]


def _pop3_steps(rng: random.Random, role: str) -> list[Step]:
    steps = [Step(b"", "pop")]
    if rng.random() < 0.6:
        steps.append(Step(b"CAPA\r\n", "pop-multi"))
    cleartext = role == "pop3" and rng.random() < 0.1
    if role == "pop3" and not cleartext:
        steps.append(Step(b"STLS\r\n", "pop", tls=True))
        if rng.random() < 0.3:
            steps.append(Step(b"CAPA\r\n", "pop-multi"))
    user = rng.choice(USERS)
    u = user.encode()
    steps += rng.choice(
        (
            [Step(b"USER " + u + CRLF, "pop"), Step(b"PASS " + PASSWORD.encode() + CRLF, "pop")],
            [Step(b"AUTH PLAIN " + _plain(user) + CRLF, "pop")],
            [Step(b"AUTH PLAIN\r\n", "pop"), Step(_plain(user) + CRLF, "pop")],
            [
                Step(b"AUTH LOGIN\r\n", "pop"),
                Step(_b64(user) + CRLF, "pop"),
                Step(_b64(PASSWORD) + CRLF, "pop"),
            ],
            [
                Step(b"APOP " + u + b" 0123456789abcdef0123456789abcdef\r\n", "pop"),
                Step(b"USER " + u + CRLF, "pop"),
                Step(b"PASS " + PASSWORD.encode() + CRLF, "pop"),
            ],
        )
    )
    if cleartext:  # no login without TLS: a client that tried gives up
        return [*steps, Step(b"QUIT\r\n", "pop")]
    deleted = False
    for _ in range(rng.choice((1, 2, 4, 7))):
        n = rng.choice((1, 1, 2, 3, 50))
        command, wait = rng.choice(
            (
                (b"STAT", "pop"),
                (b"LIST", "pop-multi"),
                (b"LIST %d" % n, "pop"),
                (b"UIDL", "pop-multi"),
                (b"UIDL %d" % n, "pop"),
                (b"RETR %d" % n, "pop-multi"),
                (b"TOP %d %d" % (n, rng.choice((0, 5))), "pop-multi"),
                (b"DELE %d" % n, "pop"),
                (b"NOOP", "pop"),
                (b"RSET", "pop"),
            )
        )
        deleted |= command.startswith(b"DELE")
        steps.append(Step(command + CRLF, wait))
    if rng.random() < 0.9:
        if deleted:  # keep the maildrop for the sessions after this one
            steps.append(Step(b"RSET\r\n", "pop"))
        steps.append(Step(b"QUIT\r\n", "pop"))
    return steps


# --------------------------------------------------------------------------- mutations


def _table(text: str) -> tuple[bytes, ...]:
    """Whitespace-separated byte strings with Python escapes (\\r, \\x00, \\x20 for space)."""
    return tuple(codecs.escape_decode(word)[0] for word in text.split())


# Inserted at a random place: line ends, NUL, IMAP specials, huge or odd literal
# sizes, an end-of-data line, 8-bit and invalid UTF-8, format strings.
_TOKENS = _table(
    r"""
    \r \n \r\n \x00 " \\ { } ( ) [ ] < > * % ~ \x20 \t \xff \xc3( \xe2\x80\xae + - : @ .. %n%s%x
    {4294967296}\r\n {99999999999999999999}\r\n {18446744073709551615+}\r\n {0}\r\n
    {3+}\r\nabc ~{8}\r\n {50000000}\r\n \r\n.\r\n =?utf-8?b?
    """
)
# Put in place of a number (sizes, message numbers, literal lengths).
_NUMBERS = _table("0 -1 1 4294967295 4294967296 18446744073709551616 99999999999999999999 * 1:*")
# Put in place of a line's first word: another command, of this protocol or another.
_VERBS = _table(
    r"""
    EHLO\x20x MAIL\x20FROM:<a@b> DATA BDAT\x2010 AUTH\x20PLAIN STARTTLS a\x20LOGIN a\x20SELECT
    a\x20FETCH a\x20APPEND a\x20IDLE DONE USER PASS RETR TOP STLS CAPA QUIT
    """
)


def _target(steps: list[Step], rng: random.Random) -> int | None:
    """A step with bytes to mutate (the greeting step has none)."""
    candidates = [i for i, s in enumerate(steps) if s.data]
    return rng.choice(candidates) if candidates else None


def _insert_what(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.75:
        return rng.choice(_TOKENS)
    if r < 0.9:
        return bytes([rng.choice(b"A\"'{( \x00\r")]) * rng.choice((30, 100, 600, 5000, 70000))
    return rng.randbytes(rng.randint(1, 16))


def _mutate_once(steps: list[Step], rng: random.Random) -> str | None:
    i = _target(steps, rng)
    if i is None:
        return None
    data = steps[i].data
    pos = rng.randrange(len(data) + 1)
    op = rng.randrange(14)
    if op == 0 and data:
        pos = min(pos, len(data) - 1)
        bit = 1 << rng.randrange(8)
        steps[i].data = data[:pos] + bytes([data[pos] ^ bit]) + data[pos + 1 :]
        return f"flip s{i}@{pos}^{bit:#x}"
    if op in (1, 2, 3):
        what = _insert_what(rng)
        steps[i].data = data[:pos] + what + data[pos:]
        shown = what if len(what) <= 24 else what[:8] + b"*%d" % len(what)
        return f"insert s{i}@{pos} {shown!r}"
    if op == 4:
        end = min(len(data), pos + rng.choice((1, 2, 5, 40)))
        steps[i].data = data[:pos] + data[end:]
        return f"delete s{i}@{pos}:{end}"
    if op == 5:
        steps[i].data = data[:pos]
        return f"truncate s{i}@{pos}"
    if op == 6:
        steps[i].data = data[:pos] + CRLF + data[pos:]
        return f"split s{i}@{pos}"
    if op == 7:
        ends = list(re.finditer(rb"\r?\n", data))
        if not ends:
            return None
        m = rng.choice(ends)
        steps[i].data = data[: m.start()] + data[m.end() :]
        return f"join s{i}@{m.start()}"
    if op == 8:
        ending = rng.choice((b"\n", b"\r", b""))
        steps[i].data = data.replace(CRLF, ending)
        return f"line-ends s{i} {ending!r}"
    if op == 9:
        numbers = list(re.finditer(rb"[0-9]+", data))
        if not numbers:
            return None
        m = rng.choice(numbers)
        new = rng.choice(_NUMBERS)
        steps[i].data = data[: m.start()] + new + data[m.end() :]
        return f"number s{i}@{m.start()} {new.decode()}"
    if op == 10:
        times = rng.choice((2, 3, 25, 60)) if len(data) < 4096 else 2
        steps[i + 1 : i + 1] = [
            Step(steps[i].data, steps[i].wait, steps[i].tag) for _ in range(times - 1)
        ]
        return f"repeat s{i} x{times}"
    if op == 11:
        del steps[i]
        return f"drop s{i}"
    if op == 12 and i + 1 < len(steps):
        steps[i], steps[i + 1] = steps[i + 1], steps[i]
        return f"swap s{i}"
    verb = rng.choice(_VERBS)
    rest = data.split(b" ", 1)[1] if b" " in data else CRLF
    steps[i].data = verb + b" " + rest
    return f"verb s{i} {verb.decode()}"


_IMAP_UNTERMINATED = re.compile(rb'"(?:[^"\\\x00\r\n]|\\["\\]){22,}(?![^"\\\x00\r\n]|\\["\\]|")')


def streams(plan: Plan) -> list[bytes]:
    """What the server reads in clear text, one stream per TLS layer."""
    out = [b""]
    for i, step in enumerate(plan.steps):
        stop = plan.stop_at is not None and i == plan.stop_at[0]
        data = step.data[: plan.stop_at[1]] if stop and plan.stop_at else step.data
        out[-1] += data
        if stop:
            break
        if step.tls:
            out.append(b"")
    return out


_LITERAL_AT_END = re.compile(rb"~?\{([0-9]{1,9})\+?\}\r?\n")


def _lines(stream: bytes) -> bytes:
    """An IMAP client stream without the contents of its literals (never parsed)."""
    out, pos = [], 0
    for m in _LITERAL_AT_END.finditer(stream):
        if m.start() < pos:
            continue
        out.append(stream[pos : m.end()])
        pos = m.end() + int(m[1])
    out.append(stream[pos:])
    return b"".join(out)


def known_defect(plan: Plan) -> str | None:
    """The known defect whose trigger this session contains (approximately), if any."""
    if plan.hello is not None or plan.tls_plain:
        return None
    layers = streams(plan)
    if plan.proto == "imap" and any(_IMAP_UNTERMINATED.search(_lines(s)) for s in layers):
        return "IMAP unterminated quoted string (known)"
    if plan.proto == "pop3" and layers[-1] and not layers[-1].endswith(b"\n"):
        return "POP3 line without CRLF, then close (known)"
    return None


_BUILDERS: dict[str, Callable[[random.Random, str], list[Step]]] = {
    "smtp": _smtp_steps,
    "imap": _imap_steps,
    "pop3": _pop3_steps,
}


def make_plan(seed: int, proto: str, index: int, number: int, avoid_known: bool) -> Plan:
    """Session ``index`` of ``proto``: the same seed always gives the same bytes."""
    for attempt in range(50):
        rng = random.Random(f"{seed}/{proto}/{index}" + (f"/{attempt}" if attempt else ""))
        plan = _build_plan(rng, proto, index, number)
        if not avoid_known or known_defect(plan) is None:
            break
    return plan


def _build_plan(rng: random.Random, proto: str, index: int, number: int) -> Plan:
    roles, weights = zip(*LISTENERS[proto], strict=True)
    role = rng.choices(roles, weights)[0]
    steps = _BUILDERS[proto](rng, role)
    plan = Plan(f"{proto}-{index:05d}", proto, role, session_ip(number), steps)
    r = rng.random()
    count = 0 if r < 0.15 else 1 if r < 0.5 else 2 if r < 0.75 else rng.randint(3, 8)
    for _ in range(count):
        done = _mutate_once(plan.steps, rng)
        if done:
            plan.mutations.append(done)
    r = rng.random()
    plan.mode = "sync" if r < 0.75 else "pipeline" if r < 0.9 else "deaf"
    if rng.random() < 0.3:
        plan.chunk = rng.choice((1, 2, 3, 7, 64, 512))
    if rng.random() < 0.2:
        at = rng.randrange(len(plan.steps))
        plan.stop_at = (at, rng.randrange(len(plan.steps[at].data) + 1))
    plan.close = rng.choices(("fin", "rst", "half"), (6, 3, 1))[0]
    if role in IMPLICIT_TLS:
        r = rng.random()
        if r < 0.04:
            plan.tls_plain = True
        elif r < 0.08:
            plan.hello = (
                rng.choice((-1, rng.randrange(1, 600))),
                rng.choice((-1, rng.randrange(600))),
            )
    return plan


# --------------------------------------------------------------------------- the client

_SMTP_FINAL = re.compile(rb"(?:^|\n)[0-9]{3}(?:[ \r][^\n]*)?\n")
_IMAP_GREETING = re.compile(rb"(?:^|\n)\* (?:OK|PREAUTH|BYE)[^\n]*\n")
_POP_STATUS = re.compile(rb"(?:^|\n)(?:\+OK|-ERR|\+ |\+\r)[^\n]*\n")
_DOT_LINE = re.compile(rb"\n\.\r?\n")


@functools.lru_cache(maxsize=512)
def _imap_end(tag: str) -> re.Pattern[bytes]:
    return re.compile(rb"(?:^|\n)(?:" + re.escape(tag.encode()) + rb" |\+|\* BYE)[^\n]*\n")


def reply_complete(buf: bytes, step: Step) -> bool:
    """Whether ``buf`` (read since the step was sent) holds the reply it waits for."""
    if step.wait == "smtp":
        return _SMTP_FINAL.search(buf) is not None
    if step.wait == "imap":
        return _imap_end(step.tag).search(buf) is not None
    if step.wait == "imap-greeting":
        return _IMAP_GREETING.search(buf) is not None
    m = _POP_STATUS.search(buf)
    if step.wait == "pop" or m is None:
        return m is not None
    if not m.group().lstrip(b"\n").startswith(b"+OK"):
        return True
    return _DOT_LINE.search(buf, m.end() - 1) is not None


def _tls_accepted(buf: bytes, step: Step) -> bool:
    if step.wait == "smtp":
        finals = [m.group().lstrip(b"\n") for m in _SMTP_FINAL.finditer(buf)]
        return bool(finals) and finals[-1].startswith(b"220")
    if step.wait == "imap":
        return re.search(rb"(?:^|\n)" + re.escape(step.tag.encode()) + rb" OK", buf) is not None
    return buf.startswith(b"+OK") or b"\n+OK" in buf


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Clients trust the self-signed certificate blindly."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def client_hello() -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = tls_context().wrap_bio(incoming, outgoing, server_hostname=HOSTNAME)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@dataclass
class Outcome:
    """How a session ended, seen from the client."""

    kind: str
    detail: str = ""
    received: int = 0
    seconds: float = 0.0


class _End(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class Player:
    """Plays one plan over one connection."""

    def __init__(self, plan: Plan, port: int) -> None:
        self.plan = plan
        self.port = port
        self.rng = random.Random(f"chunks/{plan.name}")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.sock: socket.socket | None = None
        self.buf = b""
        self.eof = False
        self.received = 0
        self.greeted = False

    async def run(self) -> str:
        plan = self.plan
        implicit = plan.role in IMPLICIT_TLS and not plan.tls_plain and plan.hello is None
        try:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1",
                self.port,
                local_addr=(plan.ip, 0),
                ssl=tls_context() if implicit else None,
                server_hostname=HOSTNAME if implicit else None,
            )
        except ssl.SSLError as exc:
            raise _End("tls-failed", f"handshake: {exc}") from None
        except ConnectionRefusedError as exc:
            raise _End("connect-failed", str(exc)) from None
        self.sock = self.writer.get_extra_info("socket")
        if plan.hello is not None:
            return await self._hello()
        stopped = False
        for i, step in enumerate(plan.steps):
            if step.pause:
                await asyncio.sleep(step.pause)
            stop = plan.stop_at is not None and i == plan.stop_at[0]
            if step.tls and plan.mode != "sync":
                # Read what is pending first, or an earlier +OK would start TLS too early.
                await self._drain_replies(0.2)
            self.buf = b""
            await self._send(step.data[: plan.stop_at[1]] if stop and plan.stop_at else step.data)
            if stop:
                stopped = True
                break
            greeting = i == 0 and plan.mode != "deaf" and not plan.tls_plain
            if greeting or step.tls or (plan.mode == "sync" and step.wait):
                # The greeting may take as long as the session may; a reply STEP_WAIT.
                await self._read_reply(step, 3600.0 if greeting else STEP_WAIT)
                self.greeted = True
                if step.tls and _tls_accepted(self.buf, step):
                    await self._start_tls()
            if self.eof and i + 1 < len(plan.steps):
                return "closed"
        else:
            self.greeted = True
        if not stopped and plan.mode != "deaf":
            await self._drain_replies(STEP_WAIT if plan.mode == "pipeline" else LINGER)
        await self._close()
        return "ok"

    async def _hello(self) -> str:
        assert self.plan.hello is not None
        cut, flip = self.plan.hello
        data = bytearray(client_hello())
        if flip >= 0:
            data[flip % len(data)] ^= 0x40
        if cut >= 0:
            del data[cut % (len(data) + 1) :]
        await self._send(bytes(data))
        self.greeted = True
        await self._drain_replies(LINGER * 3)
        await self._close()
        return "ok"

    async def _send(self, data: bytes) -> None:
        assert self.writer is not None
        if not data:
            return
        size = self.plan.chunk
        if size:  # at most ~200 writes a step: tiny pieces of a big message only take time
            size = max(size, len(data) // 200)
        pieces = [data] if not size else []
        pos = 0
        while size and pos < len(data):
            n = self.rng.randint(1, size)
            pieces.append(data[pos : pos + n])
            pos += n
        for piece in pieces:
            self.writer.write(piece)
            await self.writer.drain()
            if size and self.rng.random() < 0.2:
                await asyncio.sleep(self.rng.random() * 0.005)

    async def _read_once(self, timeout: float) -> bool:
        assert self.reader is not None
        try:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        except TimeoutError:
            return False
        if not chunk:
            self.eof = True
            return False
        self.received += len(chunk)
        self.buf += chunk
        if len(self.buf) > 256 * 1024:  # keep the head and the tail for the reply checks
            self.buf = self.buf[:1024] + b"\r\n" + self.buf[-65536:]
        return True

    async def _read_reply(self, step: Step, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        while not reply_complete(self.buf, step) and not self.eof:
            remaining = until - loop.time()
            if remaining <= 0 or not await self._read_once(remaining):
                return

    async def _drain_replies(self, quiet: float) -> None:
        while not self.eof and await self._read_once(quiet):
            pass

    async def _start_tls(self) -> None:
        assert self.writer is not None
        self.buf = b""
        try:
            await self.writer.start_tls(
                tls_context(), server_hostname=HOSTNAME, ssl_handshake_timeout=STEP_WAIT * 2
            )
        except (ssl.SSLError, ConnectionError, TimeoutError, OSError) as exc:
            raise _End("tls-failed", f"STARTTLS handshake: {exc!r}") from None

    async def _close(self) -> None:
        assert self.writer is not None
        how = self.plan.close
        if how == "rst":
            self.abort(reset=True)
            return
        if how == "half" and self.writer.can_write_eof():
            self.writer.write_eof()
            await self._drain_replies(LINGER)
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 0.2)

    def abort(self, reset: bool = False) -> None:
        if self.writer is None:
            return
        if reset and self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


async def play(plan: Plan, port: int, timeout: float) -> Outcome:
    """Run ``plan`` against 127.0.0.1:``port`` within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    player = Player(plan, port)
    try:
        async with asyncio.timeout(timeout):
            kind, detail = await player.run(), ""
    except TimeoutError:
        silent = not player.greeted and player.received == 0
        kind = "no-greeting" if silent and player.writer is not None else "timeout"
        if player.writer is None:
            kind, detail = "connect-failed", "TCP connect timed out"
        else:
            detail = "no byte from the server" if silent else ""
    except _End as end:
        kind, detail = end.kind, end.detail
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
        kind, detail = "reset", type(exc).__name__
    except ssl.SSLError as exc:
        kind, detail = "reset", f"TLS: {exc.reason or exc}"
    except OSError as exc:
        kind, detail = "connect-failed" if player.writer is None else "reset", repr(exc)
    except Exception as exc:  # a bug of this script, reported as such
        kind, detail = "client-bug", repr(exc)
    finally:
        with contextlib.suppress(Exception):
            player.abort()
    if plan.tls_plain and kind == "no-greeting":
        kind = "timeout"  # the server waits for a ClientHello it never gets
    return Outcome(kind, detail, player.received, loop.time() - start)
