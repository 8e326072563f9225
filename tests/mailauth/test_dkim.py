"""DKIM signing: keys on disk, dual RSA + Ed25519 signatures verified by dkimpy, oversigning."""

from __future__ import annotations

import datetime
import os
import re
import stat
from pathlib import Path

import dkim
import pytest

from mailstead.mailauth import dkim as dkim_module
from mailstead.mailauth.dkim import (
    DKIMError,
    DKIMKey,
    DKIMKeys,
    DKIMSigner,
    oversigned_headers,
    signing_domain,
    txt_record,
)

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@remote.test>\r\n"
    b"Subject: Hello\r\n"
    b"Date: Thu, 05 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"X-Mailer: test\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b"\r\n"
    b"the body.\r\n"
)


def day(y: int, m: int, d: int) -> datetime.date:
    return datetime.date(y, m, d)


@pytest.fixture
def keys(tmp_path: Path) -> DKIMKeys:
    return DKIMKeys(tmp_path, today=lambda: day(2026, 11, 5))


@pytest.fixture
def signer(keys: DKIMKeys) -> DKIMSigner:
    keys.ensure("example.test")
    return DKIMSigner(keys)


def dns_for(keys: DKIMKeys, domain: str = "example.test") -> object:
    """A dkimpy dnsfunc answering from the records txt_record() makes (no network)."""
    zone = {f"{n}.".encode(): v.encode() for n, v in map(txt_record, keys.keys(domain))}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return zone.get(name.lower())

    return dnsfunc


def verify_all(message: bytes, keys: DKIMKeys) -> list[bool]:
    """The verdict of dkimpy for each DKIM-Signature field, top to bottom."""
    d = dkim.DKIM(message)
    count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
    verdicts = []
    for i in range(count):
        try:
            verdicts.append(bool(d.verify(idx=i, dnsfunc=dns_for(keys))))
        except dkim.DKIMException:
            verdicts.append(False)
    return verdicts


def tags(signature_field: bytes) -> dict[str, str]:
    value = re.sub(rb"\s+", b"", signature_field.split(b":", 1)[1]).decode()
    return dict(t.split("=", 1) for t in value.split(";") if t)


def fields(signatures: bytes) -> list[bytes]:
    """The DKIM-Signature fields in a sign() result (unfolded at CRLF + WSP)."""
    return [b"DKIM-Signature:" + f for f in signatures.split(b"DKIM-Signature:")[1:]]


# --------------------------------------------------------------------------- keys


def test_ensure_makes_rsa_and_ed25519_keys_with_date_selectors(
    keys: DKIMKeys, tmp_path: Path
) -> None:
    made = keys.ensure("Example.TEST")
    assert [(k.algorithm, k.selector, k.domain) for k in made] == [
        ("rsa", "ms20261105r", "example.test"),
        ("ed25519", "ms20261105e", "example.test"),
    ]
    directory = tmp_path / "dkim" / "example.test"
    assert sorted(p.name for p in directory.glob("*.key")) == [
        "ms20261105e.ed25519.key",
        "ms20261105r.rsa.key",
    ]
    for key in made:
        assert stat.S_IMODE(os.stat(key.path).st_mode) == 0o600
        assert key.path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    for d in (tmp_path / "dkim", directory):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


def test_ensure_is_idempotent(tmp_path: Path) -> None:
    first = DKIMKeys(tmp_path, today=lambda: day(2026, 11, 5)).ensure("example.test")
    contents = {k.path: k.path.read_bytes() for k in first}
    later = DKIMKeys(tmp_path, today=lambda: day(2027, 1, 1))
    assert later.ensure("example.test") == first
    assert {k.path: k.path.read_bytes() for k in later.keys("example.test")} == contents


def test_ensure_replaces_only_a_missing_algorithm(tmp_path: Path) -> None:
    first = DKIMKeys(tmp_path, today=lambda: day(2026, 11, 5)).ensure("example.test")
    first[1].path.unlink()  # the Ed25519 key
    again = DKIMKeys(tmp_path, today=lambda: day(2027, 1, 2)).ensure("example.test")
    assert [k.selector for k in again] == ["ms20261105r", "ms20270102e"]


def test_newest_key_per_algorithm_signs_and_all_are_listed(tmp_path: Path) -> None:
    keys = DKIMKeys(tmp_path, today=lambda: day(2025, 11, 5))
    keys.ensure("example.test")
    # A rotation: newer keys appear beside the old ones, which stay published.
    for key in DKIMKeys(tmp_path / "new", today=lambda: day(2027, 3, 1)).ensure("example.test"):
        key.path.rename(tmp_path / "dkim" / "example.test" / key.path.name)
    assert [k.selector for k in keys.keys("example.test")] == [
        "ms20270301r",
        "ms20251105r",
        "ms20270301e",
        "ms20251105e",
    ]
    assert [k.selector for k in keys.signing_keys("example.test")] == [
        "ms20270301r",
        "ms20270301e",
    ]
    assert keys.ensure("example.test") == keys.signing_keys("example.test")


def test_a_replaced_key_file_is_read_again(keys: DKIMKeys, tmp_path: Path) -> None:
    before = keys.ensure("example.test")[0]
    other = DKIMKeys(tmp_path / "other").ensure("example.test")[0]
    other.path.rename(before.path)
    after = keys.keys("example.test")[0]
    assert after.public_key == other.public_key != before.public_key


def test_keys_of_a_domain_without_keys_is_empty(keys: DKIMKeys) -> None:
    assert keys.keys("example.test") == []
    assert DKIMSigner(keys).sign(MESSAGE, "example.test") == b""


def test_files_that_are_not_keys_are_ignored(keys: DKIMKeys, tmp_path: Path) -> None:
    keys.ensure("example.test")
    directory = tmp_path / "dkim" / "example.test"
    (directory / "notes.txt").write_text("x")
    (directory / ".ms1.rsa.key.123.tmp").write_text("partial")
    (directory / "Bad_Selector.rsa.key").write_text("x")
    assert len(keys.keys("example.test")) == 2


@pytest.mark.parametrize("domain", ["../etc", "a/b", "", "[127.0.0.1]", "exa mple.test"])
def test_hostile_domain_names_never_reach_the_file_system(keys: DKIMKeys, domain: str) -> None:
    with pytest.raises(DKIMError):
        keys.ensure(domain)


def test_unreadable_key_is_a_one_line_error(keys: DKIMKeys) -> None:
    rsa_key = keys.ensure("example.test")[0]
    rsa_key.path.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(DKIMError, match=r"cannot read DKIM key .*ms20261105r\.rsa\.key") as info:
        keys.keys("example.test")
    assert "\n" not in str(info.value)


def test_txt_records(keys: DKIMKeys) -> None:
    rsa_key, ed_key = keys.ensure("example.test")
    name, value = txt_record(rsa_key)
    assert name == "ms20261105r._domainkey.example.test"
    assert re.fullmatch(r"v=DKIM1; k=rsa; p=MIIB[A-Za-z0-9+/]+=*", value)
    name, value = DKIMKeys.txt_record(ed_key)
    assert name == "ms20261105e._domainkey.example.test"
    # RFC 8463 §4: the raw 32-byte key, base64 (44 characters), not SPKI.
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", value)
    assert "_dkimpy_key" not in repr(rsa_key)


# --------------------------------------------------------------------------- signing


def test_two_signatures_both_verify(signer: DKIMSigner, keys: DKIMKeys) -> None:
    signatures = signer.sign(MESSAGE, "example.test")
    assert signatures.endswith(b"\r\n")
    assert re.fullmatch(rb"(?:[^\r\n]+\r\n)+", signatures)  # CRLF lines only
    assert all(
        line[:1] in b" \t"
        for line in signatures.split(b"\r\n")[1:-1]
        if line and not line.startswith(b"DKIM-Signature:")
    )
    found = fields(signatures)
    assert [tags(f)["a"] for f in found] == ["rsa-sha256", "ed25519-sha256"]
    assert [tags(f)["s"] for f in found] == ["ms20261105r", "ms20261105e"]
    for f in found:
        t = tags(f)
        assert t["d"] == "example.test"
        assert t["c"] == "relaxed/relaxed"
        assert "l" not in t
    assert verify_all(signatures + MESSAGE, keys) == [True, True]


@pytest.fixture
def signings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The algorithm of every signature actually computed from now on."""
    made: list[str] = []
    real = dkim_module._dkimpy_sign

    def counting(message: bytes, key: DKIMKey, include: list[bytes]) -> bytes:
        made.append(key.algorithm)
        return real(message, key, include)

    monkeypatch.setattr(dkim_module, "_dkimpy_sign", counting)
    return made


def test_a_queued_message_is_signed_once(
    signer: DKIMSigner, keys: DKIMKeys, signings: list[str]
) -> None:
    first = signer.sign(MESSAGE, "example.test", queue_id="Q1")
    again = signer.sign(MESSAGE, "example.test", queue_id="Q1")  # another domain, a retry
    assert again == first and signings == ["rsa", "ed25519"]
    assert verify_all(again + MESSAGE, keys) == [True, True]
    signer.sign(MESSAGE, "example.test", queue_id="Q2")
    signer.sign(MESSAGE, "example.test")  # no queue id: nothing to remember it by
    assert len(signings) == 6


def test_remembered_signatures_are_bounded(keys: DKIMKeys, signings: list[str]) -> None:
    keys.ensure("example.test")
    signer = DKIMSigner(keys, remember=2)
    for queue_id in ("A", "B", "C", "C", "B", "A"):
        signer.sign(MESSAGE, "example.test", queue_id=queue_id)
    # A, B, C signed; C and B remembered; A forgotten and signed again.
    assert len(signings) == 2 * 4


def test_signed_header_list_is_oversigned(signer: DKIMSigner) -> None:
    signatures = signer.sign(MESSAGE, "example.test")
    h = tags(fields(signatures)[0])["h"].split(":")
    assert h == [
        "from", "from",
        "subject", "subject",
        "date", "date",
        "to", "to",
        "message-id", "message-id",
        "mime-version", "mime-version",
        "content-type", "content-type",
    ]  # fmt: skip
    assert "x-mailer" not in h


def test_repeated_header_is_listed_once_more_than_it_occurs() -> None:
    message = b"From: a@example.test\r\nReferences: <1@x>\r\nReferences: <2@x>\r\n\r\nbody\r\n"
    assert oversigned_headers(message) == [b"from", b"from"] + [b"references"] * 3


def test_relaxed_canonicalisation_survives_whitespace_changes(
    signer: DKIMSigner, keys: DKIMKeys
) -> None:
    signed = signer.sign(MESSAGE, "example.test") + MESSAGE
    changed = (
        signed.replace(b"Subject: Hello\r\n", b"SUBJECT:   Hello \t\r\n")
        .replace(b"To: Bob <bob@remote.test>\r\n", b"To: Bob\r\n   <bob@remote.test>\r\n")
        .replace(b"the body.\r\n", b"the   body.   \r\n\r\n\r\n")
    )
    assert changed != signed
    assert verify_all(changed, keys) == [True, True]


def test_changed_content_fails(signer: DKIMSigner, keys: DKIMKeys) -> None:
    signed = signer.sign(MESSAGE, "example.test") + MESSAGE
    assert verify_all(signed.replace(b"Subject: Hello", b"Subject: Hellp"), keys) == [False, False]
    assert verify_all(signed.replace(b"the body.", b"the b0dy."), keys) == [False, False]
    assert verify_all(signed + b"appended\r\n", keys) == [False, False]  # no l=


@pytest.mark.parametrize("where", ["top", "bottom"])
def test_a_second_from_added_after_signing_fails(
    signer: DKIMSigner, keys: DKIMKeys, where: str
) -> None:
    signatures = signer.sign(MESSAGE, "example.test")
    forged = b"From: CEO <ceo@example.test>\r\n"
    if where == "top":
        tampered = forged + signatures + MESSAGE
    else:
        head, body = MESSAGE.split(b"\r\n\r\n", 1)
        tampered = signatures + head + b"\r\n" + forged + b"\r\n" + body
    assert verify_all(tampered, keys) == [False, False]
    # dkimpy's verifier adds an extra "from" by itself (its bug #644046), so
    # check what any RFC 6376 verifier does with our h=: the forged field is
    # among the fields it hashes, so the hash cannot match.
    h = tags(fields(signatures)[0])["h"].encode().split(b":")
    headers, _ = dkim.rfc822_parse(tampered)
    selected = dkim.select_headers(headers, h)
    assert [b"From", b" CEO <ceo@example.test>\r\n"] in selected


def test_lf_only_message_is_signed_too(signer: DKIMSigner, keys: DKIMKeys) -> None:
    lf = MESSAGE.replace(b"\r\n", b"\n")
    signed = signer.sign(lf, "example.test") + MESSAGE
    assert verify_all(signed, keys) == [True, True]


def test_message_without_from_is_refused(signer: DKIMSigner) -> None:
    with pytest.raises(DKIMError, match="no From"):
        signer.sign(b"Subject: x\r\n\r\nbody\r\n", "example.test")


def test_unparsable_header_section_is_a_one_line_error(signer: DKIMSigner) -> None:
    with pytest.raises(DKIMError, match="cannot sign") as info:
        signer.sign(b"From: a@example.test\r\nthis is no header\r\n\r\nbody\r\n", "example.test")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- signing_domain

OURS = ("example.test", "xn--bcher-kva.example")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"From: alice@example.test", "example.test"),
        (b"From: Alice <alice@EXAMPLE.Test>", "example.test"),
        (b'From: "Smith, Alice" <alice@example.test>', "example.test"),
        (b"From: =?utf-8?q?Al=C3=AFce?= <alice@example.test>", "example.test"),
        ("From: Jörg <jörg@bücher.example>".encode(), "xn--bcher-kva.example"),
        (b"from: alice@example.test (comment)", "example.test"),
        (b"From: alice@remote.test", None),
        (b"From: alice@sub.example.test", None),
        (b"From: a@example.test, b@example.test", None),
        (b"From: a@example.test\r\nFrom: b@example.test", None),
        (b"Sender: a@example.test", None),
        (b"From: undisclosed-recipients:;", None),
        (b"From: <>", None),
        (b"From: alice", None),
        (b"From: <<<@@@>>>", None),
        (b"From: @example.test", None),
        (b"From: alice@[127.0.0.1]", None),
        (b"From: \xff\xfe@example.test", "example.test"),  # the domain is what counts
        (b"From: a@\xff\xfe.test", None),
        (b"From: a@example.test\x00", None),
        (b"\x00\x01\x02", None),
        (b"", None),
    ],
)
def test_signing_domain(header: bytes, expected: str | None) -> None:
    message = header + b"\r\nSubject: x\r\n\r\nFrom: body@example.test\r\n"
    assert signing_domain(message, OURS) == expected


def test_signing_domain_reads_only_the_header_section() -> None:
    message = b"Subject: x\r\n\r\nFrom: alice@example.test\r\n"
    assert signing_domain(message, OURS) is None
    assert signing_domain(b"From: alice@example.test\n\nbody\n", OURS) == "example.test"


def test_dkimkey_is_a_value(keys: DKIMKeys) -> None:
    key = keys.ensure("example.test")[0]
    assert isinstance(key, DKIMKey)
    assert key == keys.keys("example.test")[0]
