"""drive="tick": messages wait in each connection's inbox until ``server.tick()``, on
both server transports."""

from __future__ import annotations

import asyncio
import time

import pytest

import aiosocker

from .conftest import Recorder, StartServer, collector, eventually


def only_connection(server: aiosocker.Server) -> aiosocker.Connection:
    (conn,) = server.connections.values()
    return conn


async def wait_pending(server: aiosocker.Server, count: int) -> aiosocker.Connection:
    await eventually(lambda: server.connections, what="the connection")
    conn = only_connection(server)
    await eventually(lambda: conn.pending == count, what=f"{count} pending messages")
    return conn


async def test_nothing_is_handled_until_tick(start_server: StartServer) -> None:
    handled: list[bytes] = []

    def setup(conn: aiosocker.Connection) -> None:
        conn.add(collector(handled), name="lobby")

    server = await start_server(setup, drive="tick")
    assert server.tick() == 0
    async with aiosocker.connect(server.url) as client:
        for message in (b"a", b"b", b"c"):
            client.write(message)
        conn = await wait_pending(server, 3)
        await asyncio.sleep(0.05)
        assert handled == []  # queued, not handled
        assert server.tick() == 3  # everything pending, in one call
        assert handled == [b"a", b"b", b"c"]
        assert conn.pending == 0
        assert server.tick() == 0  # nothing new: returns at once


async def test_tick_handles_every_connection(start_server: StartServer) -> None:
    handled: list[tuple[str, bytes]] = []

    def setup(conn: aiosocker.Connection) -> None:
        conn.add(lambda message: handled.append((conn.id, message)) or False, name="lobby")

    server = await start_server(setup, drive="tick")
    async with aiosocker.connect(server.url) as one, aiosocker.connect(server.url) as two:
        one.write(b"1a")
        two.write(b"2a")
        one.write(b"1b")
        await eventually(
            lambda: sum(c.pending for c in server.connections.values()) == 3,
            what="three pending messages",
        )
        assert server.tick() == 3
        by_conn: dict[str, list[bytes]] = {}
        for conn_id, message in handled:
            by_conn.setdefault(conn_id, []).append(message)
        assert sorted(by_conn.values()) == [[b"1a", b"1b"], [b"2a"]]


async def test_stages_advance_in_tick_mode(start_server: StartServer) -> None:
    def setup(conn: aiosocker.Connection) -> None:
        conn.add(lambda message: message == b"hello", name="hello")
        conn.add(lambda message: True, name="ready")
        conn.add(lambda message: False, name="playing")

    server = await start_server(setup, drive="tick")
    async with aiosocker.connect(server.url) as client:
        for message in (b"nope", b"hello", b"ready"):
            client.write(message)
        conn = await wait_pending(server, 3)
        assert conn.current == "hello"
        server.tick()
        assert conn.current == "playing"


async def test_async_handler_in_tick_mode_keeps_order_without_blocking(
    start_server: StartServer,
) -> None:
    handled: list[bytes] = []

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def lobby(message: bytes) -> bool:
            await asyncio.sleep(0.03)
            handled.append(message)
            return False

    server = await start_server(setup, drive="tick")
    async with aiosocker.connect(server.url) as client:
        for message in (b"a", b"b", b"c"):
            client.write(message)
        conn = await wait_pending(server, 3)
        assert server.tick() == 1  # starts "a" as a task; "b" and "c" wait for it
        assert handled == [] and conn.pending == 2
        assert server.tick() == 0  # "a" still running: nothing else may start
        deadline = time.monotonic() + 2
        while len(handled) < 3 and time.monotonic() < deadline:
            server.tick()
            await asyncio.sleep(1 / 120)  # a frame
        assert handled == [b"a", b"b", b"c"]


async def test_a_raising_handler_stops_the_tick_for_that_connection(
    start_server: StartServer, recorder: Recorder
) -> None:
    handled: list[bytes] = []

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        def lobby(message: bytes) -> bool:
            handled.append(message)
            if message == b"boom":
                raise ValueError("bad")
            return False

    server = await start_server(setup, drive="tick", **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        for message in (b"a", b"boom", b"c"):
            client.write(message)
        await wait_pending(server, 3)
        server.tick()
        assert handled == [b"a", b"boom"]  # "c" never reaches a handler
        await asyncio.wait_for(client.wait_closed(), 2)
    assert (client.close_code, client.close_reason) == (1011, "stage 'lobby' raised ValueError")


async def test_full_inbox_pushes_back_on_the_peer(start_server: StartServer) -> None:
    handled: list[bytes] = []

    def setup(conn: aiosocker.Connection) -> None:
        conn.add(collector(handled), name="lobby")

    server = await start_server(setup, drive="tick", max_queue=4)
    sent = [f"m{i}".encode() for i in range(10)]
    async with aiosocker.connect(server.url) as client:
        for message in sent:
            client.write(message)
        conn = await wait_pending(server, 4)
        await asyncio.sleep(0.05)
        assert conn.pending == 4  # reading stopped at max_queue
        deadline = time.monotonic() + 2
        while len(handled) < len(sent) and time.monotonic() < deadline:
            server.tick()
            await asyncio.sleep(0.005)
            assert conn.pending <= 4  # never more than max_queue waits
    assert handled == sent


async def test_stage_timeouts_fire_without_ticks(
    start_server: StartServer, recorder: Recorder
) -> None:
    def setup(conn: aiosocker.Connection) -> None:
        conn.add(lambda message: False, name="handshake", timeout=0.1)

    server = await start_server(setup, drive="tick", **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        await asyncio.wait_for(client.wait_closed(), 2)
    assert client.close_code == aiosocker.CloseCode.STAGE_TIMEOUT
    assert "'handshake'" in client.close_reason


async def test_tick_is_only_for_tick_mode(start_server: StartServer) -> None:
    server = await start_server(lambda conn: None)
    with pytest.raises(RuntimeError, match="drive='tick'"):
        server.tick()
    async with aiosocker.connect(server.url):
        await eventually(lambda: server.connections, what="the connection")
        with pytest.raises(RuntimeError, match="poll"):
            only_connection(server).poll()
