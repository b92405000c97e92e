"""The room index and the broadcast codec, with plain objects: no sockets."""

from __future__ import annotations

import pytest

from aiosocker.rooms import Broadcast, BroadcastError, Rooms, check_room, decode, stage_set


def test_join_leave_and_the_views() -> None:
    rooms: Rooms[str] = Rooms()
    assert rooms.join("a", "red") and not rooms.join("a", "red")
    assert rooms.join("b", "red") and rooms.join("a", "blue")
    assert rooms.members("red") == frozenset({"a", "b"}) and rooms.count("blue") == 1
    assert rooms.rooms_of("a") == frozenset({"red", "blue"}) and len(rooms) == 2
    assert sorted(rooms.iter_members("red")) == ["a", "b"]
    assert rooms.snapshot() == {"red": frozenset({"a", "b"}), "blue": frozenset({"a"})}
    assert rooms.leave("b", "red") and not rooms.leave("b", "red")
    assert not rooms.leave("z", "nowhere")
    assert rooms.leave_all("a") == frozenset({"red", "blue"})
    assert len(rooms) == 0 and rooms.rooms_of("a") == frozenset()
    assert rooms.members("red") == frozenset() and rooms.count("red") == 0


@pytest.mark.parametrize(
    ("room", "error"), [(5, TypeError), ("", ValueError), ("x" * 201, ValueError)]
)
def test_room_names_are_checked(room: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_room(room)
    with pytest.raises(error):
        Rooms().join("a", room)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "broadcast",
    [
        Broadcast(b"\x00\xffdata\n"),
        Broadcast(b"", "red", frozenset({"playing", "lobby"}), "game", "p1", frozenset({"c1"})),
    ],
)
def test_broadcasts_round_trip(broadcast: Broadcast) -> None:
    assert decode(broadcast.encode()) == broadcast


def test_the_header_is_json_not_pickle() -> None:
    raw = Broadcast(b"payload", "red", origin="p1").encode()
    assert raw.startswith(b'AB1\n{"room":"red"')
    assert raw.endswith(b"\npayload")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"pickle", "bad tag"),
        (b"AB1\n{", "not terminated"),
        (b"AB1\n{nope}\n", "not JSON"),
        (b"AB1\n[]\n", "not an object"),
        (b'AB1\n{"room":1,"origin":""}\n', "room must be"),
        (b'AB1\n{"channel":1,"origin":""}\n', "channel must be"),
        (b'AB1\n{"origin":null}\n', "origin must be"),
        (b'AB1\n{"origin":"","stages":[1]}\n', "stages must be"),
        (b'AB1\n{"origin":"","exclude":"c1"}\n', "exclude must be"),
    ],
)
def test_garbage_is_refused(raw: bytes, why: str) -> None:
    with pytest.raises(BroadcastError, match=why):
        decode(raw)


def test_stage_set() -> None:
    assert stage_set(None) is None
    assert stage_set("a") == frozenset({"a"})
    assert stage_set(["a", "b"]) == frozenset({"a", "b"})
