"""QUOTA (RFC 9208), as C:/S: transcripts byte for byte.

The INBOX holds the three MESSAGES (151 + 50 + 88 = 289 octets with CRLF:
STORAGE 1, in KiB rounded up). The limits are looked up at each command, as
the server looks them up in the directory, so a test changes them mid-way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.directory import Quota
from tests.proto.imap.imap_transcript import CAPS, IMAPTranscript, authed, uidvalidity


class Limits:
    """The administrator's side: what ``mailstead user quota`` last set."""

    def __init__(self, quota: Quota) -> None:
        self.quota = quota
        self.asked: list[str] = []

    def __call__(self, user: str) -> Quota:
        self.asked.append(user)
        return self.quota


def with_quota(root: Path, quota: Quota) -> tuple[IMAPTranscript, Limits]:
    """Logged in as alice, with the limits ``quota``, and a Trash folder."""
    t = IMAPTranscript(root)
    limits = Limits(quota)
    t.server.session.quota = limits
    t.login()
    assert "x OK" in t.say("x CREATE Trash")
    return t, limits


def test_capabilities_name_quota_and_both_resources(root: Path) -> None:
    t, _ = with_quota(root, Quota(storage=10 * 1024))
    t.run(f"""
        C: a CAPABILITY
        S: * CAPABILITY {CAPS} APPENDLIMIT=52428800 QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE
        S: a OK CAPABILITY completed
    """)


def test_no_quota_words_where_quotas_are_not_looked_up(root: Path) -> None:
    assert "QUOTA" not in authed(root).say("a CAPABILITY")


def test_getquotaroot_and_getquota(root: Path) -> None:
    # RFC 9208 §4.1.1, §4.1.2: one root, "", for every mailbox of the account.
    t, limits = with_quota(root, Quota(storage=10 * 1024, messages=4))
    t.run("""
        C: a GETQUOTAROOT INBOX
        S: * QUOTAROOT INBOX ""
        S: * QUOTA "" (STORAGE 1 10 MESSAGE 3 4)
        S: a OK GETQUOTAROOT completed
        C: b GETQUOTA ""
        S: * QUOTA "" (STORAGE 1 10 MESSAGE 3 4)
        S: b OK GETQUOTA completed
        C: c GETQUOTAROOT Trash
        S: * QUOTAROOT Trash ""
        S: * QUOTA "" (STORAGE 1 10 MESSAGE 3 4)
        S: c OK GETQUOTAROOT completed
        C: d GETQUOTA "user.alice"
        S: d NO [NONEXISTENT] No such quota root
        C: e GETQUOTAROOT Nowhere
        S: e NO [NONEXISTENT] Mailbox does not exist
        C: f GETQUOTA
        S: f BAD Wrong number of arguments to GETQUOTA
    """)
    assert set(limits.asked) == {"alice@example.test"}


def test_quotaroot_spells_the_mailbox_as_list_does(root: Path) -> None:
    t, _ = with_quota(root, Quota(messages=10))
    assert "x OK" in t.say('x CREATE "&AOQ-rger"')
    t.run("""
        C: a GETQUOTAROOT "&AOQ-rger"
        S: * QUOTAROOT &AOQ-rger ""
        S: * QUOTA "" (MESSAGE 3 10)
        S: a OK GETQUOTAROOT completed
        C: b ENABLE UTF8=ACCEPT
        S: * ENABLED UTF8=ACCEPT
        S: b OK ENABLE completed
        C: c GETQUOTAROOT "ärger"
        S: * QUOTAROOT "ärger" ""
        S: * QUOTA "" (MESSAGE 3 10)
        S: c OK GETQUOTAROOT completed
    """)


def test_a_resource_without_a_limit_is_left_out(root: Path) -> None:
    t, _ = with_quota(root, Quota(messages=1000))
    t.run("""
        C: a GETQUOTA ""
        S: * QUOTA "" (MESSAGE 3 1000)
        S: a OK GETQUOTA completed
    """)


def test_without_limits_there_is_no_quota_root(root: Path) -> None:
    t, _ = with_quota(root, Quota())
    t.run("""
        C: a GETQUOTAROOT INBOX
        S: * QUOTAROOT INBOX
        S: a OK GETQUOTAROOT completed
        C: b GETQUOTA ""
        S: b NO [NONEXISTENT] No such quota root
    """)


def test_setquota_is_refused(root: Path) -> None:
    # RFC 9208 §4.1.3: no QUOTASET capability; the administrator sets limits.
    t, _ = with_quota(root, Quota(messages=10))
    t.run("""
        C: a SETQUOTA "" (STORAGE 512)
        S: a NO [NOPERM] Quotas are set by the administrator
    """)


def test_append_over_the_message_limit_is_refused(root: Path) -> None:
    # RFC 9208 §4.3 OVERQUOTA; nothing is stored.
    t, limits = with_quota(root, Quota(messages=4))
    v = uidvalidity(root)
    t.run(f"""
        C: a APPEND INBOX {{10+}}
        C: Subject: y
        S: a OK [APPENDUID {v} 4] APPEND completed
        C: b APPEND INBOX {{10+}}
        C: Subject: z
        S: b NO [OVERQUOTA] Quota exceeded
        C: c GETQUOTA ""
        S: * QUOTA "" (MESSAGE 4 4)
        S: c OK GETQUOTA completed
    """)
    limits.quota = Quota(messages=5)  # the administrator raised it meanwhile
    t.run(f"""
        C: d APPEND INBOX {{10+}}
        C: Subject: z
        S: d OK [APPENDUID {v} 5] APPEND completed
    """)


def test_append_over_the_storage_limit_is_refused(root: Path) -> None:
    t, _ = with_quota(root, Quota(storage=300))  # 289 used
    v = uidvalidity(root)
    t.run(f"""
        C: a APPEND INBOX {{12+}}
        C: Subject: yz
        S: a NO [OVERQUOTA] Quota exceeded
        C: b APPEND INBOX {{11+}}
        C: Subject: y
        S: b OK [APPENDUID {v} 4] APPEND completed
        C: c GETQUOTA ""
        S: * QUOTA "" (STORAGE 1 0)
        S: c OK GETQUOTA completed
    """)


def test_copy_over_quota_is_refused_and_move_is_not(root: Path) -> None:
    t, _ = with_quota(root, Quota(messages=4))
    trash = uidvalidity(root, "Trash")
    t.select().run(f"""
        C: a COPY 1:2 Trash
        S: a NO [OVERQUOTA] Quota exceeded
        C: b UID COPY 3 Trash
        S: b OK [COPYUID {trash} 3 1] COPY completed
        C: c MOVE 1 Trash
        S: * OK [COPYUID {trash} 1 2] Moved
        S: * 1 EXPUNGE
        S: c OK MOVE completed
        C: d GETQUOTA ""
        S: * QUOTA "" (MESSAGE 4 4)
        S: d OK GETQUOTA completed
    """)


def test_expunge_makes_room(root: Path) -> None:
    t, _ = with_quota(root, Quota(messages=3))
    t.select().run("""
        C: a STORE 1 +FLAGS.SILENT (\\Deleted)
        S: a OK STORE completed
        C: b EXPUNGE
        S: * 1 EXPUNGE
        S: b OK EXPUNGE completed
        C: c GETQUOTAROOT INBOX
        S: * QUOTAROOT INBOX ""
        S: * QUOTA "" (MESSAGE 2 3)
        S: c OK GETQUOTAROOT completed
    """)


@pytest.mark.parametrize(
    "line",
    [
        "a GETQUOTAROOT",
        "a GETQUOTAROOT INBOX Trash",
        "a SETQUOTA",
    ],
)
def test_wrong_arguments_are_bad(root: Path, line: str) -> None:
    t, _ = with_quota(root, Quota(messages=3))
    assert t.say(line).startswith("a BAD ")


def test_status_deleted_storage(root: Path) -> None:
    # RFC 9208 §4.1.4: what EXPUNGE would give back, in STORAGE's KiB (rounded up).
    t, _ = with_quota(root, Quota(storage=10 * 1024))
    t.select().run("""
        C: a STATUS INBOX (DELETED DELETED-STORAGE)
        S: * STATUS "INBOX" (DELETED 0 DELETED-STORAGE 0)
        S: a OK STATUS completed
        C: b STORE 1:2 +FLAGS.SILENT (\\Deleted)
        S: b OK STORE completed
        C: c STATUS INBOX (MESSAGES DELETED DELETED-STORAGE)
        S: * STATUS "INBOX" (MESSAGES 3 DELETED 2 DELETED-STORAGE 1)
        S: c OK STATUS completed
    """)
