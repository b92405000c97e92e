"""DataChannel batching: pack/unpack round trips, frame sizes, malformed frames, Batcher."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from aiosocker import SockerError
from aiosocker.rtc import Batcher, BatchError, pack, unpack
from aiosocker.rtc.batch import BATCH, DEFAULT_MAX_SIZE, MAX_MAX_SIZE, SINGLE


def sizes_ok(frames: list[bytes], messages: list[bytes], max_size: int) -> None:
    """Every frame fits max_size, except a lone message that cannot share a frame."""
    for frame in frames:
        if len(frame) > max_size:
            assert frame[0] == SINGLE
            assert len(frame) == max_size + 1 or len(frame) - 1 > max_size


def test_defaults() -> None:
    assert DEFAULT_MAX_SIZE == 16384
    assert (SINGLE, BATCH) == (0xB0, 0xB1)
    assert issubclass(BatchError, SockerError)


def test_golden_frames() -> None:
    assert pack([]) == []
    assert pack([b"hi"]) == [b"\xb0hi"]
    assert pack([b""]) == [b"\xb0"]
    assert pack([b"a", b"bc", b""]) == [b"\xb1\x01a\x02bc\x00"]
    long = b"x" * 300
    assert pack([long, b"y"]) == [b"\xb1\xac\x02" + long + b"\x01y"]  # 300 = ac 02 in LEB128
    assert unpack(b"\xb1\xac\x02" + long + b"\x01y") == [long, b"y"]


def test_greedy_split_keeps_order_and_limit() -> None:
    messages = [bytes([i]) * 10 for i in range(10)]  # 11 bytes each in a batch
    frames = pack(messages, max_size=1 + 11 * 3)
    assert [len(f) for f in frames] == [34, 34, 34, 11]
    assert frames[-1] == b"\xb0" + messages[-1]
    assert [m for f in frames for m in unpack(f)] == messages


def test_message_exactly_at_max_size_goes_alone() -> None:
    max_size = 100
    exact = b"e" * max_size
    frames = pack([b"a", exact, b"b"], max_size)
    assert frames == [b"\xb0a", b"\xb0" + exact, b"\xb0b"]
    assert len(frames[1]) == max_size + 1


def test_message_filling_a_single_frame_exactly() -> None:
    # 99 bytes + marker == max_size: fits a b0 frame, yet shares with nobody (b1 needs 101).
    frames = pack([b"f" * 99, b"", b"g" * 97], max_size=100)
    assert frames == [b"\xb0" + b"f" * 99, b"\xb1\x00\x61" + b"g" * 97]
    assert [len(f) for f in frames] == [100, 100]


def test_oversized_messages_go_alone_and_flush_the_group() -> None:
    big = b"B" * 50_000
    frames = pack([b"a", b"b", big, big, b"c"], max_size=DEFAULT_MAX_SIZE)
    assert frames == [b"\xb1\x01a\x01b", b"\xb0" + big, b"\xb0" + big, b"\xb0c"]


def test_pack_accepts_any_iterable_and_max_size_one() -> None:
    assert pack(iter([b"a", b"b"])) == [b"\xb1\x01a\x01b"]
    assert pack((b"", b""), max_size=1) == [b"\xb0", b"\xb0"]
    assert pack([b"", b""], max_size=3) == [b"\xb1\x00\x00"]


@pytest.mark.parametrize(
    ("max_size", "error", "problem"),
    [
        (0, ValueError, r"max_size must be in 1\.\.268435456 bytes, got 0"),
        (-5, ValueError, r"got -5"),
        (MAX_MAX_SIZE + 1, ValueError, r"got 268435457"),
        (True, TypeError, r"max_size must be an int, got bool"),
        (1024.0, TypeError, r"max_size must be an int, got float"),
    ],
)
def test_bad_max_size(max_size: object, error: type[Exception], problem: str) -> None:
    with pytest.raises(error, match=problem):
        pack([b"a"], max_size)  # type: ignore[arg-type]
    with pytest.raises(error, match=problem):
        Batcher(max_size)  # type: ignore[arg-type]


message_lists = st.lists(
    st.one_of(
        st.binary(max_size=20),
        st.binary(min_size=120, max_size=140),  # across the 1- to 2-byte length boundary
        st.integers(0, 3).map(lambda n: b"\x00" * n),
    ),
    max_size=40,
)


@given(message_lists, st.integers(1, 400))
@example([b"x" * 100], 100)
@example([b"x" * 99, b"y"], 100)
@example([b"", b"", b""], 1)
def test_round_trip(messages: list[bytes], max_size: int) -> None:
    frames = pack(messages, max_size)
    assert [m for f in frames for m in unpack(f)] == messages
    sizes_ok(frames, messages, max_size)
    assert all(type(m) is bytes for f in frames for m in unpack(f))


@given(message_lists, st.integers(1, 400))
def test_frame_count_is_minimal(messages: list[bytes], max_size: int) -> None:
    # Adjacent frames could not have been merged: the greedy split is optimal.
    frames = pack(messages, max_size)
    for first, second in itertools.pairwise(frames):
        merged = pack(unpack(first) + unpack(second)[:1], max_size)
        assert len(merged) == 2


@given(st.lists(st.binary(min_size=0, max_size=20_000), max_size=6), st.integers(1, 70_000))
def test_round_trip_large(messages: list[bytes], max_size: int) -> None:
    frames = pack(messages, max_size)
    assert [m for f in frames for m in unpack(f)] == messages
    sizes_ok(frames, messages, max_size)


@given(st.binary(max_size=64))
@example(b"\xb1\xff\xff\xff\xff")
@example(b"\xb1\x80")
def test_unpack_fuzz(frame: bytes) -> None:
    try:
        messages = unpack(frame)
    except BatchError as exc:
        assert str(exc)
    else:
        assert all(isinstance(m, bytes) for m in messages)


@given(st.binary(max_size=40))
def test_unpack_fuzz_batched(body: bytes) -> None:
    # Behind a valid marker, so hypothesis explores the length parsing.
    try:
        messages = unpack(b"\xb1" + body)
    except BatchError as exc:
        assert str(exc)
    else:
        assert len(messages) >= 1


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (b"", r"empty frame: a batch frame starts with a marker byte \(b0 or b1\)"),
        (b"\x00abc", r"unknown batch marker 0x00; expected 0xb0 or 0xb1"),
        (b"\xb2", r"unknown batch marker 0xb2"),
        (b"\xb1", r"empty batch: a b1 frame holds at least one message"),
        (b"\xb1\x05abc", r"truncated batch: message 1 at offset 2 needs 5 bytes, 3 left"),
        (b"\xb1\x01a\x02b", r"truncated batch: message 2 at offset 4 needs 2 bytes, 1 left"),
        (b"\xb1\x80", r"truncated length at offset 1: the frame ends inside it"),
        (b"\xb1\x01a\xff\xff", r"truncated length at offset 3"),
        (b"\xb1\x80\x00", r"non-minimal length at offset 1: a trailing 00 byte"),
        (b"\xb1\x80\x80\x80\x00", r"non-minimal length at offset 1"),
        (b"\xb1\x80\x80\x80\x80\x01", r"length at offset 1 is longer than 4 bytes"),
        (b"\xb1\xff\xff\xff\x7f", r"truncated batch: message 1 at offset 5 needs 268435455"),
    ],
)
def test_malformed_frames_name_the_problem(frame: bytes, problem: str) -> None:
    with pytest.raises(BatchError, match=problem):
        unpack(frame)


@pytest.mark.parametrize("text", ["", "\xb0hello", "hello"])
def test_text_messages_are_rejected(text: str) -> None:
    with pytest.raises(BatchError, match=r"got a text message; batch frames are binary"):
        unpack(text)  # type: ignore[arg-type]


def test_unpack_accepts_a_single_message_batch() -> None:
    # pack() never makes one, but a peer's packer may; it is unambiguous.
    assert unpack(b"\xb1\x03abc") == [b"abc"]
    assert unpack(b"\xb0") == [b""]


def test_batcher() -> None:
    batcher = Batcher(max_size=8)
    assert batcher.max_size == 8
    assert (batcher.pending, batcher.pending_bytes) == (0, 0)
    assert batcher.flush() == []
    for message in (b"ab", b"cd", b"efghij", b""):
        batcher.add(message)
    assert (batcher.pending, batcher.pending_bytes) == (4, 10)
    assert repr(batcher) == "<Batcher 4 pending, 10 bytes, max_size 8>"
    frames = batcher.flush()
    assert frames == [b"\xb1\x02ab\x02cd", b"\xb0efghij", b"\xb0"]
    assert (batcher.pending, batcher.pending_bytes) == (0, 0)
    assert batcher.flush() == []
    batcher.add(b"stale")
    batcher.add(b"older")
    assert batcher.clear() == 2
    assert (batcher.pending, batcher.pending_bytes) == (0, 0)
    assert batcher.flush() == []


def test_batcher_default_max_size() -> None:
    batcher = Batcher()
    assert batcher.max_size == DEFAULT_MAX_SIZE
    for _ in range(1000):
        batcher.add(b"m" * 40)
    frames = batcher.flush()
    assert all(len(f) <= DEFAULT_MAX_SIZE for f in frames)
    assert len(frames) == -(-1000 * 41 // (DEFAULT_MAX_SIZE - 1))
    assert sum(len(unpack(f)) for f in frames) == 1000
