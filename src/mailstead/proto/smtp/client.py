"""The SMTP client as a sans-IO state machine (RFC 5321 and its ESMTP extensions).

One :class:`SMTPClient` is one outbound session to one host. The driver
writes :meth:`~SMTPClient.data_to_send` to the socket, feeds what it reads to
:meth:`~SMTPClient.receive_data` (``b""`` at end of file) and acts on
:meth:`~SMTPClient.next_event`:

* ``NEED_DATA``: read more (waiting at most :attr:`~SMTPClient.timeout`).
* :class:`StartTLSRequested`: upgrade the transport, then ``tls_started()``.
* :class:`Ready`, then ``PAUSED`` after it and after each
  :class:`MessageResult`: the session is idle; ``send_message()`` or ``quit()``.
* :class:`MessageResult`: exactly one per ``send_message()``, even when the
  session dies in the middle of the transaction.
* :class:`SessionFailed`, then :class:`Closed`: flush, close the transport.

It imports no socket, ssl, asyncio or time: the driver measures time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from mailstead.limits import SMTPClientLimits
from mailstead.proto.errors import LocalProtocolError, RemoteProtocolError
from mailstead.proto.smtp import replies as R
from mailstead.proto.smtp.client_events import (
    CLOSED,
    MessageResult,
    Outcome,
    Ready,
    RecipientResult,
    SessionFailed,
    StartTLSRequested,
    outcome_of,
)
from mailstead.proto.smtp.dotstuff import canonical, stuff
from mailstead.proto.smtp.events import NEED_DATA, PAUSED, Event, MailParams, Recipient
from mailstead.proto.smtp.extensions import HostExtensions
from mailstead.proto.smtp.replies import Reply, ReplyParser


def _check_path(address: str) -> None:
    if any(c < " " or c == "\x7f" for c in address):
        # A CR or LF here would smuggle a command: a bug upstream, never sent.
        raise LocalProtocolError(f"control character in address {address!r}")


@dataclass(slots=True)
class _Transaction:
    sender: str
    recipients: tuple[Recipient, ...]
    content: bytes  # canonical (CRLF) content
    params: MailParams
    dsn: bool
    mail: Reply | None = None
    rcpts: list[Reply] = field(default_factory=list)
    final: Reply | None = None  # the reply to DATA (if not 354) or to the end of data
    chunks: deque[bytes] = field(default_factory=deque)  # BDAT chunks not yet sent
    bdat_failed: Reply | None = None
    discard: bool = False  # 354 came though no recipient was accepted

    @property
    def mail_ok(self) -> bool:
        return self.mail is not None and self.mail.is_success

    @property
    def accepted(self) -> bool:
        return any(r.is_success for r in self.rcpts)


class SMTPClient:
    """One outbound SMTP session's protocol state, from greeting to QUIT.

    Owns the reply parser, the queue of replies still owed by the host (a
    pipelined batch owes several), what EHLO said, and the transaction in
    flight. Decides EHLO/HELO fallback, STARTTLS, which extensions to use
    and every recipient's outcome; the driver only moves bytes and time.
    """

    def __init__(
        self,
        helo_name: str,
        *,
        require_tls: bool = False,
        tls_available: bool = True,
        limits: SMTPClientLimits | None = None,
    ) -> None:
        if not helo_name or not helo_name.isascii() or not helo_name.isprintable():
            raise LocalProtocolError(f"bad HELO name {helo_name!r}")
        if " " in helo_name:
            raise LocalProtocolError(f"bad HELO name {helo_name!r}")
        if require_tls and not tls_available:
            raise LocalProtocolError("require_tls needs tls_available")
        self.helo_name = helo_name
        self.require_tls = require_tls
        self.tls_available = tls_available
        self.limits = limits or SMTPClientLimits()
        self.secure = False
        self.esmtp = False
        self._ext = HostExtensions()
        self._parser = self._new_parser()
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        # Replies the host owes, oldest first (RFC 2920 §3.1: in order).
        self._expect: deque[str] = deque(["greeting"])
        self._state = "greeting"  # greeting | hello | tls | ready | mail | quit | closed
        self._txn: _Transaction | None = None
        self._needs_rset = False
        self._eof = False

    def _new_parser(self) -> ReplyParser:
        return ReplyParser(max_line=self.limits.reply_line, max_lines=self.limits.reply_lines)

    # -- what the host offers ----------------------------------------------------

    @property
    def extensions(self) -> Mapping[str, str]:
        """EHLO keywords (upper-case) and their parameters, as last advertised."""
        return dict(self._ext.keywords)

    @property
    def max_size(self) -> int | None:
        """RFC 1870 §4: the host's SIZE limit, if it has one."""
        return self._ext.max_size

    @property
    def timeout(self) -> float | None:
        """Seconds to wait for the host's next bytes now (RFC 5321 §4.5.3.2).

        None when the client waits for the application, not the host.
        """
        if self._state == "tls":
            return self.limits.tls_handshake_timeout
        if self._state == "closed" or not self._expect:
            return None
        name = _TIMEOUTS[self._expect[0]]
        value: float = getattr(self.limits, name)
        return value

    @property
    def write_timeout(self) -> float:
        """RFC 5321 §4.5.3.2.5: the longest one write of message data may take."""
        return self.limits.data_block_timeout

    # -- the driver's side -------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the host; ``b""`` means it closed the connection."""
        if self._state == "closed":
            return
        if not data:
            self._eof = True
        elif self._state == "tls":
            # RFC 3207 §4.2 / CVE-2011-0411: clear text after 220 to
            # STARTTLS would be taken as replies to the first encrypted commands.
            self._fail(R.TLS_INJECTION, remote=False)
        else:
            self._parser.feed(data)

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event:
        while not self._events and self._state != "closed":
            try:
                reply = self._parser.next_reply()
            except RemoteProtocolError as exc:
                self._fail(Reply(451, "4.5.0", f"Protocol error: {exc}"), remote=False)
                continue
            if reply is None:
                if not self._eof:
                    break
                if self._state == "quit":
                    self._close()
                else:
                    self._fail(R.CONNECTION_LOST, remote=False)
                continue
            self._on_reply(reply)
        if self._events:
            return self._events.popleft()
        if self._state == "closed":
            return CLOSED
        return NEED_DATA if self._expect else PAUSED

    def tls_started(self) -> None:
        """The TLS handshake succeeded: RFC 3207 §4.2, forget what EHLO said, ask again."""
        if self._state != "tls":
            raise LocalProtocolError("no STARTTLS is in progress")
        self.secure = True
        self.esmtp = False
        self._ext = HostExtensions()
        self._parser = self._new_parser()
        self._state = "hello"
        self._command("EHLO " + self.helo_name, "ehlo")

    def timed_out(self) -> None:
        """The driver's timer ran out: give up the session (deferring what is pending)."""
        if self._state != "closed":
            what = f"{self._expect[0]} reply" if self._expect else "TLS handshake"
            if self._state == "ready":
                what = "the host"
            self._fail(Reply(451, "4.4.2", f"Timeout waiting for {what}"), remote=False)

    def connection_lost(self, text: str = "Connection lost") -> None:
        """The transport broke (reset, TLS handshake failure): give up the session."""
        if self._state == "quit":
            self._close()
        elif self._state != "closed":
            self._fail(Reply(451, "4.4.2", text), remote=False)

    def send_message(
        self,
        sender: str,
        recipients: Sequence[Recipient],
        content: bytes,
        params: MailParams | None = None,
    ) -> None:
        """Start one mail transaction; its :class:`MessageResult` follows.

        ``sender`` is "" for the null reverse-path; ``content`` is the whole
        message, CRLF line ends (bare CR or LF are made CRLF, see
        :func:`~mailstead.proto.smtp.dotstuff.canonical`). Of ``params``,
        ``smtputf8``, ``body``, ``ret`` and ``envid`` are used; SIZE is
        measured here.
        """
        if self._state != "ready":
            raise LocalProtocolError(f"send_message() while {self._state}")
        if not recipients:
            raise LocalProtocolError("a message needs at least one recipient")
        for address in (sender, *(r.address for r in recipients)):
            _check_path(address)
        params = params or MailParams()
        txn = _Transaction(
            sender, tuple(recipients), canonical(content), params, dsn="DSN" in self._ext
        )
        self._txn = txn
        self._state = "mail"
        refusal = self._ext.refusal(txn.sender, txn.recipients, txn.content, params)
        if refusal is not None:
            self._finish(refusal, remote=False)
        elif self._needs_rset:
            # After a failed transaction the host may still hold it (RFC 5321
            # §4.1.1.5). RSET goes alone: if it fails, MAIL would fail too,
            # and its 5xx must not bounce the next message.
            self._command("RSET", "rset")
        else:
            self._start_mail()

    def quit(self) -> None:
        """End the session politely (RFC 5321 §4.1.1.10); :class:`Closed` follows."""
        if self._state == "closed":
            return
        if self._state != "ready":
            raise LocalProtocolError(f"quit() while {self._state}")
        self._state = "quit"
        self._command("QUIT", "quit")

    # -- output ------------------------------------------------------------------

    def _command(self, line: str, *expect: str) -> None:
        self._out.append(line.encode("utf-8") + b"\r\n")
        self._expect.extend(expect)

    def _close(self) -> None:
        self._state = "closed"
        self._expect.clear()
        self._events.append(CLOSED)

    def _fail(
        self, reply: Reply, *, remote: bool, quit: bool = False, permanent: bool = False
    ) -> None:
        """End the session: the transaction in flight is deferred where still open."""
        if self._txn is not None:
            self._events.append(self._result(self._txn, abort=(reply, remote)))
            self._txn = None
        self._events.append(SessionFailed(reply, remote, permanent))
        if quit:
            # RFC 5321 §3.1 / §4.1.1.10: the host is still in step; say goodbye.
            self._out.append(b"QUIT\r\n")
        self._state = "closed"
        self._expect.clear()

    # -- replies -----------------------------------------------------------------

    def _on_reply(self, reply: Reply) -> None:
        if not self._expect:
            if reply.code == 421:  # e.g. the host's idle timeout while we wait
                self._fail(reply, remote=True)
            else:
                self._fail(R.UNEXPECTED_REPLY, remote=False)
            return
        kind = self._expect.popleft()
        if reply.code == 421 and kind != "quit":
            # RFC 5321 §3.8: 421 means the host is closing the channel.
            self._fail(reply, remote=True)
            return
        self._HANDLERS[kind](self, reply)

    def _protocol_error(self, what: str) -> None:
        self._fail(Reply(451, "4.5.0", f"Protocol error: unexpected reply to {what}"), remote=False)

    def _on_greeting(self, reply: Reply) -> None:
        if reply.code == 220:
            self._state = "hello"
            self._command("EHLO " + self.helo_name, "ehlo")
        elif reply.code >= 400:
            # RFC 5321 §3.1: after 554 the client SHOULD send QUIT.
            self._fail(reply, remote=True, quit=True, permanent=reply.code >= 500)
        else:
            self._protocol_error("greeting")

    def _on_ehlo(self, reply: Reply) -> None:
        if reply.is_success:
            self.esmtp = True
            self._ext = HostExtensions.from_ehlo(reply)
            self._after_hello()
        elif reply.code >= 500:
            # RFC 5321 §3.2: a host that does not know EHLO still knows HELO.
            self._command("HELO " + self.helo_name, "helo")
        elif reply.code >= 400:
            self._fail(reply, remote=True, quit=True)
        else:
            self._protocol_error("EHLO")

    def _on_helo(self, reply: Reply) -> None:
        if reply.is_success:
            self.esmtp = False
            self._ext = HostExtensions()
            self._after_hello()
        elif reply.code >= 400:
            self._fail(reply, remote=True, quit=True, permanent=reply.code >= 500)
        else:
            self._protocol_error("HELO")

    def _after_hello(self) -> None:
        if not self.secure and self.tls_available and "STARTTLS" in self._ext:
            # RFC 3207 §4: STARTTLS ends a pipelined group, so it goes alone.
            self._command("STARTTLS", "starttls")
        elif self.require_tls and not self.secure:
            self._fail(R.TLS_NOT_OFFERED, remote=False, quit=True)
        else:
            self._state = "ready"
            self._events.append(Ready(self.secure, frozenset(self._ext.keywords), self.max_size))

    def _on_starttls(self, reply: Reply) -> None:
        if reply.code == 220:
            if self._parser.pending:
                # RFC 3207 §4.2 / CVE-2011-0411: bytes behind the 220 were sent
                # in clear text and would be read as replies under TLS.
                self._fail(R.TLS_INJECTION, remote=False)
                return
            self._state = "tls"
            self._events.append(StartTLSRequested())
        elif self.require_tls:
            self._fail(R.TLS_REFUSED, remote=False, quit=True)
        else:
            # Opportunistic TLS (RFC 3207 §4.1): carry on in clear text; the
            # host's state is as it was after EHLO.
            self._state = "ready"
            self._events.append(Ready(False, frozenset(self._ext.keywords), self.max_size))

    def _on_quit(self, reply: Reply) -> None:
        self._close()

    # -- the mail transaction ----------------------------------------------------

    @property
    def _pipelining(self) -> bool:
        return "PIPELINING" in self._ext

    @property
    def _chunking(self) -> bool:
        return "CHUNKING" in self._ext

    def _start_mail(self) -> None:
        txn = self._txn
        assert txn is not None
        mail = self._ext.mail_command(txn.sender, txn.recipients, txn.content, txn.params)
        self._command(mail, "mail")
        if self._pipelining:
            # RFC 2920 §3.1: MAIL, every RCPT and DATA in one group, replies
            # read in order. BDAT waits for the RCPT replies instead, so no
            # message is sent for nobody.
            for rcpt in txn.recipients:
                self._command(self._ext.rcpt_command(rcpt), "rcpt")
            if not self._chunking:
                self._command("DATA", "data")

    def _on_rset(self, reply: Reply) -> None:
        if not reply.is_success:
            # The host is out of step; defer this message rather than risk it.
            self._fail(reply, remote=True, quit=True)
            return
        self._needs_rset = False
        self._start_mail()

    def _on_mail(self, reply: Reply) -> None:
        txn = self._txn
        assert txn is not None
        txn.mail = reply
        if not self._pipelining and not reply.is_success:
            self._finish(reply, remote=True)
        elif not self._pipelining:
            self._command(self._ext.rcpt_command(txn.recipients[0]), "rcpt")

    def _on_rcpt(self, reply: Reply) -> None:
        txn = self._txn
        assert txn is not None
        txn.rcpts.append(reply)
        done = len(txn.rcpts) == len(txn.recipients)
        if not self._pipelining and not done:
            self._command(self._ext.rcpt_command(txn.recipients[len(txn.rcpts)]), "rcpt")
        elif done and (self._chunking or not self._pipelining):
            self._after_rcpts(txn)

    def _after_rcpts(self, txn: _Transaction) -> None:
        if not txn.mail_ok:
            self._finish(txn.mail, remote=True)
        elif not txn.accepted:
            self._finish(None, remote=True)  # no DATA for nobody; RSET next time
        elif self._chunking:
            # RFC 3030 §2: no dot-stuffing; the size says where the chunk ends.
            content, size = txn.content, self.limits.bdat_chunk
            txn.chunks.extend(content[i : i + size] for i in range(0, len(content), size))
            if not txn.chunks:
                txn.chunks.append(b"")
            self._send_chunk(txn)
            while self._pipelining and txn.chunks:
                self._send_chunk(txn)
        else:
            self._command("DATA", "data")

    def _send_chunk(self, txn: _Transaction) -> None:
        chunk = txn.chunks.popleft()
        last = not txn.chunks
        self._command(
            f"BDAT {len(chunk)}{' LAST' if last else ''}", "bdat-last" if last else "bdat"
        )
        self._out.append(chunk)

    def _on_data(self, reply: Reply) -> None:
        txn = self._txn
        assert txn is not None
        if reply.code == 354:
            if txn.mail_ok and txn.accepted:
                self._out.append(stuff(txn.content))  # RFC 5321 §4.5.2
            else:
                # RFC 2920 §3.1: DATA went out before the RCPT replies came
                # back; a host that said 354 anyway gets an empty message.
                txn.discard = True
                self._out.append(b".\r\n")
            self._expect.append("dot")
        elif not txn.mail_ok:
            self._finish(txn.mail, remote=True)
        elif not txn.accepted:
            self._finish(None, remote=True)
        else:
            self._finish(reply, remote=True)

    def _on_dot(self, reply: Reply) -> None:
        txn = self._txn
        assert txn is not None
        if txn.discard:
            self._finish(txn.mail if not txn.mail_ok else None, remote=True)
        else:
            self._finish(reply, remote=True)

    def _on_bdat(self, reply: Reply) -> None:
        txn = self._txn
        assert txn is not None
        if not reply.is_success and txn.bdat_failed is None:
            txn.bdat_failed = reply
        if txn.bdat_failed is not None and not self._pipelining:
            # RFC 3030 §2: after a 4xx/5xx to a chunk, send no more chunks.
            self._finish(txn.bdat_failed, remote=True)
        elif not self._pipelining:
            self._send_chunk(txn)

    def _on_bdat_last(self, reply: Reply) -> None:
        assert self._txn is not None
        self._finish(self._txn.bdat_failed or reply, remote=True)

    def _finish(self, reply: Reply | None, *, remote: bool) -> None:
        """The transaction is over, ``reply`` deciding whatever RCPT did not."""
        txn = self._txn
        assert txn is not None
        txn.final = reply
        # RFC 5321 §4.1.1.5: a transaction the host may still hold is reset
        # before the next MAIL; MAIL refused or a 2xx at the end leave none.
        if txn.mail is not None:
            self._needs_rset = txn.mail_ok and not (reply is not None and reply.is_success)
        self._events.append(self._result(txn, final_remote=remote))
        self._txn = None
        self._state = "ready"

    def _result(
        self,
        txn: _Transaction,
        *,
        final_remote: bool = True,
        abort: tuple[Reply, bool] | None = None,
    ) -> MessageResult:
        results = []
        final = txn.final
        for i, rcpt in enumerate(txn.recipients):
            rcpt_reply = txn.rcpts[i] if i < len(txn.rcpts) else None
            if txn.mail is not None and not txn.mail_ok:
                # Refused at MAIL: that reply covers everyone (RFC 5321 §4.1.1.2).
                result = RecipientResult(rcpt.address, outcome_of(txn.mail), txn.mail, True)
            elif txn.mail is None and final is not None:
                # Refused here before MAIL was sent (size, 8BITMIME, SMTPUTF8).
                result = RecipientResult(rcpt.address, outcome_of(final), final, final_remote)
            elif rcpt_reply is not None and not rcpt_reply.is_success:
                outcome = outcome_of(rcpt_reply)
                result = RecipientResult(rcpt.address, outcome, rcpt_reply, True)
            elif rcpt_reply is not None and final is not None:
                result = RecipientResult(rcpt.address, outcome_of(final), final, final_remote)
            elif abort is not None:
                result = RecipientResult(rcpt.address, Outcome.DEFERRED, *abort)
            else:  # pragma: no cover - every path sets final or abort
                raise AssertionError("recipient without outcome")
            results.append(result)
        return MessageResult(
            tuple(results),
            final if abort is None else abort[0],
            txn.dsn and txn.mail is not None,
            tls=self.secure,
        )

    # One transition table: the reply the host owes -> what to do with it.
    # 421 never gets here (see _on_reply); each handler may queue commands
    # (and the replies they are owed) or events.
    _HANDLERS: ClassVar[dict[str, Callable[[SMTPClient, Reply], None]]] = {
        "greeting": _on_greeting,
        "ehlo": _on_ehlo,
        "helo": _on_helo,
        "starttls": _on_starttls,
        "rset": _on_rset,
        "mail": _on_mail,
        "rcpt": _on_rcpt,
        "data": _on_data,
        "dot": _on_dot,
        "bdat": _on_bdat,
        "bdat-last": _on_bdat_last,
        "quit": _on_quit,
    }


# RFC 5321 §4.5.3.2: the limit that applies while each reply is awaited.
_TIMEOUTS = {
    "greeting": "greeting_timeout",  # §4.5.3.2.1
    "ehlo": "command_timeout",
    "helo": "command_timeout",
    "starttls": "command_timeout",
    "rset": "command_timeout",
    "quit": "command_timeout",
    "mail": "mail_timeout",  # §4.5.3.2.2
    "rcpt": "rcpt_timeout",  # §4.5.3.2.3
    "data": "data_init_timeout",  # §4.5.3.2.4
    "bdat": "data_block_timeout",  # §4.5.3.2.5
    "dot": "data_termination_timeout",  # §4.5.3.2.6
    "bdat-last": "data_termination_timeout",
}
