"""Kinds of the rooms figures (:mod:`bench.figures.rooms`; wire formats in
:mod:`bench.rooms_common`).

* ``fanout-raw``: a raw ``websockets`` server whose room is a set of connections, and a
  broadcast is ``websockets.broadcast(room, data)`` (the floor socker is compared with).
* ``fanout-socker`` / ``fanout-socker-picows``: ``aiosocker.serve`` on the websockets /
  picows transport; ``JOIN`` does ``conn.join(room)``, a broadcast is
  ``await server.broadcast(data, room=room)``.

  All three (mode ``fanout``) run without keepalive pings: the receivers count bytes.
* ``redis-socker``: ``aiosocker.serve(..., redis=URL)`` on the URL in ``$BENCH_REDIS_URL``,
  mode ``latency`` (no resume) or ``resume`` (``resume=15``). The chain is ``hello``
  (``hello:NAME``: keep the name, join ``match``, answer ``welcome``, advance) then
  ``playing``: ``move`` answers ``moved N`` (N counted in ``conn.state``), and
  ``burst:ROOM:COUNT:INTERVAL_MS`` broadcasts COUNT stamped messages to ROOM.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ..players_common import JOIN_MAGIC
from ..rooms_common import (
    FANOUT_ROOM,
    LATENCY_ROOM,
    REDIS_ENV,
    RESUME_GRACE_S,
    fanout_payload,
    parse_go,
    stamped,
)
from ..runner import Unavailable
from .base import HOST, Life, Ready

MEMBERS_WAIT_S = 20.0
"""How long a GO waits for the room to hold the members it names."""

_tasks: set[asyncio.Task[None]] = set()


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _fanout(
    go: tuple[int, int, int],
    members: Callable[[], int],
    broadcast: Callable[[bytes], Coroutine[Any, Any, None] | None],
) -> None:
    """Wait for the members, then ``count`` broadcasts, each followed by a yield; print
    ``FANOUT <start> <end> <cpu_ns>`` (or ``FANOUT_ERR <why>``)."""
    want, count, size = go
    deadline = time.monotonic() + MEMBERS_WAIT_S
    while members() < want:
        if time.monotonic() > deadline:
            print(f"FANOUT_ERR {members()} of {want} members joined", flush=True)
            return
        await asyncio.sleep(0.005)
    payload = fanout_payload(size)
    start, c0 = time.time(), time.process_time_ns()
    for _ in range(count):
        pending = broadcast(payload)
        if pending is not None:
            await pending
        await asyncio.sleep(0)
    end, c1 = time.time(), time.process_time_ns()
    print(f"FANOUT {start!r} {end!r} {c1 - c0}", flush=True)


async def fanout_raw(mode: str, ready: Ready, life: Life) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    room: set[ServerConnection] = set()

    def send(payload: bytes) -> None:
        broadcast(room, payload)

    async def handler(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                if not isinstance(message, bytes):
                    continue
                if message.startswith(JOIN_MAGIC):
                    room.add(ws)
                    continue
                go = parse_go(message)
                if go is not None:
                    _spawn(_fanout(go, lambda: len(room), send))
        finally:
            room.discard(ws)

    async with serve(handler, HOST, 0, compression=None, ping_interval=None) as server:
        ready(server.sockets[0].getsockname()[1])
        await life.wait()


def _socker_options(transport: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {"ping_interval": None}
    if transport is not None:
        options["transport"] = transport
    return options


async def _fanout_socker(ready: Ready, life: Life, transport: str | None) -> None:
    import aiosocker

    server: Any = None

    async def send(payload: bytes) -> None:
        await server.broadcast(payload, room=FANOUT_ROOM)

    def members() -> int:
        return len(server.rooms.get(FANOUT_ROOM, ()))

    def setup(conn: Any) -> None:
        def lobby(message: bytes) -> bool:
            if message.startswith(JOIN_MAGIC):
                conn.join(FANOUT_ROOM)
                return False
            go = parse_go(message)
            if go is not None:
                _spawn(_fanout(go, members, send))
            return False

        conn.add(lobby, name="lobby")

    try:
        server = aiosocker.serve(setup, HOST, 0, **_socker_options(transport))
        await server.start()
    except (ValueError, NotImplementedError, ImportError) as exc:
        if transport is None:
            raise
        raise Unavailable(f"aiosocker.serve(transport={transport!r}): {exc}") from exc
    try:
        ready(server.port)
        await life.wait()
    finally:
        await server.close()


async def fanout_socker(mode: str, ready: Ready, life: Life) -> None:
    await _fanout_socker(ready, life, None)


async def fanout_socker_picows(mode: str, ready: Ready, life: Life) -> None:
    await _fanout_socker(ready, life, "picows")


# -- on Redis --------------------------------------------------------------------------


async def redis_socker(mode: str, ready: Ready, life: Life) -> None:
    import aiosocker

    url = os.environ.get(REDIS_ENV)
    if not url:
        raise Unavailable(f"no Redis URL in ${REDIS_ENV}")
    server: Any = None

    async def burst(room: str, count: int, interval: float) -> None:
        for seq in range(count):
            await server.broadcast(stamped(seq, time.time()), room=room)
            await asyncio.sleep(interval)

    def setup(conn: Any) -> None:
        @conn.stage()
        def hello(message: bytes) -> bool:
            verb, _, name = message.partition(b":")
            if verb != b"hello":
                return False
            conn.state["name"] = name.decode()
            conn.join(LATENCY_ROOM)
            conn.write(b"welcome")
            return True

        @conn.stage()
        def playing(message: bytes) -> bool:
            if message == b"move":
                conn.state["moves"] = conn.state.get("moves", 0) + 1
                conn.write(b"moved %d" % conn.state["moves"])
            elif message.startswith(b"burst:"):
                _, room, count, interval_ms = message.decode().split(":")
                _spawn(burst(room, int(count), float(interval_ms) / 1000))
            return False

    resume = RESUME_GRACE_S if mode == "resume" else None
    server = aiosocker.serve(setup, HOST, 0, redis=url, resume=resume)
    async with server:
        ready(server.port)
        await life.wait()
