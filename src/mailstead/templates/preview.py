"""Screenshots of an e-mail's HTML in headless Chromium, and a page to look at them.

:func:`preview` writes PNG screenshots into a directory: desktop (800 px)
and mobile (375 px) widths, the same pair with images blocked (how many
clients first show a mail), optionally a pair with an outline drawn on every
table and cell, and ``report.html``, the screenshots beside the lint findings.

How the pictures are made, and why:

* Each shot is its own Chromium process (``--headless --screenshot``),
  started in a new process group that is killed after ``timeout`` seconds,
  so a page that never finishes loading cannot hang the caller.
* Full-page height is measured, not guessed: one Chromium run per image
  setting loads a page of ours that holds the mail in ``srcdoc`` iframes
  (one per width, 1 px high, sandboxed without scripts) and writes each
  document's ``scrollHeight`` and ``scrollWidth`` into its own ``<html>``
  element, read back with ``--dump-dom``. Each shot's window is then exactly
  that high (capped at :data:`MAX_HEIGHT`; a taller mail is reported cut).
* The mail runs no JavaScript (mail clients run none) and reaches no
  network: a Content-Security-Policy allowing only inline styles and
  ``data:`` images, fonts and styles (so no script, inline or not) is put
  before the mail's first tag, and Chromium resolves every host name, IP
  literals too, to "not found". Remote images therefore show as broken,
  as many clients first show them. (``--blink-settings=scriptEnabled=false``
  would be simpler, but headless Chromium then never takes its screenshot.)
* The outline is a CSS ``outline``, not a ``border``: outlines take no room
  (CSS Basic User Interface Level 4 §5), so the outlined layout is the one
  that ships and its heights are those already measured.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailstead.templates.lint import LintReport

__all__ = [
    "DESKTOP_WIDTH",
    "MAX_HEIGHT",
    "MOBILE_WIDTH",
    "ChromiumMissing",
    "PreviewError",
    "PreviewResult",
    "PreviewTimeout",
    "Shot",
    "preview",
]

DESKTOP_WIDTH = 800
MOBILE_WIDTH = 375
# Taller mails are cut here (and the shot says so): Chromium's screenshots
# of very tall windows take seconds and hundreds of MB, and no reader
# scrolls 16,000 px of one mail.
MAX_HEIGHT = 16_384
log = logging.getLogger("mailstead.templates")

TIMEOUT = 60.0
_PARALLEL = 2

CHROMIUM = "chromium"
_INSTALL = "apt-get install chromium"

# Chromium as root needs --no-sandbox; the other flags keep a throwaway
# profile from phoning home (updates, sync, field trials, QUIC probing).
_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    # Every host, IP literals included, resolves to nothing: no fetch leaves.
    "--host-resolver-rules=MAP * ~NOTFOUND",
)

# Only what the mail carries inside itself may load (CSP Level 3 §6).
_CSP = (
    "default-src 'none'; img-src data:; font-src data:; media-src data:; "
    "style-src 'unsafe-inline' data:"
)
_CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'

# What may stand before the first element without changing the document:
# whitespace, comments, an XML declaration (a bogus comment to HTML), the
# doctype. Putting the CSP <meta> before a doctype would switch to quirks
# mode (HTML §13.2.6.4.1), so it goes after all of these.
_PROLOGUE = re.compile(r"(?:\s|<!--.*?-->|<\?[^>]*>)*(?:<!doctype[^>]*>)?", re.DOTALL | re.I)

_OUTLINE_STYLE = (
    "<style>"
    "table{outline:1px solid #e0115f !important;outline-offset:-1px !important}"
    "td,th{outline:1px dashed #0057d9 !important;outline-offset:-1px !important}"
    "</style>"
)

_SIZES = re.compile(r'<html data-sizes="([0-9 x]*)"')


class PreviewError(Exception):
    """The preview could not be made; the text is one line for the user."""


class ChromiumMissing(PreviewError):
    """No ``chromium`` on PATH."""


class PreviewTimeout(PreviewError):
    """Chromium did not finish in time and was killed, with all its processes."""


@dataclass(frozen=True, slots=True)
class Shot:
    """One screenshot: which view of the mail it is and what it shows."""

    name: str  # also the file's stem: "desktop", "mobile-no-images", ...
    path: Path
    width: int  # of the window and the PNG
    height: int
    content_height: int  # the mail's full height at this width
    content_width: int  # wider than ``width``: the reader scrolls sideways
    images: bool
    outline: bool

    @property
    def cut(self) -> bool:
        """The mail is taller than the shot (see :data:`MAX_HEIGHT`)."""
        return self.content_height > self.height

    @property
    def overflows(self) -> bool:
        """The layout is wider than the window."""
        return self.content_width > self.width


@dataclass(frozen=True, slots=True)
class PreviewResult:
    """The shots written and the report page that shows them."""

    shots: tuple[Shot, ...]
    report: Path


@dataclass(frozen=True, slots=True)
class _View:
    name: str
    width: int
    images: bool
    outline: bool


def _views(outline: bool) -> tuple[_View, ...]:
    views = [
        _View("desktop", DESKTOP_WIDTH, True, False),
        _View("mobile", MOBILE_WIDTH, True, False),
        _View("desktop-no-images", DESKTOP_WIDTH, False, False),
        _View("mobile-no-images", MOBILE_WIDTH, False, False),
    ]
    if outline:
        views += [
            _View("desktop-outline", DESKTOP_WIDTH, True, True),
            _View("mobile-outline", MOBILE_WIDTH, True, True),
        ]
    return tuple(views)


def preview(
    html: str,
    out_dir: Path,
    *,
    outline: bool = False,
    report: LintReport | None = None,
    timeout: float = TIMEOUT,
) -> PreviewResult:
    """Screenshot ``html`` into ``out_dir`` (created if needed) and write ``report.html``.

    ``timeout`` bounds each Chromium run; a run past it is killed with its
    whole process group and :class:`PreviewTimeout` raised. Raises
    :class:`ChromiumMissing` when there is no ``chromium`` on PATH.
    """
    chromium = shutil.which(CHROMIUM)
    if chromium is None:
        raise ChromiumMissing(f"Chromium is needed for previews: {_INSTALL}")
    out_dir.mkdir(parents=True, exist_ok=True)
    views = _views(outline)
    with tempfile.TemporaryDirectory(prefix="mailstead-preview-") as tmp:
        work = Path(tmp)
        chrome = _Chromium(chromium, work, timeout)
        plain = _confine(html)
        pages = {False: work / "mail.html", True: work / "outlined.html"}
        # A BOM makes the file UTF-8 whatever <meta charset> the mail claims
        # (HTML §13.2.3.2: the BOM wins over every other encoding hint).
        pages[False].write_text("\ufeff" + plain, encoding="utf-8")
        if outline:
            pages[True].write_text("\ufeff" + plain + _OUTLINE_STYLE, encoding="utf-8")
        widths = sorted({view.width for view in views})
        # Two Chromiums at a time: each spends most of its life starting up.
        pool = ThreadPoolExecutor(max_workers=_PARALLEL)
        try:
            measured = {
                images: pool.submit(chrome.measure, plain, widths, images)
                for images in (True, False)
            }
            sizes = {images: future.result() for images, future in measured.items()}
            shots = [_shot(view, out_dir, sizes[view.images][view.width]) for view in views]
            taken = [
                pool.submit(
                    chrome.screenshot,
                    pages[shot.outline],
                    shot.path,
                    shot.width,
                    shot.height,
                    shot.images,
                )
                for shot in shots
            ]
            for future in taken:
                future.result()
        finally:
            # After a failure the shots not started are dropped, not taken.
            pool.shutdown(cancel_futures=True)
    page = out_dir / "report.html"
    page.write_text(_report_page(shots, report), encoding="utf-8")
    return PreviewResult(tuple(shots), page)


def _shot(view: _View, out_dir: Path, size: tuple[int, int]) -> Shot:
    content_width, content_height = size
    height = max(1, min(content_height, MAX_HEIGHT))
    return Shot(
        view.name,
        out_dir / f"{view.name}.png",
        view.width,
        height,
        content_height,
        content_width,
        view.images,
        view.outline,
    )


def _confine(html_text: str) -> str:
    """The mail with the CSP <meta> before its first element, so it binds every fetch."""
    prologue = _PROLOGUE.match(html_text)
    end = prologue.end() if prologue else 0
    return html_text[:end] + _CSP_META + html_text[end:]


def _measure_page(mail: str, widths: Iterable[int]) -> str:
    """Our page: the mail once per width in a script-less iframe, sizes written on <html>."""
    source = escape(mail, quote=True)
    frames = "".join(
        f'<iframe data-width="{width}" sandbox="allow-same-origin" scrolling="no" '
        f'style="display:block;border:0;width:{width}px;height:1px" '
        f'srcdoc="{source}"></iframe>'
        for width in widths
    )
    # The load event waits for every iframe and its images: an iframe delays its parent's load.
    script = (
        "<script>addEventListener('load',function(){var out=[];"
        "document.querySelectorAll('iframe').forEach(function(f){"
        "var d=f.contentDocument.documentElement;"
        "out.push(f.dataset.width+'x'+d.scrollWidth+'x'+d.scrollHeight)});"
        "document.documentElement.setAttribute('data-sizes',out.join(' '))});</script>"
    )
    return (
        f"<!DOCTYPE html><html><head>{script}</head><body style='margin:0'>{frames}</body></html>"
    )


class _Chromium:
    """Runs the ``chromium`` binary, one process group per run, each in a fresh profile."""

    def __init__(self, binary: str, work: Path, timeout: float) -> None:
        self.binary = binary
        self.work = work
        self.timeout = timeout
        self.runs = count(1)  # next() is atomic: runs come from two threads

    def measure(self, mail: str, widths: Sequence[int], images: bool) -> dict[int, tuple[int, int]]:
        """Width and height of the mail's document at each window width."""
        page = self.work / f"measure-{int(images)}.html"
        page.write_text(_measure_page(mail, widths), encoding="utf-8")
        dom = self._run(["--dump-dom"], page, images)
        found = _SIZES.search(dom)
        if found is None:
            raise PreviewError("Chromium did not report the mail's size (it may have crashed)")
        sizes: dict[int, tuple[int, int]] = {}
        for item in found.group(1).split():
            width, content_width, content_height = (int(part) for part in item.split("x"))
            sizes[width] = (content_width, content_height)
        if set(sizes) != set(widths):
            raise PreviewError("Chromium did not report the mail's size at every width")
        return sizes

    def screenshot(self, page: Path, png: Path, width: int, height: int, images: bool) -> None:
        """A PNG of ``page`` in a window ``width`` x ``height``."""
        png.unlink(missing_ok=True)
        self._run([f"--screenshot={png}", f"--window-size={width},{height}"], page, images)
        if not png.is_file():
            raise PreviewError(f"Chromium wrote no screenshot {png.name}")

    def _run(self, extra: list[str], page: Path, images: bool) -> str:
        try:
            return self._run_once(extra, page, images)
        except PreviewTimeout:
            # Headless Chromium now and then hangs before it loads anything
            # (seen once in a CI run, gone at once when run again): one more
            # start with a fresh profile, then the error.
            log.warning("Chromium did not finish within %g s; starting it once more", self.timeout)
            return self._run_once(extra, page, images)

    def _run_once(self, extra: list[str], page: Path, images: bool) -> str:
        run = next(self.runs)
        profile = self.work / f"profile-{run}"
        argv = [self.binary, *_FLAGS, f"--user-data-dir={profile}"]
        if os.geteuid() == 0:
            argv.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
        if not images:
            argv.append("--blink-settings=imagesEnabled=false")
        # Chromium's own deadline stops loading (and still takes the shot)
        # before ours kills it.
        argv += [f"--timeout={int(self.timeout * 500)}", *extra, page.as_uri()]
        out_path = self.work / f"run-{run}.out"
        err_path = self.work / f"run-{run}.err"
        # Files, not pipes: a helper process that outlives a killed parent
        # would hold a pipe open and block the read.
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise PreviewTimeout(
                    f"Chromium did not finish within {self.timeout:g} s and was stopped"
                ) from None
            _kill_group(proc)  # helpers (zygote, renderer) that linger after the browser
        shutil.rmtree(profile, ignore_errors=True)
        if code != 0:
            raise PreviewError(f"Chromium failed (exit {code}): {_last_line(err_path)}")
        return out_path.read_text(encoding="utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _last_line(path: Path) -> str:
    """Chromium's last complaint, without the D-Bus noise a container always produces."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    useful = [line.strip() for line in lines if line.strip() and "dbus" not in line.lower()]
    return useful[-1][:300] if useful else "no message"


# --------------------------------------------------------------------------- report page

_PAGE_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#f4f4f6}
header{padding:12px 20px;background:#222;color:#fff}
main{display:flex;gap:20px;padding:20px;align-items:flex-start}
.shots{display:flex;flex-wrap:wrap;gap:20px;flex:3}
figure{margin:0;background:#fff;padding:8px;border:1px solid #ccc}
figure img{display:block;border:1px solid #ddd}
figcaption{font-weight:600;margin-bottom:6px}
.note{color:#a33;font-weight:400}
.findings{flex:2;min-width:320px}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}
code{white-space:pre-wrap;word-break:break-all;font-size:12px}
.error{color:#b00020;font-weight:600}.warning{color:#a15c00;font-weight:600}
"""


def _report_page(shots: Sequence[Shot], report: LintReport | None) -> str:
    figures = "\n".join(_figure(shot) for shot in shots)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Mailstead preview</title>"
        f"<style>{_PAGE_STYLE}</style></head><body>"
        "<header>Mailstead preview</header><main>"
        f'<section class="shots">{figures}</section>'
        f'<section class="findings">{_findings(report)}</section>'
        "</main></body></html>\n"
    )


def _figure(shot: Shot) -> str:
    notes = []
    if shot.overflows:
        notes.append(
            f"the layout is {shot.content_width} px wide: wider than the {shot.width} px window"
        )
    if shot.cut:
        notes.append(f"cut at {shot.height} px of {shot.content_height} px")
    note = "".join(f'<div class="note">{escape(text)}</div>' for text in notes)
    caption = escape(f"{shot.name} ({shot.width} x {shot.height})")
    # Shown at most 400 px wide, so desktop and mobile stand side by side.
    shown = min(shot.width, 400)
    return (
        f"<figure><figcaption>{caption}{note}</figcaption>"
        f'<a href="{escape(shot.path.name)}"><img src="{escape(shot.path.name)}" '
        f'width="{shown}" alt="{escape(shot.name)}"></a></figure>'
    )


def _findings(report: LintReport | None) -> str:
    if report is None:
        return "<h2>Lint</h2><p>No lint report was given.</p>"
    scores = ", ".join(f"{family} {score}" for family, score in sorted(report.scores.items()))
    head = f"<h2>Lint: {len(report.findings)} findings</h2><p>{escape(scores)}</p>"
    if not report.findings:
        return head
    rows = []
    for finding in report.findings:
        severity = escape(finding.severity)
        more = f" (+{finding.occurrences - 1} more)" if finding.occurrences > 1 else ""
        clients = "<br>".join(escape(name) for name in finding.client_names()) or "all"
        rows.append(
            "<tr>"
            f'<td class="{severity}">{severity}</td>'
            f"<td>{finding.line}:{finding.column}{escape(more)}</td>"
            f"<td><b>{escape(finding.feature)}</b>: {escape(finding.message)}"
            f"<br><code>{escape(finding.snippet)}</code></td>"
            f"<td>{clients}</td>"
            f"<td>{escape(finding.fix or '')}</td>"
            "</tr>"
        )
    columns = "<tr><th>severity</th><th>where</th><th>what</th><th>clients</th><th>fix</th></tr>"
    return f"{head}<table>{columns}{''.join(rows)}</table>"
