"""`mailstead dns-records DOMAIN`: the MX, SPF, DKIM, DMARC and TLS-RPT records to publish."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dkim
import pytest
from click.testing import CliRunner, Result

from mailstead.cli import main
from mailstead.config import load_config
from mailstead.mailauth.dkim import DKIMKeys, DKIMSigner
from mailstead.mailauth.dnsrecords import DNSRecordsError, Record, records, txt_strings, zone_text


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mailstead.toml"
    path.write_text(
        'hostname = "mail.example.test"\n'
        'domains = ["example.test", "Bücher.example"]\n'
        "[delivery]\n"
        'source_ip = "192.0.2.25"\n'
    )
    return path


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def test_zone_file_text(config: Path) -> None:
    result = run(config, "dns-records", "example.test")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    records_ = [line for line in lines if not line.startswith(";")]
    assert all(line.startswith("; ") for line in lines[::2])  # a comment above each record
    rsa_key, ed_key = DKIMKeys(load_config(config).data_dir).keys("example.test")
    assert records_[0] == "example.test. 3600 IN MX 10 mail.example.test."
    assert records_[1] == 'example.test. 3600 IN TXT "v=spf1 mx ip4:192.0.2.25 ~all"'
    assert records_[2].startswith(f'{rsa_key.selector}._domainkey.example.test. 3600 IN TXT "')
    assert records_[3] == (
        f"{ed_key.selector}._domainkey.example.test. 3600 IN TXT "
        f'"v=DKIM1; k=ed25519; p={ed_key.public_key}"'
    )
    assert records_[4] == (
        "_dmarc.example.test. 3600 IN TXT "
        '"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"'
    )
    assert records_[5] == (
        '_smtp._tls.example.test. 3600 IN TXT "v=TLSRPTv1; rua=mailto:postmaster@example.test"'
    )
    assert records_[6] == "25.2.0.192.in-addr.arpa. 3600 IN PTR mail.example.test."
    assert lines[-2].startswith("; reverse DNS of 192.0.2.25, where example.test mail leaves")
    assert len(records_) == 7
    # The RSA key is longer than one character-string: split, each ≤255 octets.
    strings = re.findall(r'"([^"]*)"', records_[2])
    assert len(strings) == 2
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == f"v=DKIM1; k=rsa; p={rsa_key.public_key}"


def test_json_is_stable_and_matches_the_text(config: Path) -> None:
    result = run(config, "dns-records", "example.test", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [sorted(row) for row in rows] == [["name", "type", "value"]] * 7
    assert [(r["type"], r["name"]) for r in rows][:2] == [
        ("MX", "example.test."),
        ("TXT", "example.test."),
    ]
    assert rows[0]["value"] == "10 mail.example.test."
    assert rows[4] == {
        "type": "TXT",
        "name": "_dmarc.example.test.",
        "value": "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test",
    }
    # Keys are made once: a second run prints the same records.
    assert json.loads(run(config, "dns-records", "EXAMPLE.test.", "--json").output) == rows


def test_idn_domain(config: Path) -> None:
    result = run(config, "dns-records", "bücher.example", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows[0] == {
        "type": "MX",
        "name": "xn--bcher-kva.example.",
        "value": "10 mail.example.test.",
    }


@pytest.mark.parametrize("domain", ["other.test", "sub.example.test", "../etc", "[127.0.0.1]"])
def test_unknown_domain_is_one_line_exit_1(config: Path, domain: str) -> None:
    result = run(config, "dns-records", domain)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("mailstead: ")
    assert not (load_config(config).data_dir / "dkim").exists()


def test_missing_config_is_one_line(tmp_path: Path) -> None:
    result = run(tmp_path / "none.toml", "dns-records", "example.test")
    assert result.exit_code == 1
    assert (
        result.output == f"mailstead: no config at {tmp_path / 'none.toml'}; run `mailstead init`\n"
    )


def test_published_records_verify_signed_mail(config: Path) -> None:
    """What dns-records prints is what a verifier needs for what DKIMSigner signs."""
    loaded = load_config(config)
    zone = {
        r.name.encode(): r.value.encode()
        for r in records(loaded, "example.test")
        if r.type == "TXT"
    }
    message = b"From: alice@example.test\r\nSubject: hi\r\n\r\nbody\r\n"
    signed = DKIMSigner(DKIMKeys(loaded.data_dir)).sign(message, "example.test") + message

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return zone.get(name)

    d = dkim.DKIM(signed)
    assert d.verify(idx=0, dnsfunc=dnsfunc)
    assert d.verify(idx=1, dnsfunc=dnsfunc)


def test_records_refuses_foreign_domain(config: Path) -> None:
    with pytest.raises(DNSRecordsError, match=r"^other\.test is not a domain of this server"):
        records(load_config(config), "other.test")


def test_spf_without_source_ip(tmp_path: Path) -> None:
    path = tmp_path / "mailstead.toml"
    path.write_text('hostname = "mx.example.test"\ndomains = ["example.test"]\n')
    spf = records(load_config(path), "example.test")[1]
    assert spf == Record(
        "TXT",
        "example.test.",
        "v=spf1 mx ~all",
        "SPF: the MX hosts send this domain's mail; others softfail, DMARC decides",
    )


@pytest.mark.parametrize(
    ("value", "lengths"),
    [("", [0]), ("a" * 255, [255]), ("a" * 256, [255, 1]), ("a" * 600, [255, 255, 90])],
)
def test_txt_strings(value: str, lengths: list[int]) -> None:
    assert [len(s) for s in txt_strings(value)] == lengths


def test_txt_strings_never_split_a_utf8_sequence() -> None:
    value = "a" + "é" * 200
    chunks = txt_strings(value)
    assert "".join(chunks) == value
    assert all(len(c.encode()) <= 255 for c in chunks)


def test_zone_text_quotes_txt() -> None:
    rec = Record("TXT", "x.example.test.", 'say "hi" \\o/', "a comment")
    assert zone_text([rec], ttl=60) == (
        '; a comment\nx.example.test. 60 IN TXT "say \\"hi\\" \\\\o/"\n'
    )


def test_each_domain_gets_the_spf_and_ptr_of_its_own_address(tmp_path: Path) -> None:
    path = tmp_path / "mailstead.toml"
    path.write_text(
        'hostname = "mx.example.test"\ndomains = ["example.test", "b.test", "c.test"]\n'
        '[delivery]\nsource_ip = "192.0.2.25"\nhelo_name = "out.example.test"\n'
        '[delivery.source_ip_by_domain]\n"B.test" = "2001:db8::b"\n"c.test" = "192.0.2.26"\n'
    )
    config = load_config(path)

    def spf_and_ptr(domain: str) -> list[tuple[str, str]]:
        recs = records(config, domain)
        return [(recs[1].value, "")] + [(r.name, r.value) for r in recs if r.type == "PTR"]

    assert spf_and_ptr("example.test") == [
        ("v=spf1 mx ip4:192.0.2.25 ~all", ""),
        ("25.2.0.192.in-addr.arpa.", "out.example.test."),
    ]
    assert spf_and_ptr("b.test") == [
        ("v=spf1 mx ip6:2001:db8::b ~all", ""),
        (
            "b.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
            "out.example.test.",
        ),
    ]
    assert spf_and_ptr("c.test") == [
        ("v=spf1 mx ip4:192.0.2.26 ~all", ""),
        ("26.2.0.192.in-addr.arpa.", "out.example.test."),
    ]
