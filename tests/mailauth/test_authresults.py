"""Authentication-Results (RFC 8601): our field, and removing forged ones (§5)."""

from __future__ import annotations

import pytest

from mailstead.mailauth.authresults import from_values, header, remove_ours, value
from mailstead.mailauth.hook import Checks, Client

HOST = "mx.example.test"


def test_header_folds_one_result_a_line() -> None:
    assert header(HOST, ["spf=pass smtp.mailfrom=a@b.example", "dkim=none"]) == (
        b"Authentication-Results: mx.example.test;\r\n"
        b"\tspf=pass smtp.mailfrom=a@b.example;\r\n"
        b"\tdkim=none\r\n"
    )


def test_no_results_is_none() -> None:
    assert header(HOST, []) == b"Authentication-Results: mx.example.test;\r\n\tnone\r\n"


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("alice@example.com", "alice@example.com"),
        ("a b@example.com", '"a b@example.com"'),
        ('x"y;z', '"x\\"y;z"'),
        ("evil\r\nX-Injected: 1", '"evilX-Injected: 1"'),
        ("", '""'),
    ],
)
def test_values_are_tokens_or_quoted_strings(text: str, quoted: str) -> None:
    assert value(text) == quoted


@pytest.mark.parametrize(
    "forged",
    [
        b"Authentication-Results: mx.example.test; dmarc=pass\r\n",
        b"Authentication-Results: MX.EXAMPLE.TEST.; dmarc=pass\r\n",
        b"authentication-results:mx.example.test;\r\n\tdkim=pass\r\n header.d=bank.example\r\n",
        b"Authentication-Results: (trusted) mx.example.test 1; spf=pass\r\n",
        b"Authentication-Results: mx.example.test\r\n",
    ],
)
def test_forged_fields_are_removed(forged: bytes) -> None:
    content = b"Subject: hi\r\n" + forged + b"From: a@b.example\r\n\r\nbody\r\n"
    assert remove_ours(content, HOST) == (b"Subject: hi\r\nFrom: a@b.example\r\n\r\nbody\r\n", 1)


def test_other_servers_fields_and_the_body_are_kept() -> None:
    content = (
        b"Authentication-Results: mx.other.example; spf=pass\r\n"
        b"Subject: hi\r\n\r\n"
        b"Authentication-Results: mx.example.test; in the body\r\n"
    )
    assert remove_ours(content, HOST) == (content, 0)


def test_from_values_unfolds() -> None:
    content = b"From: Alice\r\n <alice@example.com>\r\nfrom: b@example.com\r\n\r\nFrom: body\r\n"
    assert from_values(content) == ["Alice <alice@example.com>", "b@example.com"]


def test_checks_without_any_check_still_strip_and_stamp() -> None:
    content = b"Authentication-Results: mx.example.test; dmarc=pass\r\nSubject: x\r\n\r\nbody\r\n"
    outcome = Checks(HOST, []).body(
        Client("192.0.2.1", "helo.example"), "", ["a@example.test"], content
    )
    assert outcome.content == (
        b"Authentication-Results: mx.example.test;\r\n\tnone\r\nSubject: x\r\n\r\nbody\r\n"
    )
