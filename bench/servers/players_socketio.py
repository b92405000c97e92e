"""Kind ``socketio``: the players-per-core game on python-socketio, the baseline.

``socketio.AsyncServer(async_mode="asgi")`` wrapped in ``socketio.ASGIApp``, served by
uvicorn (its default WebSocket implementation, HTTP parser and settings) on uvloop:
``bench.servers.__main__`` runs this kind's event loop on uvloop. python-socketio's
defaults are kept (``async_handlers=True``: each event runs in a task of its own; pings
every 25 s).

Its events: ``join`` (the player number; ``enter_room``), ``input`` (the input's bytes,
as hex text or as a binary attachment: the sequence number is recorded). The 20 Hz game
loop emits each room's 256 B state once per room with ``emit("state", ..., room=)``,
every room's emit started together (``asyncio.gather``); mode ``players`` sends it as
hex text, mode ``players-binary`` as a binary attachment.

The bench extra (``pip install 'aiosocker[bench]'``) brings python-socketio, uvicorn and
uvloop; without them this kind answers ``NA``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

from ..players_common import ROOM_SIZE, TICK_HZ, encode_state
from ..runner import Unavailable
from .base import HOST, Life, Ready


class _Room:
    __slots__ = ("acks", "members", "name", "number")

    def __init__(self, number: int) -> None:
        self.number = number
        self.name = f"room{number}"
        self.acks = [0] * ROOM_SIZE
        self.members = 0


async def socketio_players(mode: str, ready: Ready, life: Life) -> None:
    try:
        import socketio
        import uvicorn
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed (pip install 'aiosocker[bench]')") from exc
    binary = mode == "players-binary"
    sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False)
    rooms: dict[int, _Room] = {}
    players: dict[str, tuple[_Room, int]] = {}

    @sio.on("join")  # type: ignore[untyped-decorator]
    async def join(sid: str, player: int) -> None:
        number, slot = divmod(int(player), ROOM_SIZE)
        room = rooms.get(number)
        if room is None:
            room = rooms[number] = _Room(number)
        await sio.enter_room(sid, room.name)
        room.members += 1
        players[sid] = (room, slot)

    @sio.on("input")  # type: ignore[untyped-decorator]
    async def on_input(sid: str, data: Any) -> None:
        room, slot = players[sid]
        if isinstance(data, str):
            room.acks[slot] = int(data[:8], 16)
        else:
            room.acks[slot] = int.from_bytes(data[:4], "big")

    @sio.on("disconnect")  # type: ignore[untyped-decorator]
    async def disconnect(sid: str, reason: Any = None) -> None:
        entry = players.pop(sid, None)
        if entry is not None:
            entry[0].members -= 1

    app = socketio.ASGIApp(sio)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", access_log=False, backlog=2048
    )
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        for _ in range(200):  # bounded: 10 s
            if server.started or serving.done():
                break
            await asyncio.sleep(0.05)
        if not server.started:
            if serving.done():
                serving.result()
            raise RuntimeError("uvicorn did not start in 10 s")
        ready(sock.getsockname()[1])
        await _game_loop(sio, rooms, life, binary)
    finally:
        server.should_exit = True
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(serving, 5)
        sock.close()


async def _game_loop(sio: Any, rooms: dict[int, _Room], life: Life, binary: bool) -> None:
    loop = asyncio.get_running_loop()
    period = 1 / TICK_HZ
    due = loop.time()
    tick = 0
    while not life.over():
        stamp = time.time()  # the wall clock: the players compare it with arrival times
        tick += 1
        emits = []
        for room in list(rooms.values()):
            if room.members:
                state = encode_state(tick, stamp, room.acks, room.number)
                data: Any = state if binary else state.hex()
                emits.append(sio.emit("state", data, room=room.name))
        if emits:
            await asyncio.gather(*emits, return_exceptions=True)
        due += period
        delay = due - loop.time()
        if delay < 0:
            due, delay = loop.time(), 0.0
        await asyncio.sleep(delay)
