"""Who gets in: origin check, max_connections, authenticate, and the HTTP answers a
socker server gives besides its WebSocket (routes, 404, 426), with the same statuses on
both server transports."""

from __future__ import annotations

import asyncio
import base64
import os
import urllib.error
import urllib.request
from http import HTTPStatus

import pytest

import aiosocker

from .conftest import HOST, Recorder, StartServer, collector, eventually


def stay(conn: aiosocker.Connection) -> None:
    conn.add(lambda message: False, name="lobby")


async def raw_request(port: int, path: str = "/", headers: tuple[str, ...] = ()) -> bytes:
    """Send a hand-written GET and return the response's status line and headers."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", *headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    finally:
        writer.close()


def upgrade_headers(*, key: bool = True, version: bool = True) -> tuple[str, ...]:
    """An upgrade request's headers; ``key=False`` / ``version=False`` leave one out."""
    encoded = base64.b64encode(os.urandom(16)).decode()
    return (
        "Upgrade: websocket",
        "Connection: Upgrade",
        *([f"Sec-WebSocket-Key: {encoded}"] if key else []),
        *(["Sec-WebSocket-Version: 13"] if version else []),
    )


async def http_get(url: str) -> tuple[int, str, bytes]:
    """GET with urllib (a plain HTTP client) in a thread: status, content type, body."""

    def get() -> tuple[int, str, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.headers["Content-Type"], response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read()

    return await asyncio.to_thread(get)


# -- origin -----------------------------------------------------------------------------


async def test_browser_origin_of_another_host_gets_403(
    start_server: StartServer, recorder: Recorder
) -> None:
    ran: list[aiosocker.Connection] = []
    server = await start_server(ran.append, **recorder.hooks())
    with pytest.raises(aiosocker.HandshakeRejected) as caught:
        async with aiosocker.connect(server.url, origin="https://evil.example"):
            pass
    assert caught.value.status == HTTPStatus.FORBIDDEN == 403
    assert "origin https://evil.example not allowed" in caught.value.reason
    assert ran == [] and recorder.opened == []  # refused before setup or any stage


async def test_same_host_origin_and_no_origin_are_allowed(start_server: StartServer) -> None:
    server = await start_server(stay)
    same_host = f"http://{HOST}:{server.port}"
    async with (
        aiosocker.connect(server.url, origin=same_host) as browser,
        aiosocker.connect(server.url) as script,  # no Origin header at all
    ):
        await eventually(lambda: len(server.connections) == 2, what="two connections")
        assert not browser.closed and not script.closed


async def test_allow_listed_origins(start_server: StartServer) -> None:
    server = await start_server(stay, origins=["https://game.example"])
    async with aiosocker.connect(server.url, origin="https://game.example"):
        await eventually(lambda: len(server.connections) == 1, what="the connection")
    # An allow-list replaces the same-host rule.
    for origin in (f"http://{HOST}:{server.port}", "https://game.example.evil"):
        with pytest.raises(aiosocker.HandshakeRejected) as caught:
            async with aiosocker.connect(server.url, origin=origin):
                pass
        assert caught.value.status == 403


async def test_star_allows_every_origin(start_server: StartServer) -> None:
    server = await start_server(stay, origins=["*"])
    async with aiosocker.connect(server.url, origin="https://anyone.example") as client:
        assert not client.closed


async def test_two_origin_headers_are_refused_not_a_500(start_server: StartServer) -> None:
    server = await start_server(stay)
    head = await raw_request(
        server.port,
        headers=(
            f"Origin: http://{HOST}:{server.port}",
            "Origin: https://evil.example",
            *upgrade_headers(),
        ),
    )
    assert head.startswith(b"HTTP/1.1 403 "), head


# -- max_connections --------------------------------------------------------------------


async def test_max_connections_answers_503_past_it(start_server: StartServer) -> None:
    server = await start_server(stay, max_connections=2)
    async with aiosocker.connect(server.url), aiosocker.connect(server.url):
        with pytest.raises(aiosocker.HandshakeRejected) as caught:
            async with aiosocker.connect(server.url):
                pass
        assert caught.value.status == HTTPStatus.SERVICE_UNAVAILABLE == 503
        assert "server full" in caught.value.reason
        assert len(server.connections) == 2
    # Both left: their places are free again.
    await eventually(lambda: not server.connections, what="the registry to empty")
    async with aiosocker.connect(server.url), aiosocker.connect(server.url):
        await eventually(lambda: len(server.connections) == 2, what="two new connections")


async def test_a_failed_handshake_does_not_hold_a_place(start_server: StartServer) -> None:
    server = await start_server(stay, max_connections=1)
    # A plain GET on the WebSocket's path (426), a half upgrade, no key or no version
    # (400), a refused origin (403) ...
    head = await raw_request(server.port)
    assert head.startswith(b"HTTP/1.1 426 "), head
    head = await raw_request(server.port, headers=("Upgrade: websocket",))
    assert not head.startswith(b"HTTP/1.1 101"), head
    for headers in (upgrade_headers(key=False), upgrade_headers(version=False)):
        head = await raw_request(server.port, headers=headers)
        assert head.startswith(b"HTTP/1.1 400 "), head
    evil = ("Origin: https://evil.example", *upgrade_headers())
    head = await raw_request(server.port, headers=evil)
    assert head.startswith(b"HTTP/1.1 403 "), head
    # ... leave the one place free.
    async with aiosocker.connect(server.url, open_timeout=2) as client:
        assert not client.closed


# -- authenticate -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["async def", "plain function", "function returning a coroutine"])
async def test_authenticate_401_403_and_the_user(
    start_server: StartServer, recorder: Recorder, kind: str
) -> None:
    seen: list[aiosocker.Request] = []
    users: list[object] = []
    received: list[bytes] = []

    def decide(request: aiosocker.Request) -> object:
        seen.append(request)
        token = request.headers.get("Authorization")
        if token is None:
            raise aiosocker.HandshakeRejected(HTTPStatus.UNAUTHORIZED, "token required")
        if token != "Bearer good":
            return False
        return {"name": "ada", "room": request.query}

    async def waiting(request: aiosocker.Request) -> object:
        await asyncio.sleep(0.01)  # really waits (picows hands the socket over after)
        return decide(request)

    authenticate: aiosocker.Authenticate = {
        "async def": waiting,
        "plain function": decide,
        "function returning a coroutine": lambda request: waiting(request),
    }[kind]

    def setup(conn: aiosocker.Connection) -> None:
        users.append(conn.user)
        conn.add(collector(received), name="lobby")

    server = await start_server(
        setup, authenticate=authenticate, max_connections=1, **recorder.hooks()
    )

    with pytest.raises(aiosocker.HandshakeRejected) as caught:
        async with aiosocker.connect(server.url):
            pass
    assert (caught.value.status, caught.value.reason) == (401, "token required")

    with pytest.raises(aiosocker.HandshakeRejected) as caught:
        async with aiosocker.connect(server.url, headers={"Authorization": "Bearer bad"}):
            pass
    assert (caught.value.status, caught.value.reason) == (403, "authentication refused")
    assert users == []  # no setup for refused requests

    # Refusals hold no place: the one connection allowed still gets in.
    good = {"Authorization": "Bearer good"}
    async with aiosocker.connect(server.url + "?room=7", headers=good) as client:
        await eventually(lambda: users, what="setup")
        (conn,) = server.connections.values()
        assert conn.user == {"name": "ada", "room": "room=7"}
        await client.send(b"hi")  # messages flow after the handshake
        await eventually(lambda: received == [b"hi"], what="the message")
        with pytest.raises(aiosocker.HandshakeRejected) as caught:
            async with aiosocker.connect(server.url, headers=good):
                pass
        assert caught.value.status == 503
    assert users == [{"name": "ada", "room": "room=7"}]
    assert [r.path for r in seen] == ["/", "/", "/"]  # not called when full (503)
    assert all(r.remote_address[0] == HOST for r in seen)
    await recorder.wait_closed()
    assert recorder.codes() == [(1000, "")]


async def test_authenticate_runs_after_the_origin_check(start_server: StartServer) -> None:
    calls: list[aiosocker.Request] = []

    def authenticate(request: aiosocker.Request) -> bool:
        calls.append(request)
        return True

    server = await start_server(stay, authenticate=authenticate)
    with pytest.raises(aiosocker.HandshakeRejected):
        async with aiosocker.connect(server.url, origin="https://evil.example"):
            pass
    assert calls == []


# -- paths and routes -------------------------------------------------------------------


async def test_unknown_path_is_404(start_server: StartServer) -> None:
    server = await start_server(stay, path="/ws")
    with pytest.raises(aiosocker.HandshakeRejected) as caught:
        async with aiosocker.connect(f"ws://{HOST}:{server.port}/nope"):
            pass
    assert caught.value.status == 404
    status, _, body = await http_get(f"{server.http_url}nope")
    assert (status, body) == (404, b"not found\n")


async def test_plain_http_on_the_websocket_path_is_426(start_server: StartServer) -> None:
    server = await start_server(stay)
    status, _, _ = await http_get(server.http_url)
    assert status == HTTPStatus.UPGRADE_REQUIRED == 426


async def test_custom_routes_are_served(start_server: StartServer) -> None:
    counter = iter(range(100))

    def broken() -> bytes:
        raise RuntimeError("route bug")

    routes = {
        "/hello.txt": aiosocker.Route("text/plain", b"hi"),
        "/count": aiosocker.Route("text/plain", lambda: str(next(counter)).encode()),
        "/page": aiosocker.Route.html("<p>ok</p>"),
        "/broken": aiosocker.Route("text/plain", broken),
    }
    server = await start_server(stay, path="/ws", routes=routes)
    assert await http_get(server.http_url + "hello.txt") == (200, "text/plain", b"hi")
    assert (await http_get(server.http_url + "count"))[2] == b"0"
    assert (await http_get(server.http_url + "count?x=1"))[2] == b"1"  # rendered per request
    assert (await http_get(server.http_url + "broken"))[0] == 500  # and logged
    assert await http_get(server.http_url + "page") == (
        200,
        "text/html; charset=utf-8",
        b"<p>ok</p>",
    )
    # The WebSocket still works beside the routes.
    async with aiosocker.connect(server.url) as client:
        assert not client.closed


async def test_socker_js_is_served_when_the_package_has_it(start_server: StartServer) -> None:
    server = await start_server(stay)
    assert aiosocker.CLIENT_JS_PATH in server.hub.handshake.routes
    status, content_type, body = await http_get(server.http_url + "aiosocker.js")
    assert status == 200
    assert content_type.startswith("text/javascript")
    assert body == server.hub.handshake.routes[aiosocker.CLIENT_JS_PATH].render()[1]
