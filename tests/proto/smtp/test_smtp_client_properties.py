"""Properties: what the client sends, the real SMTPServer reads back exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.proto.smtp.client_events import Closed, MessageResult
from mailstead.proto.smtp.dotstuff import DATA_END, canonical, stuff, unstuff
from tests.proto.smtp.client_transcript import ClientTranscript
from tests.proto.smtp.transcript import MTA_NO_TLS, Transcript

# Text lines without CR or LF, often starting with dots or looking like commands.
_line = st.one_of(
    st.text(st.characters(exclude_characters="\r\n", codec="utf-8"), max_size=40),
    st.sampled_from([".", "..", "...", ".x", "MAIL FROM:<evil@bad.example>", "QUIT", ""]),
    st.text(alphabet=".\t x", max_size=5).map(lambda s: "." + s),
)
_lines = st.lists(_line.map(str.encode), max_size=30)


@settings(max_examples=300, deadline=None)
@given(lines=_lines)
def test_stuffed_content_reaches_the_real_server_unchanged(lines: list[bytes]) -> None:
    content = b"".join(x + b"\r\n" for x in lines)
    t = Transcript().handshake()
    t.feed(b"MAIL FROM:<carol@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    wire = stuff(content)
    # Only the terminator ends the data (RFC 5321 §4.1.1.4).
    assert (b"\r\n" + wire).find(DATA_END) == len(wire) - 3
    assert t.feed(wire) == b"250 2.0.0 Queued as M1\r\n"
    assert [m.content for m in t.messages] == [content]
    assert unstuff(wire[:-3]) == content


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200))
def test_any_bytes_are_sent_as_their_canonical_form(body: bytes) -> None:
    wire = stuff(body)
    assert wire.endswith(b".\r\n")
    sent = canonical(body)
    assert sent.count(b"\r") == sent.count(b"\n") == sent.count(b"\r\n")
    assert unstuff(wire[:-3]) == sent
    assert canonical(sent) == sent


def converse(c: ClientTranscript, server: Transcript, hide: tuple[bytes, ...] = ()) -> None:
    """Move bytes both ways until both sides are quiet; ``hide`` EHLO lines."""
    for _ in range(1000):
        c.drive()
        out = c.client.data_to_send()
        said = server.feed(out) if out else server.output()
        if not out and not said:
            return
        for line in hide:
            said = said.replace(line, b"")
        c.client.receive_data(said)
    raise AssertionError("no end to the conversation")


@settings(max_examples=150, deadline=None)
@given(
    messages=st.lists(
        st.tuples(
            _lines,
            st.lists(st.sampled_from(["alice", "bob", "nobody", "postmaster"]), min_size=1),
        ),
        min_size=1,
        max_size=3,
    ),
    pipelining=st.booleans(),
    chunking=st.booleans(),
)
def test_client_and_server_agree(
    messages: list[tuple[list[bytes], list[str]]], pipelining: bool, chunking: bool
) -> None:
    hide = tuple(
        x
        for x, on in ((b"250-PIPELINING\r\n", pipelining), (b"250-CHUNKING\r\n", chunking))
        if not on
    )
    server = Transcript(MTA_NO_TLS)
    c = ClientTranscript()
    converse(c, server, hide)
    assert ("CHUNKING" in c.client.extensions) == chunking
    assert ("PIPELINING" in c.client.extensions) == pipelining
    for lines, users in messages:
        content = b"".join(x + b"\r\n" for x in lines)
        c.send([f"{u}@example.test" for u in users], content, sender="carol@remote.test")
        converse(c, server, hide)
        result = c.of_type(MessageResult)[-1]
        wanted = ["failed" if u == "nobody" else "delivered" for u in users]
        assert [r.outcome.value for r in result.recipients] == wanted
        if "failed" in wanted and "delivered" not in wanted:
            continue
        assert server.messages[-1].content == content
        assert [r.address for r in server.messages[-1].recipients] == [
            f"{u}@example.test" for u in users if u != "nobody"
        ]
    c.client.quit()
    converse(c, server, hide)
    assert isinstance(c.events[-1], Closed)
    assert server.closed
