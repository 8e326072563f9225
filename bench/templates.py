"""HTML template benchmark: Mailstead's pipeline next to a Premailer-based one, same run.

One realistic newsletter template of about 60 KB (Jinja2 HTML with a
``<style>`` block: 36 articles, product cards, @media and dark-mode rules,
an MSO conditional comment, a preheader) is written to a temporary folder,
compiled once per pipeline, and filled with a different recipient's data
for every message (name, points, three recommendations, unsubscribe link).

Pipelines:

* ``mailstead``: what ``mailstead send --template`` does for each line of
  its data: ``EmailTemplate.render`` (Jinja2, CSS inlined with css-inline,
  images, text part) then ``EmailTemplate.lint`` on the message (the
  template's findings linted once per shape of the markup, what the data
  can change for every message).
* ``mailstead-nolint``: the same without the lint (``send --force``).
* ``mailstead-lint-each`` (latency only): ``render`` then the whole
  ``lint()`` of the message, as ``mailstead template lint`` does for one.
* ``premailer`` (the reference, what people assemble today): Jinja2
  (autoescape, StrictUndefined, compiled once), ``premailer.Premailer(...)
  .transform()`` (network off), ``html2text`` (body width 78). It has no
  lint: there is no Python linter against the caniemail data to compare.

Parts:

* ``latency``: each pipeline renders ``--latency-messages`` messages one at a
  time in this process, each timed (``perf_counter``); median and p99.
* ``throughput``: ``--messages`` personalised messages over ``--workers``
  forked processes (default: one per CPU), the template compiled before the
  fork; messages per second from the first fork to the last result, and the
  workers' CPU time per message (what ``--workers`` CPUs of their own would
  give: ``workers * 1000 / CPU ms``, whatever else the machine runs). The
  reference renders ``--reference-messages`` (default fewer: it is slower,
  and a rate over a few hundred messages already varies less than the
  machine's load makes it).

Rounds alternate the pipelines (the first one changes each round); the
tables show the median of the rounds with the min and max.

    .venv/bin/python bench/templates.py                       # 5 rounds, both parts
    .venv/bin/python bench/templates.py --rounds 1 --only latency
    .venv/bin/python bench/templates.py --only throughput --messages 2000

Bench-only dependencies: ``pip install premailer html2text`` (and py-spy to
profile). Mailstead's own come from the project (jinja2, css-inline, lxml,
tinycss2).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from mailstead.templates.lint import lint
from mailstead.templates.pipeline import EmailTemplate

Pipeline = Callable[[Mapping[str, object]], int]
PIPELINES = ("mailstead", "mailstead-nolint", "mailstead-lint-each", "premailer")
THROUGHPUT_PIPELINES = ("mailstead", "mailstead-nolint", "premailer")

# --------------------------------------------------------------------------- the template

_STYLE = """
body { margin: 0; padding: 0; background: #f2f4f7; -webkit-text-size-adjust: 100%; }
table { border-collapse: collapse; }
img { border: 0; outline: none; text-decoration: none; -ms-interpolation-mode: bicubic; }
.wrapper { width: 100%; background: #f2f4f7; }
.container { width: 600px; max-width: 600px; background: #ffffff; }
.header { padding: 24px 32px; background: #0b3d91; color: #ffffff; }
.header h1 { margin: 0; font: bold 26px/32px Georgia, 'Times New Roman', serif; }
.greeting { padding: 24px 32px 8px; font: 16px/24px Arial, Helvetica, sans-serif; color: #1f2933; }
.article { padding: 16px 32px; border-bottom: 1px solid #e4e7eb; }
.article h2 { margin: 0 0 8px; font: bold 20px/26px Arial, Helvetica, sans-serif; color: #102a43; }
.article p { margin: 0 0 12px; font: 15px/23px Arial, Helvetica, sans-serif; color: #334e68; }
.article .meta { font: 12px/18px Arial, Helvetica, sans-serif; color: #829ab1; }
.button a { display: inline-block; padding: 10px 18px; background: #d64545; color: #ffffff;
  font: bold 14px/20px Arial, Helvetica, sans-serif; text-decoration: none; border-radius: 4px; }
.cards td.card { width: 33%; padding: 8px; vertical-align: top; }
.card .price { font: bold 16px/22px Arial, Helvetica, sans-serif; color: #2f8132; }
.card .name { font: 13px/19px Arial, Helvetica, sans-serif; color: #243b53; }
.footer { padding: 24px 32px; font: 12px/18px Arial, Helvetica, sans-serif; color: #627d98; }
.footer a { color: #486581; text-decoration: underline; }
@media only screen and (max-width: 620px) {
  .container { width: 100% !important; }
  .article, .greeting, .header, .footer { padding-left: 16px !important; \
padding-right: 16px !important; }
  .cards td.card { display: block !important; width: 100% !important; }
}
@media (prefers-color-scheme: dark) {
  .container, .wrapper { background: #102a43 !important; }
  .article h2, .article p, .greeting { color: #f0f4f8 !important; }
}
"""

_LOREM = (
    "Our team spent the quarter rebuilding the delivery queue so that a message "
    "accepted is a message kept, even when the power goes out at the worst moment. "
    "Along the way we measured every step, wrote down what we found, and fixed the "
    "three places where a restart could have sent the same mail twice."
)


def _article(n: int) -> str:
    return f"""
<tr><td class="article">
  <p class="meta">Section {n % 5 + 1} &middot; {n + 3} min read</p>
  <h2>Release notes, part {n + 1}: what changed and why it matters</h2>
  <p>{_LOREM}</p>
  <p>{_LOREM[:180]} {{{{ name }}}}, your workspace <b>{{{{ workspace }}}}</b> already has it.</p>
  <table role="presentation" class="cards" width="100%" cellpadding="0" cellspacing="0">
    <tr>
      <td class="card"><img src="https://cdn.example.test/p/{n}-1.png" width="160" height="120"
        alt="Product {n}-1"><div class="name">Field kit {n}-1</div>\
<div class="price">$ {n + 19}.00</div></td>
      <td class="card"><img src="https://cdn.example.test/p/{n}-2.png" width="160" height="120"
        alt="Product {n}-2"><div class="name">Field kit {n}-2</div>\
<div class="price">$ {n + 29}.00</div></td>
      <td class="card"><img src="https://cdn.example.test/p/{n}-3.png" width="160" height="120"
        alt="Product {n}-3"><div class="name">Field kit {n}-3</div>\
<div class="price">$ {n + 39}.00</div></td>
    </tr>
  </table>
  <table role="presentation" cellpadding="0" cellspacing="0"><tr><td class="button" align="left">
    <a href="https://example.test/notes/{n}?u={{{{ user_id }}}}">Read part {n + 1}</a>
  </td></tr></table>
</td></tr>"""


def newsletter_source(articles: int = 36) -> str:
    """The Jinja2 source of the benchmark's newsletter (about 60 KB with 36 articles)."""
    body = "".join(_article(n) for n in range(articles))
    return f"""---
subject: {{{{ name }}}}, your {{{{ month }}}} newsletter
preheader: {{{{ points }}}} points waiting, and what shipped in {{{{ month }}}}
---
<!DOCTYPE html>
<html lang="en" xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Newsletter</title>
<!--[if mso]><xml><o:OfficeDocumentSettings><o:PixelsPerInch>96</o:PixelsPerInch>\
</o:OfficeDocumentSettings></xml><![endif]-->
<style>{_STYLE}</style>
</head>
<body>
<table role="presentation" class="wrapper" width="100%" cellpadding="0" cellspacing="0">
<tr><td align="center">
<table role="presentation" class="container" width="600" cellpadding="0" cellspacing="0">
<tr><td class="header"><h1>The Example Monthly</h1></td></tr>
<tr><td class="greeting">
  <p>Hello {{{{ name }}}}, you have <b>{{{{ points }}}}</b> points to spend this month.</p>
  <ul>{{% for item in picks %}}<li><a href="{{{{ item.url }}}}">\
{{{{ item.title }}}}</a></li>{{% endfor %}}</ul>
</td></tr>
{body}
<tr><td class="footer">
  <p>You receive this because {{{{ email }}}} subscribed to The Example Monthly.</p>
  <p><a href="{{{{ unsubscribe }}}}">Unsubscribe</a> &middot; <a href="https://example.test/prefs">Preferences</a></p>
  <p>Example Ltd, 1 Harbour Road, Exampletown</p>
</td></tr>
</table>
</td></tr>
</table>
</body>
</html>
"""


def recipient(n: int) -> dict[str, object]:
    """The data of the n-th recipient: every message differs."""
    return {
        "name": f"Reader {n}",
        "email": f"reader{n}@example.test",
        "workspace": f"team-{n % 97}",
        "user_id": f"u{n:07d}",
        "points": (n * 37) % 5000,
        "month": ("March", "April", "May")[n % 3],
        "unsubscribe": f"https://example.test/unsubscribe/{n:07d}?sig={n * 7919 % 1000003:06x}",
        "picks": [
            {"url": f"https://example.test/pick/{n}/{k}", "title": f"Pick {k} for reader {n}"}
            for k in range(3)
        ],
    }


# --------------------------------------------------------------------------- pipelines


def mailstead_pipeline(path: Path, linting: str) -> Pipeline:
    template = EmailTemplate(path)

    def run(data: Mapping[str, object]) -> int:
        email = template.render(data)
        if linting == "template":
            template.lint(email)
        elif linting == "each":
            lint(email.source_html, text=email.text, base_dir=path.parent)
        return len(email.html) + len(email.text)

    return run


def premailer_pipeline(path: Path) -> Pipeline:
    import html2text
    import jinja2
    import premailer

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(path.parent),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    # Premailer has no front matter: the reference template starts at the doctype.
    source = path.read_text(encoding="utf-8").split("---\n", 2)[2]
    template = env.from_string(source)

    def run(data: Mapping[str, object]) -> int:
        markup = template.render(data)
        inlined = premailer.Premailer(
            markup, allow_network=False, cssutils_logging_level=logging.CRITICAL
        ).transform()
        converter = html2text.HTML2Text()
        converter.body_width = 78
        text = converter.handle(inlined)
        return len(inlined) + len(text)

    return run


def make(name: str, path: Path) -> Pipeline:
    if name == "premailer":
        return premailer_pipeline(path)
    linting = {"mailstead": "template", "mailstead-lint-each": "each"}.get(name, "none")
    return mailstead_pipeline(path, linting)


# --------------------------------------------------------------------------- measuring


def latency(run: Pipeline, messages: int, first: int) -> list[float]:
    """Milliseconds per message, one after another; a few untimed first."""
    for n in range(5):
        run(recipient(first + n))
    times = []
    for n in range(messages):
        data = recipient(first + 5 + n)
        start = time.perf_counter()
        run(data)
        times.append((time.perf_counter() - start) * 1000)
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


_WORKER_RUN: Pipeline | None = None  # set before the fork; the workers inherit it


def _work(span: tuple[int, int]) -> int:
    assert _WORKER_RUN is not None
    return sum(_WORKER_RUN(recipient(n)) for n in range(*span))


def throughput(run: Pipeline, messages: int, workers: int) -> tuple[float, float]:
    """Messages per second over ``workers`` forked processes sharing the compiled template,
    and the workers' CPU time (user and system) per message in ms: what the rate would be
    with the CPUs to themselves does not depend on what else the machine runs."""
    global _WORKER_RUN
    run(recipient(0))  # first use (lazy imports, the support table) before the fork
    _WORKER_RUN = run
    chunk = 50
    spans = [(n, min(n + chunk, messages)) for n in range(0, messages, chunk)]
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    pool = multiprocessing.get_context("fork").Pool(workers)
    for _ in pool.imap_unordered(_work, spans):
        pass
    elapsed = time.perf_counter() - start
    pool.close()
    pool.join()  # the workers reaped: their CPU time counted
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    _WORKER_RUN = None
    cpu = done.ru_utime - used.ru_utime + done.ru_stime - used.ru_stime
    return messages / elapsed, cpu * 1000 / messages


def summary(values: list[float], fmt: str) -> str:
    return (
        f"{format(statistics.median(values), fmt)} "
        f"({format(min(values), fmt)}–{format(max(values), fmt)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=("latency", "throughput"))
    parser.add_argument("--latency-messages", type=int, default=200)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--reference-messages", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    args = parser.parse_args()
    names = args.pipelines.split(",")

    with tempfile.TemporaryDirectory(prefix="mailstead-bench-templates-") as tmp:
        path = Path(tmp) / "newsletter.html"
        path.write_text(newsletter_source(), encoding="utf-8")
        pipelines = {name: make(name, path) for name in names}
        sample = EmailTemplate(path).render(recipient(1))
        print(
            f"template {path.stat().st_size / 1024:.1f} KiB source, rendered HTML "
            f"{len(sample.html.encode()) / 1024:.1f} KiB, text {len(sample.text) / 1024:.1f} KiB; "
            f"load average {os.getloadavg()[0]:.1f}; workers {args.workers}",
            flush=True,
        )
        loads = [os.getloadavg()[0]]
        medians: dict[str, list[float]] = {name: [] for name in names}
        p99s: dict[str, list[float]] = {name: [] for name in names}
        rates: dict[str, list[float]] = {name: [] for name in names}
        cpus: dict[str, list[float]] = {name: [] for name in names}
        for round_no in range(args.rounds):
            order = names[round_no % len(names) :] + names[: round_no % len(names)]
            for name in order:
                if args.only in (None, "latency"):
                    times = latency(pipelines[name], args.latency_messages, round_no * 100_000)
                    medians[name].append(statistics.median(times))
                    p99s[name].append(percentile(times, 0.99))
                    print(
                        f"round {round_no + 1} {name:17} latency median "
                        f"{medians[name][-1]:.2f} ms p99 {p99s[name][-1]:.2f} ms",
                        flush=True,
                    )
                if args.only in (None, "throughput") and name in THROUGHPUT_PIPELINES:
                    count = args.reference_messages if name == "premailer" else args.messages
                    rate, cpu = throughput(pipelines[name], count, args.workers)
                    rates[name].append(rate)
                    cpus[name].append(cpu)
                    loads.append(os.getloadavg()[0])
                    print(
                        f"round {round_no + 1} {name:17} throughput {rate:.0f} msg/s, "
                        f"CPU {cpu:.2f} ms/msg ({count} messages, load {loads[-1]:.1f})",
                        flush=True,
                    )
        loads.append(os.getloadavg()[0])
        print()
        print(f"load average (1 min) {min(loads):.1f}–{max(loads):.1f} during the run")
        print(
            "| pipeline | median ms | p99 ms | messages/s | CPU ms per message "
            f"| messages/s on {args.workers} free CPUs |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        for name in names:
            free = [args.workers * 1000 / cpu for cpu in cpus[name]]
            cells = [
                summary(medians[name], ".2f") if medians[name] else "–",
                summary(p99s[name], ".2f") if p99s[name] else "–",
                summary(rates[name], ".0f") if rates[name] else "–",
                summary(cpus[name], ".2f") if cpus[name] else "–",
                summary(free, ".0f") if free else "–",
            ]
            print(f"| {name} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
