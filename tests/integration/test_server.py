"""The server as a whole: broadcast, the registry, shutdown options, on both server
transports."""

from __future__ import annotations

import asyncio
import logging

import pytest

import aiosocker

from .conftest import StartServer, collector, eventually, fill_write_queue
from .test_connections import stalled_peer


def lobby_then_playing(conn: aiosocker.Connection) -> None:
    conn.add(lambda message: message == b"play", name="lobby")
    conn.add(lambda message: False, name="playing")


async def test_broadcast_to_all_by_stage_and_excluding(start_server: StartServer) -> None:
    server = await start_server(lobby_then_playing)
    inboxes: dict[str, list[bytes]] = {"a": [], "b": [], "c": []}
    async with (
        aiosocker.connect(server.url) as a,
        aiosocker.connect(server.url) as b,
        aiosocker.connect(server.url) as c,
    ):
        for name, client in (("a", a), ("b", b), ("c", c)):
            client.add(collector(inboxes[name]), name="inbox")
        await c.send(b"play")
        await eventually(
            lambda: (
                sorted(conn.current for conn in server.connections.values())
                == ["lobby", "lobby", "playing"]
            ),
            what="two in the lobby, one playing",
        )
        by_stage = {conn.current: conn for conn in server.connections.values()}
        lobby_conns = [conn for conn in server.connections.values() if conn.current == "lobby"]

        assert await server.broadcast(b"everyone") == 3
        assert await server.broadcast(b"players", stage="playing") == 1
        assert await server.broadcast(b"not-first", exclude=lobby_conns[0]) == 2
        assert await server.broadcast(b"both", stage=["lobby", "playing"], exclude=[]) == 3
        assert await server.broadcast(b"nobody", stage="lobby", exclude=lobby_conns) == 0
        await eventually(
            lambda: sum(len(inbox) for inbox in inboxes.values()) == 3 + 1 + 2 + 3,
            what="every broadcast",
        )
    assert inboxes["c"] == [b"everyone", b"players", b"not-first", b"both"]
    lobby_inboxes = sorted([inboxes["a"], inboxes["b"]])
    assert lobby_inboxes == [
        [b"everyone", b"both"],
        [b"everyone", b"not-first", b"both"],
    ]
    assert by_stage["playing"].current == "playing"


async def test_broadcast_by_stage_skips_a_connection_still_in_setup(
    start_server: StartServer,
) -> None:
    release = asyncio.Event()

    async def setup(conn: aiosocker.Connection) -> None:
        if conn.request.query == "slow":
            await release.wait()  # no stages yet while this waits
        lobby_then_playing(conn)

    server = await start_server(setup)
    try:
        async with aiosocker.connect(server.url) as ready, aiosocker.connect(server.url + "?slow"):
            ready.add(collector([]), name="inbox")
            await eventually(lambda: len(server.connections) == 2, what="two connections")
            assert await server.broadcast(b"hi", stage="lobby") == 1
            assert await server.broadcast(b"hi") == 2  # without a stage filter: everyone
    finally:
        release.set()


async def test_broadcast_never_waits_for_a_slow_peer(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(lobby_then_playing, max_queue=2)
    async with aiosocker.connect(server.url) as slow:
        slow.add(collector([]), name="inbox")
        await eventually(lambda: len(server.connections) == 1, what="the slow connection")
        (full,) = server.connections.values()
        async with aiosocker.connect(server.url) as fast:
            got: list[bytes] = []
            fast.add(collector(got), name="inbox")
            await eventually(lambda: len(server.connections) == 2, what="two connections")
            # The slow one stops reading: its socket buffers fill, then its queue of 2.
            assert fill_write_queue(full, slow) >= 2
            with caplog.at_level(logging.WARNING, logger="aiosocker"):
                assert await server.broadcast(b"news") == 1
            assert any("not keeping up" in r.getMessage() for r in caplog.records)
            await eventually(lambda: b"news" in got, what="delivery to the fast one")
        slow._transport.ws.transport.resume_reading()  # type: ignore[attr-defined]


async def test_close_with_a_custom_code(start_server: StartServer) -> None:
    server = await start_server(lobby_then_playing)
    async with aiosocker.connect(server.url) as client:
        await eventually(lambda: server.connections, what="the connection")
        await server.close(1012, "restarting")
        await asyncio.wait_for(client.wait_closed(), 2)
    assert (client.close_code, client.close_reason) == (1012, "restarting")


async def test_server_options_are_checked() -> None:  # no server: one run
    with pytest.raises(ValueError, match="path"):
        aiosocker.serve(lobby_then_playing, path="ws")
    with pytest.raises(ValueError, match="drive"):
        aiosocker.serve(lobby_then_playing, drive="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_connections"):
        aiosocker.serve(lobby_then_playing, max_connections=0)
    with pytest.raises(ValueError, match="transport"):
        aiosocker.serve(lobby_then_playing, transport="pigeon")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="setup"):
        aiosocker.serve("not a function")  # type: ignore[arg-type]
    server = aiosocker.serve(lobby_then_playing, port=0)
    with pytest.raises(RuntimeError, match="not listening"):
        _ = server.port


async def test_close_timeout_bounds_shutdown_with_a_silent_peer(
    start_server: StartServer,
) -> None:
    ended: list[int] = []
    server = await start_server(
        lambda conn: None,
        close_timeout=0.3,
        ping_interval=None,
        on_close=lambda conn, code, reason: ended.append(code),
    )
    _, writer = await stalled_peer(server.port)  # never answers the close frame
    try:
        await eventually(lambda: server.connections, what="the silent peer")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(server.close(), 5)
        assert loop.time() - started < 3  # not the 10 s default
        assert ended == [aiosocker.CloseCode.GOING_AWAY]
        assert not server.connections
    finally:
        writer.close()


async def test_shutdown_stops_a_setup_that_never_returns(start_server: StartServer) -> None:
    entered = asyncio.Event()

    async def setup(conn: aiosocker.Connection) -> None:
        entered.set()
        await asyncio.Event().wait()  # never returns

    ended: list[int] = []
    server = await start_server(setup, on_close=lambda conn, code, reason: ended.append(code))
    async with aiosocker.connect(server.url) as client:
        await asyncio.wait_for(entered.wait(), 5)
        await asyncio.wait_for(server.close(), 5)
        await asyncio.wait_for(client.wait_closed(), 5)
        assert client.close_code == aiosocker.CloseCode.GOING_AWAY
    assert ended == [aiosocker.CloseCode.GOING_AWAY]
    assert not server.connections
