"""socker mounted in a Starlette app, served by a real uvicorn on 127.0.0.1.

Each test starts uvicorn in-process on a free port (``uvicorn.Server.serve()`` as a
task), talks to it with ``aiosocker.connect`` and plain ``websockets`` clients, then shuts
uvicorn down and checks that no task is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import aiosocker
from aiosocker.transports.asgi import ASGIApp, Message, Receive, Scope, Send

from .asgi_helpers import WAIT, running

pytestmark = pytest.mark.timeout(30)


# -- running uvicorn -------------------------------------------------------------------


def starlette_app(sock: ASGIApp) -> Starlette:
    """The documented setup: socker under /ws beside a plain HTTP route."""

    async def home(request: HttpRequest) -> PlainTextResponse:
        return PlainTextResponse("home")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sock.hub.close()

    return Starlette(
        routes=[
            Route("/", home),
            Mount("/ws", app=sock),
            WebSocketRoute("/play", sock),
        ],
        lifespan=lifespan,
    )


async def eventually(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not check():  # noqa: ASYNC110 - polls any condition, bounded by WAIT
            await asyncio.sleep(0.005)


async def closed_with(ws: ClientConnection) -> tuple[int | None, str]:
    """Wait until the server closes ``ws``; the code and reason it sent."""
    async with asyncio.timeout(WAIT):
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()
    await ws.wait_closed()
    return ws.close_code, ws.close_reason or ""


class Recorder:
    """Server-wide hooks that remember what they saw."""

    def __init__(self) -> None:
        self.opened: list[aiosocker.Connection] = []
        self.closed: dict[str, tuple[int, str]] = {}
        self.errors: dict[str, BaseException] = {}

    def on_open(self, conn: aiosocker.Connection) -> None:
        self.opened.append(conn)

    async def on_close(self, conn: aiosocker.Connection, code: int, reason: str) -> None:
        await asyncio.sleep(0)  # async hooks are awaited too
        self.closed[conn.id] = (code, reason)

    def on_error(self, conn: aiosocker.Connection, exc: BaseException) -> None:
        self.errors[conn.id] = exc

    def hooks(self) -> dict[str, Any]:
        return {"on_open": self.on_open, "on_close": self.on_close, "on_error": self.on_error}


def game_setup(conn: aiosocker.Connection) -> None:
    """The Go README's chain: hello -> scene -> handshake -> playing (stays)."""

    @conn.stage()
    async def hello(message: bytes) -> bool:
        if message != b"hello":
            return False
        await conn.send(b"scene")
        return True

    @conn.stage(timeout=5)
    def handshake(message: bytes) -> bool:
        if message != b"ready":
            return False
        conn.write(b"start")
        return True

    @conn.stage()
    async def playing(message: bytes) -> bool:
        if message == b"boom":
            raise ValueError("boom")
        await conn.send(b"echo:" + message)
        return False


# -- the staged exchange ---------------------------------------------------------------


@pytest.mark.parametrize(
    "ws_impl",
    [
        "websockets-sansio",
        pytest.param(
            "websockets",
            marks=[  # uvicorn's legacy implementation, deprecated but still shipped
                pytest.mark.filterwarnings("ignore::DeprecationWarning"),
                pytest.mark.filterwarnings("ignore::uvicorn.config.UvicornDeprecationWarning"),
            ],
        ),
    ],
)
async def test_full_staged_exchange_and_hooks(ws_impl: str) -> None:
    rec = Recorder()
    sock = ASGIApp(
        game_setup,
        authenticate=lambda request: "alice",
        routes={"/info": aiosocker.Route("text/plain", b"socker here")},
        **rec.hooks(),
    )
    async with running(starlette_app(sock), sock=sock, ws=ws_impl) as srv:
        inbox: asyncio.Queue[bytes] = asyncio.Queue()

        def client_setup(conn: aiosocker.Connection) -> None:
            @conn.stage()
            async def scene(message: bytes) -> bool:
                assert message == b"scene"
                await conn.send(b"ready")
                return True

            @conn.stage()
            def play(message: bytes) -> bool:
                inbox.put_nowait(message)
                return False

        async with aiosocker.connect(srv.ws("/ws/?room=1"), client_setup) as client:
            await client.send(b"hello")
            assert await asyncio.wait_for(inbox.get(), WAIT) == b"start"
            await client.send(b"move")
            assert await asyncio.wait_for(inbox.get(), WAIT) == b"echo:move"

            (conn,) = sock.hub.connections.values()
            assert conn.current == "playing"
            assert [e.stage for e in conn.stages.history] == ["hello", "handshake", "playing"]
            assert conn.user == "alice"
            assert conn.request.path == "/ws/"
            assert conn.request.query == "room=1"
            assert conn.request.headers["host"] == f"127.0.0.1:{srv.port}"
            assert conn.remote_address[0] == "127.0.0.1"
            assert conn.latency == 0.0
            assert rec.opened == [conn]
            assert await sock.hub.broadcast(b"news") == 1
            assert await asyncio.wait_for(inbox.get(), WAIT) == b"news"
        await eventually(lambda: conn.id in rec.closed)
        assert rec.closed[conn.id] == (1000, "")
        assert not sock.hub.connections
        assert not rec.errors

        # A plain HTTP route beside socker, socker's own routes below the mount, 404.
        async with httpx.AsyncClient() as http:
            assert (await http.get(srv.http("/"))).text == "home"
            info = await http.get(srv.http("/ws/info"))
            assert (info.status_code, info.text) == (200, "socker here")
            assert info.headers["content-type"] == "text/plain"
            assert (await http.head(srv.http("/ws/info"))).content == b""
            assert (await http.post(srv.http("/ws/info"))).status_code == 405
            assert (await http.get(srv.http("/ws/nope"))).status_code == 404


async def test_websocket_route_exact_path_and_plain_client() -> None:
    sock = ASGIApp(game_setup)
    async with (
        running(starlette_app(sock), sock=sock) as srv,
        ws_connect(srv.ws("/play"), compression=None) as ws,
    ):
        await ws.send(b"hello")
        assert await ws.recv() == b"scene"
        await ws.send(b"ready")
        assert await ws.recv() == b"start"
        await ws.send(b"x")
        assert await ws.recv() == b"echo:x"
        (conn,) = sock.hub.connections.values()
        assert conn.request.path == "/play"


# -- close codes -------------------------------------------------------------------------


async def test_text_frame_closes_1003() -> None:
    rec = Recorder()
    sock = ASGIApp(game_setup, **rec.hooks())
    async with running(starlette_app(sock), sock=sock) as srv:
        async with ws_connect(srv.ws()) as ws:
            await ws.send("hello as text")
            code, reason = await closed_with(ws)
        assert code == aiosocker.CloseCode.UNSUPPORTED_DATA
        assert "text" in reason
        await eventually(lambda: len(rec.closed) == 1)
        assert list(rec.closed.values()) == [(1003, reason)]


async def test_text_frame_ignored_when_asked() -> None:
    sock = ASGIApp(game_setup, text="ignore")
    async with running(starlette_app(sock), sock=sock) as srv, ws_connect(srv.ws()) as ws:
        await ws.send("ignored")
        await ws.send(b"hello")
        assert await ws.recv() == b"scene"


async def test_oversize_message_closes_1009_while_others_go_on() -> None:
    rec = Recorder()
    sock = ASGIApp(game_setup, max_size=1024, **rec.hooks())
    async with running(starlette_app(sock), sock=sock) as srv:
        async with ws_connect(srv.ws()) as big, ws_connect(srv.ws()) as small:
            await big.send(b"x" * 1025)
            code, reason = await closed_with(big)
            assert code == aiosocker.CloseCode.MESSAGE_TOO_BIG
            assert "max_size" in reason
            await small.send(b"hello")  # exactly at the limit is fine, too
            assert await small.recv() == b"scene"
            await small.send(b"ready")
            assert await small.recv() == b"start"
            await small.send(b"y" * 1024)
            assert await small.recv() == b"echo:" + b"y" * 1024
        await eventually(lambda: len(rec.closed) == 2)
        assert sorted(code for code, _ in rec.closed.values()) == [1000, 1009]


async def test_uvicorn_ws_max_size_also_gives_1009() -> None:
    rec = Recorder()
    sock = ASGIApp(game_setup, max_size=1024, **rec.hooks())
    async with running(starlette_app(sock), sock=sock, ws_max_size=1024) as srv:
        async with ws_connect(srv.ws()) as ws:
            await ws.send(b"x" * 4096)
            code, _ = await closed_with(ws)
        assert code == 1009
        await eventually(lambda: len(rec.closed) == 1)
        assert [code for code, _ in rec.closed.values()] == [1009]


async def test_raising_handler_closes_1011_second_client_unaffected() -> None:
    rec = Recorder()
    sock = ASGIApp(game_setup, **rec.hooks())
    async with running(starlette_app(sock), sock=sock) as srv:
        async with ws_connect(srv.ws()) as bad, ws_connect(srv.ws()) as good:
            for ws in (bad, good):
                await ws.send(b"hello")
                assert await ws.recv() == b"scene"
                await ws.send(b"ready")
                assert await ws.recv() == b"start"
            await bad.send(b"boom")
            code, reason = await closed_with(bad)
            assert code == aiosocker.CloseCode.INTERNAL_ERROR
            assert "playing" in reason and "ValueError" in reason
            await good.send(b"still here")
            assert await good.recv() == b"echo:still here"
            assert len(sock.hub.connections) == 1
        await eventually(lambda: len(rec.closed) == 2)
        (failed,) = rec.errors.values()
        assert isinstance(failed, ValueError)


async def test_setup_raising_closes_1011() -> None:
    def setup(conn: aiosocker.Connection) -> None:
        raise RuntimeError("no chain for you")

    sock = ASGIApp(setup)
    async with running(starlette_app(sock), sock=sock) as srv, ws_connect(srv.ws()) as ws:
        code, reason = await closed_with(ws)
        assert code == 1011
        assert "setup" in reason


async def test_stage_timeout_closes_4408() -> None:
    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage(timeout=0.2)
        def hello(message: bytes) -> bool:
            return True

        @conn.stage()
        def rest(message: bytes) -> bool:
            return False

    rec = Recorder()
    sock = ASGIApp(setup, **rec.hooks())
    async with running(starlette_app(sock), sock=sock) as srv, ws_connect(srv.ws()) as ws:
        code, reason = await closed_with(ws)
        assert code == aiosocker.CloseCode.STAGE_TIMEOUT
        assert "hello" in reason
        await eventually(lambda: len(rec.closed) == 1)
        assert isinstance(next(iter(rec.errors.values())), aiosocker.StageTimeoutError)


async def test_client_vanishing_without_close_frame_runs_hooks() -> None:
    rec = Recorder()
    sock = ASGIApp(game_setup, **rec.hooks())
    async with running(starlette_app(sock), sock=sock) as srv:
        ws = await ws_connect(srv.ws())
        await eventually(lambda: len(sock.hub.connections) == 1)
        ws.transport.abort()  # TCP gone, no closing handshake
        await eventually(lambda: len(rec.closed) == 1)
        (code, _) = next(iter(rec.closed.values()))
        assert code in (1005, 1006)
        assert not sock.hub.connections
        await ws.wait_closed()


# -- admission ---------------------------------------------------------------------------


async def test_origin_rejected_403_before_any_stage() -> None:
    setups: list[aiosocker.Connection] = []
    sock = ASGIApp(setups.append)
    async with running(starlette_app(sock), sock=sock) as srv:
        with pytest.raises(aiosocker.HandshakeRejected) as refused:
            async with aiosocker.connect(srv.ws(), origin="http://evil.example"):
                pass
        assert refused.value.status == 403
        assert "origin" in refused.value.reason
        # Same host: a browser on the page that uvicorn serves is let in.
        async with aiosocker.connect(srv.ws(), origin=f"http://127.0.0.1:{srv.port}"):
            pass
        assert len(setups) == 1


async def test_origin_allow_list() -> None:
    sock = ASGIApp(game_setup, origins=["https://game.example"])
    async with running(starlette_app(sock), sock=sock) as srv:
        async with aiosocker.connect(srv.ws(), origin="https://game.example"):
            pass
        with pytest.raises(aiosocker.HandshakeRejected) as refused:
            async with aiosocker.connect(srv.ws(), origin=f"http://127.0.0.1:{srv.port}"):
                pass
        assert refused.value.status == 403


async def test_max_connections_503() -> None:
    sock = ASGIApp(game_setup, max_connections=1)
    async with running(starlette_app(sock), sock=sock) as srv:
        async with aiosocker.connect(srv.ws()):
            with pytest.raises(aiosocker.HandshakeRejected) as refused:
                async with aiosocker.connect(srv.ws()):
                    pass
            assert refused.value.status == 503
        await eventually(lambda: not sock.hub.connections)
        async with aiosocker.connect(srv.ws()):  # room again
            pass


async def test_authenticate_refuses_or_attaches_user() -> None:
    def authenticate(request: aiosocker.Request) -> Any:
        token = request.headers.get("Authorization")
        if token is None:
            raise aiosocker.HandshakeRejected(401, "token required")
        return False if token == "Bearer bad" else token.removeprefix("Bearer ")

    users: list[Any] = []
    sock = ASGIApp(lambda conn: users.append(conn.user), authenticate=authenticate)
    async with running(starlette_app(sock), sock=sock) as srv:
        with pytest.raises(aiosocker.HandshakeRejected) as refused:
            async with aiosocker.connect(srv.ws()):
                pass
        assert (refused.value.status, refused.value.reason) == (401, "token required")
        with pytest.raises(aiosocker.HandshakeRejected) as refused:
            async with aiosocker.connect(srv.ws(), headers={"Authorization": "Bearer bad"}):
                pass
        assert refused.value.status == 403
        async with aiosocker.connect(srv.ws(), headers={"Authorization": "Bearer bob"}):
            pass
        assert users == ["bob"]


async def test_authenticate_crashing_is_500_and_server_goes_on() -> None:
    def authenticate(request: aiosocker.Request) -> Any:
        if request.query == "crash":
            raise KeyError("oops")
        return None

    sock = ASGIApp(game_setup, authenticate=authenticate)
    async with running(starlette_app(sock), sock=sock) as srv:
        with pytest.raises(aiosocker.HandshakeRejected) as refused:
            async with aiosocker.connect(srv.ws("/ws/?crash")):
                pass
        assert refused.value.status == 500
        async with aiosocker.connect(srv.ws()):
            pass


def strip_http_response_extension(app: Any) -> Any:
    """Make ``app`` see an ASGI server without ``websocket.http.response``."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope = {**scope, "extensions": {}}
        await app(scope, receive, send)

    return wrapper


async def test_without_http_response_extension_refusals_are_403() -> None:
    sock = ASGIApp(game_setup, max_connections=1)
    app = strip_http_response_extension(starlette_app(sock))
    async with running(app, sock=sock) as srv, ws_connect(srv.ws()):
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(srv.ws()):
                pass
        # 503 is the cause, but websocket.close before accept can only say 403.
        assert refused.value.response.status_code == 403


# -- drives, shutdown ------------------------------------------------------------------


async def test_tick_drive() -> None:
    seen: list[bytes] = []

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        def collect(message: bytes) -> bool:
            seen.append(message)
            return False

    sock = ASGIApp(setup, drive="tick")
    async with running(starlette_app(sock), sock=sock) as srv, ws_connect(srv.ws()) as ws:
        await ws.send(b"a")
        await ws.send(b"b")
        await eventually(lambda: sum(c.pending for c in sock.hub.connections.values()) == 2)
        assert seen == []
        assert sock.hub.tick() == 2
        assert seen == [b"a", b"b"]


async def test_graceful_shutdown_closes_clients_1001() -> None:
    rec = Recorder()
    sock = ASGIApp(game_setup, **rec.hooks())
    async with (
        running(starlette_app(sock), sock=sock) as srv,
        aiosocker.connect(srv.ws()) as one,
        ws_connect(srv.ws()) as two,
    ):
        await eventually(lambda: len(sock.hub.connections) == 2)
        srv.server.should_exit = True  # what SIGTERM does
        await asyncio.wait_for(one.wait_closed(), WAIT)
        assert one.close_code == aiosocker.CloseCode.GOING_AWAY
        code, reason = await closed_with(two)
        assert (code, reason) == (1001, "server shutting down")
        # The hooks heard 1001, not uvicorn's own 1012: they ran before it closed its
        # sockets.
        await eventually(lambda: len(rec.closed) == 2)
        assert [code for code, _ in rec.closed.values()] == [1001, 1001]


async def test_plain_uvicorn_shutdown_is_1012() -> None:
    """Without the recipe uvicorn closes WebSockets itself (1012) before the lifespan
    shutdown runs; socker's hooks still hear how each connection ended."""
    rec = Recorder()
    sock = ASGIApp(game_setup, **rec.hooks())
    async with running(starlette_app(sock)) as srv, ws_connect(srv.ws()) as ws:
        await eventually(lambda: len(sock.hub.connections) == 1)
        srv.server.should_exit = True
        code, _ = await closed_with(ws)
        assert code == 1012
        await eventually(lambda: len(rec.closed) == 1)
        assert [code for code, _ in rec.closed.values()] == [1012]


async def test_lifespan_of_top_level_app_closes_connections() -> None:
    """As the top-level app, ASGIApp answers lifespan; shutdown runs hub.close()."""
    sock = ASGIApp(game_setup)
    events: asyncio.Queue[Message] = asyncio.Queue()
    sent: list[str] = []
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        events.put_nowait({"type": kind})

    async def send(message: Message) -> None:
        sent.append(message["type"])

    await sock({"type": "lifespan", "asgi": {"version": "3.0"}}, events.get, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    with pytest.raises(aiosocker.HandshakeRejected) as refused:
        await sock.hub.admit(object(), aiosocker.Request("/"))
    assert refused.value.status == 503
