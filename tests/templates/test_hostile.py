"""Hostile templates end with one clear error, in bounded time and memory."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailstead.limits import TemplateLimits
from mailstead.templates.errors import TemplateError
from mailstead.templates.pipeline import EmailTemplate

FAST = TemplateLimits(render_seconds=0.5, output_bytes=100_000)


def failure(tmp_path: Path, source: str, *, untrusted: bool = False) -> str:
    page = tmp_path / "t.html"
    page.write_text(source)
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        EmailTemplate(page, untrusted=untrusted, limits=FAST).render({})
    assert time.monotonic() - started < 3
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize("untrusted", [False, True])
def test_an_endless_loop_without_output_is_stopped(tmp_path: Path, untrusted: bool) -> None:
    source = "{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}"
    assert failure(tmp_path, source, untrusted=untrusted).endswith(
        "t.html: rendering took longer than 0.5 s (an endless loop?)"
    )


def test_an_endless_loop_with_output_hits_the_output_limit(tmp_path: Path) -> None:
    source = "{% for i in range(10**12) %}spam {% endfor %}"
    assert failure(tmp_path, source).endswith("t.html: output larger than 100000 characters")


def test_the_sandbox_refuses_huge_ranges(tmp_path: Path) -> None:
    source = "{% for i in range(10**12) %}{% endfor %}"
    assert "t.html:1: OverflowError: Range too big" in failure(tmp_path, source, untrusted=True)


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10**10 }}",
        "{{ [1] * 10**10 }}",
        "{{ 10 * 'x' * 10**9 }}",
        "{{ 7 ** (10**9) }}",
    ],
)
def test_the_sandbox_refuses_huge_products(tmp_path: Path, source: str) -> None:
    assert "exceeds the output limit" in failure(tmp_path, source, untrusted=True)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ (1).__class__.__base__ }}",
        "{{ lipsum.__globals__ }}",
    ],
)
def test_the_sandbox_refuses_python_internals(tmp_path: Path, source: str) -> None:
    reason = failure(tmp_path, source, untrusted=True)
    assert "t.html:1: " in reason
    assert "unsafe" in reason or "undefined" in reason


def test_a_10_mb_template_is_refused_before_it_is_read(tmp_path: Path) -> None:
    assert failure(tmp_path, "<p>" + "x" * 10 * 1024 * 1024).endswith(
        "t.html: larger than 1048576 bytes"
    )


def test_a_10_mb_include_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.html").write_text("x" * 10 * 1024 * 1024)
    assert "big.html: larger than 1048576 bytes" in failure(tmp_path, "{% include 'big.html' %}")


def test_deep_recursion_is_an_error(tmp_path: Path) -> None:
    source = "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}"
    reason = failure(tmp_path, source)
    assert "recursion" in reason


def test_the_render_thread_stops_after_its_deadline(tmp_path: Path) -> None:
    import threading

    failure(tmp_path, "{% for i in range(10**12) %}{% endfor %}")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if not any(t.name == "template-render" for t in threading.enumerate()):
            return
        time.sleep(0.01)
    raise AssertionError("the render thread still runs")
