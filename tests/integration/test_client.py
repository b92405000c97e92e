"""The Python client: its own chain, refusals, and reconnecting with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

import aiosocker

from .conftest import Recorder, StartServer, collector, eventually

FAST = aiosocker.Backoff(initial=0.05, maximum=0.2)


def welcome(conn: aiosocker.Connection) -> None:
    conn.on_open(lambda conn: conn.write(b"welcome"))
    conn.add(lambda message: False, name="lobby")


async def test_reconnect_after_a_server_restart(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(welcome)
    port = server.port
    seen: list[tuple[int, bytes]] = []
    attempts = 0
    restarted: list[aiosocker.Server] = []

    def setup(conn: aiosocker.Connection) -> None:
        nonlocal attempts
        attempts += 1
        number = attempts
        conn.add(lambda message: seen.append((number, message)) or False, name="updates")

    async def restart_later() -> None:
        await asyncio.sleep(0.3)  # the client retries meanwhile
        restarted.append(await start_server(welcome, port=port))

    restart: asyncio.Task[None] | None = None
    with caplog.at_level(logging.INFO, logger="aiosocker"):
        async with asyncio.timeout(5):
            reconnecting = aiosocker.connect(server.url, setup, backoff=FAST)
            async with contextlib.aclosing(aiter(reconnecting)) as connections:
                async for conn in connections:
                    await eventually(lambda: (attempts, b"welcome") in seen, what="welcome")
                    if attempts == 1:
                        await server.close()  # the connection ends with 1001 ...
                        await asyncio.wait_for(conn.wait_closed(), 2)
                        assert conn.close_code == aiosocker.CloseCode.GOING_AWAY
                        restart = asyncio.create_task(restart_later())
                        continue  # ... and the loop connects again
                    assert not conn.closed
                    break
    assert restart is not None and restart.done()
    assert attempts == 2
    assert seen == [(1, b"welcome"), (2, b"welcome")]
    assert restarted[0].port == port
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert retries, "the client should have retried while the server was down"


async def test_reconnecting_raises_when_refused_for_good(start_server: StartServer) -> None:
    server = await start_server(welcome)
    with pytest.raises(aiosocker.HandshakeRejected) as caught:
        async with asyncio.timeout(2):
            reconnecting = aiosocker.connect(
                server.url, origin="https://evil.example", backoff=FAST
            )
            async for _ in reconnecting:
                pytest.fail("should not connect")
    assert caught.value.status == 403


async def test_reconnecting_waits_out_a_full_server(start_server: StartServer) -> None:
    server = await start_server(welcome, max_connections=1)
    async with asyncio.timeout(5):
        first = aiosocker.connect(server.url)
        holder = await first.__aenter__()

        async def leave_later() -> None:
            await asyncio.sleep(0.2)
            await first.__aexit__(None, None, None)

        leaving = asyncio.create_task(leave_later())
        async with contextlib.aclosing(aiter(aiosocker.connect(server.url, backoff=FAST))) as it:
            async for conn in it:
                assert holder.closed  # got in only once the first one left
                assert not conn.closed
                break
        await leaving


async def test_connecting_to_a_closed_port_raises_oserror() -> None:
    with pytest.raises(OSError):
        async with aiosocker.connect("ws://127.0.0.1:1/", open_timeout=1):
            pass


async def test_client_side_failures_close_with_the_same_codes(
    start_server: StartServer, recorder: Recorder
) -> None:
    server = await start_server(welcome, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:

        @client.stage()
        def scene(message: bytes) -> bool:
            raise ValueError("cannot build the scene")

        await asyncio.wait_for(client.wait_closed(), 2)
    assert (client.close_code, client.close_reason) == (1011, "stage 'scene' raised ValueError")
    assert isinstance(client.error, ValueError)
    await recorder.wait_closed()
    assert recorder.codes() == [(1011, "stage 'scene' raised ValueError")]


async def test_client_stage_timeout(start_server: StartServer) -> None:
    server = await start_server(lambda conn: conn.add(collector([]), name="quiet"))
    async with aiosocker.connect(server.url) as client:
        client.add(lambda message: True, name="scene", timeout=0.1)
        await asyncio.wait_for(client.wait_closed(), 2)
    assert client.close_code == 4408
    assert client.close_reason == "stage 'scene' timed out after 0.1 s"


async def test_client_setup_failure_closes_and_raises(
    start_server: StartServer, recorder: Recorder
) -> None:
    server = await start_server(welcome, **recorder.hooks())

    def setup(conn: aiosocker.Connection) -> None:
        raise RuntimeError("broken client setup")

    with pytest.raises(RuntimeError, match="broken client setup"):
        async with aiosocker.connect(server.url, setup):
            pass
    await recorder.wait_closed()
    assert recorder.codes() == [(1011, "client setup failed")]


async def test_client_tick_mode(start_server: StartServer) -> None:
    server = await start_server(welcome)
    got: list[bytes] = []
    async with aiosocker.connect(server.url, drive="tick") as client:
        client.add(collector(got), name="updates")
        await eventually(lambda: client.pending == 1, what="the welcome to wait")
        assert got == []
        assert client.poll() == 1
        assert got == [b"welcome"]


async def test_one_connect_object_opens_one_connection(start_server: StartServer) -> None:
    server = await start_server(welcome)
    connecting = aiosocker.connect(server.url)
    async with connecting:
        with pytest.raises(RuntimeError, match="already in use"):
            await connecting.__aenter__()
    with pytest.raises(ValueError, match="ws://"):
        aiosocker.connect("http://127.0.0.1/")
