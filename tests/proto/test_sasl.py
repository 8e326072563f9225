"""SASL PLAIN (RFC 4616) and LOGIN, and the base64 framing shared by SMTP, IMAP, POP3."""

from __future__ import annotations

import pytest

from mailstead.proto.errors import LocalProtocolError
from mailstead.proto.sasl import (
    Challenge,
    Credentials,
    Failed,
    Finished,
    Login,
    Outcome,
    Plain,
    SASLCancelled,
    SASLError,
    SASLExchange,
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


# -- one exchange, as SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH run it ---------------

ALICE = Credentials("alice", "secret")
ASK_USER, ASK_PASSWORD = Challenge(b"VXNlcm5hbWU6"), Challenge(b"UGFzc3dvcmQ6")
CANCELLED = Failed("Authentication cancelled", cancelled=True)


def run(name: str, initial: bytes | None, *lines: bytes) -> list[Outcome]:
    """One exchange: what start() said, then what step() said to each line."""
    mechanism = server_mechanism(name)
    assert mechanism is not None
    exchange = SASLExchange()
    said = [exchange.start(mechanism, initial)]
    for line in lines:
        assert exchange.active
        said.append(exchange.step(line))
    assert not exchange.active  # every exchange below has ended
    return said


@pytest.mark.parametrize(
    ("name", "initial", "lines", "said"),
    [
        # C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        ("PLAIN", b"AGFsaWNlAHNlY3JldA==", [], [Finished("PLAIN", ALICE)]),
        # C: AUTH PLAIN / S: 334 / C: AGFsaWNlAHNlY3JldA==
        ("PLAIN", None, [b"AGFsaWNlAHNlY3JldA=="], [Challenge(b""), Finished("PLAIN", ALICE)]),
        (
            "LOGIN",
            None,
            [b"YWxpY2U=", b"c2VjcmV0"],
            [ASK_USER, ASK_PASSWORD, Finished("LOGIN", ALICE)],
        ),
        ("LOGIN", b"YWxpY2U=", [b"c2VjcmV0"], [ASK_PASSWORD, Finished("LOGIN", ALICE)]),
        ("PLAIN", None, [b"*"], [Challenge(b""), CANCELLED]),
        ("LOGIN", None, [b"YWxpY2U=", b" * "], [ASK_USER, ASK_PASSWORD, CANCELLED]),
        ("PLAIN", b"*", [], [CANCELLED]),
        ("PLAIN", None, [b"not base64!"], [Challenge(b""), Failed("Invalid base64 data")]),
        ("LOGIN", b"YWxpY2U", [], [Failed("Invalid base64 data")]),
        # RFC 4954 §4: "=" is an empty initial response, which neither mechanism takes.
        ("PLAIN", b"=", [], [Failed("Malformed PLAIN response")]),
        ("LOGIN", b"=", [], [Failed("Empty user name")]),
        ("PLAIN", b"", [], [Failed("Malformed PLAIN response")]),
        ("LOGIN", None, [b"="], [ASK_USER, Failed("Empty user name")]),
        (
            "LOGIN",
            None,
            [b"YWxpY2U=", b"="],
            [ASK_USER, ASK_PASSWORD, Finished("LOGIN", Credentials("alice", ""))],
        ),
        ("PLAIN", b"AGFsAGljZQBzZWNyZXQ=", [], [Failed("Malformed PLAIN response")]),
        ("plain", b"AGFs/2ljZQBzZWNyZXQ=", [], [Failed("Credentials are not valid UTF-8")]),
    ],
)
def test_exchange(
    name: str, initial: bytes | None, lines: list[bytes], said: list[Outcome]
) -> None:
    assert run(name, initial, *lines) == said


def test_an_overlong_line_ends_the_exchange() -> None:
    exchange = SASLExchange()
    assert exchange.start(Login(), None) == ASK_USER
    assert exchange.too_long() == Failed("Response too long")
    assert not exchange.active
    with pytest.raises(LocalProtocolError):
        exchange.step(b"YWxpY2U=")  # the line after it is a command again


def test_a_session_runs_one_exchange_after_another() -> None:
    exchange = SASLExchange()
    assert exchange.start(Plain(), b"*") == CANCELLED
    assert exchange.start(Plain(), None) == Challenge(b"")
    with pytest.raises(LocalProtocolError):
        exchange.start(Login(), None)  # one at a time
    assert exchange.step(b"AGFsaWNlAHNlY3JldA==") == Finished("PLAIN", ALICE)


def test_failed_logins_are_counted_up_to_the_limit() -> None:
    exchange = SASLExchange()
    assert [exchange.failed(3) for _ in range(4)] == [False, False, True, True]
    assert exchange.failures == 4
