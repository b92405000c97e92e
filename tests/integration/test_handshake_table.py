"""One table of HTTP requests, answered identically by every serving path.

Each case is a hand-written request sent over a raw TCP socket to a real server on
127.0.0.1: the ``websockets`` listener, the ``picows`` listener, and the ASGI app under
a real uvicorn. All three ask the same sans-I/O ``aiosocker.handshake``, so the status
and the body must be the same everywhere; the table shows it. Under ASGI the ASGI
server validates the upgrade itself (a doubled Origin, a bad key or version) and refuses
such a request before the app sees it: ``asgi_server`` records what uvicorn answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

import aiosocker
from aiosocker import HandshakeRejected, Route

from .asgi_helpers import running
from .conftest import HOST

pytestmark = pytest.mark.timeout(60)

PATHS = ("websockets", "picows", "asgi")


def broken() -> bytes:
    raise RuntimeError("route bug")


def authenticate(request: aiosocker.Request) -> Any:
    token = request.headers.get("X-Token")
    if token == "refuse":
        return False
    if token == "limit":
        raise HandshakeRejected(429, "slow down")
    if token == "bug":
        raise RuntimeError("authenticate bug")
    return token


OPTIONS: dict[str, Any] = {
    "routes": {"/health": Route("text/plain", b"ok\n"), "/broken": Route("text/plain", broken)},
    "authenticate": authenticate,
}


@contextlib.asynccontextmanager
async def serving(path: str) -> AsyncIterator[int]:
    """A server on a free port for ``path``; yields the port."""
    if path == "asgi":
        app = aiosocker.ASGIApp(lambda conn: None, **OPTIONS)
        async with running(app, sock=app) as server:
            yield server.port
        return
    async with aiosocker.serve(lambda conn: None, HOST, 0, transport=path, **OPTIONS) as srv:
        yield srv.port


def upgrade(
    *extra: str, key: str | None = None, version: str = "13", host: str | None = None
) -> tuple[str, ...]:
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    return (
        *([f"Host: {host}"] if host else []),
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Version: {version}",
        *extra,
    )


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    target: str
    headers: tuple[str, ...]
    status: int
    body: bytes | None  # the expected body (None: not compared)
    asgi_server: int | None = None  # the status uvicorn answers itself, before the app


CASES = (
    Case("route", "GET", "/health", (), 200, b"ok\n"),
    Case("route HEAD has no body", "HEAD", "/health", (), 200, b""),
    Case("route POST", "POST", "/health", (), 405, b"method not allowed\n"),
    Case("no route", "GET", "/nope", (), 404, b"not found\n"),
    Case("route that raises", "GET", "/broken", (), 500, b"internal error\n"),
    Case("client module", "GET", "/aiosocker.js", (), 200, None),
    Case("plain GET on the WebSocket path", "GET", "/", (), 426, None),
    Case(
        "two Origin headers",
        "GET",
        "/",
        upgrade("Origin: http://{host}", "Origin: https://evil.example"),
        403,
        b"more than one Origin header\n",
        asgi_server=400,
    ),
    Case("bad WebSocket version", "GET", "/", upgrade(version="12"), 400, None, asgi_server=400),
    Case("bad WebSocket key", "GET", "/", upgrade(key="short"), 400, None, asgi_server=400),
    Case("POST on the WebSocket path", "POST", "/", upgrade(), 405, None, asgi_server=405),
    Case(
        "cross-site Origin",
        "GET",
        "/",
        upgrade("Origin: https://evil.example"),
        403,
        b"origin https://evil.example not allowed for host {host}\n",
    ),
    Case("authenticate refuses", "GET", "/", upgrade("X-Token: refuse"), 403, None),
    Case("authenticate's own status", "GET", "/", upgrade("X-Token: limit"), 429, b"slow down\n"),
    Case(
        "authenticate raises",
        "GET",
        "/",
        upgrade("X-Token: bug"),
        500,
        b"authentication failed\n",
    ),
    Case("upgrade", "GET", "/", upgrade("Origin: http://{host}", "X-Token: u1"), 101, None),
    Case("upgrade from localhost by name", "GET", "/", upgrade(host="localhost"), 101, None),
    Case(
        "DNS rebinding: a foreign Host on a loopback server",
        "GET",
        "/",
        upgrade("Origin: http://evil.example", host="evil.example"),
        421,
        b"host evil.example is not served here\n",
    ),
    Case(
        "a route asked for by a foreign Host",
        "GET",
        "/health",
        ("Host: evil.example",),
        421,
        b"host evil.example is not served here\n",
    ),
)


async def exchange(port: int, case: Case) -> tuple[int, dict[str, str], bytes]:
    host = f"{HOST}:{port}"
    lines = [f"{case.method} {case.target} HTTP/1.1"]
    if not any(line.startswith("Host:") for line in case.headers):
        lines.append(f"Host: {host}")
    lines += [line.replace("{host}", host) for line in case.headers]
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in header_lines if line)
        }
        length = int(headers.get("content-length", "0"))
        body = b""
        if case.method == "HEAD":
            body = await after_head(reader, writer, host)
        elif length:
            body = await asyncio.wait_for(reader.readexactly(length), 5)
        return int(status_line.split()[1]), headers, body
    finally:
        writer.close()


NEXT = b"HTTP/1.1 "


async def after_head(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
) -> bytes:
    """What the server sends after a HEAD response's head and before anything else: a
    HEAD response has no body, so this must be empty. A server that closes the
    connection sends what it has, then EOF; on one that keeps it open (uvicorn) a second
    request is sent once the server is quiet for a moment, and the bytes before its
    response's status line are the ones counted."""
    got = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(4096), 0.5)
        except TimeoutError:
            break  # quiet, still open
        if not chunk:
            return got  # closed
        got += chunk
    writer.write(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    got += await asyncio.wait_for(reader.readuntil(NEXT), 5)
    return got.removesuffix(NEXT)


@pytest.mark.parametrize("path", PATHS)
async def test_every_serving_path_answers_the_table_alike(path: str) -> None:
    async with serving(path) as port:
        for case in CASES:
            status, headers, body = await exchange(port, case)
            expected = case.body
            if expected is not None:
                expected = expected.replace(b"{host}", f"{HOST}:{port}".encode())
            if path == "asgi" and case.asgi_server is not None:
                # Refused by uvicorn itself before the app sees it: a refusal all the same.
                assert status == case.asgi_server, (path, case.name, status, body)
                continue
            assert status == case.status, (path, case.name, status, body)
            if expected is not None:
                assert body == expected, (path, case.name, body)
            if case.name == "route HEAD has no body":
                assert headers["content-length"] == "3"  # the GET body's length
