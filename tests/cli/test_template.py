"""`mailstead template render|lint|preview`: the command line over the template pipeline."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import Result

from tests.cli.runner import run

PAGE = """---
subject: Hello {{ name }}
preheader: A short note
---
<!doctype html>
<html lang="en"><head><style>p { color: #222; }</style></head>
<body><p>Hello {{ name }}, see <a href="https://example.test/x">this</a>.</p></body></html>
"""


@pytest.fixture
def page(tmp_path: Path) -> Path:
    path = tmp_path / "hello.html"
    path.write_text(PAGE, encoding="utf-8")
    return path


def one_line_error(result: Result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("mailstead: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr


def test_render_prints_the_inlined_html(config: Path, page: Path) -> None:
    result = run(config, "template", "render", str(page), "--data", '{"name": "Ann"}')
    assert result.exit_code == 0, result.output
    assert '<p style="color: #222;">Hello Ann, see' in result.stdout
    assert "A short note</div>" in result.stdout


def test_render_text(config: Path, page: Path) -> None:
    result = run(
        config, "template", "render", str(page), "--data", '{"name": "Ann"}', "--format", "text"
    )
    assert result.exit_code == 0, result.output
    assert (
        result.stdout == "A short note\n\nHello Ann, see this [1].\n\n[1] https://example.test/x\n"
    )


def test_render_eml_to_a_file(config: Path, page: Path, tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('{"name": "Zoë"}', encoding="utf-8")
    out = tmp_path / "out.eml"
    result = run(
        config,
        "template",
        "render",
        str(page),
        "--data",
        f"@{tmp_path / 'd.json'}",
        "--format",
        "eml",
        "--from",
        "news@example.test",
        "--to",
        "ann@example.test",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    msg = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert (msg["From"], msg["To"], msg["Subject"]) == (
        "news@example.test",
        "ann@example.test",
        "Hello Zoë",
    )
    assert msg.get_content_type() == "multipart/alternative"


def test_render_eml_has_placeholder_addresses(config: Path, page: Path) -> None:
    result = run(
        config, "template", "render", str(page), "--data", '{"name": "A"}', "--format", "eml"
    )
    assert result.exit_code == 0, result.output
    assert b"From: sender@example.invalid\r\n" in result.stdout_bytes
    assert b"To: recipient@example.invalid\r\n" in result.stdout_bytes


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--data", "{}"], "hello.html:7: 'name' is undefined"),
        (["--data", "[1]"], "--data must be a JSON object"),
        (["--data", "@absent.json"], "absent.json: no such file"),
        (["--data", "{bad"], "--data is not valid JSON"),
    ],
)
def test_render_errors_are_one_line(
    config: Path, page: Path, args: list[str], fragment: str
) -> None:
    one_line_error(run(config, "template", "render", str(page), *args), fragment)


def test_render_untrusted_uses_the_sandbox(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.html"
    path.write_text("<p>{{ ''.__class__.__mro__ }}</p>")
    assert run(config, "template", "render", str(path)).exit_code == 0
    one_line_error(
        run(config, "template", "render", str(path), "--untrusted"),
        "t.html:1: access to attribute '__class__' of 'str' object is unsafe.",
    )


def test_render_mjml(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "n.mjml"
    path.write_text(
        "<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ who }}</mj-text>"
        "</mj-column></mj-section></mj-body></mjml>"
    )
    result = run(
        config, "template", "render", str(path), "--data", '{"who": "all"}', "--format", "text"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hi all\n"


# --------------------------------------------------------------------------- lint

FORM = '<html lang="en"><body><form action="https://x.test"><input></form></body></html>\n'


def test_lint_clean_template_exits_0(config: Path, page: Path) -> None:
    result = run(config, "template", "lint", str(page), "--data", '{"name": "A"}')
    assert result.exit_code == 0, result.output
    assert "0 errors" in result.stdout


def test_lint_errors_exit_1_after_the_report(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "form.html"
    path.write_text(FORM)
    result = run(config, "template", "lint", str(path))
    assert result.exit_code == 1
    assert "<form> element" in result.stdout
    assert result.stderr == f"mailstead: {path}: findings at or above error\n"


def test_lint_json_and_clients(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "form.html"
    path.write_text(FORM)
    result = run(
        config, "template", "lint", str(path), "--format", "json", "--clients", "gmail,outlook"
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert isinstance(report, dict)


def test_lint_html_format(config: Path, page: Path) -> None:
    result = run(
        config, "template", "lint", str(page), "--data", '{"name": "A"}', "--format", "html"
    )
    assert result.exit_code == 0, result.output
    assert "<html" in result.stdout.lower()


def test_lint_fail_on_warning(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "noalt.html"
    path.write_text('<html lang="en"><body><p>x</p><img src="https://x.test/a.png"></body></html>')
    assert run(config, "template", "lint", str(path)).exit_code == 0
    result = run(config, "template", "lint", str(path), "--fail-on", "warning")
    assert result.exit_code == 1
    assert result.stderr.endswith("findings at or above warning\n")


def test_lint_unknown_client_is_one_line(config: Path, page: Path) -> None:
    result = run(
        config, "template", "lint", str(page), "--data", '{"name": "A"}', "--clients", "nosuch"
    )
    one_line_error(result, "unknown mail client 'nosuch'")


# --------------------------------------------------------------------------- preview


def test_preview_without_chromium_says_what_to_install(
    config: Path, page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = run(
        config,
        "template",
        "preview",
        str(page),
        "--data",
        '{"name": "A"}',
        "--out",
        str(tmp_path / "p"),
    )
    one_line_error(result, "chromium")
    assert "Traceback" not in result.output


def test_preview_writes_shots_and_the_report(config: Path, tmp_path: Path) -> None:
    from tests.tools import require

    require("chromium")
    (tmp_path / "dot.png").write_bytes(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2213bc6"
            "0000000049454e44ae426082"
        )
    )
    path = tmp_path / "t.html"
    path.write_text(
        '<html lang="en"><body><table role="presentation"><tr><td>'
        '<img src="dot.png" alt="dot" width="10" height="10"><p>Hi</p>'
        "</td></tr></table></body></html>"
    )
    out = tmp_path / "shots"
    result = run(config, "template", "preview", str(path), "--out", str(out), "--outline")
    assert result.exit_code == 0, result.output
    listed = result.stdout.splitlines()
    assert listed[-1] == str(out / "report.html")
    assert len(listed) == 7  # desktop, mobile, both without images, both outlined; the report
    assert (out / "report.html").exists()
    assert all(Path(line.split()[0]).exists() for line in listed)


def test_lint_judges_gmail_clipping_on_the_html_as_sent(config: Path, tmp_path: Path) -> None:
    # 26 KB as written; inlining copies the rule onto every cell: over 102 KB.
    cells = "<tr>" + "<td>x</td>" * 10 + "</tr>"
    source = (
        '<!doctype html><html lang="en"><head><style>'
        "td { font-family: Arial, Helvetica, sans-serif; color: #333333; padding: 4px 6px; }"
        '</style></head><body><table role="presentation">'
        + cells * 260
        + "</table></body></html>\n"
    )
    path = tmp_path / "grid.html"
    path.write_text(source, encoding="utf-8")
    assert len(source) < 50 * 1024
    result = run(config, "template", "lint", str(path), "--format", "json")
    checks = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert "size-gmail-clip" in checks, result.output
    assert "as sent (CSS inlined)" in checks["size-gmail-clip"]["message"]
