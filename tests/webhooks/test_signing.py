"""Standard Webhooks signing, cross-checked both ways with the ``standardwebhooks`` package."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
import standardwebhooks

from mailstead.webhooks.signing import (
    InvalidSecretError,
    MalformedHeaderError,
    MissingHeaderError,
    SignatureMismatchError,
    TimestampError,
    Verified,
    WebhookVerificationError,
    generate_secret,
    parse_secret,
    sign,
    sign_headers,
    verify,
)
from tests.webhooks.deliveries import OLD_SECRET, SECRET, payload

NOW = 1_796_648_400  # 2026-12-07T13:00:00Z
BODY = payload()
ZEROS = base64.b64encode(bytes(32)).decode()  # a well-formed signature of nothing


def headers(**changes: str) -> dict[str, str]:
    base = sign_headers([SECRET], "msg_1", BODY, NOW)
    base.update(changes)
    return base


# -- interoperability ---------------------------------------------------------


def test_their_verifier_accepts_our_signature() -> None:
    # Their verify reads the clock: sign for now.
    ours = sign_headers([SECRET], "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", BODY)
    assert standardwebhooks.Webhook(SECRET).verify(BODY, ours)["id"] == "evt_1"


def test_our_verifier_accepts_their_signature() -> None:
    when = datetime.fromtimestamp(NOW, UTC)
    theirs = standardwebhooks.Webhook(SECRET).sign("msg_x", when, BODY)
    got = {"webhook-id": "msg_x", "webhook-timestamp": str(NOW), "webhook-signature": theirs}
    assert verify(SECRET, BODY, got, now=NOW) == Verified("msg_x", NOW)


def test_signature_is_the_same_bytes_as_theirs() -> None:
    when = datetime.fromtimestamp(NOW, UTC)
    theirs = standardwebhooks.Webhook(SECRET).sign("msg_x", when, BODY)
    assert sign(SECRET, "msg_x", NOW, BODY) == theirs


@pytest.mark.parametrize("secret", [SECRET, OLD_SECRET])
def test_their_verifier_accepts_either_signature_of_a_rotation(secret: str) -> None:
    ours = sign_headers([SECRET, OLD_SECRET], "msg_r", BODY)
    assert len(ours["webhook-signature"].split(" ")) == 2
    standardwebhooks.Webhook(secret).verify(BODY, ours)


def test_our_verifier_takes_their_signature_by_the_old_secret_during_a_rotation() -> None:
    when = datetime.fromtimestamp(NOW, UTC)
    theirs = standardwebhooks.Webhook(OLD_SECRET).sign("msg_x", when, BODY)
    got = {"webhook-id": "msg_x", "webhook-timestamp": str(NOW), "webhook-signature": theirs}
    verify([SECRET, OLD_SECRET], BODY, got, now=NOW)
    with pytest.raises(SignatureMismatchError):
        verify(SECRET, BODY, got, now=NOW)


# -- secrets ------------------------------------------------------------------


def test_generated_secrets_are_fresh_32_byte_keys() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second and first.startswith("whsec_")
    assert len(parse_secret(first)) == 32
    standardwebhooks.Webhook(first)  # their parser takes it too


def test_unpadded_secret_is_the_same_key() -> None:
    assert parse_secret(SECRET.rstrip("=")) == parse_secret(SECRET)


@pytest.mark.parametrize(
    "secret",
    [
        "bWFpbHN0ZWFkIHRlc3Qga2V5LCAzMiBieXRlcyBvayE=",  # no prefix
        "whsec_",  # no key
        "whsec_not base64!",  # not base64
        "whsec_" + base64.b64encode(b"x" * 23).decode(),  # 23 bytes: under the spec's 24
        "whsec_" + base64.b64encode(b"x" * 65).decode(),  # 65 bytes: over its 64
    ],
)
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(InvalidSecretError):
        parse_secret(secret)


@pytest.mark.parametrize("msg_id", ["", "a.b", "x" * 257, "tab\there"])
def test_sign_refuses_ids_the_spec_forbids(msg_id: str) -> None:
    with pytest.raises(ValueError, match="webhook id"):
        sign(SECRET, msg_id, NOW, BODY)


# -- verification -------------------------------------------------------------


def test_headers_are_matched_case_insensitively() -> None:
    mixed = {k.title(): v for k, v in headers().items()}
    assert verify(SECRET, BODY, mixed, now=NOW).msg_id == "msg_1"


@pytest.mark.parametrize(
    ("skew", "accepted"),
    [(-300, True), (300, True), (-301, False), (301, False), (0, True)],
)
def test_timestamp_tolerance_edges_both_directions(skew: int, accepted: bool) -> None:
    got = sign_headers([SECRET], "msg_1", BODY, NOW + skew)
    if accepted:
        verify(SECRET, BODY, got, now=NOW)
    else:
        with pytest.raises(TimestampError, match="tolerance 300 s"):
            verify(SECRET, BODY, got, now=NOW)


def test_tolerance_is_configurable() -> None:
    got = sign_headers([SECRET], "msg_1", BODY, NOW - 30)
    with pytest.raises(TimestampError, match="too old"):
        verify(SECRET, BODY, got, now=NOW, tolerance=10)


def test_tampered_body_fails() -> None:
    with pytest.raises(SignatureMismatchError):
        verify(SECRET, BODY.replace(b"INBOX", b"Spam!"), headers(), now=NOW)


def test_wrong_secret_fails() -> None:
    with pytest.raises(SignatureMismatchError):
        verify(OLD_SECRET, BODY, headers(), now=NOW)


def test_signature_of_another_id_fails() -> None:
    with pytest.raises(SignatureMismatchError):
        verify(SECRET, BODY, headers(**{"webhook-id": "msg_2"}), now=NOW)


def test_a_good_signature_among_unknown_versions_and_junk_passes() -> None:
    good = headers()["webhook-signature"]
    mixed = f"v1a,AAAA v2,zz v1,!!! {good}"
    verify(SECRET, BODY, headers(**{"webhook-signature": mixed}), now=NOW)


def test_every_failure_is_a_webhook_verification_error() -> None:
    for kind in (MissingHeaderError, MalformedHeaderError, TimestampError, SignatureMismatchError):
        assert issubclass(kind, WebhookVerificationError)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"webhook-id": ""}, MissingHeaderError),
        ({"webhook-timestamp": ""}, MissingHeaderError),
        ({"webhook-signature": ""}, MissingHeaderError),
        ({"webhook-id": "x" * 100_000}, MalformedHeaderError),
        ({"webhook-id": "msg.1"}, MalformedHeaderError),
        ({"webhook-id": "msg\x001"}, MalformedHeaderError),
        ({"webhook-timestamp": "1" * 100_000}, MalformedHeaderError),
        ({"webhook-timestamp": "1.5e9"}, MalformedHeaderError),
        ({"webhook-timestamp": "-1796648400"}, MalformedHeaderError),
        ({"webhook-timestamp": "١٧٩٦٦٤٨٤٠٠"}, MalformedHeaderError),  # Arabic-Indic digits
        ({"webhook-signature": "v1,AAAA " * 100_000}, MalformedHeaderError),
        ({"webhook-signature": "v1,"}, SignatureMismatchError),
        ({"webhook-signature": "v1,not-base64"}, SignatureMismatchError),
        (
            {"webhook-signature": "v1," + base64.b64encode(b"\0" * 32).decode()},
            SignatureMismatchError,
        ),
        ({"webhook-timestamp": "0"}, TimestampError),
    ],
)
def test_hostile_headers(changes: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        verify(SECRET, BODY, headers(**changes), now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_absent_header_is_named(missing: str) -> None:
    got = headers()
    del got[missing]
    with pytest.raises(MissingHeaderError, match=missing):
        verify(SECRET, BODY, got, now=NOW)
