"""MTA-STS (RFC 8461) without the network: the TXT record, the policy file, MX matching.

Each case is one line: what the domain published, and what Mailstead reads
from it (a policy id, a policy, or the reason it is no policy at all).
Hostile input is fuzzed: whatever the bytes, the parsers answer with a
value or a PolicyError, quickly.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.config import Config, ConfigError, load_config
from mailstead.mta.mta_sts import (
    MAX_AGE_LIMIT,
    MAX_POLICY_BYTES,
    Mode,
    Policy,
    PolicyError,
    mx_matches,
    parse_policy,
    parse_record,
)
from mailstead.mta.mta_sts_cache import CachedPolicy
from mailstead.mta.mta_sts_lookup import allowed_route, lookup_for
from mailstead.mta.routing import Destination, Route
from mailstead.proto.smtp.replies import Reply
from mailstead.testing.clock import FakeClock
from mailstead.testing.dns import FakeResolver

# --------------------------------------------------------------------- the TXT record


@pytest.mark.parametrize(
    ("records", "policy_id"),
    [
        # RFC 8461 §3.1's example.
        ([b"v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
        ([b"v=STSv1;id=abc"], "abc"),
        ([b"v=STSv1; id=abc ;"], "abc"),
        ([b"v=STSv1 ; id=abc"], "abc"),  # errata 6285: space before ";"
        # Extensions are ignored; other TXT records at the name too.
        ([b"v=STSv1; ext-1=x.y; id=A1"], "A1"),
        ([b"v=spf1 -all", b"v=STSv1; id=1", b"hello"], "1"),
        ([b"v=STSv1; id=" + b"a" * 32], "a" * 32),
    ],
)
def test_txt_record_gives_the_policy_id(records: list[bytes], policy_id: str) -> None:
    assert parse_record(records) == policy_id


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([], "0 MTA-STS TXT records"),
        ([b"v=STSv1; id=1", b"v=STSv1; id=2"], "2 MTA-STS TXT records"),
        ([b"v=STSv2; id=1"], "0 MTA-STS TXT records"),
        ([b"v=STSv1"], "0 MTA-STS TXT records"),  # no ";": not a v=STSv1; record
        ([b"v=STSv1;"], "without an id"),
        ([b"v=STSv1; id="], "invalid MTA-STS TXT record field"),
        ([b"v=STSv1; id=" + b"a" * 33], "invalid MTA-STS policy id"),
        ([b"v=STSv1; id=a-b"], "invalid MTA-STS policy id"),
        ([b"v=STSv1; id=1; id=2"], "two ids"),
        ([b"v=STSv1; id=1; x"], "invalid MTA-STS TXT record field"),
        ([b"v=STSv1; id=1; x=a b"], "invalid MTA-STS TXT record field"),
        ([b"v=STSv1; id=\xff"], "not ASCII"),
        ([b"v=STSv1; id=1; " + b"x" * 2000], "too long"),
    ],
)
def test_txt_record_that_is_no_policy(records: list[bytes], reason: str) -> None:
    with pytest.raises(PolicyError, match=reason):
        parse_record(records)


# --------------------------------------------------------------------- the policy file

# RFC 8461 §3.2's example, with its CRLF line ends.
EXAMPLE = (
    b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
    b"mx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n"
)


def test_the_rfc_example() -> None:
    assert parse_policy(EXAMPLE) == Policy(
        Mode.ENFORCE, 604800, ("mail.example.com", "*.example.net", "backupmx.example.com")
    )


@pytest.mark.parametrize(
    ("body", "policy"),
    [
        (b"version: STSv1\nmode: testing\nmx: mx.a.test\nmax_age: 86400\n",
         Policy(Mode.TESTING, 86400, ("mx.a.test",))),
        # No final line break; fields in any order; tabs after ":".
        (b"max_age:\t60\nmx: MX.A.TEST.\nmode: enforce\nversion: STSv1",
         Policy(Mode.ENFORCE, 60, ("mx.a.test",))),
        # mode none needs no mx.
        (b"version: STSv1\nmode: none\nmax_age: 1\n", Policy(Mode.NONE, 1, ())),
        # Unknown fields are ignored; repeated mx lines kept once.
        (b"version: STSv1\nmode: enforce\nmx: a.test\nmx: a.test\nfoo: bar\nmax_age: 5\n",
         Policy(Mode.ENFORCE, 5, ("a.test",))),
        # max_age above one year is read as one year.
        (b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 9999999999\n",
         Policy(Mode.ENFORCE, MAX_AGE_LIMIT, ("a.test",))),
        # Trailing spaces and blank lines.
        (b"version: STSv1  \n\nmode: enforce\r\n\r\nmx: a.test \nmax_age: 5\n\n",
         Policy(Mode.ENFORCE, 5, ("a.test",))),
    ],
)  # fmt: skip
def test_policy_files(body: bytes, policy: Policy) -> None:
    assert parse_policy(body) == policy


BASE = b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 5\n"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "version is not STSv1"),
        (BASE.replace(b"STSv1", b"STSv2"), "version is not STSv1"),
        (BASE.replace(b"version: STSv1\n", b""), "version is not STSv1"),
        (BASE.replace(b"enforce", b"Enforce"), "mode is not"),
        (BASE.replace(b"enforce", b"reject"), "mode is not"),
        (BASE.replace(b"max_age: 5", b"max_age: -5"), "max_age"),
        (BASE.replace(b"max_age: 5", b"max_age: 12345678901"), "max_age"),
        (BASE.replace(b"max_age: 5\n", b""), "max_age"),
        (BASE.replace(b"mx: a.test\n", b""), "names no mx"),
        (BASE.replace(b"a.test", b"a..test"), "invalid mx pattern"),
        (BASE.replace(b"a.test", b"*.*.test"), "invalid mx pattern"),
        (BASE.replace(b"a.test", b"a.*.test"), "invalid mx pattern"),
        (BASE.replace(b"a.test", b"a_b.test"), "invalid mx pattern"),
        (BASE.replace(b"a.test", b"[127.0.0.1]"), "invalid mx pattern"),
        (BASE + b"mode: testing\n", "mode appears twice"),
        (BASE + b"no colon here\n", "invalid policy line"),
        (BASE + b"<html>\n", "invalid policy line"),
        (BASE + b"caf\xc3\xa9: 1\n", "not ASCII"),
        (BASE + b"mx: b.test\n" * 200, "more than 100 mx patterns"),
        (BASE + b"x: " + b"y" * MAX_POLICY_BYTES, "larger than"),
    ],
)
def test_policy_files_that_are_no_policy(body: bytes, reason: str) -> None:
    with pytest.raises(PolicyError, match=reason):
        parse_policy(body)


def test_a_policy_reads_back_from_its_text() -> None:
    policy = parse_policy(EXAMPLE)
    assert parse_policy(policy.text().encode("ascii")) == policy


# --------------------------------------------------------------------- MX matching


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        # RFC 8461 §4.1: "*.example.com" matches "mail.example.com" but not
        # "example.com" nor "foo.bar.example.com".
        ("*.example.com", "mail.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "foo.bar.example.com", False),
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.Example.COM.", True),
        ("mail.example.com", "mail.example.co", False),
        ("mail.example.com", "xmail.example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.example.com", "mail.example.com.evil.test", False),
    ],
)
def test_mx_patterns(pattern: str, host: str, matches: bool) -> None:
    assert mx_matches(pattern, host) is matches


def test_a_policy_allows_the_hosts_its_patterns_match() -> None:
    policy = parse_policy(EXAMPLE)
    assert policy.allows("mail.example.com")
    assert policy.allows("mx1.example.net")
    assert not policy.allows("mx.evil.example")


# --------------------------------------------------------------------- hostile input

_FIELDS = st.sampled_from(
    [b"version: STSv1", b"mode: enforce", b"mode: none", b"mx: *.a.test", b"max_age: 86400",
     b"mx: ", b"version:", b"\x00", b"\xff", b": x", b"mx: a.test\r", b"*.", b";", b"="]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_FIELDS, st.binary(max_size=40)), max_size=30))
def test_any_policy_bytes_give_a_policy_or_a_policy_error(parts: list[bytes]) -> None:
    body = b"\n".join(parts)
    try:
        policy = parse_policy(body)
    except PolicyError:
        return
    assert policy.mode in Mode
    assert 0 <= policy.max_age <= MAX_AGE_LIMIT
    assert policy.mx or policy.mode is Mode.NONE
    assert parse_policy(policy.text().encode("ascii")) == policy


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80).map(lambda b: b"v=STSv1;" + b), max_size=3))
def test_any_txt_bytes_give_an_id_or_a_policy_error(records: list[bytes]) -> None:
    try:
        policy_id = parse_record(records)
    except PolicyError:
        return
    assert policy_id.isascii() and policy_id.isalnum() and 1 <= len(policy_id) <= 32


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_matching_never_fails(pattern: str, host: str) -> None:
    assert mx_matches(pattern, host) in (True, False)


@pytest.mark.parametrize(
    "body",
    [
        b"k:" + b" " * 60000 + b"\rx",  # blanks that are neither separator nor value
        b"mx: " + b"a." * 30000 + b"-",
        b"mx: " + b"a" * 60000 + b"!",
        b"mx: *." + b"a-" * 30000,
        b"\n" * 65000,
        b"x:" * 30000,
    ],
)
def test_hostile_policy_bodies_take_no_time(body: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(PolicyError):
        parse_policy(body)
    assert time.perf_counter() - started < 0.5


def test_a_huge_body_is_refused_at_once() -> None:
    with pytest.raises(PolicyError, match="larger than"):
        parse_policy(b"mx: a.test\n" * 1_000_000)


# --------------------------------------------------------------------- applying a policy

ROUTE = Route(
    "example.com",
    (
        Destination("mail.example.com", 10, ("192.0.2.1",)),
        Destination("mx.evil.example", 20, ("192.0.2.2",)),
    ),
)


def _cached(mode: str, *mx: str) -> CachedPolicy:
    body = f"version: STSv1\nmode: {mode}\nmax_age: 60\n" + "".join(f"mx: {m}\n" for m in mx)
    return CachedPolicy("1", parse_policy(body.encode()), 0.0, 60.0)


def test_enforce_skips_the_hosts_outside_the_policy() -> None:
    kept, refused = allowed_route("example.com", ROUTE, _cached("enforce", "*.example.com"))
    assert [d.host for d in kept.destinations] == ["mail.example.com"]
    assert refused is None


def test_enforce_with_no_host_inside_the_policy_is_a_deferral() -> None:
    _, refused = allowed_route("example.com", ROUTE, _cached("enforce", "mx.example.com"))
    assert refused == Reply(
        451,
        "4.7.0",
        "MTA-STS policy of example.com: mail.example.com, mx.evil.example do not match"
        " the policy's mx patterns",
    )


def test_testing_keeps_every_host(caplog: pytest.LogCaptureFixture) -> None:
    kept, refused = allowed_route("example.com", ROUTE, _cached("testing", "mail.example.com"))
    assert (kept, refused) == (ROUTE, None)
    assert caplog.messages == [
        "MTA-STS policy of example.com: mx.evil.example does not match the policy's mx"
        " patterns (testing mode: delivering anyway)"
    ]


# --------------------------------------------------------------------- configuration


def _load(tmp_path: Path, delivery: str) -> Config:
    path = tmp_path / "mailstead.toml"
    path.write_text(f'data_dir = "var"\ndomains = ["example.test"]\n[delivery]\n{delivery}')
    return load_config(path)


def test_mta_sts_is_on_by_default_with_the_system_roots(tmp_path: Path) -> None:
    delivery = _load(tmp_path, "").delivery
    assert (delivery.mta_sts, delivery.tls_ca_file) == (True, None)


def test_the_ca_file_is_relative_to_the_data_dir(tmp_path: Path) -> None:
    config = _load(tmp_path, 'mta_sts = false\ntls_ca_file = "certs/ca.pem"\n')
    assert config.delivery.mta_sts is False
    (tmp_path / "var" / "certs").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"delivery.tls_ca_file: .*ca.pem: No such file"):
        lookup_for(config, FakeResolver({}), FakeClock(), None)
    (tmp_path / "var" / "certs" / "ca.pem").write_bytes(_ca_pem())
    lookup = lookup_for(config, FakeResolver({}), FakeClock(), None)
    assert lookup.ca_file == tmp_path / "var" / "certs" / "ca.pem"
    lookup.store.close()


def _ca_pem() -> bytes:
    """A self-signed CA certificate in PEM, as a CA file holds."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("delivery", "error"),
    [
        ('mta_sts = "yes"', "delivery.mta_sts: expected true or false"),
        ('tls_ca_file = ""', "delivery.tls_ca_file: must not be empty"),
        ("tls_ca_file = 1", "delivery.tls_ca_file"),
    ],
)
def test_bad_settings(tmp_path: Path, delivery: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        _load(tmp_path, delivery + "\n")
