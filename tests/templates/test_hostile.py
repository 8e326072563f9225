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


def test_a_loop_that_only_tests_its_items_is_stopped(tmp_path: Path) -> None:
    source = "{% for i in range(10**12) if i < 0 %}{% endfor %}"
    assert failure(tmp_path, source).endswith(
        "t.html: rendering took longer than 0.5 s (an endless loop?)"
    )


@pytest.mark.parametrize("untrusted", [False, True])
@pytest.mark.parametrize(
    "source",
    [
        # 2**60 calls, no loop
        "{% macro m(n) %}{% if n < 60 %}{{ m(n + 1) }}{{ m(n + 1) }}{% endif %}{% endmacro %}"
        "{{ m(0) }}",
        # 2**40 iterations of a recursive loop
        "{% for d in [1] recursive %}{% if loop.depth < 40 %}{{ loop([1, 2]) }}{% endif %}"
        "{% endfor %}",
        # filters over 100,000 items, one after another: no loop, no call
        "{% set s = range(10**5)|list %}" + "{% set t = s|map('string')|join %}" * 300,
    ],
    ids=["macro", "recursive-loop", "filters"],
)
def test_work_without_an_endless_loop_is_stopped_too(
    tmp_path: Path, source: str, untrusted: bool
) -> None:
    assert failure(tmp_path, source, untrusted=untrusted).endswith(
        "t.html: rendering took longer than 0.5 s (an endless loop?)"
    )


@pytest.mark.parametrize("untrusted", [False, True])
def test_lipsum_is_bounded_by_the_output_limit(tmp_path: Path, untrusted: bool) -> None:
    reason = failure(tmp_path, "{{ lipsum(10**9) }}", untrusted=untrusted)
    assert reason.endswith("t.html:1: lipsum's text would exceed the output limit")
    page = tmp_path / "t.html"
    page.write_text("{{ lipsum(2, html=False) }}")
    assert len(EmailTemplate(page, untrusted=untrusted).render({}).html) > 100


def test_the_render_stops_itself_in_the_callers_thread(tmp_path: Path) -> None:
    """The deadline is checked by the render's own code: no thread is started, none is
    left spinning, and no exception arrives from elsewhere."""
    import threading

    before = set(threading.enumerate())
    failure(tmp_path, "{% for i in range(10**12) %}{% endfor %}")
    assert set(threading.enumerate()) <= before


@pytest.mark.parametrize("value", ["a \ue0000\ue001 b", "\ue0021\ue003", "x\ue002", "\ue001"])
def test_a_value_holding_the_layouts_own_marks_is_text(tmp_path: Path, value: str) -> None:
    # U+E000–U+E003 mark placeholders and link slots inside the text layout;
    # a value carrying them once raised IndexError there.
    page = tmp_path / "t.html"
    page.write_text('<p>Hello {{ name }}</p><p><a href="https://x.test/">go</a></p>')
    template = EmailTemplate(page)
    for _ in range(2):  # the first message of a shape is laid out whole, the next filled
        rendered = template.render({"name": value})
        assert "Hello " in rendered.text
        assert not any(mark in rendered.text for mark in "\ue000\ue001\ue002\ue003")
