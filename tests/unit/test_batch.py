"""DataChannel batching: pack/unpack round trips, frame sizes, malformed frames, Batcher;
the PING/PONG control frames; Latest (latest-wins sending)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from aiosocker import SockerError
from aiosocker.rtc import Batcher, BatchError, pack, unpack
from aiosocker.rtc.batch import (
    BATCH,
    CONTROL_SIZE,
    DEFAULT_MAX_LATEST,
    DEFAULT_MAX_SIZE,
    MAX_MAX_SIZE,
    PING,
    PONG,
    SINGLE,
    Control,
    Latest,
    control,
    ping,
    pong,
)


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
        (b"\xb4", r"unknown batch marker 0xb4"),
        (b"\xb2", r"a PING control frame \(0xb2\) carries no messages"),
        (b"\xb3" + bytes(8), r"a PONG control frame \(0xb3\) carries no messages"),
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


# -- control frames ----------------------------------------------------------------------


def test_control_golden_frames() -> None:
    assert (PING, PONG, CONTROL_SIZE) == (0xB2, 0xB3, 9)
    assert ping(1) == bytes.fromhex("b20000000000000001")
    assert pong(0x0102030405060708) == bytes.fromhex("b30102030405060708")
    assert ping(0) == b"\xb2" + bytes(8)
    assert pong(2**64 - 1) == b"\xb3" + b"\xff" * 8
    assert ping(2**64 - 1) == bytes.fromhex("b2ffffffffffffffff")  # docs/protocol.md, section 5
    assert control(bytes.fromhex("b30102030405060708")) == Control(PONG, 0x0102030405060708)
    assert control(ping(7)) == (PING, 7) and control(ping(7)).name == "PING"  # type: ignore[union-attr]


@pytest.mark.parametrize("frame", [b"", b"\xb0hi", b"\xb1\x01a", b"\x00", b"\xb4" + bytes(8)])
def test_control_leaves_other_frames_to_unpack(frame: bytes) -> None:
    assert control(frame) is None


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (b"\xb2", r"a PING frame is 9 bytes \(marker and 8-byte id\), got 1"),
        (b"\xb3" + bytes(7), r"a PONG frame is 9 bytes .*, got 8"),
        (b"\xb2" + bytes(9), r"a PING frame is 9 bytes .*, got 10"),
    ],
)
def test_malformed_control_frames_name_the_problem(frame: bytes, problem: str) -> None:
    with pytest.raises(BatchError, match=problem):
        control(frame)
    with pytest.raises(BatchError, match="control frame .* carries no messages"):
        unpack(frame)


@pytest.mark.parametrize(
    ("id", "error"), [(-1, ValueError), (2**64, ValueError), (True, TypeError), (1.0, TypeError)]
)
def test_control_ids_are_64_bit_unsigned(id: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        ping(id)  # type: ignore[arg-type]
    with pytest.raises(error):
        pong(id)  # type: ignore[arg-type]


@given(st.integers(0, 2**64 - 1))
def test_control_round_trip(id: int) -> None:
    assert control(ping(id)) == (PING, id)
    assert control(pong(id)) == (PONG, id)
    assert len(ping(id)) == CONTROL_SIZE


# -- Latest ------------------------------------------------------------------------------


def test_latest_keeps_the_newest_per_key_in_the_order_keys_started_waiting() -> None:
    latest = Latest()
    assert latest.max_keys == DEFAULT_MAX_LATEST == 1024
    assert latest.take() is None
    assert latest.put("a", b"a1") is False
    assert latest.put("b", b"b1") is False
    assert latest.put("a", b"a2") is True  # replaced; "a" keeps its place
    assert latest.put("c", b"c1") is False
    assert (len(latest), latest.pending_bytes, "a" in latest) == (3, 6, True)
    assert repr(latest) == "<Latest 3 keys waiting, 6 bytes, max_keys 1024>"
    frame = latest.take()
    assert frame == b"\xb1\x02a2\x02b1\x02c1"
    assert (len(latest), latest.pending_bytes) == (0, 0)
    assert latest.put("a", b"a3") is False  # sent: a new wait
    assert latest.take() == b"\xb0a3"


def test_latest_bounds_its_keys() -> None:
    latest = Latest(max_keys=2)
    latest.put(1, b"x")
    latest.put(2, b"x")
    assert latest.full
    with pytest.raises(OverflowError, match="2 keys wait already"):
        latest.put(3, b"x")
    assert latest.put(1, b"y") is True  # a waiting key still takes a newer message
    assert latest.clear() == 2 and not latest.full and latest.pending_bytes == 0
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="max_keys must be an int >= 1"):
            Latest(bad)  # type: ignore[arg-type]


def test_latest_takes_a_frame_at_a_time() -> None:
    latest = Latest()
    for key in range(10):
        latest.put(key, bytes([key]) * 10)  # 11 bytes each in a batch
    frames = []
    while (frame := latest.take(max_size=1 + 11 * 3)) is not None:
        frames.append(frame)
    assert frames == pack([bytes([key]) * 10 for key in range(10)], 1 + 11 * 3)
    latest.put("big", b"x" * 100)
    assert latest.take(max_size=10) == b"\xb0" + b"x" * 100  # alone, as pack() does


@given(
    st.lists(st.tuples(st.integers(0, 20), st.binary(max_size=300)), max_size=80),
    st.integers(1, 2000),
)
def test_latest_frames_are_packs_of_the_newest_per_key(
    puts: list[tuple[int, bytes]], max_size: int
) -> None:
    latest = Latest()
    newest: dict[int, bytes] = {}
    for key, message in puts:
        latest.put(key, message)
        newest[key] = message  # dict order: first put of each key, as Latest's
    assert latest.pending_bytes == sum(map(len, newest.values()))
    frames = []
    while (frame := latest.take(max_size)) is not None:
        frames.append(frame)
    assert frames == pack(list(newest.values()), max_size)
    assert [m for f in frames for m in unpack(f)] == list(newest.values())
