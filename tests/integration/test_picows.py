"""What only the picows transport (``serve(..., transport="picows")``) has to show, with
real clients on 127.0.0.1: its own backlog and read pausing, fragment reassembly, the
hand-off of a connection whose admission waits, its handshake fixes, and its keepalive
bounding a shutdown.

Everything both transports share (stages, hooks, close codes, admission, routes, tick,
flow control, keepalive) is in the other test files, which run on picows too."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidMessage

import aiosocker
from aiosocker import CloseCode, Route
from aiosocker.transports.picows import listener as fast_transport

from .conftest import HOST, Recorder, StartServer, collector, eventually, leftover_tasks
from .test_connections import stalled_peer
from .test_connections import (
    test_messages_are_handled_one_at_a_time_in_order as handled_one_at_a_time_in_order,
)

pytestmark = pytest.mark.transports(
    "picows", reason="these test code of the picows adapter that websockets does not have"
)


def collecting(into: list[bytes]) -> aiosocker.Setup:
    """A setup whose one stage collects every message into ``into``."""

    def setup(conn: aiosocker.Connection) -> None:
        conn.add(collector(into), name="only")

    return setup


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """A plain HTTP/1.1 GET; returns the status and the body."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 2)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# -- receiving: the backlog behind async handlers, fragments --------------------------------


async def test_reading_pauses_and_resumes_again_and_again_behind_a_slow_handler(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shared test with reading paused at every second queued message.
    monkeypatch.setattr(fast_transport, "BACKLOG_PAUSE", 2)
    await handled_one_at_a_time_in_order(start_server)


async def test_fragmented_messages_are_reassembled(start_server: StartServer) -> None:
    seen: list[bytes] = []
    server = await start_server(collecting(seen))
    async with ws_connect(server.url) as ws:
        await ws.send([b"ab", b"cd", b"ef"])  # one message in three frames
        await ws.send(b"next")
        await eventually(lambda: len(seen) == 2, what="two messages")
    assert seen == [b"abcdef", b"next"]


async def test_fragmented_message_over_max_size_closes_with_1009(
    start_server: StartServer, recorder: Recorder
) -> None:
    # A single frame over max_size is refused by picows itself (test_connections);
    # fragments are counted by the adapter, whole frames each within max_size.
    handled: list[bytes] = []
    server = await start_server(collecting(handled), max_size=1000, **recorder.hooks())
    async with ws_connect(server.url) as ws:
        await ws.send([b"x" * 500, b"x" * 500])  # exactly max_size: fine
        await eventually(lambda: len(handled) == 1, what="the first message")
        await ws.send([b"x" * 600, b"x" * 401])
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 2)
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == CloseCode.MESSAGE_TOO_BIG
    await recorder.wait_closed()
    assert recorder.codes()[0][0] == 1009
    assert handled == [b"x" * 1000]


# -- shutdown ---------------------------------------------------------------------------


async def test_no_task_outlives_the_server() -> None:
    before = set(asyncio.all_tasks())

    async def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def slow(message: bytes) -> bool:
            await asyncio.sleep(0.01)
            return False

    # picows' keepalive (its ping_timeout capped at ping_interval) keeps running while
    # the server closes: it bounds how long the silent peer below holds up the shutdown
    # (it never answers our close frame; without keepalive, CLOSE_TIMEOUT would).
    async with aiosocker.serve(setup, HOST, 0, transport="picows", ping_interval=0.05) as server:
        async with aiosocker.connect(server.url) as client:
            for _ in range(5):
                client.write(b"x")
            await asyncio.sleep(0.06)
        stalled = await stalled_peer(server.port)  # open while the server closes
        await eventually(lambda: len(server.connections) == 1, what="the silent peer")
    assert not await leftover_tasks(before)
    stalled[1].close()


# -- admission: the hand-off to picows, the synchronous handshake hook ----------------------


async def test_routes_and_426_with_authenticate(start_server: StartServer) -> None:
    # With authenticate, a front protocol reads each request first and hands every one
    # (routes, 426, the WebSocket) to picows.
    async def authenticate(request: aiosocker.Request) -> bool:
        return True

    def broken() -> bytes:
        raise RuntimeError("route bug")

    routes = {"/health": Route("text/plain", b"ok\n"), "/broken": Route("text/plain", broken)}
    server = await start_server(lambda conn: None, authenticate=authenticate, routes=routes)
    assert await http_get(server.port, "/health") == (200, b"ok\n")
    assert await http_get(server.port, "/broken") == (500, b"internal error\n")
    status, _ = await http_get(server.port, "/")
    assert status == 426
    async with aiosocker.connect(server.url):
        await eventually(lambda: server.connections, what="the connection")


async def test_a_slow_handshake_is_dropped(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fast_transport, "HANDSHAKE_TIMEOUT", 0.05)

    async def authenticate(request: aiosocker.Request) -> bool:
        await asyncio.sleep(10)  # never in time
        return True

    server = await start_server(lambda conn: None, authenticate=authenticate)
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(b"GET / HTTP/1.1\r\n")  # and nothing more
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    with pytest.raises(InvalidMessage):  # dropped: authenticate never ends in time
        async with aiosocker.connect(server.url, open_timeout=2):
            pass


async def test_firefox_connection_header_is_accepted(start_server: StartServer) -> None:
    # picows compares Connection whole; Firefox sends "keep-alive, Upgrade".
    server = await start_server(lambda conn: None)
    reader, writer = await asyncio.open_connection(HOST, server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET / HTTP/1.1",
        f"Host: {HOST}:{server.port}",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"HTTP/1.1 101 "), head
        await eventually(lambda: server.connections, what="the connection")
    finally:
        writer.close()
