"""Inputs the ``mime_header`` fuzz target failed on, replayed as one-line cases."""

from __future__ import annotations

import pytest

from fuzz import mime_header


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: a\x00b\r\n\r\n",  # NUL sent in an ENVELOPE literal (RFC 9051 §9 CHAR8)
        # message/rfc822 in base64: BODYSTRUCTURE said MESSAGE RFC822 with no envelope
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nx\r\n",
    ],
)
def test_input(data: bytes) -> None:
    mime_header.test_one_input(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\r\nbody with a \x00\r\n",  # RFC 9051 §9: a literal has no NUL; Dovecot sends 0x80
    ],
)
def test_nul_in_a_body(data: bytes) -> None:
    mime_header.test_one_input(data)
