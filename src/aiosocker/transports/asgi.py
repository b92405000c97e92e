"""Mount aiosocker on a path of any ASGI app (Starlette, FastAPI, ...), served by uvicorn
or another ASGI server.

>>> sock = ASGIApp(setup, origins=["https://game.example"])   # doctest: +SKIP
>>> app = Starlette(routes=[Mount("/ws", app=sock)])              # doctest: +SKIP

:class:`ASGIApp` is an ASGI application. It answers:

* ``websocket``: every WebSocket the host app routes to it becomes a
  :class:`~aiosocker.Connection` with the same admission (origin, ``max_connections``,
  ``authenticate``), stages, hooks and close codes as ``aiosocker.serve()``;
* ``http``: the server's routes (``/aiosocker.js`` and its modules, ``/aiosocker.d.ts``,
  your ``routes``) relative to where it is mounted, 404 otherwise;
* ``lifespan``: when it is the top-level app, shutdown runs ``hub.close()`` (1001 to
  whoever is still connected; uvicorn closes WebSockets itself, 1012, before lifespan
  shutdown: ``docs/asgi.md`` has the recipe for 1001).

Its :attr:`ASGIApp.hub` is the :class:`~aiosocker.hub.Hub` of its connections
(``connections``, ``tick()``, ``broadcast()``, ``close()``); this module only adapts
ASGI messages to it and to the sans-I/O handshake. See ``docs/asgi.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any, TypeAlias, Unpack

from ..backends import attach
from ..connection import Connection, Setup
from ..errors import CloseCode, ConnectionClosedError, HandshakeRejected
from ..handshake import Request, Response, refusal
from ..hub import Hub, HubOptions
from ..options import Settings

__all__ = [
    "ASGIApp",
    "ASGIOptions",
    "ASGITransport",
    "Message",
    "Receive",
    "Scope",
    "Send",
]

logger = logging.getLogger("aiosocker")

Scope: TypeAlias = MutableMapping[str, Any]
"""An ASGI connection scope."""
Message: TypeAlias = MutableMapping[str, Any]
"""An ASGI event, sent or received."""
Receive: TypeAlias = Callable[[], Awaitable[Message]]
"""The ASGI ``receive`` callable."""
Send: TypeAlias = Callable[[Message], Awaitable[None]]
"""The ASGI ``send`` callable."""

HTTP_RESPONSE_EXTENSION = "websocket.http.response"
"""The ASGI extension that lets an app refuse a WebSocket with any HTTP response."""
POLICY_VIOLATION = 1008
"""The close code of a refusal sent as ``websocket.close`` (servers without the
extension answer it with HTTP 403)."""


ASGIOptions: TypeAlias = HubOptions
"""Keyword options of :class:`ASGIApp`: those of every way of serving (no host, port,
path, transport or pings: the ASGI server and the host app own those)."""


class ASGITransport:
    """A :class:`~aiosocker.connection.Transport` over one ASGI ``websocket`` scope.

    ``send`` and ``close`` become ``websocket.send`` / ``websocket.close`` events.
    Latency is always 0: ASGI has no ping API, and the ASGI server runs its own
    keepalive (uvicorn: ``ws_ping_interval`` / ``ws_ping_timeout``).
    """

    __slots__ = ("__weakref__", "_close_sent", "_ended", "_remote", "_send")

    def __init__(self, send: Send, remote_address: Any = None) -> None:
        self._send = send
        self._remote = remote_address
        self._close_sent = False
        self._ended: tuple[int | None, str] | None = None

    @property
    def remote_address(self) -> Any:
        """The peer's ``(host, port)`` from the scope's ``client``, or ``None``."""
        return self._remote

    @property
    def latency(self) -> float:
        """Always 0: the ASGI server does keepalive and does not report round trips."""
        return 0.0

    def ended(self, code: int | None, reason: str) -> None:
        """Record that the ASGI server reported ``websocket.disconnect``."""
        if self._ended is None:
            self._ended = (code, reason)

    async def send(self, data: bytes) -> None:
        """Send one binary message (``websocket.send``)."""
        if self._ended is not None:
            raise ConnectionClosedError(*self._ended)
        if self._close_sent:
            raise ConnectionClosedError(None, "closing")
        try:
            await self._send({"type": "websocket.send", "bytes": data})
        except OSError as exc:  # ASGI 2.4: the client is gone
            code, reason = self._ended or (None, "client disconnected")
            raise ConnectionClosedError(code, reason) from exc

    async def close(self, code: int, reason: str) -> None:
        """Send ``websocket.close``. The ASGI server completes the closing handshake and
        reports ``websocket.disconnect`` to the read pump."""
        if self._close_sent or self._ended is not None:
            return
        self._close_sent = True
        with contextlib.suppress(OSError):  # already gone; the pump hears the disconnect
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


def _address(pair: Any) -> Any:
    return tuple(pair) if pair is not None else None


def _remote(scope: Scope) -> Any:
    return _address(scope.get("client"))


def _route_path(scope: Scope) -> str:
    """The path below where the app is mounted (as Starlette's ``Mount`` sets
    ``root_path``), always starting with ``/``."""
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :]
    return path or "/"


def _request(scope: Scope, path: str) -> Request:
    query = scope.get("query_string", b"").decode("latin-1")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    return Request.from_target(
        f"{path}?{query}" if query else path,
        headers,
        _remote(scope),
        scope.get("method", "GET"),
        _address(scope.get("server")),
    )


def _start(answer: Response, prefix: str) -> Message:
    return {
        "type": f"{prefix}.start",
        "status": answer.status,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers],
    }


class ASGIApp:
    """socker as an ASGI application: mount it on a path of any ASGI app.

    >>> sock = aiosocker.transports.asgi.ASGIApp(setup, max_connections=1000)   # doctest: +SKIP
    >>> app = Starlette(routes=[Mount("/ws", app=sock)])               # doctest: +SKIP

    Clients connect to ``ws://host/ws/`` (``Mount`` matches below ``/ws/``; use
    ``WebSocketRoute("/ws", sock)`` for an exact ``/ws`` without the HTTP routes). Every
    WebSocket the host app routes here is a socker connection: the host app's router
    decides the path.

    Args:
        setup: called with each new :class:`~aiosocker.Connection`; add its stages there.
        **options: those of :class:`aiosocker.Server` without host, port, path, transport
            and pings (see :class:`ASGIOptions`).

    Refusals (origin, ``max_connections``, ``authenticate``) happen before the
    WebSocket is accepted. With the ASGI ``websocket.http.response`` extension (uvicorn
    has it) the client gets the same HTTP status and reason as from ``aiosocker.serve()``
    (403, 503, 401...); without it the app sends ``websocket.close`` (code 1008) before
    accepting, which the ASGI spec turns into HTTP 403 whatever the cause.

    ``max_size`` is checked on every message (1009 past it); the ASGI server has its own
    limit (uvicorn's ``ws_max_size``, 16 MiB by default) and closes with 1009 itself past
    that, before socker sees the message: set it to ``max_size`` to stop big messages
    early.
    """

    def __init__(self, setup: Setup, **options: Unpack[ASGIOptions]) -> None:
        self.hub = Hub(setup, Settings.of({**options, "ping_interval": None}))
        """The :class:`~aiosocker.hub.Hub` of this app's connections: use its
        ``connections``, ``tick()``, ``broadcast()`` and ``close()``."""
        attach(self.hub)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise ValueError(f"aiosocker's ASGI app does not handle {kind!r} scopes")

    # -- websocket -------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left before the handshake
        hub = self.hub
        request = _request(scope, scope["path"])
        transport = ASGITransport(send, request.remote_address)
        try:
            await hub.admit(transport, request)  # the transport is the admission key
        except HandshakeRejected as exc:
            with contextlib.suppress(OSError):  # the client may be gone already
                await self._reject(scope, send, exc)
            return
        try:
            await send({"type": "websocket.accept"})
        except OSError:
            return  # gone; the admitted slot goes with the transport (a weak key)
        conn = hub.open(transport, transport, request)
        reader = _pump(receive, conn, transport, hub.settings.max_size)
        try:
            await hub.run(conn, reader)
        finally:
            if inspect.getcoroutinestate(reader) == inspect.CORO_CREATED:
                reader.close()  # cancelled during setup: never started, never awaited

    @staticmethod
    async def _reject(scope: Scope, send: Send, exc: HandshakeRejected) -> None:
        extensions = scope.get("extensions") or {}
        if HTTP_RESPONSE_EXTENSION in extensions:
            answer = refusal(exc)
            await send(_start(answer, "websocket.http.response"))
            await send({"type": "websocket.http.response.body", "body": answer.body})
        else:
            # Before accept, the ASGI server answers this with HTTP 403.
            await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": exc.reason})

    # -- http ------------------------------------------------------------------------

    async def _http(self, scope: Scope, send: Send) -> None:
        request = _request(scope, _route_path(scope))
        answer = await self.hub.respond(request)
        if answer is None:  # a well-formed upgrade sent as plain HTTP: not ours to take
            answer = Response.text(HTTPStatus.UPGRADE_REQUIRED, "upgrade through the ASGI server")
        await send(_start(answer, "http.response"))
        await send({"type": "http.response.body", "body": answer.body})

    # -- lifespan --------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.hub.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.hub.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _pump(
    receive: Receive, conn: Connection, transport: ASGITransport, max_size: int
) -> None:
    """Read ASGI events into ``conn`` until ``websocket.disconnect``, then report the
    end to ``conn``."""
    code: int | None = None
    reason = ""
    closer: asyncio.Future[None] | None = None
    receive_message = conn._reader()
    try:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data: bytes | str | None = message.get("bytes")
                if data is None:
                    data = message.get("text")
                if data is None or closer is not None:
                    continue
                size = len(data.encode()) if isinstance(data, str) else len(data)
                if size > max_size:
                    # conn.close() waits for the end, which this pump reports: run it
                    # beside the pump and keep reading until the disconnect.
                    closer = asyncio.ensure_future(
                        conn.close(
                            CloseCode.MESSAGE_TOO_BIG,
                            f"message of {size} bytes over max_size ({max_size})",
                        )
                    )
                    continue
                waiter = receive_message(data)
                if waiter is not None:
                    await waiter
            elif kind == "websocket.disconnect":
                code = message.get("code", 1005)
                reason = message.get("reason") or ""
                break
    finally:
        transport.ended(code, reason)
        await conn._transport_closed(code, reason)
        if closer is not None:
            await closer
