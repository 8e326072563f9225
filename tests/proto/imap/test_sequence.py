"""Sequence sets (RFC 9051 §9, RFC 5182 ``$``): parse, resolve, select, format."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstead.proto.errors import LocalProtocolError, RemoteProtocolError
from mailstead.proto.imap.sequence import (
    STAR,
    SequenceSet,
    SequenceSetError,
    format_ranges,
    format_set,
)


@pytest.mark.parametrize(
    ("text", "largest", "resolved"),
    [
        ("1", 5, [(1, 1)]),
        ("1:3,5,7:9", 10, [(1, 3), (5, 5), (7, 9)]),
        ("3:1", 5, [(1, 3)]),  # n:m with n > m is m:n
        ("*", 5, [(5, 5)]),
        ("2:*", 5, [(2, 5)]),
        ("*:2", 5, [(2, 5)]),
        ("3:*", 2, [(2, 2)]),  # "3:*" with largest 2 is "2:3"
        ("7:9", 5, []),  # beyond the end: nothing
        ("4:9", 5, [(4, 5)]),
        ("1:*", 0, []),  # empty mailbox: "*" names nothing
        ("*", 0, []),
        ("1,2,3,5:6,4", 10, [(1, 6)]),  # merged, adjacent joined
        ("5,1:2,4294967295", 10, [(1, 2), (5, 5)]),
        ("1:4294967295", 3, [(1, 3)]),
    ],
)
def test_resolve(text: str, largest: int, resolved: list[tuple[int, int]]) -> None:
    assert SequenceSet.parse(text).resolve(largest) == resolved


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "1:",
        ":1",
        ",",
        "1,",
        ",1",
        "1,,2",
        "a",
        "1:2:3",
        "01",
        "-1",
        " 1",
        "1 ",
        "4294967296",
        "1:99999999999999999999",
        "$,1",
        "1,$",
        "$:1",
        "**",
        "1:0",
        "９",  # a non-ASCII digit
        "1" * 5000,  # more digits than int() would accept: still a clean error
        ",".join(["1"] * 10_001),
        "1" + "," * 99_999 + "1",
        "1" * 100_001,
    ],
)
def test_bad_syntax(text: str) -> None:
    with pytest.raises(SequenceSetError):
        SequenceSet.parse(text)


def test_error_is_a_remote_protocol_error() -> None:
    assert issubclass(SequenceSetError, RemoteProtocolError)


def test_limits_inclusive() -> None:
    assert len(SequenceSet.parse(",".join(["1"] * 10_000)).ranges) == 10_000


def test_star_is_kept_until_resolved() -> None:
    s = SequenceSet.parse("1:*")
    assert s.ranges == ((1, STAR),)
    assert s.uses_star
    assert not SequenceSet.parse("1:3").uses_star


def test_saved_marker() -> None:
    s = SequenceSet.parse("$")
    assert s.is_saved
    assert s.ranges == ()
    with pytest.raises(LocalProtocolError):
        s.resolve(10)


def test_contains() -> None:
    s = SequenceSet.parse("2,4:6,9:*")
    assert [n for n in range(1, 13) if s.contains(n, 12)] == [2, 4, 5, 6, 9, 10, 11, 12]
    assert [n for n in range(1, 8) if s.contains(n, 7)] == [2, 4, 5, 6, 7]  # "9:*" is "7:9"
    assert not s.contains(1, 0)


def test_select_uids() -> None:
    uids = [3, 4, 10, 11, 12, 40]
    assert SequenceSet.parse("1:*").select(uids) == [0, 1, 2, 3, 4, 5]
    assert SequenceSet.parse("4:11").select(uids) == [1, 2, 3]
    assert SequenceSet.parse("5:9").select(uids) == []
    assert SequenceSet.parse("*").select(uids) == [5]
    assert SequenceSet.parse("100:*").select(uids) == [5]  # "*" = 40, so "40:100"
    assert SequenceSet.parse("12,3,40").select(uids) == [0, 4, 5]
    assert SequenceSet.parse("1:*").select([]) == []
    assert SequenceSet.parse("2:3").index_ranges(uids) == [range(0, 1)]


def test_select_is_fast_on_a_large_mailbox() -> None:
    uids = list(range(1, 200_001, 2))  # 100,000 UIDs
    start = time.perf_counter()
    everything = SequenceSet.parse("1:*").select(uids)
    one = SequenceSet.parse("5")
    for _ in range(10_000):
        assert one.select(uids) == [2]
    elapsed = time.perf_counter() - start
    assert everything == list(range(100_000))
    assert elapsed < 2.0


@pytest.mark.parametrize(
    ("numbers", "text"),
    [
        ([], ""),
        ([5], "5"),
        ([1, 2, 3, 5, 7, 8, 9], "1:3,5,7:9"),
        ([9, 7, 8, 5, 3, 2, 1, 2], "1:3,5,7:9"),
        ([4294967295, 4294967294], "4294967294:4294967295"),
    ],
)
def test_format_set(numbers: list[int], text: str) -> None:
    assert format_set(numbers) == text


def test_format_ranges_and_of() -> None:
    assert format_ranges([(5, 6), (1, 2), (3, 4)]) == "1:6"
    assert format_ranges([(5, 6), (1, 2), (3, 3)]) == "1:3,5:6"
    assert SequenceSet.of([3, 1, 2, 7]).ranges == ((1, 3), (7, 7))


numbers = st.lists(st.integers(min_value=1, max_value=2**32 - 1), min_size=1, max_size=50)
small = st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=30)


@given(numbers)
def test_format_parse_resolve_round_trip(values: list[int]) -> None:
    text = format_set(values)
    resolved = SequenceSet.parse(text).resolve(2**32 - 1)
    assert format_ranges(resolved) == text
    # Each range spans at most len(values) numbers, so expanding is cheap.
    assert [n for a, b in resolved for n in range(a, b + 1)] == sorted(set(values))


@given(small, st.integers(min_value=0, max_value=70))
def test_resolve_matches_membership(values: list[int], largest: int) -> None:
    s = SequenceSet.parse(format_set(values))
    expected = sorted({v for v in values if v <= largest})
    got = [n for a, b in s.resolve(largest) for n in range(a, b + 1)]
    assert got == expected
    assert [n for n in range(1, largest + 1) if s.contains(n, largest)] == expected


@given(st.lists(st.integers(min_value=1, max_value=300), unique=True), small)
def test_select_matches_membership(uid_list: list[int], values: list[int]) -> None:
    uids = sorted(uid_list)
    s = SequenceSet.parse(format_set(values))
    assert s.select(uids) == [i for i, u in enumerate(uids) if u in set(values)]


@given(st.text(alphabet="0123456789*:,$", max_size=30))
def test_parse_never_crashes(text: str) -> None:
    try:
        s = SequenceSet.parse(text)
    except SequenceSetError:
        return
    if not s.is_saved:
        for a, b in s.resolve(1000):
            assert 1 <= a <= b <= 1000
