"""Refusals by the abuse checks, as verdicts for the client and ``message.refused`` events.

The rate limits, DNSBL and greylisting refuse on the event loop (MAIL
FROM, RCPT TO), where storing an event (an fsynced SQLite commit) must not
happen. :class:`Refusals` hands each event to one background thread, and
keeps at most ``max_pending`` waiting: a client hammering a limit costs a
bounded amount of memory, and its surplus refusals go unreported (the log
still has each one, as the receiver's ``NOQUEUE: reject`` line).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from mailstead.events import Event, EventSink, domain_of
from mailstead.mailauth.hook import Client, Verdict
from mailstead.proto.smtp.replies import Reply

__all__ = ["REFUSED", "Refusals"]

log = logging.getLogger("mailstead.abuse")

#: The event type of a refusal by an abuse check (docs/abuse.md has the payload).
REFUSED = "message.refused"


class Refusals:
    """Turns a check's refusal into a :class:`Verdict` and a ``message.refused`` event.

    ``listener`` names where the refusal happened (``smtp``, ``submission`` …).
    """

    def __init__(self, sink: EventSink | None, listener: str, *, max_pending: int = 1000) -> None:
        self.sink = sink
        self.listener = listener
        self.max_pending = max_pending
        self._pending = 0
        self._dropped = 0
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def refuse(
        self,
        check: str,
        stage: str,
        client: Client,
        reply: Reply,
        reason: str,
        *,
        sender: str | None = None,
        recipient: str | None = None,
    ) -> Verdict:
        """The verdict refusing with ``reply``; ``reason`` goes to the log and the event."""
        sink = self.sink
        if sink is not None and sink.wants(REFUSED):
            data: dict[str, object] = {
                "listener": self.listener,
                "check": check,
                "stage": stage,
                "reason": reason,
                "reply": reply.one_line(),
                "remote_ip": client.ip,
                "helo": client.helo,
                "user": client.user,
                "mail_from": sender,
                "recipient": recipient,
            }
            account = recipient if recipient is not None else client.user
            self._emit(sink, Event(REFUSED, data, account=account, domain=domain_of(account)))
        return Verdict(reply, cause=f"{check}: {reason}")

    def _emit(self, sink: EventSink, event: Event) -> None:
        with self._lock:
            if self._pending >= self.max_pending:
                self._dropped += 1
                if self._dropped == 1:
                    log.warning("too many refusal events waiting; dropping some")
                return
            self._pending += 1
            self._dropped = 0
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="refusal-events")
            executor = self._executor
        future = executor.submit(sink.emit, [event])
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending -= 1
        exc = future.exception()
        if exc is not None:
            log.error("storing a message.refused event failed: %s", exc)

    def flush(self) -> None:
        """Wait until every event handed over is stored (tests, shutdown)."""
        with self._lock:
            executor = self._executor
        if executor is not None:
            executor.submit(lambda: None).result()
