"""ARC (RFC 8617): the set we seal, the chain we verify, the DMARC override we allow.

Keys are fixed test keys written where DKIMKeys looks for them; their
public halves are served by a DNS server of the test's own on 127.0.0.1
(with the records of tests/mailauth/authzones.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.config import Config, ConfigError, load_config
from mailstead.mailauth import arc, authresults
from mailstead.mailauth.arc import ARCResult, ARCSet
from mailstead.mailauth.arc_seal import ARCSealer
from mailstead.mailauth.dkim import DKIMKeys
from mailstead.mailauth.lookups import AuthDNS, Budget
from mailstead.mailauth.setup import receiver_checks
from mailstead.testing.dns import DNSServer, Zones
from tests.mailauth import authzones
from tests.mailauth.authzones import dkim_txt, message, private_key, sign

HOST = "mx.example.test"
#: Seeds of the sealers' keys (authzones' seed 0 signs for sender.test).
FORWARDER, LIST, STRANGER = 2, 3, 4


def zones() -> Zones:
    found = dict(authzones.zones())
    found["arc._domainkey.example.test"] = {"TXT": [dkim_txt(private_key(FORWARDER))]}
    found["arc._domainkey.list.test"] = {"TXT": [dkim_txt(private_key(LIST))]}
    return found


@pytest.fixture(scope="module")
def dns() -> Iterator[AuthDNS]:
    with DNSServer(zones()) as address:
        yield AuthDNS([address], cache_size=0)


def sealer_for(root: Path, domain: str, seed: int, host: str = HOST) -> ARCSealer:
    """An ARCSealer whose only key for ``domain`` is the test key ``seed`` (selector arc)."""
    directory = root / "dkim" / domain
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "arc.rsa.key").write_bytes(private_key(seed))
    return ARCSealer(DKIMKeys(root), host, clock=lambda: 1_700_000_000)


def our_results(*parts: str, host: str = HOST) -> bytes:
    return authresults.header(host, parts)


RECEIVED_OK = (
    "spf=pass smtp.mailfrom=alice@sender.test",
    "dkim=pass header.d=sender.test header.s=sel header.b=abcdefgh",
    "arc=none",
    "dmarc=pass (p=reject dis=none) header.from=sender.test",
)


def fields(block: bytes) -> dict[str, str]:
    """The ARC fields of ``block`` by name, unfolded."""
    out = {}
    for field in authresults.header_fields(block + b"\r\n"):
        name, _, text = field.decode().partition(":")
        out[name] = " ".join(text.split())
    return out


def verify(content: bytes, dns: AuthDNS) -> ARCResult:
    return arc.verify_chain(content, dns, Budget.of(10))


# --- sealing: the set we add ------------------------------------------------


def test_the_first_set_carries_our_results_and_cv_none(tmp_path: Path) -> None:
    content = our_results(*RECEIVED_OK) + sign(message())
    seal = sealer_for(tmp_path, "example.test", FORWARDER).seal(content, "example.test")
    assert seal.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.test; s=arc;\r\n")
    found = fields(seal)
    assert list(found) == ["ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results"]
    # The results of our Authentication-Results, comments dropped (RFC 8617 §4.1.1).
    assert found["ARC-Authentication-Results"] == (
        "i=1; mx.example.test; spf=pass smtp.mailfrom=alice@sender.test; "
        "dkim=pass header.d=sender.test header.s=sel header.b=abcdefgh; "
        "arc=none; dmarc=pass header.from=sender.test"
    )
    ams = found["ARC-Message-Signature"]
    assert "c=relaxed/relaxed; d=example.test; s=arc; t=1700000000;" in ams
    # The fields we DKIM-sign, oversigned; never Authentication-Results or ARC fields.
    assert "h=from : from : subject : subject : to : to : message-id : message-id;" in ams
    assert seal.endswith(b"\r\n") and b"\n\n" not in seal


def test_a_passing_chain_gets_the_next_instance_with_cv_pass(tmp_path: Path, dns: AuthDNS) -> None:
    first = sealer_for(tmp_path / "list", "list.test", LIST, host="mx.list.test")
    received = our_results(*RECEIVED_OK, host="mx.list.test") + sign(message())
    hop1 = first.seal(received, "list.test") + received
    second = sealer_for(tmp_path / "fwd", "example.test", FORWARDER)
    checked = verify(hop1, dns)
    assert checked.result == "pass"
    content = our_results(arc.result_part(checked, "127.0.0.5")) + hop1
    seal = second.seal(content, "example.test")
    assert seal.startswith(b"ARC-Seal: i=2; cv=pass; a=rsa-sha256; d=example.test; s=arc;")
    assert fields(seal)["ARC-Authentication-Results"] == (
        "i=2; mx.example.test; arc=pass header.oldest-pass=0 smtp.remote-ip=127.0.0.5"
    )
    chain = verify(seal + content, dns)
    assert (chain.result, [s.sealer for s in chain.sets]) == ("pass", ["list.test", "example.test"])


def test_a_failed_chain_is_sealed_with_cv_fail_and_stays_failed(
    tmp_path: Path, dns: AuthDNS
) -> None:
    broken = sealed(tmp_path / "list").replace(b"Hello Bob.", b"Pay Mallory.")
    checked = verify(broken, dns)
    assert checked.result == "fail"
    content = our_results(arc.result_part(checked, "127.0.0.5")) + broken
    seal = sealer_for(tmp_path / "fwd", "example.test", FORWARDER).seal(content, "example.test")
    # RFC 8617 §5.1.2: cv=fail, and the seal covers only its own set.
    assert seal.startswith(b"ARC-Seal: i=2; cv=fail; a=rsa-sha256; d=example.test;")
    chain = verify(seal + content, dns)
    assert chain.result == "fail"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (sign(message()), "no Authentication-Results of ours"),
        (our_results(*RECEIVED_OK, host="mx.elsewhere.test") + message(), "theirs, not ours"),
        (our_results(*RECEIVED_OK) + b"To: bob@example.test\r\n\r\nhi\r\n", "no From field"),
    ],
)
def test_nothing_to_attest_is_not_sealed(tmp_path: Path, content: bytes, why: str) -> None:
    sealer = sealer_for(tmp_path, "example.test", FORWARDER)
    assert sealer.seal(content, "example.test") == b"", why


def test_a_domain_without_an_rsa_key_seals_nothing(tmp_path: Path) -> None:
    sealer = sealer_for(tmp_path, "example.test", FORWARDER)
    content = our_results(*RECEIVED_OK) + message()
    assert sealer.seal(content, "other.test") == b""


# --- verification: the chain we find -----------------------------------------


def sealed(tmp_path: Path, content: bytes | None = None) -> bytes:
    """``content`` (a signed message by default) as the list forwarded it: ARC set on top."""
    received = our_results(*RECEIVED_OK, host="mx.list.test") + (content or sign(message()))
    sealer = sealer_for(tmp_path, "list.test", LIST, host="mx.list.test")
    return sealer.seal(received, "list.test") + received


def test_a_message_without_arc_fields_is_none(dns: AuthDNS) -> None:
    assert verify(sign(message()), dns) == ARCResult("none")
    assert arc.result_part(ARCResult("none"), "127.0.0.1") == "arc=none"


def test_an_intact_chain_passes(tmp_path: Path, dns: AuthDNS) -> None:
    chain = verify(sealed(tmp_path), dns)
    assert (chain.result, chain.sealer, chain.oldest_pass) == ("pass", "list.test", 0)
    (one,) = chain.sets
    assert (one.instance, one.ams_valid) == (1, True)
    assert one.aar.startswith("i=1; mx.list.test; spf=pass")
    assert arc.result_part(chain, "127.0.0.5") == (
        "arc=pass (i=1 d=list.test) header.oldest-pass=0 smtp.remote-ip=127.0.0.5"
    )


def test_a_changed_body_fails(tmp_path: Path, dns: AuthDNS) -> None:
    content = sealed(tmp_path).replace(b"Hello Bob.", b"Pay Mallory.")
    chain = verify(content, dns)
    assert chain.result == "fail"
    assert arc.result_part(chain, "::1") == (
        'arc=fail (Most recent ARC-Message-Signature did not validate) smtp.remote-ip="::1"'
    )


def test_a_seal_by_an_unpublished_key_fails(tmp_path: Path, dns: AuthDNS) -> None:
    received = our_results(*RECEIVED_OK, host="mx.list.test") + sign(message())
    wrong = sealer_for(tmp_path, "list.test", STRANGER, host="mx.list.test")
    assert verify(wrong.seal(received, "list.test") + received, dns).result == "fail"


def test_a_dead_key_server_is_a_fail_not_a_pass(tmp_path: Path) -> None:
    content = sealed(tmp_path)
    with DNSServer({}, drop={"arc._domainkey.list.test"}) as address:
        chain = arc.verify_chain(content, AuthDNS([address]), Budget.of(0.5))
    assert (chain.result, chain.detail) == ("fail", "key lookup failed")


@pytest.mark.parametrize(
    "extra",
    [
        b"ARC-Seal: i=51; cv=pass; a=rsa-sha256; d=x.test; s=a; b=AAAA\r\n",
        b"ARC-Seal: i=999999999; cv=pass; a=rsa-sha256; d=x.test; s=a; b=AAAA\r\n",
        b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x.test; s=a; b=AAAA\r\n" * 151,
    ],
)
def test_more_than_fifty_sets_fail_unverified(extra: bytes, dns: AuthDNS) -> None:
    assert verify(extra + message(), dns) == ARCResult("fail", detail="more than 50 ARC sets")


@pytest.mark.parametrize(
    "extra",
    [
        b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x.test; s=a; b=AAAA\r\n",
        b"ARC-Seal: garbage\r\nARC-Message-Signature: i=1\r\nARC-Authentication-Results: i=1\r\n",
        b"ARC-Authentication-Results: i=1; x\r\nARC-Message-Signature: i=1; a=rsa-sha256; "
        b"d=x.test; s=a; h=from; bh=AA; b=AA\r\nARC-Seal: i=1; cv=pass; a=rsa-sha256; "
        b"d=x.test; s=a; b=AA\r\n",
    ],
)
def test_broken_sets_fail(extra: bytes, dns: AuthDNS) -> None:
    assert verify(extra + message(), dns).result == "fail"


def test_a_second_hop_that_changed_the_message_leaves_oldest_pass_at_its_instance(
    tmp_path: Path, dns: AuthDNS
) -> None:
    hop1 = sealed(tmp_path / "list")
    changed = hop1.replace(b"Subject: greetings", b"Subject: [fwd] greetings")
    content = our_results("arc=pass") + changed
    seal = sealer_for(tmp_path / "fwd", "example.test", FORWARDER).seal(content, "example.test")
    chain = verify(seal + content, dns)
    assert (chain.result, chain.oldest_pass) == ("pass", 2)
    assert [s.ams_valid for s in chain.sets] == [False, True]


# --- what a set's results say, and the DMARC override ------------------------


def test_aar_results_read_methods_results_and_properties() -> None:
    aar = (
        'i=1; mx.list.test (the list); spf=pass (a "comment"; with a semicolon) '
        'smtp.mailfrom="odd;local@sender.test"; dmarc=PASS header.from=Sender.Test; '
        "dkim/2=fail header.d=x.test; none"
    )
    assert arc.aar_results(aar) == [
        ("spf", "pass", {"smtp.mailfrom": "odd;local@sender.test"}),
        ("dmarc", "pass", {"header.from": "Sender.Test"}),
        ("dkim", "fail", {"header.d": "x.test"}),
    ]


def chain_of(*sets: tuple[str, str]) -> ARCResult:
    return ARCResult(
        "pass", tuple(ARCSet(i, sealer, aar, True) for i, (sealer, aar) in enumerate(sets, 1))
    )


PASSED = "i=1; mx.list.test; dmarc=pass header.from=sender.test"


@pytest.mark.parametrize(
    ("chain", "trusted", "vouching"),
    [
        (chain_of(("list.test", PASSED)), {"list.test"}, "list.test"),
        (chain_of(("list.test", PASSED)), set(), None),
        (chain_of(("list.test", PASSED)), {"other.test"}, None),
        (chain_of(("list.test", PASSED.replace("pass", "fail"))), {"list.test"}, None),
        (chain_of(("list.test", PASSED.replace("sender", "evil"))), {"list.test"}, None),
        # The trusted sealer below a trusted one vouches; below an untrusted one, no.
        (
            chain_of(("list.test", PASSED), ("fwd.test", "i=2; mx.fwd.test; arc=pass")),
            {"list.test", "fwd.test"},
            "list.test",
        ),
        (
            chain_of(("list.test", PASSED), ("evil.test", "i=2; mx.evil.test; arc=pass")),
            {"list.test"},
            None,
        ),
        (ARCResult("fail", chain_of(("list.test", PASSED)).sets), {"list.test"}, None),
    ],
)
def test_trusted_sealer(chain: ARCResult, trusted: set[str], vouching: str | None) -> None:
    assert arc.trusted_sealer(chain, "sender.test", trusted) == vouching


# --- configuration -------------------------------------------------------------


def load(tmp_path: Path, table: str) -> Config:
    path = tmp_path / "mailstead.toml"
    path.write_text(f'hostname = "mx.example.test"\ndomains = ["example.test"]\n{table}')
    return load_config(path)


def test_trusted_sealers_are_normalised_domains(tmp_path: Path) -> None:
    assert load(tmp_path, "").auth_checks.arc_trusted_sealers == ()
    table = (
        '[auth_checks]\narc_trusted_sealers = ["Lists.Example.ORG.", "google.com", "google.com"]'
    )
    sealers = load(tmp_path, table).auth_checks.arc_trusted_sealers
    assert sealers == ("lists.example.org", "google.com")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ('"google.com"', "auth_checks.arc_trusted_sealers: expected an array of strings"),
        ("[1]", "auth_checks.arc_trusted_sealers[0]: expected a string, got 1"),
        ('["[192.0.2.1]"]', "auth_checks.arc_trusted_sealers[0]: expected a domain name"),
    ],
)
def test_trusted_sealer_errors(tmp_path: Path, value: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, f"[auth_checks]\narc_trusted_sealers = {value}\n")
    assert error in str(raised.value)


def test_the_smtp_hook_seals_when_the_checks_run(tmp_path: Path) -> None:
    checks = receiver_checks(load(tmp_path, ""))
    assert checks is not None and isinstance(checks.sealer, ARCSealer)
    assert checks.sealer.authserv_id == "mx.example.test"
