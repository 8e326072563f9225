"""Password guessing against the real server: slowed at its source, never at the account."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import threading
import time
from pathlib import Path

from mailstead.config import load_config
from tests.e2e.harness import USERS, client_tls_context, running_config, write_config

ALICE = "alice@example.test"
GUESSER, REAL_USER = "127.0.0.2", "127.0.1.1"


class SourceIMAP(imaplib.IMAP4_SSL):
    """IMAPS from a chosen loopback address."""

    def __init__(self, port: int, source: str) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, ssl_context=client_tls_context(), timeout=30)

    def _create_socket(self, timeout: float | None) -> object:
        import socket

        sock = socket.create_connection((self.host, self.port), timeout, (self.source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


def test_twenty_parallel_guessers_get_under_five_guesses_a_second(tmp_path: Path) -> None:
    with running_config(load_config(write_config(tmp_path))) as server:
        port = server.ports["imaps"]
        stop = time.monotonic() + 8.0
        checked: list[float] = []  # when each guess got its verdict
        refused = 0
        lock = threading.Lock()

        def guess() -> None:
            nonlocal refused
            n = 0
            while time.monotonic() < stop:
                try:
                    imap = SourceIMAP(port, GUESSER)
                except OSError:
                    continue
                try:
                    while time.monotonic() < stop:
                        n += 1
                        try:
                            imap.login(ALICE, f"guess-{n}")
                        except imaplib.IMAP4.error as exc:
                            text = str(exc)
                            with lock:
                                if "AUTHENTICATIONFAILED" in text:
                                    checked.append(time.monotonic())
                                elif "UNAVAILABLE" in text:
                                    refused += 1
                                else:
                                    break  # closed after three failures: connect again
                except OSError:
                    pass

        guessers = [threading.Thread(target=guess, daemon=True) for _ in range(20)]
        started = time.monotonic()
        for thread in guessers:
            thread.start()
        # Meanwhile the real user logs in from another network, at normal speed.
        logins = []
        while time.monotonic() < stop:
            began = time.monotonic()
            imap = SourceIMAP(port, REAL_USER)
            imap.login(ALICE, USERS[ALICE])
            imap.logout()
            logins.append(time.monotonic() - began)
            time.sleep(0.5)
        with lock:
            in_time = [t for t in checked if t < stop]
        # Attempts wait 0, 2, 4, 8, then 15 s each before their check.
        assert len(in_time) / (stop - started) < 5, (len(in_time), refused)
        assert max(logins) < 2.0, logins
        for thread in guessers:
            thread.join(30)


def test_failures_on_one_protocol_slow_the_others_and_a_success_clears_them(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path, extra='[limits]\nauth_penalty_max = "1s"\n'))
    with running_config(config) as server:
        pop = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=client_tls_context())
        pop.user(ALICE)
        try:
            pop.pass_("wrong")
        except poplib.error_proto as exc:
            assert b"[AUTH]" in exc.args[0]
        pop.quit()
        with smtplib.SMTP_SSL(
            "127.0.0.1", server.ports["submissions"], context=client_tls_context()
        ) as smtp:
            began = time.monotonic()
            smtp.login(ALICE, USERS[ALICE])
            assert time.monotonic() - began >= 1.0  # waited for the POP3 failure
            began = time.monotonic()
        with smtplib.SMTP_SSL(
            "127.0.0.1", server.ports["submissions"], context=client_tls_context()
        ) as smtp:
            began = time.monotonic()
            smtp.login(ALICE, USERS[ALICE])
            assert time.monotonic() - began < 1.0  # the success cleared the address


def test_a_blocked_address_gets_a_temporary_refusal(tmp_path: Path) -> None:
    extra = '[limits]\nauth_penalty_max = "1s"\nauth_block_after = 2\n'
    with running_config(load_config(write_config(tmp_path, extra=extra))) as server:
        context = client_tls_context()
        replies = []
        for password in ("one", "two", USERS[ALICE]):
            with smtplib.SMTP_SSL(
                "127.0.0.1", server.ports["submissions"], context=context
            ) as smtp:
                smtp.ehlo()
                smtp.user, smtp.password = ALICE, password
                try:  # one mechanism: login() would try PLAIN, then LOGIN
                    replies.append(smtp.auth("PLAIN", smtp.auth_plain)[0])
                except smtplib.SMTPAuthenticationError as exc:
                    replies.append(exc.smtp_code)
        # The right password too is refused, unchecked and temporarily.
        assert replies == [535, 535, 454]
