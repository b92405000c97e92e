"""Mode ``players`` of the socker kinds: the players-per-core game on ``aiosocker.serve``.

A connection's chain is ``join`` (reads ``JOIN`` + player number, joins its room, takes
its slot, advances) then ``play`` (records the input's sequence number, stays). The game
keeps each room's last input sequence numbers. A 20 Hz game loop (``server.tick()``
first under ``drive="tick"``) builds each room's 256 B state once and sends it to the
room with ``server.broadcast(state, room=...)``, which ``conn.write()``s it to each
member: queued without waiting, as a game loop must.

Where aiosocker has no rooms (``Connection.join``; older versions), the game keeps a list
of each room's connections and ``conn.write()``s to them itself: the same work, since
``server.broadcast(stage=...)`` would walk every connection once per room.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

from ..players_common import ROOM_SIZE, TICK_HZ, encode_state, parse_join
from .base import Life, Ready


class Room:
    __slots__ = ("acks", "members", "name", "number")

    def __init__(self, number: int) -> None:
        self.number = number
        self.name = f"room{number}"
        self.acks = [0] * ROOM_SIZE
        self.members: list[Any] = []


class Game:
    """Rooms of 10 and what the game loop counts (states queued, states dropped)."""

    def __init__(self) -> None:
        from aiosocker import Connection, QueueFullError

        self.queue_full = QueueFullError
        self.library_rooms = hasattr(Connection, "join")
        self.server: Any = None
        self.rooms: dict[int, Room] = {}
        self.sent = 0
        self.dropped = 0
        self.ticks = 0

    def setup(self, conn: Any) -> None:
        acks: list[int] = []
        slot = 0
        rooms = self.rooms
        library_rooms = self.library_rooms

        def join(message: bytes) -> bool:
            nonlocal acks, slot
            number, slot = parse_join(message)
            room = rooms.get(number)
            if room is None:
                room = rooms[number] = Room(number)
            room.members.append(conn)
            if library_rooms:
                conn.join(room.name)
            acks = room.acks

            def leave(conn: Any, code: int, reason: str) -> None:
                if conn in room.members:
                    room.members.remove(conn)

            conn.on_close(leave)
            return True

        def play(message: bytes) -> bool:
            acks[slot] = int.from_bytes(message[:4], "big")
            return False

        conn.add(join, name="join")
        conn.add(play, name="play")

    async def broadcast(self, stamp: float) -> None:
        """One tick's states: each room's built once, sent to each of its players."""
        queue_full = self.queue_full
        tick = self.ticks = self.ticks + 1
        server = self.server if self.library_rooms else None
        for room in self.rooms.values():
            members = room.members
            if not members:
                continue
            state = encode_state(tick, stamp, room.acks, room.number)
            if server is not None:
                self.sent += await server.broadcast(state, room=room.name)
                continue
            for conn in members:
                try:
                    conn.write(state)
                except queue_full:
                    self.dropped += 1
                except Exception:  # closing right now
                    continue
                else:
                    self.sent += 1


async def socker_players(
    ready: Ready, life: Life, *, serve: Any, drive: str, transport: str | None
) -> None:
    """Serve the game with ``serve(setup, drive=..., transport=...)`` (the bench's
    ``socker_serve``) and run its 20 Hz loop until the bench lets go."""
    game = Game()
    async with serve(game.setup, drive=drive, transport=transport) as server:
        game.server = server
        ready(server.port)
        await game_loop(game, server if drive == "tick" else None, life)


async def game_loop(game: Game, ticking: Any, life: Life) -> None:
    """Every 1/20 s: ``ticking.tick()`` (tick drive), then the rooms' states. Sleeps to the
    next due time; a late tick is not caught up in a burst (as ``_socker_run``)."""
    loop = asyncio.get_running_loop()
    period = 1 / TICK_HZ
    due = loop.time()
    while not life.over():
        stamp = time.time()  # the wall clock: the players compare it with arrival times
        if ticking is not None:
            result = ticking.tick()
            if inspect.isawaitable(result):
                await result
        await game.broadcast(stamp)
        due += period
        delay = due - loop.time()
        if delay < 0:
            due, delay = loop.time(), 0.0
        await asyncio.sleep(delay)
