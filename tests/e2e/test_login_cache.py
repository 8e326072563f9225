"""[auth] password_cache_ttl: repeated logins over IMAP, POP3 and SMTP skip the scrypt check."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
from pathlib import Path

import pytest

from mailstead.config import load_config
from tests.e2e.harness import client_tls_context, running_config, write_config
from tests.password_checks import record_full_checks

ALICE = ("alice@example.test", "alice-pw")


@pytest.mark.parametrize(("ttl", "full_checks"), [("1h", 1), ("0", 4)])
def test_logins_of_every_protocol_share_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ttl: str, full_checks: int
) -> None:
    config = load_config(write_config(tmp_path, extra=f'[auth]\npassword_cache_ttl = "{ttl}"\n'))
    checked = record_full_checks(monkeypatch)
    with running_config(config) as server:
        tls = client_tls_context()
        for _ in range(2):
            with imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=tls) as imap:
                assert imap.login(*ALICE)[0] == "OK"
        pop = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=tls, timeout=10)
        pop.user(ALICE[0])
        assert pop.pass_(ALICE[1]).startswith(b"+OK")
        pop.quit()
        with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], context=tls) as smtp:
            assert smtp.login(*ALICE)[0] == 235
        # A wrong password is never answered from the cache.
        with (
            imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=tls) as imap,
            pytest.raises(imaplib.IMAP4.error),
        ):
            imap.login(ALICE[0], "guess")
    assert checked == [ALICE[1]] * full_checks + ["guess"]
