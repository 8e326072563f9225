"""Fuzz: the SASL mechanisms (PLAIN, LOGIN) and their base64 framing.

Properties:

* any line decodes to bytes or raises :class:`SASLError` (``*`` as
  :class:`SASLCancelled`); nothing else is ever raised;
* what the server encodes, the framing decodes back exactly, whatever the
  whitespace around it;
* fed real and mutated client lines, split where the engines split them,
  an exchange ends (credentials or SASLError) within three responses: no
  mechanism asks forever, and credentials are always valid text;
* PLAIN and LOGIN give back exactly the identities and password sent;
  an identity never holds a control character (SASLprep, RFC 4013 §2.3);
* a mechanism is found only under its ASCII name, in any case.
"""

from __future__ import annotations

import base64
import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.peertext import has_control
from mailstead.proto.sasl import (
    MECHANISMS,
    Credentials,
    Login,
    Plain,
    SASLCancelled,
    SASLError,
    decode_response,
    encode_challenge,
    server_mechanism,
)
from tests.fuzz.wire import DEADLINE_MS, mutated, watchdog

# Text a client may put in an identity or a password (no NUL: PLAIN's separator).
_text = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=20)
_name = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=20)
# User names (authcid, authzid): no control characters either (RFC 4013 §2.3).
_user_char = st.characters(codec="utf-8", exclude_categories=("Cc", "Zl", "Zp"))
_user = st.text(_user_char, max_size=20)
_user1 = st.text(_user_char, min_size=1, max_size=20)


def _line(raw: bytes) -> bytes:
    return base64.b64encode(raw) + b"\r\n"


# -- real exchanges, as the client side of the wire -----------------------------------

_plain = st.builds(
    lambda z, c, p: _line(z.encode() + b"\0" + c.encode() + b"\0" + p.encode()),
    _user,
    _user1,
    _name,
)
_login = st.builds(lambda u, p: _line(u.encode()) + _line(p.encode()), _user1, _text)
VALID = st.one_of(
    st.tuples(st.just("PLAIN"), _plain),
    st.tuples(st.just("LOGIN"), _login),
    st.tuples(st.sampled_from(["PLAIN", "LOGIN"]), st.sampled_from([b"*\r\n", b"=\r\n"])),
)


def exchange(mechanism_name: str, wire: bytes, initial: bool) -> Credentials | SASLError | None:
    """Run one exchange as the engines do: line by line; None if the lines ran out."""
    mechanism = server_mechanism(mechanism_name)
    assert mechanism is not None and mechanism.name == mechanism_name
    lines = [x.removesuffix(b"\r") for x in wire.split(b"\n")]
    try:
        if initial:
            # SASL-IR (RFC 4959) / AUTH with an initial response (RFC 4954 §4).
            result = mechanism.start(decode_response(lines.pop(0)))
        else:
            result = mechanism.start(None)
        for _ in range(3):
            if not isinstance(result, bytes):
                break
            assert isinstance(encode_challenge(result), bytes)
            if not lines:
                return None
            result = mechanism.step(decode_response(lines.pop(0)))
        else:
            raise AssertionError("a mechanism asked a fourth time")
    except SASLError as exc:
        return exc
    assert isinstance(result, Credentials)
    for value in (result.authcid, result.password, result.authzid):
        value.encode("utf-8")  # valid text (no lone surrogates)
    assert result.authcid
    assert not has_control(result.authcid + result.authzid)
    if mechanism_name == "PLAIN":  # NUL separates its fields (RFC 4616 §2)
        assert "\0" not in result.authzid + result.authcid + result.password
    return result


@settings(max_examples=300, deadline=DEADLINE_MS)
@given(exchange_=VALID, initial=st.booleans())
def test_real_exchanges_give_back_exactly_what_was_sent(
    exchange_: tuple[str, bytes], initial: bool
) -> None:
    name, wire = exchange_
    with watchdog():
        result = exchange(name, wire, initial)
    lines = wire.split(b"\r\n")[:-1]
    if lines[0] == b"*":
        assert isinstance(result, SASLCancelled)
        return
    if lines[0] == b"=":  # an empty response: PLAIN and LOGIN both refuse it
        assert isinstance(result, SASLError)
        return
    assert isinstance(result, Credentials)
    decoded = [base64.b64decode(x).decode() for x in lines]
    if name == "PLAIN":
        assert [result.authzid, result.authcid, result.password] == decoded[0].split("\0")
    else:
        assert [result.authcid, result.password, result.authzid] == [*decoded, ""]


@settings(max_examples=300, deadline=DEADLINE_MS)
@given(exchange_=st.tuples(st.sampled_from(["PLAIN", "LOGIN"]), mutated(VALID.map(lambda x: x[1]))))
def test_mutated_exchanges_end_in_credentials_or_a_sasl_error(
    exchange_: tuple[str, bytes],
) -> None:
    name, wire = exchange_
    with watchdog():
        for initial in (False, True):
            exchange(name, wire, initial)


@settings(max_examples=300, deadline=DEADLINE_MS)
@given(line=st.binary(max_size=64) | st.text(max_size=32).map(str.encode))
def test_any_line_decodes_or_raises_a_sasl_error(line: bytes) -> None:
    try:
        decoded = decode_response(line)
    except SASLCancelled:
        assert line.strip() == b"*"
    except SASLError:
        pass
    else:
        assert isinstance(decoded, bytes)
        for mechanism in (Plain(), Login()):
            with contextlib.suppress(SASLError):
                mechanism.step(decoded)


@settings(max_examples=200, deadline=DEADLINE_MS)
@given(raw=st.binary(max_size=200), pad=st.sampled_from([b"", b" ", b"\t", b"\r", b" \r"]))
def test_what_the_server_encodes_decodes_back_exactly(raw: bytes, pad: bytes) -> None:
    line = encode_challenge(raw)
    assert line.isascii() and b"\r" not in line and b"\n" not in line
    assert decode_response(pad + (line or b"=") + pad) == raw


@settings(max_examples=300, deadline=DEADLINE_MS)
@given(name=st.text(max_size=8) | st.sampled_from(["plain", "Login", "PLAİN", "plaın", "LOGİN"]))
def test_a_mechanism_is_found_only_under_its_ascii_name(name: str) -> None:
    mechanism = server_mechanism(name)
    if name.isascii() and name.upper() in MECHANISMS:
        assert mechanism is not None and mechanism.name == name.upper()
        assert server_mechanism(name) is not mechanism  # a fresh exchange each time
    else:
        assert mechanism is None, f"{name!r} selected {mechanism.name}"
