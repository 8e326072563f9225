"""Complete messages: alternative and related parts, cid: images, parsed back with `email`."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailstead.limits import TemplateLimits
from mailstead.message.compose import Body, Related, build_message
from mailstead.templates.errors import TemplateError
from mailstead.templates.images import last_local_src
from mailstead.templates.inline import inline_css
from mailstead.templates.pipeline import EmailTemplate

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2213bc60000000049454e44ae426082"
)

WELCOME = """---
subject: Welcome, {{ name }}
preheader: Three steps to get started
---
<!doctype html>
<html lang="en"><head><style>
  h1 { color: #0a6; }
  @media (max-width: 600px) { h1 { font-size: 20px; } }
</style></head>
<body>
<table role="presentation"><tr><td>
  <img src="img/logo.png" alt="Acme" width="120" height="40">
  <h1>Welcome, {{ name }}</h1>
  <p>Start <a href="https://example.test/start">here</a>.</p>
  <img src='img/logo.png' alt="Acme again">
  <img src="https://cdn.example.test/banner.png" alt="Banner">
</td></tr></table>
</body></html>
"""


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


@pytest.fixture
def welcome(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "logo.png").write_bytes(PNG)
    page = tmp_path / "welcome.html"
    page.write_text(WELCOME, encoding="utf-8")
    return page


def test_a_rendered_template_becomes_alternative_with_related_images(welcome: Path) -> None:
    mail = EmailTemplate(welcome).render({"name": "Zoë"})
    raw = build_message("news@example.test", ["ann@remote.test"], mail.subject, mail.body)
    assert raw.isascii()
    msg = parse(raw)
    assert msg["Subject"] == "Welcome, Zoë"
    assert msg.get_content_type() == "multipart/alternative"
    plain, related = msg.iter_parts()
    assert isinstance(plain, EmailMessage) and isinstance(related, EmailMessage)
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    assert related.get_param("type") == "text/html"  # RFC 2387 §3.1
    html, image = related.iter_parts()
    assert isinstance(html, EmailMessage) and isinstance(image, EmailMessage)
    assert [p["MIME-Version"] for p in msg.walk()] == ["1.0", None, None, None, None]
    assert image.get_content_type() == "image/png"
    assert image.get_content() == PNG
    assert image.get_filename() == "logo.png"
    cid = image["Content-ID"].strip("<>")
    markup = html.get_content()
    assert markup.count(f'src="cid:{cid}"') == 2  # one part for both references
    assert 'src="https://cdn.example.test/banner.png"' in markup
    assert '<h1 style="color: #0a6;">Welcome, Zoë</h1>' in markup
    assert "@media (max-width: 600px)" in markup
    assert "Three steps to get started</div>" in markup  # the hidden preheader
    assert plain.get_content().replace("\r\n", "\n") == (
        "Three steps to get started\n\n[Acme]\n\nWelcome, Zoë\n\nStart here [1].\n\n"
        "[Acme again] [Banner]\n\n[1] https://example.test/start\n"
    )


def test_without_local_images_there_is_no_related_part(tmp_path: Path) -> None:
    page = tmp_path / "t.html"
    page.write_text(
        '<p><img src="https://x.test/a.png" alt="A"><img src="data:image/png;base64,AA=="></p>'
    )
    mail = EmailTemplate(page).render({})
    assert mail.images == ()
    msg = parse(build_message("a@example.test", ["b@example.test"], None, mail.body))
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]


def test_html_only_with_images_is_related_at_the_top(welcome: Path) -> None:
    mail = EmailTemplate(welcome).render({"name": "x"})
    body = Body(html=mail.html, related=mail.images)
    msg = parse(build_message("a@example.test", ["b@example.test"], "s", body))
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/related",
        "text/html",
        "image/png",
    ]


@pytest.mark.parametrize(
    ("src", "reason"),
    [
        ("../secret.png", "image '../secret.png' is outside the template's folder"),
        ("/etc/hostname.png", "is outside the template's folder"),
        ("img/%2e%2e/%2e%2e/secret.png", "is outside the template's folder"),
        ("absent.png", "image 'absent.png': No such file or directory"),
        ("notes.txt", "'notes.txt' is not an image file"),
    ],
)
def test_bad_image_addresses_are_refused(tmp_path: Path, src: str, reason: str) -> None:
    (tmp_path / "secret.png").write_bytes(PNG)
    folder = tmp_path / "tpl"
    (folder / "img").mkdir(parents=True)
    (folder / "notes.txt").write_text("x")
    page = folder / "t.html"
    page.write_text(f'<p>\n<img src="{src}"></p>')
    with pytest.raises(TemplateError) as caught:
        EmailTemplate(page).render({})
    assert str(caught.value) == f"{page}: {reason}" or reason in str(caught.value)


def test_images_beyond_the_limit_are_refused(welcome: Path) -> None:
    limits = TemplateLimits(image_bytes=len(PNG) - 1)
    with pytest.raises(TemplateError, match="the images together are too large"):
        EmailTemplate(welcome, limits=limits).render({"name": "x"})


def test_subject_from_the_mjml_title(tmp_path: Path) -> None:
    page = tmp_path / "n.mjml"
    page.write_text(
        "<mjml><mj-head><mj-title>Weekly news</mj-title></mj-head>"
        "<mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section>"
        "</mj-body></mjml>"
    )
    mail = EmailTemplate(page).render({})
    assert mail.subject == "Weekly news"
    assert mail.preheader is None
    assert mail.text == "Hi\n"


def test_the_viewable_html_carries_images_as_data_urls(welcome: Path) -> None:
    mail = EmailTemplate(welcome).render({"name": "x"})
    viewable = mail.viewable_html()
    assert "cid:" not in viewable
    assert viewable.count('src="data:image/png;base64,iVBORw0KGgo') == 2


def test_a_changed_image_is_read_again_for_the_same_data(welcome: Path) -> None:
    template = EmailTemplate(welcome)
    first = template.render({"name": "x"})
    other = PNG[:-12] + b"\x00" * 12  # another image, same markup
    (welcome.parent / "img" / "logo.png").write_bytes(other)
    second = template.render({"name": "x"})
    assert second.html != first.html  # a new Content-ID
    assert [part.content for part in second.images] == [other]
    assert second.text == first.text


def test_the_same_markup_twice_gives_the_same_message_and_new_data_a_new_one(
    tmp_path: Path,
) -> None:
    page = tmp_path / "t.html"
    page.write_text("<style>p { color: red }</style><p>Hi {{ name }}</p>")
    template = EmailTemplate(page)
    ann = template.render({"name": "Ann"})
    assert template.render({"name": "Ann"}) == ann
    bob = template.render({"name": "Bob"})
    assert '<p style="color: red;">Hi Bob</p>' in bob.html
    assert bob.text == "Hi Bob\n"
    page.write_text("<style>p { color: blue }</style><p>Hi {{ name }}</p>")
    assert '<p style="color: blue;">Hi Ann</p>' in EmailTemplate(page).render({"name": "Ann"}).html


def test_an_address_from_the_data_may_make_an_image_local(welcome: Path) -> None:
    page = welcome.parent / "pick.html"
    page.write_text('<p><img src="{{ src }}" alt="a"></p>')
    template = EmailTemplate(page)
    assert template.render({"src": "https://cdn.example.test/a.png"}).images == ()
    local = template.render({"src": "img/logo.png"})
    assert [part.content for part in local.images] == [PNG]
    assert f'src="cid:{local.images[0].content_id}"' in local.html


def test_a_local_logo_before_remote_images_is_embedded_and_the_rest_left(welcome: Path) -> None:
    page = welcome.parent / "logo.html"
    remote = "".join(f'<img src="https://cdn.example.test/{n}.png" alt="{n}">' for n in range(50))
    later = '<!-- <img src="img/absent.png"> --><script>x = "<img src=img/absent.png>"</script>'
    page.write_text(f'<p><img src="img/logo.png" alt="logo">{remote}</p>{later}')
    mail = EmailTemplate(page).render({})
    assert [part.content for part in mail.images] == [PNG]
    assert mail.html.count('src="cid:') == 1
    assert mail.html.count('src="https://cdn.example.test/') == 50
    assert '<!-- <img src="img/absent.png"> -->' in mail.html


# Values that try to become a local image: in text, in an alt, as an address.
TRIES = ("https://x.test/a.png", "img/logo.png", '" src="img/logo.png', "<img src=img/logo.png>")


@pytest.mark.parametrize(
    ("page", "scans"),
    [
        # no local image in the shape: the scan is skipped, whatever the values are
        ('<p>Hi {{ v }}</p><img src="https://cdn.example.test/{{ v }}.png" alt="{{ v }}">', 1),
        # the template's own local logo: every message is scanned
        ('<img src="img/logo.png" alt="{{ v }}"><p>Hi {{ v }}</p>', 4),
        # a value where an address starts may make it local: every message is scanned
        ('<img src="{{ v[:30] if v.startswith("img/") else "https://x.test/" }}" alt="x">', 4),
    ],
)
def test_the_scan_for_local_images_is_skipped_when_the_shape_has_none(
    welcome: Path, monkeypatch: pytest.MonkeyPatch, page: str, scans: int
) -> None:
    from mailstead.templates import images, pipeline

    scanned: list[str] = []

    def counted(markup: str, template: Path, limit: int) -> tuple[str, tuple[Related, ...]]:
        scanned.append(markup)
        return images.embed_images(markup, template, limit)

    monkeypatch.setattr(pipeline, "embed_images", counted)
    path = welcome.parent / "shape.html"
    path.write_text(page)
    template = EmailTemplate(path)
    for value in TRIES:
        mail = template.render({"v": value})
        whole = images.embed_images(inline_css(mail.source_html, path, 10**7), path, 10**7)
        assert (mail.html, mail.images) == whole
    assert len(scanned) == scans  # the first message of the shape is always scanned


@pytest.mark.parametrize(
    ("markup", "local"),
    [
        ("<img src=\"https://x.test/a.png\"><img SRC = 'cid:a'><img src=data:x>", False),
        ('<img src="//x.test/a.png"><img src="#top"><p>no src here</p>', False),
        ('<img src="a.png">', True),
        ('<img src="&#104;ttps://x.test/a.png">', True),  # a reference: let the parser decide
        ("<img \u017frc='a.png'>", True),  # re.I: "ſ" is an "s"
        ("<img data-x src= src=a.png>", True),
    ],
)
def test_the_quick_scan_never_misses_a_local_address(markup: str, local: bool) -> None:
    assert (last_local_src(markup) >= 0) is local
