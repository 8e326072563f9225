"""SASL PLAIN (RFC 4616) and LOGIN, and the base64 framing shared by SMTP, IMAP, POP3."""

from __future__ import annotations

import pytest

from mailstead.proto.sasl import (
    Credentials,
    Login,
    Plain,
    SASLCancelled,
    SASLError,
    decode_response,
    encode_challenge,
    server_mechanism,
)


@pytest.mark.parametrize(
    ("line", "decoded"),
    [
        (b"AGFsaWNlAHNlY3JldA==", b"\0alice\0secret"),
        (b"  YWxpY2U=  ", b"alice"),  # surrounding whitespace is not data
        (b"=", b""),  # RFC 4954 §4: "=" is an empty response
        (b"", b""),
    ],
)
def test_decode_response(line: bytes, decoded: bytes) -> None:
    assert decode_response(line) == decoded


@pytest.mark.parametrize(
    "line", [b"not base64!", b"YWxpY2U", b"YW=xp", b"====", b"\xff\xfe", b"YWxp Y2U="]
)
def test_bad_base64_is_a_sasl_error(line: bytes) -> None:
    with pytest.raises(SASLError, match="Invalid base64 data"):
        decode_response(line)


@pytest.mark.parametrize("line", [b"*", b" * "])
def test_star_cancels(line: bytes) -> None:
    with pytest.raises(SASLCancelled):
        decode_response(line)


def test_challenges_are_base64() -> None:
    assert encode_challenge(b"Username:") == b"VXNlcm5hbWU6"
    assert encode_challenge(b"") == b""


def test_plain_without_initial_response_asks_with_an_empty_challenge() -> None:
    plain = Plain()
    assert plain.start(None) == b""
    assert plain.step(b"\0alice\0secret") == Credentials("alice", "secret")


@pytest.mark.parametrize(
    ("response", "creds"),
    [
        (b"\0alice\0secret", Credentials("alice", "secret")),
        (b"alice\0alice\0secret", Credentials("alice", "secret", authzid="alice")),
        (b"bob\0alice\0s\xc3\xa9cret", Credentials("alice", "s\u00e9cret", authzid="bob")),
        (b"\0alice\0 ", Credentials("alice", " ")),
    ],
)
def test_plain_initial_response(response: bytes, creds: Credentials) -> None:
    assert Plain().start(response) == creds


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (b"", "Malformed PLAIN response"),
        (b"alice\0secret", "Malformed PLAIN response"),
        (b"\0\0secret", "Malformed PLAIN response"),
        (b"\0alice\0", "Malformed PLAIN response"),
        (b"\0alice\0sec\0ret", "Malformed PLAIN response"),
        (b"\0al\xffice\0secret", "Credentials are not valid UTF-8"),
    ],
)
def test_plain_malformed(response: bytes, error: str) -> None:
    with pytest.raises(SASLError, match=error):
        Plain().start(response)


def test_login_asks_user_then_password() -> None:
    login = Login()
    assert login.start(None) == b"Username:"
    assert login.step(b"alice") == b"Password:"
    assert login.step(b"secret") == Credentials("alice", "secret")


def test_login_with_the_user_as_initial_response() -> None:
    login = Login()
    assert login.start(b"alice") == b"Password:"
    assert login.step(b"") == Credentials("alice", "")


@pytest.mark.parametrize("user", [b"", b"\xff"])
def test_login_refuses_an_empty_or_undecodable_user(user: bytes) -> None:
    with pytest.raises(SASLError):
        Login().start(user)


@pytest.mark.parametrize(("name", "cls"), [("PLAIN", Plain), ("login", Login), ("Plain", Plain)])
def test_mechanisms_by_name_are_fresh_objects(name: str, cls: type) -> None:
    first, second = server_mechanism(name), server_mechanism(name)
    assert isinstance(first, cls) and first is not second


@pytest.mark.parametrize("name", ["CRAM-MD5", "SCRAM-SHA-256", "", "PLAIN "])
def test_unknown_mechanism(name: str) -> None:
    assert server_mechanism(name) is None


def test_the_password_never_shows_in_a_repr() -> None:
    assert "secret" not in repr(Credentials("alice", "secret"))
