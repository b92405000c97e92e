"""The Hub: every live connection of one server, whatever serves them.

A Hub holds what every way of serving shares -- the registry of live connections, the
admission count, the hooks, ``tick()``, ``broadcast()`` and graceful close -- and
imports no socket library. A listener (``transports/websockets``, ``transports/picows``)
or the ASGI app turns sockets into connections on a Hub:

1. ``answer = hub.handshake.answer(request)``: an HTTP answer, or ``None`` for an
   upgrade; then ``await hub.admit(key, request)`` (or :meth:`Hub.admit_now` where it
   cannot wait) reserves a place under ``max_connections`` -- or raises
   :class:`~aiosocker.HandshakeRejected`, which ``handshake.refusal()`` answers;
2. ``conn = hub.open(key, transport, request)`` once the socket is upgraded (``key`` is
   the object the admission was made for; :meth:`Hub.release` frees the place if the
   upgrade fails instead);
3. ``await hub.run(conn, reader)``: setup, then the adapter's read pump until the end.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, TypedDict

from .connection import CloseHook, Connection, ErrorHook, OpenHook, Setup, Transport
from .errors import CloseCode, HandshakeRejected, QueueFullError
from .handshake import Admission, Authenticate, Handshake, Request
from .limits import PerIp, Rate
from .options import Drive, Settings, TextPolicy
from .routes import Route, default_routes

__all__ = ["Hub", "HubOptions", "Setup"]

logger = logging.getLogger("aiosocker")


class HubOptions(TypedDict, total=False):
    """Options of every way of serving (``serve()`` and the ASGI app); each is documented
    on :class:`~aiosocker.options.Settings`."""

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
    max_memory: int
    rate: Rate | None
    allowed_hosts: Sequence[str] | None
    max_per_ip: int | None
    new_per_ip: float | None


class Hub:
    """The live connections of one server, and what can be done to all of them.

    ``serve()`` makes one (``server.hub``; :class:`~aiosocker.Server` forwards its
    methods) and so does the ASGI app (``app.hub``).
    """

    def __init__(self, setup: Setup, settings: Settings) -> None:
        if not callable(setup):
            raise TypeError(f"setup must be a function taking the connection, got {setup!r}")
        self.setup = setup
        self.settings = settings
        self.handshake = Handshake(
            settings.path,
            {**default_routes(), **(settings.routes or {})},
            Admission(settings.origins, settings.max_connections, settings.authenticate),
            settings.allowed_hosts,
        )
        self._per_ip = PerIp(settings.max_per_ip, settings.new_per_ip)
        # Per-IP places of admitted sockets not opened yet: released when the adapter
        # drops its key without opening (a failed upgrade) or calls release().
        self._ip_places: weakref.WeakKeyDictionary[Any, weakref.finalize[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._ip_of: dict[str, str] = {}
        self._connections: dict[str, Connection] = {}
        self._admitted: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._closing = False

    # -- what a user sees ------------------------------------------------------------

    @property
    def connections(self) -> Mapping[str, Connection]:
        """Live connections by id (a read-only view)."""
        return MappingProxyType(self._connections)

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` has been called (new connections are refused)."""
        return self._closing

    def tick(self) -> int:
        """Handle every pending message on every connection, without waiting.

        For ``drive="tick"``: call it once per frame of your game loop. Returns how many
        messages were handled.
        """
        if self.settings.drive != "tick":
            raise RuntimeError("tick() is for drive='tick'")
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

    async def close(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down"
    ) -> None:
        """Refuse new connections, close every live one with ``code``, and wait for
        their close hooks."""
        self._closing = True
        await asyncio.gather(
            *(conn.close(code, reason) for conn in list(self._connections.values())),
            return_exceptions=True,
        )

    # -- what adapters call ----------------------------------------------------------

    def _check(self, request: Request) -> None:
        if self._closing:
            raise HandshakeRejected(HTTPStatus.SERVICE_UNAVAILABLE, "server shutting down")
        self.handshake.check_host(request)
        self.handshake.admission.check(request, len(self._connections) + len(self._admitted))
        if self._per_ip.active:
            self._per_ip.check(request.remote_ip, time.monotonic())

    def _hold(self, key: Any, request: Request, user: Any) -> None:
        if self._per_ip.active:
            ip = request.remote_ip
            self._per_ip.count(ip)
            self._ip_places[key] = weakref.finalize(key, self._per_ip.release, ip)
        self._admitted[key] = user

    async def admit(self, key: Any, request: Request) -> None:
        """Run the admission policy for an upgrade; hold a place under
        ``max_connections`` for ``key`` (the adapter's object for this socket, held
        weakly) until :meth:`open` or :meth:`release`. Raises HandshakeRejected."""
        self._check(request)
        try:
            user = await self.handshake.admission.authenticated(request)
        except HandshakeRejected:
            raise
        except Exception as exc:
            logger.exception("authenticate raised for %s", request.path)
            raise HandshakeRejected(
                HTTPStatus.INTERNAL_SERVER_ERROR, "authentication failed"
            ) from exc
        if self._closing:  # authenticate may have waited
            raise HandshakeRejected(HTTPStatus.SERVICE_UNAVAILABLE, "server shutting down")
        self._hold(key, request, user)

    def admit_now(self, key: Any, request: Request) -> None:
        """:meth:`admit` for a server without ``authenticate`` (it never waits), for
        adapters whose handshake hook cannot wait."""
        if self.handshake.admission.authenticate is not None:
            raise RuntimeError("admit_now() is for a hub without authenticate")
        self._check(request)
        self._hold(key, request, None)

    def release(self, key: Any) -> None:
        """Free the place :meth:`admit` held for ``key`` (the upgrade did not happen)."""
        self._admitted.pop(key, None)
        place = self._ip_places.pop(key, None)
        if place is not None:
            place()

    def open(self, key: Any, transport: Transport, request: Request) -> Connection:
        """The connection for an admitted, upgraded socket, with the hub's hooks."""
        settings = self.settings
        conn = Connection(
            transport, request=request, settings=settings, user=self._admitted.pop(key, None)
        )
        place = self._ip_places.pop(key, None)
        if place is not None and place.detach() is not None:
            self._ip_of[conn.id] = request.remote_ip  # released when the connection ends
        if settings.on_open is not None:
            conn.on_open(settings.on_open)
        if settings.on_close is not None:
            conn.on_close(settings.on_close)
        if settings.on_error is not None:
            conn.on_error(settings.on_error)
        return conn

    async def run(self, conn: Connection, reader: Awaitable[None]) -> None:
        """Register ``conn``, run setup, then ``reader`` (the adapter's read pump) until
        the socket closes. A failing setup closes the connection with 1011."""
        self._connections[conn.id] = conn
        try:
            if self._closing:  # its handshake finished while close() was running
                conn._close_soon(CloseCode.GOING_AWAY, "server shutting down")
            else:
                await conn._start(self.setup)
            await reader
        finally:
            self._connections.pop(conn.id, None)
            ip = self._ip_of.pop(conn.id, None)
            if ip is not None:
                self._per_ip.release(ip)
