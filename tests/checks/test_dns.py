"""`mailstead check dns DOMAIN` against a DNS server of the test's own on loopback.

One case per outcome of each check; the records to publish are what
`mailstead dns-records` prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.checks.conftest import run_check
from tests.checks.dnszones import CONFIG, Published

DMARC = "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"


@pytest.fixture
def domain(tmp_path: Path) -> Published:
    return Published(tmp_path)


def test_a_domain_published_as_suggested_passes(domain: Published) -> None:
    result = domain.check()
    assert result.exit_code == 0, result.output
    (rsa_name, _), (ed_name, _) = domain.dkim
    lines = result.output.splitlines()
    assert lines[0].startswith("example.test: asking 127.0.0.1:")
    assert lines[1:] == [
        "PASS  mx           example.test: MX 10 mail.example.test",
        "PASS  mx-host      mail.example.test: A/AAAA 192.0.2.25",
        "PASS  ptr          192.0.2.25: PTR mail.example.test, which resolves back "
        "(network.addresses[0])",
        'PASS  spf          example.test: "v=spf1 mx ~all" authorises 192.0.2.25 '
        "(1 of 10 DNS lookups)",
        f"PASS  dkim         {rsa_name}: rsa key matches the signing key",
        f"PASS  dkim         {ed_name}: ed25519 key matches the signing key",
        "PASS  dmarc        _dmarc.example.test: p=quarantine, reports to "
        "mailto:postmaster@example.test",
        "PASS  tls-rpt      _smtp._tls.example.test: reports to mailto:postmaster@example.test",
        "INFO  mta-sts      _mta-sts.example.test: not published (optional): needs a policy "
        "served at https://mta-sts.example.test/.well-known/mta-sts.txt",
        "INFO  autoconfig   autoconfig.example.test: not published: mail clients guess the "
        "settings (optional)",
        "INFO  autodiscover autodiscover.example.test: not published: mail clients guess the "
        "settings (optional)",
        "8 passed, 0 warnings, 0 failed, 3 for information",
    ]


def test_json(domain: Published) -> None:
    del domain.zones["_dmarc.example.test"]
    result = domain.check("--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["domain"] == "example.test"
    assert report["resolvers"][0].startswith("127.0.0.1:")
    assert report["ok"] is False
    assert report["counts"] == {"pass": 7, "warn": 0, "fail": 1, "info": 3}
    assert report["checks"][0] == {
        "check": "mx",
        "status": "pass",
        "name": "example.test",
        "message": "MX 10 mail.example.test",
        "publish": [],
    }
    dmarc = next(c for c in report["checks"] if c["check"] == "dmarc")
    assert dmarc == {
        "check": "dmarc",
        "status": "fail",
        "name": "_dmarc.example.test",
        "message": "no DMARC record: receivers apply no policy to mail forged as the domain",
        "publish": [{"type": "TXT", "name": "_dmarc.example.test.", "value": DMARC}],
    }


def test_a_domain_not_served_is_one_line(domain: Published) -> None:
    result = run_check(domain.path, "dns", "other.test")
    assert result.exit_code == 1
    assert result.output == (
        "mailstead: other.test is not a domain of this server (domains: example.test)\n"
    )


def test_a_failed_lookup_fails_the_check(domain: Published) -> None:
    result = domain.check(servfail=("_dmarc.example.test",))
    assert result.exit_code == 1
    assert (
        "FAIL  dmarc        _dmarc.example.test: lookup failed: "
        "_dmarc.example.test: TXT lookup failed"
    ) in result.output.splitlines()


# -- MX


def test_mx_missing(domain: Published) -> None:
    del domain.zones["example.test"]["MX"]
    assert domain.lines("mx") == [
        "FAIL  mx           example.test: no MX record: senders fall back to the address of "
        "the domain itself",
        "      publish: example.test. 3600 IN MX 10 mail.example.test.",
    ]


def test_mx_naming_another_host_warns(domain: Published) -> None:
    domain.zones["example.test"]["MX"] = [(10, "mx.provider.test")]
    domain.zones["mx.provider.test"] = {"AAAA": ["2001:db8::1"]}
    assert domain.lines("mx") == [
        "WARN  mx           example.test: MX 10 mx.provider.test does not name this host "
        "(mail.example.test)",
        "      publish: example.test. 3600 IN MX 10 mail.example.test.",
    ]
    assert domain.lines("mx-host") == ["PASS  mx-host      mx.provider.test: A/AAAA 2001:db8::1"]


def test_mx_where_this_host_is_only_a_backup_warns(domain: Published) -> None:
    domain.zones["example.test"]["MX"] = [(20, "mail.example.test"), (10, "mx.provider.test")]
    domain.zones["mx.provider.test"] = {"A": ["192.0.2.80"]}
    assert domain.lines("mx")[0] == (
        "WARN  mx           example.test: mail.example.test is a backup MX; mail goes first "
        "to 10 mx.provider.test"
    )


def test_null_mx_fails(domain: Published) -> None:
    domain.zones["example.test"]["MX"] = [(0, ".")]
    assert domain.lines("mx")[0] == (
        "FAIL  mx           example.test: null MX: the domain says it accepts no mail (RFC 7505)"
    )


def test_mx_host_without_address_fails(domain: Published) -> None:
    del domain.zones["mail.example.test"]
    assert domain.lines("mx-host") == [
        "FAIL  mx-host      mail.example.test: no A or AAAA record: mail cannot reach "
        "mail.example.test; publish its address",
        "      publish: mail.example.test. 3600 IN A 192.0.2.25",
    ]


# -- PTR


def test_ptr_missing_fails_with_the_record_to_ask_for(domain: Published) -> None:
    del domain.zones["25.2.0.192.in-addr.arpa"]
    assert domain.lines("ptr") == [
        "FAIL  ptr          192.0.2.25: no PTR record (network.addresses[0]): many receivers "
        "refuse mail from an address without one",
        "      ask for: 25.2.0.192.in-addr.arpa. 3600 IN PTR mail.example.test.",
    ]


def test_ptr_naming_another_confirmed_name_warns(domain: Published) -> None:
    domain.zones["25.2.0.192.in-addr.arpa"] = {"PTR": ["host25.provider.test"]}
    domain.zones["host25.provider.test"] = {"A": ["192.0.2.25"]}
    assert domain.lines("ptr") == [
        "WARN  ptr          192.0.2.25: PTR host25.provider.test, not the EHLO name "
        "mail.example.test (network.addresses[0])",
        "      ask for: 25.2.0.192.in-addr.arpa. 3600 IN PTR mail.example.test.",
    ]


def test_ptr_not_forward_confirmed_fails(domain: Published) -> None:
    domain.zones["mail.example.test"] = {"A": ["192.0.2.26"]}
    assert domain.lines("ptr")[0] == (
        "FAIL  ptr          192.0.2.25: PTR mail.example.test does not resolve back to "
        "192.0.2.25 (network.addresses[0]): receivers see no forward-confirmed name"
    )


def test_every_sending_address_is_checked(tmp_path: Path) -> None:
    config = CONFIG.replace(
        "[delivery]\n",
        '[delivery.source_ip_by_domain]\n"example.test" = "192.0.2.30"\n'
        '[delivery]\nsource_ip = "2001:db8::25"\n',
    )
    domain = Published(tmp_path, config)
    domain.zones["mail.example.test"]["AAAA"] = ["2001:db8::25"]
    domain.zones["5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"] = {
        "PTR": ["mail.example.test"]
    }
    lines = domain.lines("ptr")
    assert [line.split(":")[0].split()[-1] for line in lines if not line.startswith(" ")] == [
        "2001",
        "192.0.2.30",
        "192.0.2.25",
    ]
    assert lines[0].startswith("PASS  ptr          2001:db8::25: PTR mail.example.test")
    assert lines[1].startswith("FAIL  ptr          192.0.2.30: no PTR record")
