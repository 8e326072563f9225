"""poplib against the real POP3 listeners: STLS and POP3S, the commands of
RFC 1939, the UPDATE state, the maildrop lock and the Maildir files behind it.

Mail goes in by SMTP (or, for odd line ends, straight into ``new/`` as
another MDA would put it); the tests read the Maildir after QUIT to see what
the UPDATE state did.
"""

from __future__ import annotations

import poplib
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.config import load_config
from tests.e2e.harness import ServerHandle, client_tls_context, running_config, write_config

ALICE = "alice@example.test"
PASSWORD = "alice-pw"


def _message(subject: str, body: str = "hello") -> str:
    return (
        f"From: carol@remote.test\r\n"
        f"To: {ALICE}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n"
        f"\r\n{body}\r\n"
    )


def _deliver(server: ServerHandle, *subjects: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        for subject in subjects:
            smtp.sendmail("carol@remote.test", [ALICE], _message(subject))


def _files(server: ServerHandle) -> dict[str, str]:
    """Subject -> Maildir flags (after ``:2,``) of every file in alice's INBOX."""
    found: dict[str, str] = {}
    root = server.maildir(ALICE)
    for sub in ("new", "cur"):
        for path in sorted((root / sub).iterdir()):
            for line in path.read_bytes().splitlines():
                if line.startswith(b"Subject: "):
                    found[line[9:].decode()] = path.name.partition(":2,")[2]
                    break
    return found


def _stls(server: ServerHandle, user: str = ALICE, password: str = PASSWORD) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    client.stls(client_tls_context())
    client.user(user)
    client.pass_(password)
    return client


def _pop3s(server: ServerHandle) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL(
        "127.0.0.1", server.ports["pop3s"], timeout=10, context=client_tls_context()
    )
    client.user(ALICE)
    client.pass_(PASSWORD)
    return client


def _subject(lines: list[bytes]) -> str:
    for line in lines:
        if line.startswith(b"Subject: "):
            return line[9:].decode()
    raise AssertionError(f"no Subject in {lines!r}")


def _numbers(client: poplib.POP3) -> dict[str, int]:
    """Subject -> message number, found with TOP n 0 (which retrieves nothing).

    Tests name messages by subject, not by number, so that they say which
    message they mean.
    """
    count = client.stat()[0]
    return {_subject(client.top(n, 0)[1]): n for n in range(1, count + 1)}


@pytest.fixture
def delete_retrieved(tmp_path: Path) -> Iterator[ServerHandle]:
    path = write_config(tmp_path)
    with path.open("a") as f:
        f.write("[pop3]\ndelete_retrieved = true\n")
    with running_config(load_config(path)) as handle:
        yield handle


# --------------------------------------------------------------------------- login


def test_login_before_stls_is_refused_then_accepted_after(server: ServerHandle) -> None:
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    try:
        caps = client.capa()
        assert "STLS" in caps and "USER" not in caps
        with pytest.raises(poplib.error_proto, match=r"-ERR Login needs TLS"):
            client.user(ALICE)
        client.stls(client_tls_context())
        caps = client.capa()
        assert "STLS" not in caps and "USER" in caps
        client.user(ALICE)
        assert client.pass_(PASSWORD).startswith(b"+OK")
        assert client.stat() == (0, 0)
    finally:
        client.quit()


def test_wrong_password_is_refused_with_auth_code(server: ServerHandle) -> None:
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    client.stls(client_tls_context())
    client.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
        client.pass_("wrong")
    client.quit()


def test_pop3s_stat_list_uidl_retr_top(server: ServerHandle) -> None:
    _deliver(server, "one", "two")
    client = _pop3s(server)
    try:
        count, size = client.stat()
        assert count == 2
        _, listing, _ = client.list()
        sizes = [int(line.split()[1]) for line in listing]
        assert [line.split()[0] for line in listing] == [b"1", b"2"]
        assert sum(sizes) == size
        _, uidls, _ = client.uidl()
        ids = [line.split()[1] for line in uidls]
        assert len(set(ids)) == 2 and all(len(i) == 16 for i in ids)
        assert client.uidl(2).split()[2] == ids[1]
        numbers = _numbers(client)
        assert set(numbers) == {"one", "two"}
        for subject, number in numbers.items():
            response, lines, _ = client.retr(number)
            assert response.startswith(b"+OK")
            assert _subject(lines) == subject
            # The size LIST gave is the size on the wire, CRLF line ends.
            assert sum(len(line) + 2 for line in lines) == sizes[number - 1]
            assert client.list(number).split()[2] == str(sizes[number - 1]).encode()
        _, top, _ = client.top(numbers["one"], 0)
        assert _subject(top) == "one"
        assert top[-1] == b""  # header, blank line, no body line
        assert b"hello" not in top
        _, top, _ = client.top(numbers["one"], 1)
        assert top[-1] == b"hello"
    finally:
        client.quit()


def test_uidl_is_stable_across_a_server_restart(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    with running_config(config) as handle:
        _deliver(handle, "one", "two")
        client = _stls(handle)
        first = client.uidl()[1]
        client.quit()
    with running_config(config) as handle:
        _deliver(handle, "three")
        client = _stls(handle)
        second = client.uidl()[1]
        assert client.stat()[0] == 3
        client.quit()
    assert second[:2] == first
    assert second[2] not in first


# --------------------------------------------------------------------------- UPDATE


def test_dele_quit_removes_the_file(server: ServerHandle) -> None:
    _deliver(server, "keep", "drop")
    client = _stls(server)
    drop = _numbers(client)["drop"]
    assert client.dele(drop).startswith(b"+OK")
    assert client.stat()[0] == 1
    with pytest.raises(poplib.error_proto, match="already deleted"):
        client.retr(drop)
    client.quit()
    assert set(_files(server)) == {"keep"}
    client = _stls(server)
    assert client.stat()[0] == 1
    assert _subject(client.retr(1)[1]) == "keep"
    client.quit()


def test_rset_unmarks_deletions(server: ServerHandle) -> None:
    _deliver(server, "one")
    client = _stls(server)
    client.dele(1)
    client.rset()
    client.quit()
    assert set(_files(server)) == {"one"}


def test_dropped_connection_deletes_nothing(server: ServerHandle) -> None:
    _deliver(server, "one", "two")
    client = _stls(server)
    client.dele(1)
    client.retr(2)
    # No QUIT: RFC 1939 §6, no UPDATE state.
    client.sock.shutdown(socket.SHUT_RDWR)
    client.close()
    # The lock is released once the server notices: a new session gets in.
    for _ in range(50):
        try:
            again = _stls(server)
            break
        except poplib.error_proto as exc:
            assert b"IN-USE" in exc.args[0]
    else:
        pytest.fail("the maildrop stayed locked after the connection dropped")
    assert again.stat()[0] == 2
    again.quit()
    # Nothing deleted, and the retrieval of the dropped session set no \Seen.
    assert _files(server) == {"one": "", "two": ""}


def test_second_login_is_refused_in_use(server: ServerHandle) -> None:
    _deliver(server, "one")
    first = _stls(server)
    second = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    second.stls(client_tls_context())
    second.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
        second.pass_(PASSWORD)
    # bob's maildrop is another lock.
    bob = _stls(server, "bob@example.test", "bob-pw")
    bob.quit()
    first.quit()
    # After QUIT the lock is free; the refused session may try again.
    second.user(ALICE)
    assert second.pass_(PASSWORD).startswith(b"+OK")
    second.quit()


def test_retr_sets_seen_at_quit(server: ServerHandle) -> None:
    _deliver(server, "read", "unread")
    client = _stls(server)
    numbers = _numbers(client)  # TOP is no retrieval
    client.retr(numbers["read"])
    client.top(numbers["unread"], 5)
    assert _files(server) == {"read": "", "unread": ""}  # nothing before QUIT
    client.quit()
    files = _files(server)
    assert files == {"read": "S", "unread": ""}
    seen = [p for p in (server.maildir(ALICE) / "cur").iterdir() if p.name.endswith(":2,S")]
    assert len(seen) == 1


def test_delete_retrieved_config(delete_retrieved: ServerHandle) -> None:
    server = delete_retrieved
    _deliver(server, "read", "unread", "peeked")
    client = _stls(server)
    assert client.capa()["EXPIRE"] == ["0"]
    numbers = _numbers(client)
    client.retr(numbers["read"])
    client.top(numbers["peeked"], 1)
    client.quit()
    assert _files(server) == {"unread": "", "peeked": ""}
    # A dropped session still deletes nothing.
    client = _stls(server)
    client.retr(1)
    client.sock.shutdown(socket.SHUT_RDWR)
    client.close()
    for _ in range(50):
        try:
            again = _stls(server)
            break
        except poplib.error_proto:
            continue
    else:
        pytest.fail("the maildrop stayed locked")
    assert again.stat()[0] == 2
    again.quit()


# --------------------------------------------------------------------------- content


def test_lf_message_is_sent_with_crlf_and_dot_stuffed(server: ServerHandle) -> None:
    body = b"first\n.leading dot\n..two dots\n.\nlast line without end"
    raw = b"From: carol@remote.test\nTo: alice@example.test\nSubject: dots\n\n" + body
    _deliver(server, "prime")  # creates the Maildir
    new = server.maildir(ALICE) / "new"
    (new / "9999999999.M1P1.othermda").write_bytes(raw)
    client = _stls(server)
    try:
        assert _numbers(client) == {"prime": 1, "dots": 2}
        # CRLF per line end. The CRLF the wire adds after an unterminated last
        # line is not counted (as Dovecot does; the store's RFC822.SIZE).
        expected_size = len(raw) + raw.count(b"\n")
        assert client.list(2).split()[2] == str(expected_size).encode()
        # On the wire: CRLF, and the "." lines stuffed.
        client._putcmd("RETR 2")  # type: ignore[attr-defined]
        wire = b""
        while not wire.endswith(b"\r\n.\r\n"):
            chunk = client.sock.recv(65536)
            assert chunk, wire
            wire += chunk
        status, _, content = wire.partition(b"\r\n")
        assert status == f"+OK {expected_size} octets".encode()
        assert b"\n" not in content.replace(b"\r\n", b"")
        assert content == (
            b"From: carol@remote.test\r\nTo: alice@example.test\r\nSubject: dots\r\n\r\n"
            b"first\r\n..leading dot\r\n...two dots\r\n..\r\nlast line without end\r\n.\r\n"
        )
        # poplib unstuffs.
        _, lines, _ = client.retr(2)
        assert lines[-4:] == [b".leading dot", b"..two dots", b".", b"last line without end"]
    finally:
        client.quit()


def test_messages_are_numbered_in_arrival_order(server: ServerHandle) -> None:
    _deliver(server, "prime")  # creates the Maildir, UID 1
    client = _stls(server)
    client.quit()
    new = server.maildir(ALICE) / "new"
    # Two deliveries 2 ms apart, named as Mailstead's own unique_name() (and
    # Dovecot's) would name them: <sec>.M<usec>P<pid>Q<n>.<host>.
    for name, subject in (
        ("1900000000.M99000P7Q1.h", "earlier"),
        ("1900000000.M101000P7Q2.h", "later"),
    ):
        (new / name).write_bytes(_message(subject).encode())
    client = _stls(server)
    try:
        assert _numbers(client) == {"prime": 1, "earlier": 2, "later": 3}
    finally:
        client.quit()
