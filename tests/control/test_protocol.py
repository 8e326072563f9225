"""The control socket's wire format: one JSON line each way, hostile input refused in one line."""

from __future__ import annotations

import json

import pytest

from mailstead.control.protocol import (
    MAX_REQUEST,
    ControlProtocolError,
    LineReader,
    Reply,
    Request,
    encode_error,
    encode_request,
    encode_result,
    parse_reply,
    parse_request,
)


def _request(data: bytes) -> Request:
    reader = LineReader(MAX_REQUEST)
    reader.receive_data(data)
    line = reader.line()
    assert line is not None
    return parse_request(line)


def test_a_request_and_its_reply_byte_for_byte() -> None:
    assert encode_request(Request("status")) == b'{"command": "status"}\n'
    assert _request(b'{"command": "status"}\n') == Request("status")
    reply = encode_result("wake", {"workers_woken": 4})
    assert reply == (
        b'{"protocol": 1, "ok": true, "command": "wake", "result": {"workers_woken": 4}}\n'
    )
    assert parse_reply(reply[:-1]) == Reply(True, {"workers_woken": 4})


def test_an_error_reply_is_one_line() -> None:
    reply = encode_error("reload failed,\nkeeping the previous config:  bad key")
    assert reply == (
        b'{"protocol": 1, "ok": false,'
        b' "error": "reload failed, keeping the previous config: bad key"}\n'
    )
    assert parse_reply(reply[:-1]) == Reply(
        False, {}, "reload failed, keeping the previous config: bad key"
    )


def test_a_line_may_arrive_in_pieces() -> None:
    reader = LineReader(MAX_REQUEST)
    for piece in (b'{"comm', b'and": "re', b'load"}'):
        reader.receive_data(piece)
        assert reader.line() is None
    reader.receive_data(b"\nanything after the line is ignored")
    assert reader.line() == b'{"command": "reload"}'
    reader.receive_data(b"more")
    assert reader.line() == b'{"command": "reload"}'


@pytest.mark.parametrize(
    ("sent", "error"),
    [
        (
            b'{"command": "launch"}\n',
            "unknown command 'launch' (status, reload, stop, wake)",
        ),
        (b'{"command": "status", "force": true}\n', "unknown field 'force' in the request"),
        (b'{"command": 1}\n', 'the request has no "command" string'),
        (b"{}\n", 'the request has no "command" string'),
        (b'["status"]\n', "request is not a JSON object"),
        (b"status\n", "request is not JSON"),
        (b"\n", "request is not JSON"),
        (b'{"command": "st\xffatus"}\n', "request is not UTF-8"),
        (b"[" * 100_000 + b"\n", "line longer than 4096 octets"),
        (b"[" * 4000 + b"]" * 4000 + b"\n", "line longer than 4096 octets"),
        (b"[" * 2000 + b"]" * 2000 + b"\n", "request is not JSON"),  # too deep
        (b"[[[]]]\n", "request is not a JSON object"),
        (b'{"command": "' + b"x" * 5000, "line longer than 4096 octets"),
        (
            b'{"command": "\\u0000\\u001b[31m"}\n',
            "unknown command '\\x00\\x1b[31m' (status, reload, stop, wake)",
        ),
    ],
)
def test_hostile_requests(sent: bytes, error: str) -> None:
    with pytest.raises(ControlProtocolError) as caught:
        _request(sent)
    assert str(caught.value) == error


def test_a_line_of_exactly_the_limit_is_refused_and_one_shorter_accepted() -> None:
    padded = b'{"command": "wake"' + b" " * (MAX_REQUEST - 20) + b"}"
    assert len(padded) == MAX_REQUEST - 1
    assert _request(padded + b"\n") == Request("wake")
    with pytest.raises(ControlProtocolError, match="line longer than 4096 octets"):
        _request(padded + b" \n")


@pytest.mark.parametrize(
    ("sent", "error"),
    [
        (b"", "connection closed without a line"),
        (b'{"comm', "connection closed before the end of the line"),
    ],
)
def test_the_peer_closing_early(sent: bytes, error: str) -> None:
    reader = LineReader(MAX_REQUEST)
    if sent:
        reader.receive_data(sent)
    with pytest.raises(ControlProtocolError, match=error):
        reader.receive_data(b"")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b'{"protocol": 2, "ok": true, "result": {}}', "reply of protocol version 2"),
        (b'{"ok": true, "result": {}}', "reply of protocol version None"),
        (b'{"protocol": 1, "ok": true, "result": []}', "reply without a result object"),
        (b'{"protocol": 1, "ok": "yes"}', "reply is neither a result nor an error"),
        (b'{"protocol": 1, "ok": false, "error": 3}', "reply is neither a result nor an error"),
        (b"\xff", "reply is not UTF-8"),
    ],
)
def test_replies_a_client_refuses(line: bytes, error: str) -> None:
    with pytest.raises(ControlProtocolError, match=error):
        parse_reply(line)


def test_every_reply_is_json_with_the_version() -> None:
    for reply in (encode_result("status", {"é": "ü"}), encode_error("x")):
        assert json.loads(reply)["protocol"] == 1
        assert reply.count(b"\n") == 1
