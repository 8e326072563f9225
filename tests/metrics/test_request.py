"""Request heads of the metrics endpoint, sans-IO: what a scraper sends, what a stranger might."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstead.metrics.request import (
    MAX_HEAD,
    MAX_HEADER_LINES,
    MAX_REQUEST_LINE,
    Refusal,
    Request,
    read_head,
    response,
    route,
)

PROMETHEUS = (
    b"GET /metrics HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9925\r\n"
    b"User-Agent: Prometheus/2.53.0\r\n"
    b"Accept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4\r\n"
    b"Accept-Encoding: gzip\r\n"
    b"X-Prometheus-Scrape-Timeout-Seconds: 10\r\n"
    b"\r\n"
)


def test_a_prometheus_scrape_is_a_get_of_metrics() -> None:
    assert read_head(PROMETHEUS) == Request("GET", "/metrics")
    assert route(Request("GET", "/metrics")) == 200


def test_the_head_is_awaited_until_its_blank_line() -> None:
    for cut in range(len(PROMETHEUS) - 1):
        assert read_head(PROMETHEUS[:cut]) is None


def test_a_query_string_is_ignored() -> None:
    assert read_head(b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n") == Request("GET", "/metrics")


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"GET / HTTP/1.1", 404),
        (b"GET /metrics/ HTTP/1.1", 404),
        (b"GET /METRICS HTTP/1.1", 404),
        (b"POST /metrics HTTP/1.1", 405),
        (b"HEAD /metrics HTTP/1.1", 405),
        (b"get /metrics HTTP/1.1", 405),  # RFC 9110 §9.1: methods are case-sensitive
    ],
)
def test_only_get_metrics_is_answered(request_line: bytes, status: int) -> None:
    request = read_head(request_line + b"\r\n\r\n")
    assert request is not None
    assert route(request) == status


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /metrics\r\n\r\n", 400),  # HTTP/0.9
        (b"GET  /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1 \r\n\r\n", 400),
        (b"GET http://x/metrics HTTP/1.1\r\n\r\n", 400),  # absolute-form: we are no proxy
        (b"GET * HTTP/1.1\r\n\r\n", 400),
        (b"GET /me\x00trics HTTP/1.1\r\n\r\n", 400),
        (b"GET /m\xc3\xa9trics HTTP/1.1\r\n\r\n", 400),
        (b"G(T /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
        (b"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400),  # RFC 9110 §5.1
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),  # RFC 9112 §5.2
        (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),  # a bare CR
        (b"GET /metrics HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
        (b"\r\n\r\n", 400),
    ],
)
def test_malformed_heads_are_refused(head: bytes, status: int) -> None:
    with pytest.raises(Refusal) as refused:
        read_head(head)
    assert refused.value.status == status


def test_a_long_request_line_is_refused_before_it_ends() -> None:
    with pytest.raises(Refusal) as refused:
        read_head(b"GET /" + b"a" * MAX_REQUEST_LINE)
    assert refused.value.status == 414


def test_a_head_without_end_is_refused_at_the_bound() -> None:
    head = b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"a" * MAX_HEAD
    with pytest.raises(Refusal) as refused:
        read_head(head)
    assert refused.value.status == 431


def test_too_many_header_lines_are_refused_before_the_end() -> None:
    head = b"GET /metrics HTTP/1.1\r\n" + b"X: 1\r\n" * (MAX_HEADER_LINES + 1)
    with pytest.raises(Refusal) as refused:
        read_head(head)
    assert refused.value.status == 431
    complete = b"GET /metrics HTTP/1.1\r\n" + b"X: 1\r\n" * MAX_HEADER_LINES + b"\r\n"
    assert read_head(complete) == Request("GET", "/metrics")


def test_responses_close_the_connection() -> None:
    assert response(404) == (
        b"HTTP/1.1 404 Not Found\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 14\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"404 Not Found\n"
    )
    assert b"\r\nAllow: GET\r\n" in response(405)
    assert response(200, b"x 1\n", "text/plain; version=0.0.4").endswith(
        b"Content-Type: text/plain; version=0.0.4\r\n"
        b"Content-Length: 4\r\nConnection: close\r\n\r\nx 1\n"
    )


@given(st.binary(max_size=MAX_HEAD + 200))
def test_any_bytes_give_a_request_a_wait_or_a_refusal(data: bytes) -> None:
    try:
        request = read_head(data)
    except Refusal as refusal:
        assert refusal.status in (400, 414, 431, 505)
        return
    if request is None:
        assert b"\r\n\r\n" not in data
    else:
        assert request.path.startswith("/")


def _outcome(data: bytes) -> Request | int | None:
    try:
        return read_head(data)
    except Refusal as refusal:
        return refusal.status


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=50))
def test_refused_early_only_for_what_the_whole_head_is_refused_for(pieces: list[bytes]) -> None:
    data = b"GET /metrics HTTP/1.1\r\n" + b"".join(pieces) + b"\r\n\r\n"
    early = _outcome(data[:-1])  # the blank line not yet complete
    assert early is None or early == _outcome(data)
