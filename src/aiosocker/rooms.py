"""Rooms and broadcasts, sans-I/O: who is in which room, and a broadcast as data.

:class:`Rooms` is the index a hub keeps of its local members (any hashable member
type; tests use strings). :class:`Broadcast` is one broadcast as it travels between
processes (through Redis pub/sub): :meth:`Broadcast.encode` / :func:`decode` turn it
into bytes and back -- a JSON header (never pickle: whoever can write to the bus must
not be able to run code in the servers) and the payload as it is.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Broadcast", "BroadcastError", "Rooms", "check_room", "decode"]

M = TypeVar("M", bound=Hashable)

MAX_ROOM = 200
"""Longest room name, in characters."""

_MAGIC = b"AB1\n"  # format tag and version of an encoded broadcast


class BroadcastError(ValueError):
    """Bytes that are not an encoded :class:`Broadcast`."""


def check_room(room: object) -> str:
    """``room`` if it is a usable room name, else a ``TypeError``/``ValueError``."""
    if not isinstance(room, str):
        raise TypeError(f"a room is named by a string, got {room!r}")
    if not room or len(room) > MAX_ROOM:
        raise ValueError(f"a room name has 1 to {MAX_ROOM} characters, got {room!r}")
    return room


class Rooms(Generic[M]):
    """Room -> members, and member -> rooms, kept in step."""

    __slots__ = ("_members", "_rooms_of")

    def __init__(self) -> None:
        self._members: dict[str, set[M]] = {}
        self._rooms_of: dict[M, set[str]] = {}

    def join(self, member: M, room: str) -> bool:
        """Put ``member`` in ``room``; ``True`` if it was not there yet."""
        members = self._members.setdefault(check_room(room), set())
        if member in members:
            return False
        members.add(member)
        self._rooms_of.setdefault(member, set()).add(room)
        return True

    def leave(self, member: M, room: str) -> bool:
        """Take ``member`` out of ``room``; ``True`` if it was there."""
        members = self._members.get(room)
        if members is None or member not in members:
            return False
        members.discard(member)
        if not members:
            del self._members[room]  # empty rooms cost nothing
        rooms = self._rooms_of[member]
        rooms.discard(room)
        if not rooms:
            del self._rooms_of[member]
        return True

    def leave_all(self, member: M) -> frozenset[str]:
        """Take ``member`` out of every room; returns the rooms it was in."""
        rooms = frozenset(self._rooms_of.get(member, ()))
        for room in rooms:
            self.leave(member, room)
        return rooms

    def rooms_of(self, member: M) -> frozenset[str]:
        """The rooms ``member`` is in."""
        return frozenset(self._rooms_of.get(member, ()))

    def members(self, room: str) -> frozenset[M]:
        """The members of ``room`` (empty if nobody is in it)."""
        return frozenset(self._members.get(room, ()))

    def iter_members(self, room: str) -> Iterator[M]:
        """The members of ``room``, without a copy: do not join or leave while iterating."""
        return iter(self._members.get(room, ()))

    def count(self, room: str) -> int:
        """How many members ``room`` has."""
        return len(self._members.get(room, ()))

    def snapshot(self) -> Mapping[str, frozenset[M]]:
        """Every non-empty room and its members, as they are now."""
        return {room: frozenset(members) for room, members in self._members.items()}

    def __len__(self) -> int:
        return len(self._members)


@dataclass(frozen=True, slots=True)
class Broadcast:
    """One broadcast: ``data`` to the members of ``room`` (``None``: everyone), only
    those in one of ``stages`` (``None``: any), on the WebSocket or on the rtc
    DataChannel labelled ``channel``. ``origin`` names the process that made it and
    ``exclude`` a connection id there not to send it to."""

    data: bytes
    room: str | None = None
    stages: frozenset[str] | None = None
    channel: str | None = None
    origin: str = ""
    exclude: frozenset[str] = frozenset()

    def encode(self) -> bytes:
        """The bytes that travel between processes."""
        header = {
            "room": self.room,
            "stages": sorted(self.stages) if self.stages is not None else None,
            "channel": self.channel,
            "origin": self.origin,
            "exclude": sorted(self.exclude),
        }
        return _MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + self.data


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BroadcastError(f"{what} must be a list of strings")
    return value


def decode(raw: bytes) -> Broadcast:
    """The :class:`Broadcast` in ``raw``; :class:`BroadcastError` if it is not one."""
    if not raw.startswith(_MAGIC):
        raise BroadcastError("not an aiosocker broadcast (bad tag)")
    end = raw.find(b"\n", len(_MAGIC))
    if end < 0:
        raise BroadcastError("broadcast header not terminated")
    try:
        header = json.loads(raw[len(_MAGIC) : end])
    except ValueError as exc:
        raise BroadcastError(f"broadcast header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise BroadcastError("broadcast header is not an object")
    room, channel, origin = header.get("room"), header.get("channel"), header.get("origin")
    stages = header.get("stages")
    for name, value in (("room", room), ("channel", channel)):
        if value is not None and not isinstance(value, str):
            raise BroadcastError(f"{name} must be a string or null")
    if not isinstance(origin, str):
        raise BroadcastError("origin must be a string")
    return Broadcast(
        raw[end + 1 :],
        room,
        None if stages is None else frozenset(_strings(stages, "stages")),
        channel,
        origin,
        frozenset(_strings(header.get("exclude", []), "exclude")),
    )


def stage_set(stage: str | Iterable[str] | None) -> frozenset[str] | None:
    """``broadcast(stage=...)``'s argument as a set (``None``: any stage)."""
    if stage is None:
        return None
    return frozenset((stage,)) if isinstance(stage, str) else frozenset(stage)
