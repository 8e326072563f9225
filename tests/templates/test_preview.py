"""Preview: real Chromium screenshots, read back pixel by pixel, and the report page.

The PNGs are decoded here with zlib (8-bit RGB/RGBA, the five filters of
PNG §9), so the checks look at what Chromium drew: not blank, not cut off,
the right width, images really blocked, outlines really drawn.
"""

from __future__ import annotations

import base64
import socket
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailstead.templates.lint import Finding, LintReport
from mailstead.templates.preview import (
    MOBILE_WIDTH,
    ChromiumMissing,
    PreviewResult,
    PreviewTimeout,
    Shot,
    preview,
)
from tests.tools import require

# ---------------------------------------------------------------------- PNG, minimal

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    rows: list[list[tuple[int, int, int]]]  # RGB per pixel, top row first

    def colours(self) -> Counter[tuple[int, int, int]]:
        return Counter(pixel for row in self.rows for pixel in row)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A one-colour RGB image (filter 0 on every row)."""
    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(row * height))
        + _chunk(b"IEND", b"")
    )


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(data: bytes) -> Image:
    assert data.startswith(_SIGNATURE), "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if method == 1:
                line[i] = (line[i] + left) & 0xFF
            elif method == 2:
                line[i] = (line[i] + up) & 0xFF
            elif method == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif method == 4:
                line[i] = (line[i] + _paeth(left, up, corner)) & 0xFF
        rows.append([(line[x], line[x + 1], line[x + 2]) for x in range(0, stride, channels)])
        previous = line
    return Image(width, height, rows)


# ---------------------------------------------------------------------- the mail

BANNER = (40, 170, 60)  # the data: image's colour
FOOTER = (200, 20, 30)  # the last row of the layout
BACKGROUND = (250, 250, 250)


def _mail(remote: str) -> str:
    banner = base64.b64encode(encode_png(4, 4, BANNER)).decode()
    footer = "#{:02x}{:02x}{:02x}".format(*FOOTER)
    background = "#{:02x}{:02x}{:02x}".format(*BACKGROUND)
    rows = "".join(
        f'<tr><td style="padding:8px 16px">Paragraph {n}: your order has shipped.</td></tr>'
        for n in range(12)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Receipt</title>
<style>body{{margin:0;background:{background}}} td{{font:16px sans-serif;color:#222}}</style>
</head><body>
<table role="presentation" width="100%" style="max-width:600px;margin:0 auto;background:#fff">
<tr><td><img src="data:image/png;base64,{banner}" width="600" height="120" alt="Banner"
 style="display:block;width:100%;height:120px"></td></tr>
<tr><td><img src="{remote}" width="100" height="40" alt="Remote logo"></td></tr>
{rows}
<tr><td style="height:1500px;background:#036">&nbsp;</td></tr>
<tr><td style="background:{footer};height:24px;line-height:24px">&nbsp;</td></tr>
</table></body></html>"""


def _report() -> LintReport:
    finding = Finding(
        check="script",
        feature="<script> element",
        severity="error",
        line=12,
        column=3,
        snippet='<script>alert("x")</script>',
        message="mail clients remove scripts",
        fix="remove the <script>",
    )
    return LintReport([finding], ["gmail", "outlook"])


@dataclass(frozen=True)
class Rendered:
    result: PreviewResult
    images: dict[str, Image]
    connections: int  # made to the remote image's address


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    require("chromium")
    # A listener the remote image points at: nothing may connect to it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    out = tmp_path_factory.mktemp("preview")
    try:
        result = preview(
            _mail(f"http://127.0.0.1:{port}/logo.png"), out, outline=True, report=_report()
        )
        connections = 0
        while True:
            try:
                listener.accept()[0].close()
            except BlockingIOError:
                break
            connections += 1
    finally:
        listener.close()
    images = {shot.name: decode_png(shot.path.read_bytes()) for shot in result.shots}
    return Rendered(result, images, connections)


def _shot(rendered: Rendered, name: str) -> Shot:
    return next(shot for shot in rendered.result.shots if shot.name == name)


def _ink(image: Image) -> int:
    """Pixels not of the most common colour (the background)."""
    counts = image.colours()
    return image.width * image.height - counts.most_common(1)[0][1]


# ---------------------------------------------------------------------- tests


def test_every_view_is_written(rendered: Rendered) -> None:
    assert [shot.name for shot in rendered.result.shots] == [
        "desktop",
        "mobile",
        "desktop-no-images",
        "mobile-no-images",
        "desktop-outline",
        "mobile-outline",
    ]
    for shot in rendered.result.shots:
        image = rendered.images[shot.name]
        assert (image.width, image.height) == (shot.width, shot.height)
        assert shot.height > 1500  # taller than any window Chromium opens by itself
        assert not shot.cut


def test_no_shot_is_blank(rendered: Rendered) -> None:
    for name, image in rendered.images.items():
        values = [sum(pixel) for row in image.rows for pixel in row]
        mean = sum(values) / len(values)
        variance = sum((value - mean) ** 2 for value in values) / len(values)
        assert variance > 100, name
        assert len(image.colours()) > 20, name  # text is anti-aliased: many greys


def test_no_shot_is_cut_off(rendered: Rendered) -> None:
    """The footer band is drawn, and nothing but it lies under it: the whole page is in."""
    for name, image in rendered.images.items():
        footer_rows = [y for y, row in enumerate(image.rows) if FOOTER in row]
        assert footer_rows, f"{name}: the last row of the layout is missing"
        last = footer_rows[-1]
        assert image.height - 1 - last <= 2, f"{name}: {image.height - 1 - last} rows below"
        assert len(footer_rows) >= 20, name  # the whole 24 px band, not a sliver


def test_mobile_is_375_wide_and_desktop_800(rendered: Rendered) -> None:
    assert MOBILE_WIDTH == 375
    for name, image in rendered.images.items():
        assert image.width == (375 if name.startswith("mobile") else 800), name
    assert not _shot(rendered, "mobile").overflows  # the layout is fluid: max-width 600px


def test_blocked_images_differ_from_the_shown_ones(rendered: Rendered) -> None:
    for width in ("desktop", "mobile"):
        shown = rendered.images[width].colours()
        blocked = rendered.images[f"{width}-no-images"].colours()
        assert shown[BANNER] > 1000, width
        assert blocked[BANNER] == 0, width


def test_remote_images_are_never_fetched(rendered: Rendered) -> None:
    assert rendered.connections == 0


def test_outline_draws_on_tables_and_cells(rendered: Rendered) -> None:
    for width in ("desktop", "mobile"):
        plain = _ink(rendered.images[width])
        outlined = _ink(rendered.images[f"{width}-outline"])
        # 15 cells, each outlined all round: thousands of pixels more
        assert outlined > plain + 2000, (width, plain, outlined)


def test_report_shows_shots_and_escaped_findings(rendered: Rendered) -> None:
    page = rendered.result.report.read_text(encoding="utf-8")
    for shot in rendered.result.shots:
        assert f'src="{shot.path.name}"' in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;script&gt; element" in page
    assert "<script" not in page
    assert "remove the &lt;script&gt;" in page


def test_missing_chromium_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ChromiumMissing, match="apt-get install chromium"):
        preview("<p>hi</p>", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_hanging_chromium_is_killed_with_its_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser that never ends (and left a helper behind) is stopped at the
    deadline; it is started once more (a hang is Chromium's), then given up."""
    pid_file = tmp_path / "helper.pid"
    starts = tmp_path / "starts"
    fake = tmp_path / "chromium"
    fake.write_text(
        f"#!/bin/sh\necho start >> {starts}\n/bin/sleep 300 &\necho $! > {pid_file}\n"
        "exec /bin/sleep 300\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(PreviewTimeout, match="did not finish within 1 s"):
        preview("<p>hi</p>", tmp_path / "out", timeout=1)
    assert time.monotonic() - started < 6
    # Two measurements run at once (images shown and blocked), each started twice.
    assert starts.read_text().split() == ["start"] * 4
    helper = int(pid_file.read_text())
    assert not _alive(helper)


def _alive(pid: int) -> bool:
    """Running, not merely a zombie no one has reaped yet."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state == "Z":
            return False
        time.sleep(0.05)
    return True


def test_the_page_holds_our_policy_before_the_mail(tmp_path: Path) -> None:
    """The CSP <meta> goes after doctype and comments, so no quirks mode, before any tag."""
    from mailstead.templates.preview import _confine

    mail = "<!-- built by hand -->\n<!DOCTYPE html>\n<html><head><title>x</title>"
    confined = _confine(mail)
    assert confined.startswith("<!-- built by hand -->\n<!DOCTYPE html>")
    assert confined.index("Content-Security-Policy") < confined.index("<html>")
