"""The body a message.received is sent with: the stored payload, its message summarised.

The summary is put in place of ``"message":null`` without decoding the
payload again; hostile envelopes that spell those bytes inside strings must
come out exactly as decoding and re-encoding would make them.
"""

from __future__ import annotations

import json

import pytest

from mailstead.message.summary import message_summary
from mailstead.webhooks.outbox_records import completed

RAW = (
    b"From: Ann <ann@example.test>\r\nTo: bob@example.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"\r\nHello \xe2\x80\x94 there.\r\n"
)


def _stored(data: dict[str, object]) -> bytes:
    document = {"id": "evt_1", "type": "message.received", "data": data}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _decoded_and_encoded(payload: bytes) -> bytes:
    document = json.loads(payload)
    document["data"]["message"] = message_summary(RAW, max_body_bytes=1000)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "envelope",
    [
        {"mail_from": "ann@example.test"},
        {"mail_from": '"message":null@example.test'},  # the marker inside a string
        {"helo": 'x","message":null,"y":"'},
        {"helo": "\\", "rcpt_to": '\\"message\\":null'},
        {"nested": {"message": None}},  # a second member of that name: decoded instead
    ],
)
def test_the_summary_goes_where_message_is_null(envelope: dict[str, object]) -> None:
    payload = _stored({"queue_id": "Q1", "envelope": envelope, "message": None, "uid": None})
    body = completed(payload, RAW, 1000)
    assert body == _decoded_and_encoded(payload)
    assert json.loads(body)["data"]["message"]["headers"]["subject"] == "café"


def test_an_event_without_a_stored_message_is_sent_as_stored() -> None:
    payload = _stored({"message": {"size": 3}})
    assert completed(payload, None, None) is payload
