"""The picows transport (``serve(..., transport="picows")``) with real clients on
127.0.0.1: the same stages, hooks, close codes and admission as the default transport,
plus what is picows-specific (deferred async authenticate, HTTP routes, flow control)."""

from __future__ import annotations

import asyncio
import base64
import os
import random
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidMessage

import socker
from socker import CloseCode, HandshakeRejected, Route
from socker.transports import picows as fast_transport

from .conftest import HOST, Recorder, StartServer, collector, eventually, leftover_tasks


class FastServer:
    """``start_server`` with ``transport="picows"``."""

    def __init__(self, start_server: StartServer) -> None:
        self._start = start_server

    async def __call__(self, setup: socker.Setup, **options: Any) -> socker.Server:
        server = await self._start(setup, transport="picows", **options)
        assert server.transport == "picows"
        return server


@pytest.fixture
def fast(start_server: StartServer) -> FastServer:
    return FastServer(start_server)


def collecting(into: list[bytes]) -> socker.Setup:
    """A setup whose one stage collects every message into ``into``."""

    def setup(conn: socker.Connection) -> None:
        conn.add(collector(into), name="only")

    return setup


async def one_connection(server: socker.Server) -> socker.Connection:
    await eventually(lambda: len(server.connections) == 1, what="the connection")
    (conn,) = server.connections.values()
    return conn


async def http_get(port: int, path: str, extra: str = "") -> tuple[int, bytes]:
    """A plain HTTP/1.1 GET; returns the status and the body."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{extra}\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 2)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


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


# -- the staged exchange ----------------------------------------------------------------


async def staged(conn: socker.Connection) -> None:
    """hello -> scene -> handshake -> answer -> playing (stays), sync and async mixed."""
    conn.state["data"] = []

    @conn.stage()
    async def hello(message: bytes) -> bool:
        await conn.send(b"scene")
        return True

    @conn.stage(timeout=5)
    async def handshake(message: bytes) -> bool:
        if message != b"ready":
            return False
        await conn.send(b"offer")
        return True

    @conn.stage(timeout=5)
    def answer(message: bytes) -> bool:
        conn.state["answer"] = message
        return True

    @conn.stage()
    def playing(message: bytes) -> bool:
        conn.state["data"].append(message)
        conn.write(b"ack:" + message)
        return False


async def test_staged_exchange_advances_through_every_stage(
    fast: FastServer, recorder: Recorder
) -> None:
    server = await fast(staged, **recorder.hooks())
    acks: list[bytes] = []
    async with socker.connect(server.url) as client:

        @client.stage()
        async def scene(message: bytes) -> bool:
            await client.send(b"ready")
            return True

        @client.stage()
        async def offer(message: bytes) -> bool:
            await client.send(b"answer")
            return True

        client.add(collector(acks), name="final")
        await client.send(b"hello")
        await eventually(lambda: client.current == "final", what="the client's last stage")
        client.write(b"state:1")
        client.write(b"state:2")
        await eventually(lambda: len(acks) == 2, what="two acks")
        conn = await one_connection(server)
        assert [e.stage for e in conn.stages.history] == [
            "hello",
            "handshake",
            "answer",
            "playing",
        ]
        assert conn.state == {"data": [b"state:1", b"state:2"], "answer": b"answer"}
        assert acks == [b"ack:state:1", b"ack:state:2"]
        assert recorder.opened == [conn]
        host, port = conn.remote_address[:2]
        assert host == HOST and port != server.port
        assert conn.request.remote_address == conn.remote_address
    await recorder.wait_closed()
    assert recorder.codes() == [(CloseCode.NORMAL, "")]
    assert recorder.errors == []


@pytest.mark.parametrize("pause_at", [2, fast_transport.BACKLOG_PAUSE])
async def test_async_handlers_run_one_at_a_time_in_order(
    fast: FastServer, monkeypatch: pytest.MonkeyPatch, pause_at: int
) -> None:
    # pause_at=2: reading pauses and resumes again and again behind the slow handler.
    monkeypatch.setattr(fast_transport, "BACKLOG_PAUSE", pause_at)
    seen: list[bytes] = []
    active = most = 0

    def setup(conn: socker.Connection) -> None:
        @conn.stage()
        def first(message: bytes) -> bool:  # sync, then async: both kinds in one chain
            seen.append(message)
            return True

        @conn.stage()
        async def rest(message: bytes) -> bool:
            nonlocal active, most
            active += 1
            most = max(most, active)
            if random.random() < 0.3:
                await asyncio.sleep(0.001)
            seen.append(message)
            active -= 1
            return False

    server = await fast(setup)
    sent = [b"m%d" % i for i in range(150)]
    async with socker.connect(server.url) as client:
        for message in sent:
            client.write(message)
        await eventually(lambda: len(seen) == len(sent), timeout=5, what="every message")
    assert seen == sent
    assert most == 1


async def test_messages_sent_during_an_async_setup_wait_for_it(fast: FastServer) -> None:
    seen: list[bytes] = []

    async def setup(conn: socker.Connection) -> None:
        await asyncio.sleep(0.05)  # the client is already sending
        conn.add(collector(seen), name="only")

    server = await fast(setup)
    async with ws_connect(server.url) as ws:
        for i in range(20):
            await ws.send(b"%d" % i)
        await eventually(lambda: len(seen) == 20, what="all messages")
    assert seen == [b"%d" % i for i in range(20)]


async def test_fragmented_messages_are_reassembled(fast: FastServer) -> None:
    seen: list[bytes] = []
    server = await fast(collecting(seen))
    async with ws_connect(server.url) as ws:
        await ws.send([b"ab", b"cd", b"ef"])  # one message in three frames
        await ws.send(b"next")
        await eventually(lambda: len(seen) == 2, what="two messages")
    assert seen == [b"abcdef", b"next"]


# -- close codes --------------------------------------------------------------------------


async def test_text_frame_closes_with_1003(fast: FastServer, recorder: Recorder) -> None:
    handled: list[bytes] = []
    server = await fast(collecting(handled), **recorder.hooks())
    async with ws_connect(server.url) as ws:
        await ws.send("text")
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 2)
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == CloseCode.UNSUPPORTED_DATA
    await recorder.wait_closed()
    assert recorder.codes()[0][0] == 1003
    assert handled == []


@pytest.mark.parametrize("fragmented", [False, True])
async def test_message_over_max_size_closes_with_1009(
    fast: FastServer, recorder: Recorder, fragmented: bool
) -> None:
    handled: list[bytes] = []
    server = await fast(
        collecting(handled),
        max_size=1000,
        **recorder.hooks(),
    )
    async with ws_connect(server.url) as ws:
        await ws.send(b"x" * 1000)  # exactly max_size: fine
        await eventually(lambda: len(handled) == 1, what="the first message")
        big = [b"x" * 600, b"x" * 401] if fragmented else b"x" * 1001
        await ws.send(big)
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 2)
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == CloseCode.MESSAGE_TOO_BIG
    await recorder.wait_closed()
    assert recorder.codes()[0][0] == 1009
    assert handled == [b"x" * 1000]


async def test_raising_handler_closes_with_1011_and_another_client_keeps_working(
    fast: FastServer, recorder: Recorder
) -> None:
    boom = RuntimeError("only this connection")

    def setup(conn: socker.Connection) -> None:
        @conn.stage()
        async def echo(message: bytes) -> bool:
            if message == b"boom":
                raise boom
            await conn.send(b"echo:" + message)
            return False

    server = await fast(setup, **recorder.hooks())
    good_got: list[bytes] = []
    async with socker.connect(server.url) as bad, socker.connect(server.url) as good:
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


async def test_sync_handler_raising_stops_later_messages(
    fast: FastServer, recorder: Recorder
) -> None:
    handled: list[bytes] = []

    def setup(conn: socker.Connection) -> None:
        @conn.stage()
        def parse(message: bytes) -> bool:
            handled.append(message)
            if message == b"boom":
                raise ValueError(message)
            return False

    server = await fast(setup, **recorder.hooks())
    async with socker.connect(server.url) as client:
        for message in (b"ok", b"boom", b"after"):
            client.write(message)
        await asyncio.wait_for(client.wait_closed(), 2)
    assert client.close_code == 1011
    assert handled == [b"ok", b"boom"]


async def test_stage_timeout_closes_with_4408(fast: FastServer, recorder: Recorder) -> None:
    def setup(conn: socker.Connection) -> None:
        conn.add(lambda message: True, name="hello")
        conn.add(lambda message: False, name="handshake", timeout=0.1)

    server = await fast(setup, **recorder.hooks())
    async with socker.connect(server.url) as client:
        await client.send(b"hello")
        await asyncio.wait_for(client.wait_closed(), 2)
    assert client.close_code == CloseCode.STAGE_TIMEOUT
    assert client.close_reason == "stage 'handshake' timed out after 0.1 s"
    await recorder.wait_closed()
    assert recorder.codes() == [(4408, "stage 'handshake' timed out after 0.1 s")]
    assert isinstance(recorder.errors[0][1], socker.StageTimeoutError)


async def test_close_codes_and_reasons_from_either_side(
    fast: FastServer, recorder: Recorder
) -> None:
    def setup(conn: socker.Connection) -> None:
        @conn.stage()
        async def lobby(message: bytes) -> bool:
            if message == b"kick":
                await conn.close(4001, "kicked")
            return False

    server = await fast(setup, **recorder.hooks())
    async with socker.connect(server.url) as client:
        await client.send(b"kick")
        await asyncio.wait_for(client.wait_closed(), 2)
    assert (client.close_code, client.close_reason) == (4001, "kicked")
    async with socker.connect(server.url) as client:
        await client.close(4002, "leaving")
    await recorder.wait_closed(2)
    assert recorder.codes() == [(4001, "kicked"), (4002, "leaving")]
    with pytest.raises(socker.ConnectionClosedError):
        await recorder.closed[0][0].send(b"late")


async def test_peer_vanishing_reports_1006(fast: FastServer, recorder: Recorder) -> None:
    server = await fast(lambda conn: None, **recorder.hooks())
    _, writer = await stalled_peer(server.port)
    await one_connection(server)
    writer.transport.abort()
    await recorder.wait_closed()
    assert recorder.codes() == [(1006, "")]


async def test_server_shutdown_closes_with_1001_and_awaits_hooks(fast: FastServer) -> None:
    finished: list[tuple[str, int, str]] = []

    async def slow_on_close(conn: socker.Connection, code: int, reason: str) -> None:
        await asyncio.sleep(0.02)
        finished.append((conn.id, code, reason))

    server = await fast(lambda conn: None, on_close=slow_on_close)
    async with socker.connect(server.url) as one, socker.connect(server.url) as two:
        await eventually(lambda: len(server.connections) == 2, what="two connections")
        ids = set(server.connections)
        await asyncio.wait_for(server.close(), 5)
        assert sorted(finished) == sorted((i, 1001, "server shutting down") for i in ids)
        assert not server.connections
        await asyncio.wait_for(one.wait_closed(), 2)
        await asyncio.wait_for(two.wait_closed(), 2)
    assert (one.close_code, one.close_reason) == (1001, "server shutting down")
    assert two.close_code == CloseCode.GOING_AWAY
    with pytest.raises(OSError):
        await socker.connect(server.url, open_timeout=1).__aenter__()


async def test_no_task_outlives_the_server() -> None:
    before = set(asyncio.all_tasks())

    async def setup(conn: socker.Connection) -> None:
        @conn.stage()
        async def slow(message: bytes) -> bool:
            await asyncio.sleep(0.01)
            return False

    # ping_interval also bounds how long the silent peer below holds up the shutdown
    # (it never answers our close frame; without keepalive, CLOSE_TIMEOUT would).
    async with socker.serve(setup, HOST, 0, transport="picows", ping_interval=0.05) as server:
        async with socker.connect(server.url) as client:
            for _ in range(5):
                client.write(b"x")
            await asyncio.sleep(0.06)
        stalled = await stalled_peer(server.port)  # open while the server closes
        await one_connection(server)
    assert not await leftover_tasks(before)
    stalled[1].close()


# -- admission and HTTP -------------------------------------------------------------------


async def test_foreign_origin_is_rejected_with_403(fast: FastServer) -> None:
    opened: list[socker.Connection] = []
    server = await fast(opened.append)
    with pytest.raises(HandshakeRejected) as caught:
        async with socker.connect(server.url, origin="http://evil.example"):
            pass
    assert caught.value.status == 403
    assert "origin" in caught.value.reason
    async with socker.connect(server.url, origin=f"http://{HOST}:{server.port}"):
        await eventually(lambda: opened, what="the same-origin connection")


async def test_max_connections_answers_503(fast: FastServer) -> None:
    server = await fast(lambda conn: None, max_connections=1)
    async with socker.connect(server.url):
        await one_connection(server)
        with pytest.raises(HandshakeRejected) as caught:
            async with socker.connect(server.url):
                pass
        assert caught.value.status == 503


async def test_plain_authenticate_refuses_with_the_http_status(fast: FastServer) -> None:
    def authenticate(request: socker.Request) -> Any:
        token = request.headers.get("X-Token")
        if token is None:
            raise HandshakeRejected(401, "token required")
        return {"name": token}

    users: list[Any] = []
    server = await fast(lambda conn: users.append(conn.user), authenticate=authenticate)
    with pytest.raises(HandshakeRejected) as caught:
        async with socker.connect(server.url):
            pass
    assert (caught.value.status, caught.value.reason) == (401, "token required")
    async with socker.connect(server.url, headers={"X-Token": "ada"}):
        await eventually(lambda: users, what="setup")
    assert users == [{"name": "ada"}]


@pytest.mark.parametrize("kind", ["async def", "plain function returning a coroutine"])
async def test_waiting_authenticate_refuses_with_the_http_status(
    fast: FastServer, recorder: Recorder, kind: str
) -> None:
    seen: list[socker.Request] = []

    async def check(request: socker.Request) -> Any:
        seen.append(request)
        await asyncio.sleep(0.01)  # really waits, while picows' hook cannot
        token = request.headers.get("Authorization")
        if token is None:
            raise HandshakeRejected(401, "token required")
        return {"name": "ada"} if token == "Bearer good" else False

    def plain(request: socker.Request) -> Any:
        return check(request)

    users: list[Any] = []

    def setup(conn: socker.Connection) -> None:
        users.append(conn.user)
        conn.add(collector([]), name="only")

    authenticate = check if kind == "async def" else plain
    server = await fast(setup, authenticate=authenticate, max_connections=1, **recorder.hooks())
    with pytest.raises(HandshakeRejected) as caught:
        async with socker.connect(server.url):
            pass
    assert (caught.value.status, caught.value.reason) == (401, "token required")
    with pytest.raises(HandshakeRejected) as caught:
        async with socker.connect(server.url, headers={"Authorization": "Bearer bad"}):
            pass
    assert (caught.value.status, caught.value.reason) == (403, "authentication refused")
    # Refusals hold no place: the one connection allowed still gets in.
    good = {"Authorization": "Bearer good"}
    async with socker.connect(server.url + "?room=7", headers=good) as client:
        await eventually(lambda: users, what="setup")
        await client.send(b"hi")  # messages flow through picows after the hand-over
        conn = await one_connection(server)
        assert conn.user == {"name": "ada"}
        assert conn.request.query == "room=7"
        with pytest.raises(HandshakeRejected) as caught:
            async with socker.connect(server.url, headers=good):
                pass
        assert caught.value.status == 503
    assert users == [{"name": "ada"}]  # setup never ran for the refused
    assert all(request.remote_address[0] == HOST for request in seen)
    # The origin is checked before authenticate, with its HTTP status.
    with pytest.raises(HandshakeRejected) as caught:
        async with socker.connect(server.url, origin="http://evil.example", headers=good):
            pass
    assert caught.value.status == 403
    assert len(seen) == 3
    await recorder.wait_closed()
    assert recorder.codes() == [(1000, "")]


async def test_routes_and_426_with_authenticate(fast: FastServer) -> None:
    async def authenticate(request: socker.Request) -> bool:
        return True

    routes = {"/health": Route("text/plain", b"ok\n")}
    server = await fast(lambda conn: None, authenticate=authenticate, routes=routes)
    assert await http_get(server.port, "/health") == (200, b"ok\n")
    status, _ = await http_get(server.port, "/")
    assert status == 426
    async with socker.connect(server.url):
        await one_connection(server)


async def test_a_slow_handshake_is_dropped(
    fast: FastServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fast_transport, "HANDSHAKE_TIMEOUT", 0.05)

    async def authenticate(request: socker.Request) -> bool:
        await asyncio.sleep(10)  # never in time
        return True

    server = await fast(lambda conn: None, authenticate=authenticate)
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(b"GET / HTTP/1.1\r\n")  # and nothing more
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    with pytest.raises(InvalidMessage):  # dropped: authenticate never ends in time
        async with socker.connect(server.url, open_timeout=2):
            pass


class WaitingAdmission(socker.Admission):
    """An admission policy that waits before deciding (the stepping fallback)."""

    async def admit(self, request: socker.Request, live: int) -> Any:
        await asyncio.sleep(0.01)
        if request.headers.get("X-Token") != "ok":
            raise HandshakeRejected(403, "no")
        return "user"


async def test_admission_that_waits_without_authenticate_closes_with_1008() -> None:
    users: list[Any] = []
    server = socker.serve(lambda conn: users.append(conn.user), HOST, 0, transport="picows")
    server.admission = WaitingAdmission()
    async with server:
        async with socker.connect(server.url, headers={"X-Token": "ok"}):
            await eventually(lambda: users, what="setup")
        assert users == ["user"]
        async with socker.connect(server.url) as refused:
            await asyncio.wait_for(refused.wait_closed(), 2)
        assert (refused.close_code, refused.close_reason) == (1008, "HTTP 403 no")
        assert users == ["user"]


async def test_handshake_refusals_match_the_default_transport(fast: FastServer) -> None:
    server = await fast(lambda conn: None, max_connections=1)

    async def answer(*headers: str) -> bytes:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            lines = ["GET / HTTP/1.1", f"Host: {HOST}:{server.port}", *headers]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        finally:
            writer.close()

    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = ("Upgrade: websocket", "Connection: keep-alive, Upgrade")  # Firefox's
    assert (await answer()).startswith(b"HTTP/1.1 426 ")
    assert (await answer(*upgrade, "Sec-WebSocket-Version: 13")).startswith(b"HTTP/1.1 400 ")
    assert (await answer(*upgrade, f"Sec-WebSocket-Key: {key}")).startswith(b"HTTP/1.1 400 ")
    two_origins = (f"Origin: http://{HOST}:{server.port}", "Origin: http://evil.example")
    ok = (*upgrade, f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13")
    assert (await answer(*ok, *two_origins)).startswith(b"HTTP/1.1 403 ")
    # None of those held the one place; Firefox's Connection header is accepted.
    assert (await answer(*ok)).startswith(b"HTTP/1.1 101 ")


async def test_http_routes_and_404(fast: FastServer) -> None:
    def broken() -> bytes:
        raise RuntimeError("route bug")

    routes = {
        "/health": Route("text/plain", b"ok\n"),
        "/n": Route("text/plain", lambda: b"7"),
        "/broken": Route("text/plain", broken),
    }
    server = await fast(lambda conn: None, routes=routes, path="/ws")
    assert await http_get(server.port, "/health") == (200, b"ok\n")
    assert await http_get(server.port, "/n?x=1") == (200, b"7")
    status, _ = await http_get(server.port, "/nothing")
    assert status == 404
    assert await http_get(server.port, "/broken") == (500, b"internal error\n")
    status, _ = await http_get(server.port, "/ws")  # the WebSocket path, without upgrade
    assert status == 426
    with pytest.raises(HandshakeRejected) as caught:
        async with socker.connect(server.url.replace("/ws", "/elsewhere")):
            pass
    assert caught.value.status == 404


# -- drive, flow control, keepalive ---------------------------------------------------------


async def test_tick_drive_handles_messages_only_on_tick(fast: FastServer) -> None:
    seen: list[bytes] = []
    server = await fast(collecting(seen), drive="tick")
    async with socker.connect(server.url) as client:
        for i in range(5):
            await client.send(b"%d" % i)
        conn = await one_connection(server)
        await eventually(lambda: conn.pending == 5, what="five queued messages")
        assert seen == []
        assert server.tick() == 5
        assert seen == [b"%d" % i for i in range(5)]
        assert server.tick() == 0


async def test_tick_drive_full_inbox_pushes_back_without_losing_order(
    fast: FastServer,
) -> None:
    seen: list[bytes] = []
    server = await fast(collecting(seen), drive="tick", max_queue=4)
    sent = [b"%d" % i for i in range(40)]
    async with socker.connect(server.url) as client:
        for message in sent:
            client.write(message)
        conn = await one_connection(server)
        for _ in range(400):
            server.tick()
            if len(seen) == len(sent):
                break
            await asyncio.sleep(0.005)
            assert conn.pending <= 4
    assert seen == sent


async def test_send_waits_while_the_peer_does_not_read(fast: FastServer) -> None:
    server = await fast(lambda conn: None)
    _, writer = await stalled_peer(server.port)
    conn = await one_connection(server)
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
    with pytest.raises(socker.ConnectionClosedError):
        await conn.send(chunk)


async def test_keepalive_measures_latency(fast: FastServer) -> None:
    server = await fast(lambda conn: None, ping_interval=0.03, ping_timeout=1)
    async with socker.connect(server.url):
        conn = await one_connection(server)
        assert conn.latency == 0
        await eventually(lambda: conn.latency > 0, what="a keepalive round trip")
        assert conn.latency < 1


async def test_a_silent_peer_is_dropped_by_keepalive(fast: FastServer, recorder: Recorder) -> None:
    server = await fast(
        lambda conn: None, ping_interval=0.05, ping_timeout=0.05, **recorder.hooks()
    )
    _, writer = await stalled_peer(server.port)  # never answers pings
    try:
        await recorder.wait_closed(timeout=3)
    finally:
        writer.close()
    assert recorder.codes() == [(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")]


async def test_plain_rfc6455_client_echo(fast: FastServer) -> None:
    def setup(conn: socker.Connection) -> None:
        @conn.stage()
        async def echo(message: bytes) -> bool:
            await conn.send(message[::-1])
            return False

    server = await fast(setup)
    async with ws_connect(server.url, compression=None) as ws:
        for word in (b"abc", b"x" * 70000, b""):
            await ws.send(word)
            assert await asyncio.wait_for(ws.recv(), 2) == word[::-1]
        await ws.ping()
