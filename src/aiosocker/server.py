"""The server: admits connections, runs each through its chain, ticks, broadcasts.

:class:`Server` holds what every transport shares (the registry of live connections,
hooks, ``tick()``, ``broadcast()``, graceful shutdown); a transport adapter only turns
sockets into :class:`~aiosocker.Connection` objects and calls :meth:`Server.run_connection`.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from types import MappingProxyType, TracebackType
from typing import Any, Literal, TypeAlias, TypedDict, Unpack

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from .admission import Admission, Authenticate
from .connection import (
    CloseHook,
    Connection,
    Drive,
    ErrorHook,
    OpenHook,
    Request,
    TextPolicy,
    Transport,
)
from .errors import CloseCode, HandshakeRejected, QueueFullError
from .routes import Route, default_routes
from .transports.websockets import WebsocketsTransport, pump

__all__ = ["ConnectionOptions", "Server", "ServerOptions", "Setup", "serve"]

logger = logging.getLogger("aiosocker")

Setup: TypeAlias = Callable[[Connection], "Awaitable[None] | None"]
"""Called once per new connection to build its chain and hooks, like the Go example."""

TransportName: TypeAlias = Literal["websockets", "picows"]


class Server:
    """A socker server. Create it with :func:`serve`; use it as an async context manager.

    >>> async def main() -> None:                       # doctest: +SKIP
    ...     async with aiosocker.serve(setup, port=0) as server:
    ...         print(server.url)
    ...         await server.serve_forever()

    Args:
        setup: called with each new :class:`~aiosocker.Connection`; add its stages there.
        host: interface to bind (default: loopback only).
        port: TCP port; 0 picks a free one (see :attr:`port`).
        path: the WebSocket's HTTP path; other paths serve ``routes`` or 404.
        drive: ``"async"`` runs handlers as messages arrive; ``"tick"`` queues them for
            :meth:`tick` in your game loop.
        origins: allowed browser origins; default: same host as the request only.
        max_connections: more than this at once get HTTP 503.
        authenticate: sees the :class:`~aiosocker.Request`; returns the user or refuses.
        max_size: largest message accepted, in bytes; a larger one closes with 1009.
        max_queue: bound of each connection's outgoing queue (and tick inbox).
        text: ``"close"`` a connection that sends a text frame (1003) or ``"ignore"``.
        ping_interval, ping_timeout: keepalive, in seconds (``None`` disables).
        close_timeout: seconds to wait for the peer's answer to a close frame before
            dropping the connection (hooks run after it).
        on_open, on_close, on_error: hooks for every connection.
        routes: extra HTTP routes ``{path: Route}`` (``/aiosocker.js`` is built in).
        transport: ``"websockets"`` (default) or ``"picows"`` (``aiosocker[fast]``).
    """

    def __init__(
        self,
        setup: Setup,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        path: str = "/",
        drive: Drive = "async",
        origins: Sequence[str] | None = None,
        max_connections: int | None = None,
        authenticate: Authenticate | None = None,
        max_size: int = 2**20,
        max_queue: int = 1024,
        text: TextPolicy = "close",
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float = 10,
        on_open: OpenHook | None = None,
        on_close: CloseHook | None = None,
        on_error: ErrorHook | None = None,
        routes: Mapping[str, Route] | None = None,
        transport: TransportName = "websockets",
    ) -> None:
        if not callable(setup):
            raise TypeError(f"setup must be a function taking the connection, got {setup!r}")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        if drive not in ("async", "tick"):
            raise ValueError(f"drive must be 'async' or 'tick', got {drive!r}")
        if transport not in ("websockets", "picows"):
            raise ValueError(f"transport must be 'websockets' or 'picows', got {transport!r}")
        if max_size < 1:
            raise ValueError(f"max_size must be a positive number of bytes, got {max_size}")
        self.setup = setup
        self.host = host
        self.path = path
        self.drive: Drive = drive
        self.admission = Admission(origins, max_connections, authenticate)
        self.max_size = max_size
        self.max_queue = max_queue
        self.text: TextPolicy = text
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.routes: dict[str, Route] = {**default_routes(), **(routes or {})}
        self.transport: TransportName = transport
        self._hooks = (on_open, on_close, on_error)
        self._requested_port = port
        self._port: int | None = None
        self._connections: dict[str, Connection] = {}
        self._listener: WsServer | None = None
        self._fast: Any = None  # the picows listener, when transport="picows"
        self._admitted: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._closing = False
        self._stopped: asyncio.Event | None = None

    # -- what a user sees ------------------------------------------------------------

    @property
    def connections(self) -> Mapping[str, Connection]:
        """Live connections by id (a read-only view)."""
        return MappingProxyType(self._connections)

    @property
    def port(self) -> int:
        """The port listened on (the one picked, when asked for port 0)."""
        if self._port is None:
            raise RuntimeError("the server is not listening yet: use 'async with serve(...)'")
        return self._port

    @property
    def url(self) -> str:
        """The ``ws://`` URL clients connect to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{self.path}"

    @property
    def http_url(self) -> str:
        """The ``http://`` URL of the server's root (where routes are served)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def tick(self) -> int:
        """Handle every pending message on every connection, without waiting.

        For ``drive="tick"``: call it once per frame of your game loop. Returns how many
        messages were handled.
        """
        if self.drive != "tick":
            raise RuntimeError("tick() is for serve(..., drive='tick')")
        handled = 0
        for conn in list(self._connections.values()):
            handled += conn.poll()
        return handled

    async def broadcast(
        self,
        data: bytes,
        *,
        stage: str | Iterable[str] | None = None,
        exclude: Connection | Iterable[Connection] | None = None,
    ) -> int:
        """Queue ``data`` to every live connection (optionally only those in ``stage``).

        Never waits for a slow peer: a connection whose queue is full misses this
        message (logged). Returns how many connections it was queued to.
        """
        stages = {stage} if isinstance(stage, str) else None if stage is None else set(stage)
        skip = {exclude} if isinstance(exclude, Connection) else set(exclude or ())
        sent = 0
        for conn in list(self._connections.values()):
            if conn in skip or conn.closed:
                continue
            if stages is not None and (not len(conn.stages) or conn.current not in stages):
                continue  # not in those stages (or still in setup, with none yet)
            try:
                conn.write(data)
            except QueueFullError:
                logger.warning("broadcast: connection %s is not keeping up; skipped", conn.id)
                continue
            except Exception:  # closing right now
                continue
            sent += 1
        return sent

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening."""
        if self._port is not None:
            raise RuntimeError("the server is already started")
        self._stopped = asyncio.Event()
        if self.transport == "picows":
            from .transports.picows import listen

            self._fast, self._port = await listen(self)
            return
        self._listener = await ws_serve(
            self._ws_handler,
            self.host,
            self._requested_port,
            process_request=self._ws_process_request,
            process_response=self._ws_process_response,
            compression=None,  # binary game data; deflate costs ~60 KiB per connection
            max_size=self.max_size,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
            server_header="aiosocker",
        )
        self._port = self._listener.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        """Wait until :meth:`close` is called (e.g. from a signal handler)."""
        if self._stopped is None:
            raise RuntimeError("start the server first: use 'async with serve(...)'")
        await self._stopped.wait()

    async def close(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down"
    ) -> None:
        """Stop accepting, close every connection with ``code``, wait for their hooks."""
        if self._closing:
            return
        self._closing = True
        if self._listener is not None:
            self._listener.close(close_connections=False)
        if self._fast is not None:
            self._fast.close()
        await asyncio.gather(
            *(conn.close(code, reason) for conn in list(self._connections.values())),
            return_exceptions=True,
        )
        if self._listener is not None:
            await self._listener.wait_closed()
        if self._fast is not None:
            await self._fast.wait_closed()
        if self._stopped is not None:
            self._stopped.set()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- what transport adapters call ------------------------------------------------

    def route(self, request: Request) -> Route | None:
        """The HTTP route for a request to a path other than the WebSocket's, if any."""
        return self.routes.get(request.path)

    async def admit(self, key: Any, request: Request) -> Any:
        """Run the admission policy; remember the user under ``key`` (the raw socket
        object) until :meth:`open_connection` picks it up. Raises HandshakeRejected."""
        if self._closing:
            raise HandshakeRejected(HTTPStatus.SERVICE_UNAVAILABLE, "server shutting down")
        live = len(self._connections) + len(self._admitted)
        user = await self.admission.admit(request, live)
        self._admitted[key] = user
        return user

    def open_connection(self, key: Any, transport: Transport, request: Request) -> Connection:
        """Create the connection for an admitted socket, with the server's hooks."""
        conn = Connection(
            transport,
            request=request,
            drive=self.drive,
            max_queue=self.max_queue,
            text=self.text,
            user=self._admitted.pop(key, None),
        )
        on_open, on_close, on_error = self._hooks
        if on_open is not None:
            conn.on_open(on_open)
        if on_close is not None:
            conn.on_close(on_close)
        if on_error is not None:
            conn.on_error(on_error)
        return conn

    async def run_connection(self, conn: Connection, reader: Awaitable[None]) -> None:
        """Register ``conn``, run setup, then ``reader`` (the adapter's read pump) until
        the socket closes. A failing setup closes the connection with 1011."""
        self._connections[conn.id] = conn
        try:
            if self._closing:  # its handshake finished while close() was running
                conn._close_soon(CloseCode.GOING_AWAY, "server shutting down")
            else:
                await conn.start(self.setup)
            await reader
        finally:
            self._connections.pop(conn.id, None)

    # -- the websockets transport ----------------------------------------------------

    async def _ws_process_request(self, ws: ServerConnection, raw: WsRequest) -> WsResponse | None:
        route, _, query = raw.path.partition("?")
        request = Request(route, query, raw.headers, ws.remote_address)
        if route != self.path:
            found = self.route(request)
            if found is None:
                return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")
            content_type, body = found.render()
            headers = Headers([("Content-Type", content_type), ("Cache-Control", "no-cache")])
            headers["Content-Length"] = str(len(body))
            return WsResponse(200, "OK", headers, body)
        try:
            await self.admit(ws, request)
        except HandshakeRejected as exc:
            return ws.respond(exc.status, f"{exc.reason}\n")
        return None

    def _ws_process_response(
        self, ws: ServerConnection, raw: WsRequest, response: WsResponse
    ) -> None:
        if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            # Admitted, then refused by websockets (e.g. 426, not an upgrade): the
            # place it held under max_connections is free again.
            self._admitted.pop(ws, None)
        return None

    async def _ws_handler(self, ws: ServerConnection) -> None:
        raw = ws.request
        assert raw is not None
        route, _, query = raw.path.partition("?")
        request = Request(route, query, raw.headers, ws.remote_address)
        conn = self.open_connection(ws, WebsocketsTransport(ws), request)
        await self.run_connection(conn, pump(ws, conn))


class ConnectionOptions(TypedDict, total=False):
    """Options every way of serving has (``serve()`` and the ASGI mount), documented
    on :class:`Server`."""

    drive: Drive
    origins: Sequence[str] | None
    max_connections: int | None
    authenticate: Authenticate | None
    max_size: int
    max_queue: int
    text: TextPolicy
    on_open: OpenHook | None
    on_close: CloseHook | None
    on_error: ErrorHook | None
    routes: Mapping[str, Route] | None


class ServerOptions(ConnectionOptions, total=False):
    """Keyword options of :func:`serve`: those of :class:`ConnectionOptions`, and the
    ones a listening server owns."""

    path: str
    ping_interval: float | None
    ping_timeout: float | None
    close_timeout: float
    transport: TransportName


def serve(
    setup: Setup, host: str = "127.0.0.1", port: int = 8765, **options: Unpack[ServerOptions]
) -> Server:
    """Create a socker server; ``async with serve(...) as server:`` starts it.

    ``setup(conn)`` is called with each new :class:`~aiosocker.Connection` to add its
    stages. The options are those of :class:`Server`.
    """
    return Server(setup, host=host, port=port, **options)
