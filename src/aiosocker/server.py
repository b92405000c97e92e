"""``serve()``: a :class:`~aiosocker.hub.Hub` and one listener.

:class:`Server` owns the lifecycle (start, ``serve_forever``, close) and the address;
the connections, ``tick()`` and ``broadcast()`` are the hub's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Unpack

from .backends import attach
from .connection import Connection
from .errors import CloseCode
from .hub import Hub, HubOptions, Setup
from .options import Settings, TransportName
from .transports import Listener

__all__ = ["Server", "ServerOptions", "serve"]


class ServerOptions(HubOptions, total=False):
    """Keyword options of :func:`serve`: those of every way of serving
    (:class:`~aiosocker.hub.HubOptions`), and the ones a listening server owns. Each is
    documented on :class:`~aiosocker.options.Settings`."""

    path: str
    ping_interval: float | None
    ping_timeout: float | None
    close_timeout: float
    transport: TransportName


def _listener(hub: Hub) -> Listener:
    if hub.settings.transport == "picows":
        from .transports.picows import PicowsListener  # picows is an optional extra

        return PicowsListener(hub)
    from .transports.websockets import WebsocketsListener

    return WebsocketsListener(hub)


class Server:
    """An aiosocker server. Create it with :func:`serve`; use it as an async context
    manager.

    >>> async def main() -> None:                       # doctest: +SKIP
    ...     async with aiosocker.serve(setup, port=0) as server:
    ...         print(server.url)
    ...         await server.serve_forever()

    Args:
        setup: called with each new :class:`~aiosocker.Connection`; add its stages there.
        host: interface to bind (default: loopback only).
        port: TCP port; 0 picks a free one (see :attr:`port`).
        **options: see :class:`ServerOptions` (each documented on
            :class:`~aiosocker.options.Settings`): ``drive``, ``origins``,
            ``max_connections``, ``authenticate``, ``max_size``, ``max_queue``,
            ``text``, hooks, ``routes``, ``path``, pings, ``close_timeout``,
            ``transport``.
    """

    def __init__(
        self,
        setup: Setup,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        **options: Unpack[ServerOptions],
    ) -> None:
        self.hub = Hub(setup, Settings.of(options))
        """The live connections (what :meth:`tick`, :meth:`broadcast` and
        :attr:`connections` forward to)."""
        attach(self.hub)
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._listener: Listener | None = None
        self._stopped: asyncio.Event | None = None

    # -- what a user sees ------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The options in force."""
        return self.hub.settings

    @property
    def path(self) -> str:
        """The WebSocket's HTTP path."""
        return self.hub.settings.path

    @property
    def connections(self) -> Mapping[str, Connection]:
        """Live connections by id (a read-only view)."""
        return self.hub.connections

    @property
    def port(self) -> int:
        """The port listened on (the one picked, when asked for port 0)."""
        if self._port is None:
            raise RuntimeError("the server is not listening yet: use 'async with serve(...)'")
        return self._port

    @property
    def url(self) -> str:
        """The ``ws://`` URL clients connect to."""
        return f"ws://{self._authority()}{self.path}"

    @property
    def http_url(self) -> str:
        """The ``http://`` URL of the server's root (where routes are served)."""
        return f"http://{self._authority()}/"

    def _authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def tick(self) -> int:
        """Handle every pending message on every connection (``drive="tick"``); see
        :meth:`Hub.tick <aiosocker.hub.Hub.tick>`."""
        return self.hub.tick()

    async def broadcast(
        self,
        data: bytes,
        *,
        room: str | None = None,
        stage: str | Iterable[str] | None = None,
        exclude: Connection | Iterable[Connection] | None = None,
        channel: str | None = None,
    ) -> int:
        """Queue ``data`` to a room's members (or every connection), on every process;
        see :meth:`Hub.broadcast <aiosocker.hub.Hub.broadcast>`."""
        return await self.hub.broadcast(
            data, room=room, stage=stage, exclude=exclude, channel=channel
        )

    @property
    def rooms(self) -> Mapping[str, frozenset[Connection]]:
        """Every room with local members, and those members (a snapshot)."""
        return self.hub.rooms

    async def members(self, room: str) -> int:
        """How many connections are in ``room``, on every process."""
        return await self.hub.members(room)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening."""
        if self._listener is not None:
            raise RuntimeError("the server is already started")
        self._stopped = asyncio.Event()
        await self.hub.start()
        try:
            self._listener = _listener(self.hub)
            self._port = await self._listener.start(self.host, self._requested_port)
        except BaseException:  # e.g. the port is taken: stop what hub.start() started
            self._listener = None
            await self.hub.close()
            raise

    async def serve_forever(self) -> None:
        """Wait until :meth:`close` is called (e.g. from a signal handler)."""
        if self._stopped is None:
            raise RuntimeError("start the server first: use 'async with serve(...)'")
        await self._stopped.wait()

    async def close(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down"
    ) -> None:
        """Stop accepting, close every connection with ``code``, wait for their hooks."""
        if self.hub.closing:
            return
        listener = self._listener
        if listener is not None:
            listener.close()
        await self.hub.close(code, reason)
        if listener is not None:
            await listener.wait_closed()
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


def serve(
    setup: Setup, host: str = "127.0.0.1", port: int = 8765, **options: Unpack[ServerOptions]
) -> Server:
    """Create an aiosocker server; ``async with serve(...) as server:`` starts it.

    ``setup(conn)`` is called with each new :class:`~aiosocker.Connection` to add its
    stages. The options are those of :class:`ServerOptions`.
    """
    return Server(setup, host=host, port=port, **options)
