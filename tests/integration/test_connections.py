"""Real servers and real clients on 127.0.0.1: the staged exchange, every close code,
hooks, connection properties, write() and its queue, ordering, isolation, keepalive.
Each test runs on both server transports (see conftest)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import struct
import time
from unittest.mock import ANY

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

import aiosocker
from aiosocker import CloseCode

from .conftest import HOST, Recorder, StartServer, collector, eventually, fill_write_queue

# -- the exchange of the Go README ----------------------------------------------------

SCENE = b"scene:player-1,player-2,crate-7"


async def go_readme_server(conn: aiosocker.Connection) -> None:
    """The Go README's Server.go, one stage per handler."""
    conn.state["data"] = []

    @conn.stage()
    async def hello(message: bytes) -> bool:
        # Client connects and sends a message: send all buffered data.
        await conn.send(SCENE)
        return True

    @conn.stage(timeout=5)
    async def handshake(message: bytes) -> bool:
        # Client sent the handshake for WebRTC: create the channel, send the offer.
        if message != b"ready":
            return False
        await conn.send(b"offer:v=0")
        return True

    @conn.stage(timeout=5)
    def answer(message: bytes) -> bool:
        # Client sent the answer: set it as the remote description.
        conn.state["answer"] = message
        return True

    @conn.stage()
    def playing(message: bytes) -> bool:
        # Done: any data that must reach the server. The final stage stays.
        conn.state["data"].append(message)
        conn.write(b"ack:" + message)
        return False


async def test_full_staged_exchange_of_the_go_readme(
    start_server: StartServer, recorder: Recorder
) -> None:
    server = await start_server(go_readme_server, **recorder.hooks())
    assert server.port != 0
    assert server.url == f"ws://{HOST}:{server.port}/"
    acks: list[bytes] = []

    async with aiosocker.connect(server.url) as client:
        # The Go README's Client.go.
        @client.stage()
        async def scene(message: bytes) -> bool:
            client.state["scene"] = message  # create all entities
            await client.send(b"ready")  # ask for the WebRTC connection
            return True

        @client.stage()
        async def offer(message: bytes) -> bool:
            client.state["offer"] = message  # set remote description, create answer
            await client.send(b"answer:v=0")
            return True

        client.add(collector(acks), name="final")

        await client.send(b"hello")
        await eventually(lambda: client.current == "final", what="client's final stage")
        client.write(b"state:1")
        client.write(b"state:2")
        await eventually(lambda: len(acks) == 2, what="two acks")

        (conn,) = server.connections.values()
        assert conn.current == "playing"
        assert [e.stage for e in conn.stages.history] == [
            "hello",
            "handshake",
            "answer",
            "playing",
        ]
        assert conn.state == {"answer": b"answer:v=0", "data": [b"state:1", b"state:2"]}
        assert client.state == {"scene": SCENE, "offer": b"offer:v=0"}
        assert [e.stage for e in client.stages.history] == ["scene", "offer", "final"]
        assert acks == [b"ack:state:1", b"ack:state:2"]
        assert recorder.opened == [conn]
        assert conn.latency == 0  # no keepalive round trip yet (ping_interval=20)

    await recorder.wait_closed()
    assert recorder.codes() == [(CloseCode.NORMAL, "")]
    assert recorder.errors == []


# -- close codes ----------------------------------------------------------------------


async def test_text_frame_closes_with_1003(start_server: StartServer, recorder: Recorder) -> None:
    handled: list[bytes] = []

    def setup(conn: aiosocker.Connection) -> None:
        conn.add(collector(handled), name="only")

    server = await start_server(setup, **recorder.hooks())
    async with ws_connect(server.url) as ws:
        await ws.send("this is text")
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 2)
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == CloseCode.UNSUPPORTED_DATA == 1003
    assert "binary" in caught.value.rcvd.reason
    await recorder.wait_closed()
    assert recorder.codes()[0][0] == 1003
    assert handled == []


async def test_text_ignore_keeps_the_connection_and_logs(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[bytes] = []

    def setup(conn: aiosocker.Connection) -> None:
        conn.add(collector(handled), name="only")

    server = await start_server(setup, text="ignore")
    with caplog.at_level(logging.INFO, logger="aiosocker"):
        async with ws_connect(server.url) as ws:
            await ws.send("ignore me")
            await ws.send(b"binary")
            await eventually(lambda: handled == [b"binary"], what="the binary message")
            (conn,) = server.connections.values()
            assert not conn.closed
    assert any("ignored a text frame" in r.getMessage() for r in caplog.records)


async def test_message_over_max_size_closes_with_1009(
    start_server: StartServer, recorder: Recorder
) -> None:
    handled: list[bytes] = []

    def setup(conn: aiosocker.Connection) -> None:
        conn.add(collector(handled), name="only")

    server = await start_server(setup, max_size=1000, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        await client.send(b"x" * 1000)  # exactly max_size: fine
        await eventually(lambda: len(handled) == 1, what="the first message")
        await client.send(b"x" * 1001)
        await asyncio.wait_for(client.wait_closed(), 2)
    assert client.close_code == CloseCode.MESSAGE_TOO_BIG == 1009
    await recorder.wait_closed()
    assert recorder.codes()[0][0] == 1009
    assert len(handled) == 1


async def test_client_max_size_closes_with_1009(
    start_server: StartServer, recorder: Recorder
) -> None:
    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def only(message: bytes) -> bool:
            await conn.send(b"y" * 5000)
            return False

    server = await start_server(setup, **recorder.hooks())
    async with aiosocker.connect(server.url, max_size=4096) as client:
        client.add(collector([]), name="only")
        await client.send(b"big one please")
        await asyncio.wait_for(client.wait_closed(), 2)
    assert client.close_code == 1009
    await recorder.wait_closed()
    assert recorder.codes()[0][0] == 1009


async def test_raising_handler_closes_with_1011_naming_the_stage(
    start_server: StartServer, recorder: Recorder
) -> None:
    boom = ValueError("bad input")
    handled: list[bytes] = []

    def setup(conn: aiosocker.Connection) -> None:
        conn.add(lambda message: True, name="hello")

        @conn.stage()
        def parse(message: bytes) -> bool:
            handled.append(message)
            if message == b"boom":
                raise boom
            return False

    server = await start_server(setup, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        # Three messages in a row: the one after the failure must not be handled.
        for message in (b"hello", b"ok", b"boom", b"after"):
            client.write(message)
        await asyncio.wait_for(client.wait_closed(), 2)
    assert client.close_code == CloseCode.INTERNAL_ERROR == 1011
    assert client.close_reason == "stage 'parse' raised ValueError"
    await recorder.wait_closed()
    assert recorder.codes() == [(1011, "stage 'parse' raised ValueError")]
    assert [exc for _, exc in recorder.errors] == [boom]
    assert handled == [b"ok", b"boom"]
    assert recorder.closed[0][0].error is boom


async def test_async_handler_raising_closes_with_1011(
    start_server: StartServer, recorder: Recorder
) -> None:
    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def lobby(message: bytes) -> bool:
            await asyncio.sleep(0)
            raise KeyError(message)

    server = await start_server(setup, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        await client.send(b"x")
        await asyncio.wait_for(client.wait_closed(), 2)
    assert (client.close_code, client.close_reason) == (1011, "stage 'lobby' raised KeyError")
    await recorder.wait_closed()
    assert isinstance(recorder.errors[0][1], KeyError)


async def test_running_past_the_last_stage_closes_with_1011(
    start_server: StartServer, recorder: Recorder
) -> None:
    def setup(conn: aiosocker.Connection) -> None:
        conn.add(lambda message: True, name="hello")
        conn.add(lambda message: True, name="final")  # wrong: a final stage should stay

    server = await start_server(setup, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        await client.send(b"1")
        await client.send(b"2")
        await asyncio.wait_for(client.wait_closed(), 2)
    assert client.close_code == 1011
    assert client.close_reason == "stage 'final' ran past the last stage"
    await recorder.wait_closed()
    assert isinstance(recorder.errors[0][1], aiosocker.OutOfStagesError)


async def test_failing_setup_closes_with_1011(
    start_server: StartServer, recorder: Recorder
) -> None:
    def setup(conn: aiosocker.Connection) -> None:
        raise RuntimeError("no database")

    server = await start_server(setup, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        await asyncio.wait_for(client.wait_closed(), 2)
    assert (client.close_code, client.close_reason) == (1011, "setup raised RuntimeError")
    await recorder.wait_closed()
    assert recorder.opened == []  # on_open runs only after a successful setup


async def test_stage_timeout_closes_with_4408_naming_the_stage(
    start_server: StartServer, recorder: Recorder
) -> None:
    def setup(conn: aiosocker.Connection) -> None:
        conn.add(lambda message: True, name="hello")  # no timeout
        conn.add(lambda message: False, name="handshake", timeout=0.2)

    server = await start_server(setup, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        await asyncio.sleep(0.3)  # "hello" has no timeout: still open
        assert not client.closed
        started = time.monotonic()
        await client.send(b"hello")
        await asyncio.wait_for(client.wait_closed(), 2)
        elapsed = time.monotonic() - started
    assert elapsed >= 0.15  # never early (late is bounded by wait_for above)
    assert client.close_code == CloseCode.STAGE_TIMEOUT == 4408
    assert client.close_reason == "stage 'handshake' timed out after 0.2 s"
    await recorder.wait_closed()
    assert recorder.codes() == [(4408, "stage 'handshake' timed out after 0.2 s")]
    (exc,) = [exc for _, exc in recorder.errors]
    assert isinstance(exc, aiosocker.StageTimeoutError)
    assert exc.stage == "handshake"


async def test_advancing_in_time_cancels_the_stage_timeout(start_server: StartServer) -> None:
    def setup(conn: aiosocker.Connection) -> None:
        conn.add(lambda message: True, name="hello", timeout=0.2)
        conn.add(lambda message: False, name="playing")

    server = await start_server(setup)
    async with aiosocker.connect(server.url) as client:
        await client.send(b"hello")
        await asyncio.sleep(0.4)
        assert not client.closed
        (conn,) = server.connections.values()
        assert conn.current == "playing"


async def test_client_close_codes_reach_both_sides(
    start_server: StartServer, recorder: Recorder
) -> None:
    server = await start_server(lambda conn: None, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        await client.close(CloseCode.NORMAL, "done playing")
        assert client.closed  # close() returns once the close hooks ran
    assert (client.close_code, client.close_reason) == (1000, "done playing")
    async with aiosocker.connect(server.url) as client:
        await client.close(4002, "leaving")  # an application's own code
    await recorder.wait_closed(2)
    assert recorder.codes() == [(1000, "done playing"), (4002, "leaving")]


async def test_handler_awaiting_its_own_close(
    start_server: StartServer, recorder: Recorder
) -> None:
    after_close: list[bool] = []

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def lobby(message: bytes) -> bool:
            if message == b"kick":
                await conn.close(4001, "kicked")  # an application's own code
                after_close.append(conn.closed)
            return False

    server = await start_server(setup, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        await client.send(b"kick")
        await asyncio.wait_for(client.wait_closed(), 2)
    assert (client.close_code, client.close_reason) == (4001, "kicked")
    await recorder.wait_closed()
    assert recorder.codes() == [(4001, "kicked")]
    assert after_close == [False]  # the hooks run after the handler returns
    await eventually(lambda: not server.connections, what="the registry to empty")
    with pytest.raises(aiosocker.ConnectionClosedError):
        await recorder.closed[0][0].send(b"late")  # the server's side, closed


async def test_server_shutdown_closes_with_1001_and_awaits_hooks(
    start_server: StartServer,
) -> None:
    finished: list[tuple[str, int, str]] = []

    async def slow_on_close(conn: aiosocker.Connection, code: int, reason: str) -> None:
        await asyncio.sleep(0.05)
        finished.append((conn.id, code, reason))

    server = await start_server(lambda conn: None, on_close=slow_on_close)
    async with aiosocker.connect(server.url) as one, aiosocker.connect(server.url) as two:
        await eventually(lambda: len(server.connections) == 2, what="two connections")
        ids = set(server.connections)
        await asyncio.wait_for(server.close(), 5)
        # close() returned: every on_close hook has finished.
        assert sorted(finished) == sorted((i, 1001, "server shutting down") for i in ids)
        assert not server.connections
        await asyncio.wait_for(one.wait_closed(), 2)
        await asyncio.wait_for(two.wait_closed(), 2)
    assert (one.close_code, one.close_reason) == (1001, "server shutting down")
    assert two.close_code == CloseCode.GOING_AWAY


async def test_serve_forever_returns_when_closed(start_server: StartServer) -> None:
    server = await start_server(lambda conn: None)
    forever = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.05)
    assert not forever.done()
    await server.close()
    await asyncio.wait_for(forever, 1)
    with pytest.raises(OSError):
        await aiosocker.connect(server.url, open_timeout=1).__aenter__()


# -- hooks and what a connection tells --------------------------------------------------


async def test_hooks_are_called_with_the_right_arguments(
    start_server: StartServer, recorder: Recorder
) -> None:
    calls: list[tuple[object, ...]] = []
    boom = ZeroDivisionError("x")

    def setup(conn: aiosocker.Connection) -> None:
        conn.on_open(lambda c: calls.append(("open", c)))

        @conn.on_close
        async def closed(c: aiosocker.Connection, code: int, reason: str) -> None:
            calls.append(("close", c, code, reason))

        conn.on_error(lambda c, exc: calls.append(("error", c, exc)))

        @conn.stage()
        def only(message: bytes) -> bool:
            raise boom

    server = await start_server(setup, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        await eventually(lambda: recorder.opened, what="on_open")
        (conn,) = recorder.opened
        assert calls == [("open", conn)]  # on_open before any message
        await client.send(b"x")
        await asyncio.wait_for(client.wait_closed(), 2)
    await recorder.wait_closed()
    reason = "stage 'only' raised ZeroDivisionError"
    assert calls == [("open", conn), ("error", conn, boom), ("close", conn, 1011, reason)]
    assert recorder.errors == [(conn, boom)]
    assert recorder.closed == [(conn, 1011, reason)]
    assert (conn.close_code, conn.close_reason, conn.error) == (1011, reason, boom)


async def test_a_raising_hook_does_not_break_the_connection(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[bytes] = []

    def broken(conn: aiosocker.Connection) -> None:
        raise RuntimeError("hook bug")

    def setup(conn: aiosocker.Connection) -> None:
        conn.add(collector(got), name="only")

    server = await start_server(setup, on_open=broken)
    async with aiosocker.connect(server.url) as client:
        await client.send(b"still works")
        await eventually(lambda: got == [b"still works"], what="the message")
        assert not client.closed
    assert any("on_open hook raised" in r.getMessage() for r in caplog.records)


async def test_connection_properties(start_server: StartServer) -> None:
    def setup(conn: aiosocker.Connection) -> None:
        conn.add(lambda message: True, name="hello")
        conn.add(lambda message: False, name="playing")

    server = await start_server(setup, ping_interval=0.05, ping_timeout=1)
    async with aiosocker.connect(server.url) as one, aiosocker.connect(server.url):
        one.add(collector([]), name="only")
        await eventually(lambda: len(server.connections) == 2, what="two connections")
        first, second = server.connections.values()
        assert first.id != second.id
        assert dict(server.connections) == {first.id: first, second.id: second}
        assert first.id.startswith("c")
        assert first.current == "hello"
        assert first.stages.names == ("hello", "playing")
        host, port = first.remote_address[:2]
        assert host == HOST and isinstance(port, int) and port != server.port
        assert first.request.remote_address == first.remote_address
        assert one.remote_address[:2] == (HOST, server.port)
        assert first.request.path == "/"
        await one.send(b"hello")
        await eventually(lambda: first.current == "playing" or second.current == "playing")
        # Keepalive pings measure the round trip.
        await eventually(lambda: first.latency > 0, what="a keepalive round trip")
        assert first.latency < 1
        assert not first.closed and first.close_code is None
        assert "open" in repr(first)


async def test_request_query_and_headers_reach_the_connection(start_server: StartServer) -> None:
    seen: list[aiosocker.Request] = []

    def setup(conn: aiosocker.Connection) -> None:
        seen.append(conn.request)

    server = await start_server(setup, path="/game")
    assert server.url.endswith("/game")
    async with aiosocker.connect(server.url + "?room=7", headers={"X-Team": "blue"}):
        await eventually(lambda: seen, what="setup")
    (request,) = seen
    assert (request.path, request.query) == ("/game", "room=7")
    assert request.headers["x-team"] == "blue"  # case-insensitive


# -- sending --------------------------------------------------------------------------


async def stalled_peer(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket peer that completes the handshake and then never reads."""
    reader, writer = await asyncio.open_connection(HOST, port, limit=2**12)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_write_never_blocks_and_raises_queue_full(start_server: StartServer) -> None:
    server = await start_server(lambda conn: None, max_queue=4)
    _, writer = await stalled_peer(server.port)
    try:
        await eventually(lambda: server.connections, what="the connection")
        (conn,) = server.connections.values()
        chunk = b"z" * 2**16
        accepted = 0
        with pytest.raises(aiosocker.QueueFullError, match="max_queue=4") as caught:
            # Kernel buffers take some megabytes; then the queue of 4 fills.
            for _ in range(5000):
                conn.write(chunk)  # a plain call: it cannot wait for the peer
                accepted += 1
                await asyncio.sleep(0)  # let the writer task push what it can
        assert conn.id in str(caught.value)
        assert 4 <= accepted < 5000
        assert not conn.closed  # a full queue is the writer's problem, not a close
    finally:
        writer.close()
    await eventually(lambda: not server.connections, what="the stalled peer to go")


async def test_send_waits_for_a_full_write_queue(start_server: StartServer) -> None:
    """write() hands a message to the socket at once while nothing waits; once the peer
    stops reading, the socket's buffers fill, then the queue of 2, then write() raises
    and send() waits for room. Everything arrives, in order, once the peer reads."""
    got: list[bytes] = []
    server = await start_server(lambda conn: None, max_queue=2)
    async with aiosocker.connect(server.url) as client:
        client.add(collector(got), name="only")
        await eventually(lambda: server.connections, what="the connection")
        (conn,) = server.connections.values()
        conn.write(b"first")
        await eventually(lambda: got == [b"first"], what="the first message")
        written = fill_write_queue(conn, client)  # the peer stops reading
        assert written >= 2
        with pytest.raises(aiosocker.QueueFullError, match="max_queue=2"):
            conn.write(b"one too many")
        last = asyncio.ensure_future(conn.send(b"last"))
        await asyncio.sleep(0.05)
        assert not last.done()  # no room until the peer reads
        client._transport.ws.transport.resume_reading()  # type: ignore[attr-defined]
        await asyncio.wait_for(last, 10)
        await eventually(lambda: len(got) == written + 2, what="every message")
    assert got[0] == b"first" and got[-1] == b"last"
    assert [int.from_bytes(m[:4], "big") for m in got[1:-1]] == list(range(written))


async def test_send_behind_queued_writes_raises_closed_when_the_connection_ends(
    start_server: StartServer,
) -> None:
    """send() waiting behind write()'s queue (not full) raises ConnectionClosedError
    when the peer vanishes: not the CancelledError of the writer task the end cancels,
    and not a quiet return for a message that never went."""
    server = await start_server(lambda conn: None)
    async with aiosocker.connect(server.url) as client:
        await eventually(lambda: server.connections, what="the connection")
        (conn,) = server.connections.values()
        client._transport.ws.transport.pause_reading()  # type: ignore[attr-defined]
        for _ in range(5000):  # bounded: the socket's buffers fill, then a few queue
            conn.write(bytes(2**16))
            await asyncio.sleep(0)
            if conn._outbox is not None and len(conn._outbox) >= 3:
                break
        assert conn._outbox is not None and len(conn._outbox) >= 3
        waiting = asyncio.ensure_future(conn.send(b"behind the queue"))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        client._transport.ws.transport.abort()  # type: ignore[attr-defined]
        with pytest.raises(aiosocker.ConnectionClosedError):
            await asyncio.wait_for(waiting, 10)


async def test_write_goes_straight_to_the_socket_while_nothing_waits(
    start_server: StartServer,
) -> None:
    """No writer task and no queue for a peer that keeps up (a broadcast to a thousand
    members must not cost a thousand tasks)."""
    got: list[bytes] = []
    server = await start_server(lambda conn: None)
    async with aiosocker.connect(server.url) as client:
        client.add(collector(got), name="only")
        await eventually(lambda: server.connections, what="the connection")
        (conn,) = server.connections.values()
        before = len(asyncio.all_tasks())
        for i in range(100):
            conn.write(i.to_bytes(2, "big"))
        assert len(asyncio.all_tasks()) == before
        assert not conn._outbox  # nothing queued
        await eventually(lambda: len(got) == 100, what="100 messages")
    assert [int.from_bytes(m, "big") for m in got] == list(range(100))


async def test_write_and_send_after_close_raise(start_server: StartServer) -> None:
    server = await start_server(lambda conn: None)
    async with aiosocker.connect(server.url) as client:
        await client.close()
        with pytest.raises(aiosocker.ConnectionClosedError) as caught:
            client.write(b"late")
        assert caught.value.code == 1000
        with pytest.raises(aiosocker.ConnectionClosedError):
            await client.send(b"late")
    await eventually(lambda: not server.connections, what="the registry to empty")


async def test_messages_are_handled_one_at_a_time_in_order(start_server: StartServer) -> None:
    seen: list[bytes] = []
    active = 0
    most = 0

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        def first(message: bytes) -> bool:  # sync, then async: both kinds in one chain
            seen.append(message)
            return True

        @conn.stage()
        async def lobby(message: bytes) -> bool:
            nonlocal active, most
            active += 1
            most = max(most, active)
            if random.random() < 0.5:
                await asyncio.sleep(random.random() * 0.002)
            seen.append(message)
            active -= 1
            return False

    server = await start_server(setup)
    # More than picows' BACKLOG_PAUSE: its reading pauses behind the slow handler.
    sent = [f"m{i}".encode() for i in range(150)]
    async with aiosocker.connect(server.url) as client:
        for message in sent:
            client.write(message)
        await eventually(lambda: len(seen) == len(sent), timeout=5, what="all messages")
    assert seen == sent
    assert most == 1


async def test_messages_sent_during_an_async_setup_wait_for_it(start_server: StartServer) -> None:
    seen: list[bytes] = []

    async def setup(conn: aiosocker.Connection) -> None:
        await asyncio.sleep(0.05)  # the client is already sending
        conn.add(collector(seen), name="only")

    server = await start_server(setup)
    async with ws_connect(server.url) as ws:
        for i in range(20):
            await ws.send(b"%d" % i)
        await eventually(lambda: len(seen) == 20, what="all messages")
    assert seen == [b"%d" % i for i in range(20)]


async def test_a_raising_handler_does_not_affect_another_client(
    start_server: StartServer, recorder: Recorder
) -> None:
    boom = RuntimeError("only this connection")

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def echo(message: bytes) -> bool:
            if message == b"boom":
                raise boom
            await conn.send(b"echo:" + message)
            return False

    server = await start_server(setup, **recorder.hooks())
    good_got: list[bytes] = []
    async with aiosocker.connect(server.url) as bad, aiosocker.connect(server.url) as good:
        good.add(collector(good_got), name="only")
        bad.add(collector([]), name="only")
        await good.send(b"before")
        await bad.send(b"boom")
        await asyncio.wait_for(bad.wait_closed(), 2)
        await good.send(b"after")
        await eventually(lambda: len(good_got) == 2, what="two echoes")
        assert good_got == [b"echo:before", b"echo:after"]
        assert (bad.close_code, bad.close_reason) == (1011, "stage 'echo' raised RuntimeError")
        assert not good.closed
        assert len(server.connections) == 1
    await recorder.wait_closed(2)
    assert sorted(code for code, _ in recorder.codes()) == [1000, 1011]
    assert [exc for _, exc in recorder.errors] == [boom]


async def test_peer_leaving_during_an_async_handler_is_not_an_error(
    start_server: StartServer, recorder: Recorder
) -> None:
    started = asyncio.Event()
    outcome: list[BaseException] = []

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def slow(message: bytes) -> bool:
            started.set()
            await asyncio.sleep(0.2)
            try:
                await conn.send(b"too late")
            except Exception as exc:
                outcome.append(exc)
                raise
            return False

    server = await start_server(setup, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        await client.send(b"go")
        await asyncio.wait_for(started.wait(), 2)
    # The client left (1000) while the handler slept; its send then failed.
    await recorder.wait_closed()
    assert recorder.codes() == [(1000, "")]
    assert recorder.errors == []
    assert [type(exc) for exc in outcome] == [aiosocker.ConnectionClosedError]


async def test_a_stuck_handler_is_cancelled_by_its_stage_timeout(
    start_server: StartServer, recorder: Recorder
) -> None:
    cancelled: list[str] = []

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage(timeout=0.2)
        async def handshake(message: bytes) -> bool:
            try:
                await asyncio.Event().wait()  # never set: a handler that hangs
            except asyncio.CancelledError:
                cancelled.append(conn.current)
                raise
            return True

    server = await start_server(setup, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        await client.send(b"hang")
        await asyncio.wait_for(client.wait_closed(), 2)
    assert client.close_code == 4408
    await recorder.wait_closed()
    assert cancelled == ["handshake"]


async def test_shutdown_does_not_wait_for_a_stuck_handler(
    start_server: StartServer, recorder: Recorder
) -> None:
    entered = asyncio.Event()

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def lobby(message: bytes) -> bool:
            entered.set()
            await asyncio.Event().wait()
            return False

    server = await start_server(setup, **recorder.hooks())
    async with aiosocker.connect(server.url) as client:
        await client.send(b"hang")
        await asyncio.wait_for(entered.wait(), 2)
        await asyncio.wait_for(server.close(), 2)
        await asyncio.wait_for(client.wait_closed(), 2)
    assert client.close_code == 1001
    assert recorder.codes() == [(1001, "server shutting down")]


# -- peers that stall or vanish, keepalive ------------------------------------------------


def close_frame(data: bytes) -> tuple[int, str] | None:
    """The code and reason of the first close frame in ``data`` (unmasked server frames)."""
    i = 0
    while i + 2 <= len(data):
        opcode, size = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if size >= 126:
            width = 2 if size == 126 else 8
            size = int.from_bytes(data[i : i + width])
            i += width
        payload = data[i : i + size]
        i += size
        if opcode == 0x8:
            (code,) = struct.unpack("!H", payload[:2])
            return code, payload[2:].decode()
    return None


async def test_peer_vanishing_reports_1006(start_server: StartServer, recorder: Recorder) -> None:
    server = await start_server(lambda conn: None, **recorder.hooks())
    _, writer = await stalled_peer(server.port)
    await eventually(lambda: server.connections, what="the connection")
    writer.transport.abort()  # no close frame
    await recorder.wait_closed()
    assert recorder.codes() == [(1006, "")]


async def test_send_waits_while_the_peer_does_not_read(start_server: StartServer) -> None:
    server = await start_server(lambda conn: None)
    _, writer = await stalled_peer(server.port)
    await eventually(lambda: server.connections, what="the connection")
    (conn,) = server.connections.values()
    chunk = b"z" * 2**16
    blocked = False
    for _ in range(2000):  # kernel buffers take a few MiB; then send() must wait
        try:
            await asyncio.wait_for(conn.send(chunk), 0.1)
        except TimeoutError:
            blocked = True
            break
    assert blocked
    writer.transport.abort()
    await asyncio.wait_for(conn.wait_closed(), 2)
    with pytest.raises(aiosocker.ConnectionClosedError):
        await conn.send(chunk)


async def test_a_silent_peer_is_dropped_by_keepalive(
    start_server: StartServer, recorder: Recorder, transport: str
) -> None:
    server = await start_server(
        lambda conn: None, ping_interval=0.05, ping_timeout=0.05, **recorder.hooks()
    )
    reader, writer = await stalled_peer(server.port)
    try:
        # Reads the pings, then the close frame, until the server hangs up: answers none.
        received = await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()
    await recorder.wait_closed()
    assert recorder.codes() == [(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")]
    # README, "Fast transport": on picows the close frame on the wire says 1001.
    wire_code = 1001 if transport == "picows" else CloseCode.INTERNAL_ERROR
    assert close_frame(received) == (wire_code, ANY)


@pytest.mark.parametrize("drive", ["async", "tick"])
async def test_deferred_messages_go_to_the_next_stage_before_newer_ones(
    start_server: StartServer, drive: str
) -> None:
    got: list[tuple[str, bytes]] = []

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        def waiting(message: bytes) -> bool:
            if message == b"go":
                return True
            conn.defer(message)  # not for this stage: the next one gets it
            return False

        @conn.stage()
        async def second(message: bytes) -> bool:
            got.append(("second", message))
            if message == b"b":
                conn.defer(message)  # deferred again: waits for the stage after this
                return True
            return False

        @conn.stage()
        def third(message: bytes) -> bool:
            got.append(("third", message))
            return False

    server = await start_server(setup, drive=drive)
    async with aiosocker.connect(server.url) as client:
        for message in (b"a", b"b", b"c", b"go", b"d"):
            await client.send(message)

        def pumped() -> bool:
            if drive == "tick":
                server.tick()
            return len(got) == 5

        await eventually(pumped, what="every message handled")
    assert got == [
        ("second", b"a"),
        ("second", b"b"),
        ("third", b"b"),
        ("third", b"c"),
        ("third", b"d"),
    ]


async def test_a_raising_handler_does_not_cancel_the_reader(start_server: StartServer) -> None:
    # The close hooks run in the task that read the connection: it must end normally,
    # not be cancelled by the failure it reported.
    cancelling: list[int] = []

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def boom(message: bytes) -> bool:
            await asyncio.sleep(0)
            raise ValueError("bad input")

        @conn.on_close
        def closed(conn: aiosocker.Connection, code: int, reason: str) -> None:
            task = asyncio.current_task()
            cancelling.append(task.cancelling() if task is not None else -1)

    server = await start_server(setup)
    async with aiosocker.connect(server.url) as client:
        await client.send(b"x")
        await asyncio.wait_for(client.wait_closed(), 5)
        assert client.close_code == CloseCode.INTERNAL_ERROR
    await eventually(lambda: cancelling, what="the close hook")
    assert cancelling == [0]
