"""`mailstead check dns`: SPF, DKIM, DMARC, TLS-RPT, MTA-STS and the client-settings names."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.checks.dnszones import CONFIG, Published

SPF_PUBLISH = '      publish: example.test. 3600 IN TXT "v=spf1 mx ~all"'


@pytest.fixture
def domain(tmp_path: Path) -> Published:
    return Published(tmp_path)


# -- SPF


def test_spf_missing(domain: Published) -> None:
    del domain.zones["example.test"]["TXT"]
    assert domain.lines("spf") == [
        "FAIL  spf          example.test: no SPF record: receivers cannot tell who may send "
        "for the domain",
        SPF_PUBLISH,
    ]


def test_two_spf_records(domain: Published) -> None:
    domain.zones["example.test"]["TXT"] = ["v=spf1 mx ~all", "v=spf1 -all", "other text"]
    assert domain.lines("spf") == [
        "FAIL  spf          example.test: 2 SPF records: receivers treat that as an error "
        "(RFC 7208 §3.2)",
        SPF_PUBLISH,
    ]


def test_spf_not_covering_the_sending_address(domain: Published) -> None:
    domain.zones["example.test"]["TXT"] = ["v=spf1 ip4:198.51.100.0/24 -all"]
    assert domain.lines("spf") == [
        "FAIL  spf          example.test: does not authorise the sending address "
        "(192.0.2.25: fail)",
        '      publish: example.test. 3600 IN TXT "v=spf1 ip4:192.0.2.25 ip4:198.51.100.0/24 -all"',
    ]


def test_spf_through_include_and_a_cidr(domain: Published) -> None:
    domain.zones["example.test"]["TXT"] = ["v=spf1 include:_spf.provider.test ~all"]
    domain.zones["_spf.provider.test"] = {"TXT": ["v=spf1 a:out.provider.test/24 -all"]}
    domain.zones["out.provider.test"] = {"A": ["192.0.2.1"]}
    assert domain.lines("spf") == [
        'PASS  spf          example.test: "v=spf1 include:_spf.provider.test ~all" authorises '
        "192.0.2.25 (2 of 10 DNS lookups)"
    ]


def test_spf_with_a_term_not_evaluated_warns(domain: Published) -> None:
    domain.zones["example.test"]["TXT"] = ["v=spf1 exists:%{i}.spf.example.test -all"]
    assert domain.lines("spf") == [
        "WARN  spf          example.test: cannot tell whether 192.0.2.25 may send: stopped "
        "at exists:%{i}.spf.example.test (macros are not evaluated)"
    ]


def test_spf_over_the_lookup_limit_fails(domain: Published) -> None:
    # RFC 7208 §4.6.4: eleven DNS-querying terms are a permerror.
    chain = [f"_spf{i}.example.test" for i in range(11)]
    domain.zones["example.test"]["TXT"] = [f"v=spf1 include:{chain[0]} -all"]
    for here, there in itertools.pairwise(chain):
        domain.zones[here] = {"TXT": [f"v=spf1 include:{there} -all"]}
    domain.zones[chain[-1]] = {"TXT": ["v=spf1 mx -all"]}
    assert domain.lines("spf") == [
        "FAIL  spf          example.test: permerror evaluating for 192.0.2.25: more than 10 "
        "DNS lookups (RFC 7208 §4.6.4)"
    ]


def test_spf_plus_all_fails(domain: Published) -> None:
    domain.zones["example.test"]["TXT"] = ["v=spf1 mx +all"]
    assert domain.lines("spf")[0] == (
        'FAIL  spf          example.test: "v=spf1 mx +all" ends in +all: it authorises every '
        "host on the Internet"
    )


# -- DKIM


def test_dkim_missing(domain: Published) -> None:
    (rsa_name, _), _ = domain.dkim
    del domain.zones[rsa_name]
    lines = domain.lines("dkim")
    selector = rsa_name.split(".")[0]
    assert lines[0] == f"FAIL  dkim         {rsa_name}: no key published for selector {selector}"
    assert lines[1].startswith(f'      publish: {rsa_name}. 3600 IN TXT "v=DKIM1; k=rsa; p=')
    assert lines[2].startswith("PASS  dkim ")


def test_dkim_with_another_key(domain: Published) -> None:
    _, (ed_name, ed_value) = domain.dkim
    domain.zones[ed_name] = {
        "TXT": ["v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="]
    }
    lines = domain.lines("dkim")
    assert lines[1] == (
        f"FAIL  dkim         {ed_name}: the published key is not the one mail is signed with"
    )
    assert lines[2] == f'      publish: {ed_name}. 3600 IN TXT "{ed_value}"'


def test_dkim_revoked(domain: Published) -> None:
    (rsa_name, _), _ = domain.dkim
    domain.zones[rsa_name] = {"TXT": ["v=DKIM1; k=rsa; p="]}
    assert domain.lines("dkim")[0] == (
        f"FAIL  dkim         {rsa_name}: the published key is revoked (empty p=, RFC 6376 §3.6.1)"
    )


def test_dkim_key_folded_with_whitespace_matches(domain: Published) -> None:
    (rsa_name, rsa_value), _ = domain.dkim
    head, _, key = rsa_value.partition("p=")
    domain.zones[rsa_name] = {"TXT": [f"{head}p={key[:40]} {key[40:]}"]}
    assert domain.lines("dkim")[0].startswith("PASS  dkim ")


# -- DMARC


@pytest.mark.parametrize(
    ("record", "line"),
    [
        (
            "v=DMARC1; p=none",
            "WARN  dmarc        _dmarc.example.test: p=none: receivers only report; mail forged "
            "as the domain is delivered",
        ),
        (
            "v=DMARC1; p=maybe",
            "FAIL  dmarc        _dmarc.example.test: p= must be none, quarantine or reject "
            "(RFC 7489 §6.3), got 'maybe'",
        ),
        (
            "v=DMARC1; p=reject; p=none",
            "FAIL  dmarc        _dmarc.example.test: not parseable: the tag p= appears twice",
        ),
        (
            "v=DMARC1; p=reject",
            "PASS  dmarc        _dmarc.example.test: p=reject",
        ),
    ],
)
def test_dmarc(domain: Published, record: str, line: str) -> None:
    domain.zones["_dmarc.example.test"] = {"TXT": [record]}
    assert domain.lines("dmarc")[0] == line


def test_dmarc_missing(domain: Published) -> None:
    domain.zones["_dmarc.example.test"] = {"TXT": ["v=spf1 -all"]}  # not a DMARC record
    assert domain.lines("dmarc") == [
        "FAIL  dmarc        _dmarc.example.test: no DMARC record: receivers apply no policy to "
        "mail forged as the domain",
        '      publish: _dmarc.example.test. 3600 IN TXT "v=DMARC1; p=quarantine; '
        'rua=mailto:postmaster@example.test"',
    ]


# -- TLS-RPT and MTA-STS, optional


def test_tls_rpt_absent_is_information(domain: Published) -> None:
    del domain.zones["_smtp._tls.example.test"]
    result = domain.check()
    assert result.exit_code == 0
    assert domain.lines("tls-rpt") == [
        "INFO  tls-rpt      _smtp._tls.example.test: not published (optional): senders cannot "
        "report TLS failures",
        '      publish: _smtp._tls.example.test. 3600 IN TXT "v=TLSRPTv1; '
        'rua=mailto:postmaster@example.test"',
    ]


def test_tls_rpt_without_rua_fails(domain: Published) -> None:
    domain.zones["_smtp._tls.example.test"] = {"TXT": ["v=TLSRPTv1;"]}
    assert domain.lines("tls-rpt")[0] == (
        "FAIL  tls-rpt      _smtp._tls.example.test: no rua=: senders have nowhere to report "
        "(RFC 8460 §3)"
    )


def test_mta_sts_published(domain: Published) -> None:
    domain.zones["_mta-sts.example.test"] = {"TXT": ["v=STSv1; id=20261207T1"]}
    domain.zones["mta-sts.example.test"] = {"A": ["192.0.2.25"]}
    assert domain.lines("mta-sts") == [
        "PASS  mta-sts      _mta-sts.example.test: id=20261207T1; policy host "
        "mta-sts.example.test resolves (the policy itself is not fetched)"
    ]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("v=STSv1; id=no-dashes-allowed", "id= must be 1 to 32 letters and digits (RFC 8461 §3.1)"),
        (
            "v=STSv1; id=1",
            "id=1, but senders cannot fetch the policy: mta-sts.example.test: no such domain",
        ),
    ],
)
def test_mta_sts_broken(domain: Published, record: str, reason: str) -> None:
    domain.zones["_mta-sts.example.test"] = {"TXT": [record]}
    result = domain.check()
    assert result.exit_code == 1
    assert domain.lines("mta-sts") == [f"FAIL  mta-sts      _mta-sts.example.test: {reason}"]


def test_autoconfig_and_autodiscover_are_information(domain: Published) -> None:
    domain.zones["autoconfig.example.test"] = {"CNAME": ["mail.example.test"]}
    assert domain.lines("autoconfig") == [
        "INFO  autoconfig   autoconfig.example.test: A/AAAA 192.0.2.25: mail clients ask it for "
        "settings over HTTPS"
    ]


def test_a_localhost_hostname_warns(tmp_path: Path) -> None:
    domain = Published(tmp_path, CONFIG.replace("mail.example.test", "localhost"))
    assert domain.lines("hostname") == [
        'WARN  hostname     localhost: hostname is "localhost", a name no other host can '
        'reach: set hostname = "mail.example.com" in the config (the banner, EHLO, MX and PTR '
        "records use it)"
    ]
