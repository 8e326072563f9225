"""`mailstead send`: local submission through the MSA rules, without the network."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailstead.cli import main
from mailstead.config import load_config
from mailstead.message.compose import Body, build_message
from mailstead.mta.queue import Queue


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mailstead.toml"
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(path),
            "init",
            "--domain",
            "example.test",
            "--hostname",
            "mail.example.test",
        ],
    )
    assert result.exit_code == 0, result.output
    for args in (
        ["user", "add", "alice@example.test", "--password-stdin"],
        ["user", "add", "bob@example.test", "--password-stdin"],
        ["alias", "add", "sales@example.test", "alice@example.test"],
        ["alias", "add", "@example.test", "bob@example.test"],  # catch-all
    ):
        done = run(path, *args, stdin="pw\n")
        assert done.exit_code == 0, done.output
    return path


def run(config: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], input=stdin)


def inbox(config: Path, address: str) -> list[bytes]:
    local, domain = address.split("@")
    new = load_config(config).mail_root / domain / local / "Maildir" / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []


def queued(config: Path) -> list[dict[str, object]]:
    listed = run(config, "queue", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows: list[dict[str, object]] = json.loads(listed.stdout)
    return rows


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("mailstead: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


# --------------------------------------------------------------------------- delivery


def test_send_to_a_local_user_lands_in_the_maildir(config: Path) -> None:
    result = run(
        config,
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--subject",
        "Lunch?",
        "--text",
        "At noon.",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("250 2.0.0 Ok: queued as ")
    assert result.stdout.count("\n") == 1  # nothing went to the outbound queue
    (raw,) = inbox(config, "bob@example.test")
    assert raw.startswith(b"Return-Path: <alice@example.test>\nDelivered-To: bob@example.test\n")
    assert b"\tby mail.example.test (Mailstead) with ESMTPA id " in raw
    msg = parse(raw)
    assert msg["Subject"] == "Lunch?"
    assert msg["From"] == "alice@example.test"
    assert msg["To"] == "bob@example.test"
    assert msg["Message-ID"].endswith("@example.test>")
    assert msg["Date"]
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content() == "At noon.\n"
    assert queued(config) == []


def test_send_to_a_remote_address_goes_to_the_queue(config: Path) -> None:
    result = run(
        config,
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "dave@remote.test",
        "--to",
        "alice@example.test",
        "--text",
        "hi",
    )
    assert result.exit_code == 0, result.output
    (row,) = queued(config)
    assert row["sender"] == "alice@example.test"
    assert row["recipients"] == [
        {
            "address": "dave@remote.test",
            "state": "pending",
            "attempts": 0,
            "next_attempt": row["received_at"],
            "last_error": None,
        }
    ]
    assert result.stdout.splitlines()[1] == f"queue id {row['id']} for 1 remote recipient(s)"
    assert len(inbox(config, "alice@example.test")) == 1  # the local copy at once
    with Queue(load_config(config).data_dir) as q:
        content = q.open_message(str(row["id"]))
    assert content.startswith(b"Received: from localhost ([127.0.0.1])\r\n")
    assert b"\r\nTo: dave@remote.test, alice@example.test\r\n" in content
    assert b"\n" not in content.replace(b"\r\n", b"")  # CRLF throughout


def test_an_alias_of_the_user_may_be_the_sender(config: Path) -> None:
    result = run(
        config, "send", "--from", "Sales@Example.TEST", "--to", "bob@example.test", "--text", "x"
    )
    assert result.exit_code == 0, result.output
    (raw,) = inbox(config, "bob@example.test")
    assert raw.startswith(b"Return-Path: <Sales@Example.TEST>\n")


@pytest.mark.parametrize(
    "sender",
    [
        "eve@example.test",  # no such user; the catch-all does not make it bob's
        "dave@remote.test",  # not a local domain
        "nobody@other.test",
    ],
)
def test_sender_must_be_a_local_user(config: Path, sender: str) -> None:
    result = run(config, "send", "--from", sender, "--to", "bob@example.test", "--text", "x")
    assert_one_line_error(result, f"{sender}: not a local user")
    assert inbox(config, "bob@example.test") == []


@pytest.mark.parametrize(
    ("recipient", "reply"),
    [
        ("nobody@example.test", "550 5.1.1"),  # caught by the catch-all? no: bob has one
        ("not-an-address", "bad recipient address"),
        ("a@b@", "bad recipient address"),
        ("bob@example.test\r\nBcc: x@evil.test", "bad recipient address"),
        ("x@[127.0.0.1", "bad recipient address"),
    ],
)
def test_a_refused_recipient_stops_everything(config: Path, recipient: str, reply: str) -> None:
    if recipient == "nobody@example.test":
        assert run(config, "alias", "del", "@example.test").exit_code == 0
    result = run(
        config,
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--to",
        "dave@remote.test",
        "--to",
        recipient,
        "--text",
        "x",
    )
    assert_one_line_error(result, reply)
    if recipient == "nobody@example.test":
        assert "nobody@example.test: 550 5.1.1 No such user here; nothing sent" in result.stderr
    assert inbox(config, "bob@example.test") == []
    assert queued(config) == []


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ([], "give a body"),
        (["--subject", "s"], "give a body"),
        (["--text", "x", "--subject", "hi\r\nBcc: evil@remote.test"], "bad header"),
        (["--text", "x", "--data", "{}"], "--data needs --template"),
        (["--html", "missing.html"], "missing.html"),
    ],
)
def test_bad_options_are_one_line_errors(config: Path, args: list[str], reason: str) -> None:
    result = run(config, "send", "--from", "alice@example.test", "--to", "bob@example.test", *args)
    assert_one_line_error(result, reason)
    assert inbox(config, "bob@example.test") == []


def test_from_and_to_are_required(config: Path) -> None:
    result = run(config, "send", "--from", "alice@example.test", "--text", "x")
    assert result.exit_code == 2
    assert "--to" in result.stderr


def test_a_storage_failure_is_one_line_with_its_cause(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailstead.store import MaildirStore

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MaildirStore, "stage", disk_full)
    result = run(
        config, "send", "--from", "alice@example.test", "--to", "bob@example.test", "--text", "x"
    )
    assert_one_line_error(result, "not accepted: 451 4.3.0", "No space left on device")


# --------------------------------------------------------------------------- bodies


def _parts(raw: bytes) -> dict[str, str]:
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/alternative"
    parts = {}
    for part in msg.iter_parts():
        assert isinstance(part, EmailMessage)
        assert part["MIME-Version"] is None
        parts[part.get_content_type()] = part.get_content()
    return parts


def test_html_file_with_derived_text_part(config: Path, tmp_path: Path) -> None:
    page = tmp_path / "news.html"
    page.write_text(
        "<html><head><style>p{color:red}</style><title>T</title></head><body>"
        "<h1>Grüße</h1><p>Read <a href='https://example.test/n'>the news</a>.</p>"
        "<ul><li>one</li><li>two &amp; three</li></ul></body></html>",
        encoding="utf-8",
    )
    result = run(
        config,
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--html",
        str(page),
    )
    assert result.exit_code == 0, result.output
    (raw,) = inbox(config, "bob@example.test")
    assert raw.isascii()  # 7-bit transfer encodings for any server
    parts = _parts(raw)
    assert "<h1>Grüße</h1>" in parts["text/html"]
    assert parts["text/plain"] == (
        "Grüße\n\nRead the news [1].\n\n  * one\n  * two & three\n\n[1] https://example.test/n\n"
    )


def test_text_and_html_both_given(config: Path, tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text("<p>HTML version</p>")
    result = run(
        config,
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--text",
        "Text version",
        "--html",
        str(page),
    )
    assert result.exit_code == 0, result.output
    parts = _parts(inbox(config, "bob@example.test")[0])
    assert parts == {"text/plain": "Text version\n", "text/html": "<p>HTML version</p>\n"}


def test_template_is_rendered_with_data_autoescaped(config: Path, tmp_path: Path) -> None:
    (tmp_path / "base.html").write_text("<body>{% block main %}{% endblock %}</body>\n")
    template = tmp_path / "welcome.html"
    template.write_text(
        '{% extends "base.html" %}{% block main %}<p>Hello {{ name }}</p>'
        "{% for i in items %}<i>{{ i }}</i>{% endfor %}{% endblock %}"
    )
    data = json.dumps({"name": "<script>alert(1)</script>", "items": ["a", "b"]})
    result = run(
        config,
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--subject",
        "Welcome",
        "--template",
        str(template),
        "--data",
        data,
    )
    assert result.exit_code == 0, result.output
    parts = _parts(inbox(config, "bob@example.test")[0])
    assert parts["text/html"] == (
        "<html><head></head><body><p>Hello &lt;script&gt;alert(1)&lt;/script&gt;</p>"
        "<i>a</i><i>b</i>\n</body></html>\n"
    )
    assert "<script>" not in parts["text/html"]
    assert parts["text/plain"] == "Hello <script>alert(1)</script>\n\nab\n"


@pytest.mark.parametrize(
    ("source", "data", "reason"),
    [
        ("<p>{{ name }}</p>", "{}", "'name' is undefined"),
        ("<p>{% if %}</p>", "{}", "welcome.html:1:"),
        ("<p>{{ name }}</p>", "{not json", "--data is not valid JSON"),
        ("<p>{{ name }}</p>", "[1, 2]", "--data must be a JSON object"),
        ('{% include "absent.html" %}', "{}", "absent.html"),
        ("<p>{{ ''.__class__.__mro__ }}</p>", "{}", "welcome.html:1: access to attribute"),
    ],
)
def test_template_errors_are_one_line(
    config: Path, tmp_path: Path, source: str, data: str, reason: str
) -> None:
    template = tmp_path / "welcome.html"
    template.write_text(source)
    result = run(
        config,
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--template",
        str(template),
        "--data",
        data,
        "--untrusted",  # the sandbox
    )
    assert_one_line_error(result, reason)
    assert inbox(config, "bob@example.test") == []


def test_html_and_template_together_are_refused(config: Path, tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text("<p>x</p>")
    result = run(
        config,
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--html",
        str(page),
        "--template",
        str(page),
    )
    assert_one_line_error(result, "--html or --template, not both")


# --------------------------------------------------------------------------- many recipients


def _many(n: int, *extra: str) -> list[str]:
    args = []
    for i in range(n):
        args += ["--to", f"r{i:02d}@remote.test"]
    for address in extra:
        args += ["--to", address]
    return args


def test_25_recipients_show_progress_and_queue_one_message(config: Path) -> None:
    result = run(
        config,
        "send",
        "--from",
        "alice@example.test",
        *_many(24, "bob@example.test"),
        "--text",
        "newsletter",
    )
    assert result.exit_code == 0, result.output
    assert "checking recipients" in result.stderr
    assert result.stdout.splitlines()[1].endswith(" for 24 remote recipient(s)")
    (row,) = queued(config)
    recipients = row["recipients"]
    assert isinstance(recipients, list)
    assert len(recipients) == 24
    assert len(inbox(config, "bob@example.test")) == 1


def test_25_recipients_with_one_refused_send_nothing(config: Path) -> None:
    assert run(config, "alias", "del", "@example.test").exit_code == 0
    result = run(
        config,
        "send",
        "--from",
        "alice@example.test",
        *_many(24, "nobody@example.test"),
        "--text",
        "newsletter",
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "checking recipients" in result.stderr  # the bar, then the reason
    assert result.stderr.endswith(
        "mailstead: nobody@example.test: 550 5.1.1 No such user here; nothing sent\n"
    )
    assert queued(config) == []


def test_few_recipients_show_no_progress(config: Path) -> None:
    result = run(config, "send", "--from", "alice@example.test", *_many(10), "--text", "x")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


# --------------------------------------------------------------------------- building blocks


def test_message_id_uses_the_senders_domain_in_ascii() -> None:
    raw = build_message("jörg@Bücher.example", ["a@remote.test"], "Grüße", Body(text="Hallo"))
    msg = parse(raw)
    assert msg["Message-ID"].endswith("@xn--bcher-kva.example>")
    assert msg["From"] == "jörg@Bücher.example"  # SMTPUTF8: UTF-8 headers (RFC 6532)
    assert msg["Subject"] == "Grüße"


def test_ascii_addresses_get_encoded_words() -> None:
    raw = build_message("a@example.test", ["b@remote.test"], "Grüße", Body(text="Hällo"))
    assert raw.isascii()
    assert b"\r\nSubject: =?utf-8?" in raw
    # RFC 2045 §6.8: base64 encodes text in canonical form, CRLF line ends.
    assert parse(raw).get_content().splitlines() == ["Hällo"]


# --------------------------------------------------------------------------- templates

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2213bc60000000049454e44ae426082"
)

NEWS = """---
subject: News for {{ name }}
preheader: This week at Acme
---
<!doctype html>
<html lang="en"><head><style>h1 { color: #0a6; }</style></head>
<body><table role="presentation"><tr><td>
<img src="logo.png" alt="Acme" width="100" height="30">
<h1>Hello {{ name }}</h1><p>Read <a href="https://example.test/n">more</a>.</p>
</td></tr></table></body></html>
"""


@pytest.fixture
def news(tmp_path: Path) -> Path:
    (tmp_path / "logo.png").write_bytes(PNG)
    page = tmp_path / "news.html"
    page.write_text(NEWS, encoding="utf-8")
    return page


def _send_template(config: Path, template: Path, data: str, *args: str) -> Result:
    return run(
        config,
        "send",
        "--from",
        "alice@example.test",
        "--template",
        str(template),
        "--data",
        data,
        *args,
    )


def test_a_template_gives_subject_text_part_and_inline_image(config: Path, news: Path) -> None:
    result = _send_template(config, news, '{"name": "Bob"}', "--to", "bob@example.test")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("250 2.0.0 Ok: queued as ")
    msg = parse(inbox(config, "bob@example.test")[0])
    assert msg["Subject"] == "News for Bob"
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
    ]
    plain = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    assert isinstance(plain, EmailMessage)
    assert plain.get_content() == (
        "This week at Acme\n\n[Acme]\n\nHello Bob\n\nRead more [1].\n\n[1] https://example.test/n\n"
    )


def test_subject_option_wins_over_the_template(config: Path, news: Path) -> None:
    result = _send_template(config, news, "{}", "--to", "bob@example.test", "--subject", "Mine")
    assert_one_line_error(result, "news.html:9: 'name' is undefined")
    result = _send_template(
        config, news, '{"name": "x"}', "--to", "bob@example.test", "--subject", "Mine"
    )
    assert result.exit_code == 0, result.output
    assert parse(inbox(config, "bob@example.test")[0])["Subject"] == "Mine"


def test_lint_errors_refuse_the_message_unless_forced(config: Path, tmp_path: Path) -> None:
    page = tmp_path / "form.html"
    page.write_text(
        '<html lang="en"><body><form action="https://x.test"><input></form></body></html>'
    )
    result = _send_template(config, page, "{}", "--to", "bob@example.test")
    assert_one_line_error(
        result,
        f"the lint finds errors (see: mailstead template lint {page}); fix them or pass --force",
    )
    assert inbox(config, "bob@example.test") == []
    result = _send_template(config, page, "{}", "--to", "bob@example.test", "--force")
    assert result.exit_code == 0, result.output
    assert len(inbox(config, "bob@example.test")) == 1


def test_json_lines_send_one_personalised_message_per_line(
    config: Path, news: Path, tmp_path: Path
) -> None:
    people = tmp_path / "people.jsonl"
    people.write_text(
        '{"name": "Bob"}\n'
        "\n"
        '{"name": "Alice", "to": "alice@example.test"}\n'
        '{"name": "Both", "to": ["bob@example.test", "dave@remote.test"]}\n',
        encoding="utf-8",
    )
    result = _send_template(config, news, f"@{people}", "--to", "bob@example.test")
    assert result.exit_code == 0, result.output
    assert "sending" in result.stderr  # the progress bar
    assert (
        result.stdout == "sent 3 message(s): 3 delivered locally, 1 queued for remote recipients\n"
    )
    assert [parse(m)["Subject"] for m in inbox(config, "bob@example.test")].count(
        "News for Bob"
    ) == 1
    subjects = sorted(parse(m)["Subject"] for m in inbox(config, "bob@example.test"))
    assert subjects == ["News for Both", "News for Bob"] or subjects == [
        "News for Bob",
        "News for Both",
    ]
    assert [parse(m)["Subject"] for m in inbox(config, "alice@example.test")] == ["News for Alice"]
    (row,) = queued(config)
    assert row["recipients"][0]["address"] == "dave@remote.test"  # type: ignore[index]


def test_a_bad_line_stops_the_batch_and_says_where(
    config: Path, news: Path, tmp_path: Path
) -> None:
    people = tmp_path / "people.jsonl"
    people.write_text('{"name": "Bob"}\n{"nom": "x"}\n{"name": "never"}\n', encoding="utf-8")
    result = _send_template(config, news, f"@{people}", "--to", "bob@example.test")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.endswith(
        f"mailstead: {people}:2: {news}:9: 'name' is undefined; 1 message(s) sent before it\n"
    )
    assert len(inbox(config, "bob@example.test")) == 1


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        ('{"name": "x"}\n', ":1: no 'to' in this line and no --to"),
        ('{"name": "x", "to": 5}\n', ":1: 'to' must be an address or a list of addresses"),
        ("[1]\n", ":1 must be a JSON object"),
        ("{\n", ":1 is not valid JSON"),
        ('{"name": "x", "to": "not-an-address"}\n', ":1: not-an-address: bad recipient address"),
    ],
)
def test_bad_json_lines(config: Path, news: Path, tmp_path: Path, lines: str, reason: str) -> None:
    people = tmp_path / "p.jsonl"
    people.write_text(lines)
    result = _send_template(config, news, f"@{people}")
    assert result.exit_code == 1
    assert result.stdout == ""
    bar, error = result.stderr.splitlines()  # the progress bar, then the reason
    assert bar == "sending"
    assert error.startswith(f"mailstead: {people}{reason}")


def test_data_from_a_json_file(config: Path, news: Path, tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('{"name": "Filed"}')
    result = _send_template(config, news, f"@{tmp_path / 'd.json'}", "--to", "bob@example.test")
    assert result.exit_code == 0, result.output
    assert parse(inbox(config, "bob@example.test")[0])["Subject"] == "News for Filed"


def test_a_template_without_to_is_a_usage_error(config: Path, news: Path) -> None:
    result = _send_template(config, news, '{"name": "x"}')
    assert result.exit_code == 2
    assert "--to" in result.stderr
