"""The Hub: every live connection of one server, whatever serves them.

A Hub holds what every way of serving shares -- the registry of live connections, the
admission count, the hooks, ``tick()``, ``broadcast()`` and graceful close -- and
imports no socket library. A listener (``transports/websockets``, ``transports/picows``)
or the ASGI app turns sockets into connections on a Hub:

1. ``answer = await hub.respond(request)``: an HTTP answer (private routes pass
   admission first), or ``None`` for an upgrade; then ``await hub.admit(key, request)``
   reserves a place under ``max_connections`` -- or raises
   :class:`~aiosocker.HandshakeRejected`, which ``handshake.refusal()`` answers;
2. ``conn = hub.open(key, transport, request)`` once the socket is upgraded (``key`` is
   the object the admission was made for; :meth:`Hub.release` frees the place if the
   upgrade fails instead);
3. ``await hub.run(conn, reader)``: setup, then the adapter's read pump until the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Protocol, TypedDict
from urllib.parse import parse_qs

from .background import Background
from .connection import CloseHook, Connection, ErrorHook, OpenHook, Setup, Transport
from .errors import CloseCode, HandshakeRejected, QueueFullError
from .handshake import Admission, Authenticate, Handshake, Request, Response, refusal
from .limits import PerIp, Rate
from .meter import Meter
from .options import Drive, Settings, TextPolicy
from .resume import QUERY_KEY, MemoryStore, Parked, Store, new_token
from .rooms import Broadcast, Rooms, check_room, stage_set
from .routes import Route, default_routes
from .rtc.envelope import Resume, encode

__all__ = ["Backend", "Hub", "HubOptions", "Setup"]

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
    resume: float | None
    redis: str | None
    metrics: bool
    status_page: bool


class Backend(Protocol):
    """Carries broadcasts and room counts between the processes of one deployment
    (``aiosocker.backends.redis``). A hub without one serves its own process only."""

    origin: str
    """This process's id, unique among the processes sharing the backend."""

    async def start(self, deliver: Callable[[Broadcast], None]) -> None:
        """Connect; from now on call ``deliver`` with every other process's broadcast."""

    async def publish(self, broadcast: Broadcast) -> None:
        """Send ``broadcast`` to the other processes (at most once, in order)."""

    def joined(self, room: str) -> None:
        """One more local member in ``room`` (must not wait)."""

    def left(self, room: str) -> None:
        """One local member fewer in ``room`` (must not wait)."""

    async def members(self, room: str) -> int:
        """Members of ``room`` on every process."""

    async def adopt(self, token: str, rooms: tuple[str, ...], stage: str, grace: float) -> None:
        """This process is going away: let the others keep, for ``grace`` seconds, what
        is broadcast to ``rooms`` for the session parked under ``token``."""

    async def close(self) -> None:
        """Disconnect (the hub is closing)."""


class Ghost:
    """A parked session's place in its rooms while it may resume: what is broadcast to
    it is kept in the store for the client that comes back."""

    __slots__ = ("current", "id", "timer", "token")

    def __init__(self, id: str, current: str, token: str) -> None:
        self.id = id
        self.current = current
        self.token = token
        self.timer: asyncio.TimerHandle | None = None


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
        self.meter: Meter | None = Meter() if settings.metrics or settings.status_page else None
        """The numbers behind ``/metrics`` and ``/status``, when either is on."""
        self.handshake = Handshake(
            settings.path,
            {**default_routes(), **self._observing_routes(), **(settings.routes or {})},
            Admission(settings.origins, settings.max_connections, settings.authenticate),
            settings.allowed_hosts,
        )
        self._per_ip = PerIp(settings.max_per_ip, settings.new_per_ip)
        # Per-IP places of admitted sockets not opened yet: released when the adapter
        # drops its key without opening (a failed upgrade) or calls release().
        self._ip_places: weakref.WeakKeyDictionary[Any, weakref.finalize[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._ip_of: dict[Connection, str] = {}  # by object: a resume changes conn.id
        self._rooms: Rooms[Connection | Ghost] = Rooms()
        self._ghosts: dict[str, Ghost] = {}
        # Live connections by the token their client would resume with, and the
        # reconnects waiting for such a connection to be dropped and parked.
        self._by_token: dict[str, Connection] = {}
        self._handover: dict[str, asyncio.Future[None]] = {}
        self._background = Background()
        self._runs = 0  # connections between hub.run()'s start and end (parking included)
        self._idle: asyncio.Event | None = None
        # Broadcasts kept for parked sessions, stored in order by one task at a time.
        self._kept: deque[tuple[str, bytes]] = deque()
        self._keeper: asyncio.Future[Any] | None = None
        self.backend: Backend | None = None
        """Set before :meth:`start` to share rooms and broadcasts with other processes."""
        self.store: Store = MemoryStore()
        """Where parked sessions wait for their resume (``resume=``); set with
        :attr:`backend` to share them (``aiosocker.backends.attach``)."""
        self.skipped: dict[str, int] = {"queue_full": 0, "no_channel": 0}
        """Broadcast deliveries skipped so far, by why: a member's queue was full, or
        it had no open channel of the label asked for."""
        self._connections: dict[str, Connection] = {}
        self._admitted: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._closing = False

    def _observing_routes(self) -> dict[str, Route]:
        routes: dict[str, Route] = {}
        if self.settings.metrics:
            from .metrics import metrics_route  # prometheus_client: the metrics extra

            routes["/metrics"] = metrics_route(self)
        if self.settings.status_page:
            from .status import status_routes

            routes.update(status_routes(self))
        return routes

    # -- what a user sees ------------------------------------------------------------

    @property
    def connections(self) -> Mapping[str, Connection]:
        """Live connections by id (a read-only view)."""
        return MappingProxyType(self._connections)

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` has been called (new connections are refused)."""
        return self._closing

    def live_stages(self) -> Iterator[str]:
        """The current stage of every live connection (``"(setup)"`` before it has one)."""
        for conn in list(self._connections.values()):
            yield conn.current if len(conn.stages) else "(setup)"

    @property
    def rooms(self) -> Mapping[str, frozenset[Connection]]:
        """Every room with local members, and those members (a snapshot; sessions
        waiting to resume count in :meth:`members` but are not listed here)."""
        return {
            room: frozenset(m for m in members if isinstance(m, Connection))
            for room, members in self._rooms.snapshot().items()
        }

    async def members(self, room: str) -> int:
        """How many connections are in ``room``, on every process of the backend."""
        if self.backend is not None:
            return await self.backend.members(check_room(room))
        return self._rooms.count(check_room(room))

    def join(self, conn: Connection, room: str) -> None:
        """Put ``conn`` in ``room`` (what ``conn.join(room)`` does)."""
        if conn.closed:
            raise RuntimeError(f"connection {conn.id} has ended: it cannot join {room!r}")
        if self._rooms.join(conn, room) and self.backend is not None:
            self.backend.joined(room)

    def leave(self, conn: Connection, room: str) -> None:
        """Take ``conn`` out of ``room`` (what ``conn.leave(room)`` does)."""
        if self._rooms.leave(conn, room) and self.backend is not None:
            self.backend.left(room)

    def rooms_of(self, conn: Connection | Ghost) -> frozenset[str]:
        """The rooms ``conn`` is in."""
        return self._rooms.rooms_of(conn)

    async def start(self) -> None:
        """Connect the backend, if any (``serve()`` and the ASGI app's lifespan do)."""
        if self.backend is not None:
            await self.backend.start(self._from_backend)

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
        room: str | None = None,
        stage: str | Iterable[str] | None = None,
        exclude: Connection | Iterable[Connection] | None = None,
        channel: str | None = None,
    ) -> int:
        """Queue ``data`` to every member of ``room`` (``None``: every connection), on
        every process of the backend, optionally only to those in ``stage``.

        ``channel="game"`` sends on each member's rtc DataChannel of that label
        instead of the WebSocket (members without it open are skipped). Never waits
        for a slow member: one whose queue is full misses this message (logged,
        counted in :attr:`skipped`). Returns how many local members it was queued to.
        """
        if room is not None:
            check_room(room)
        skip = {exclude} if isinstance(exclude, Connection) else set(exclude or ())
        message = Broadcast(
            data,
            room,
            stage_set(stage),
            channel,
            self.backend.origin if self.backend is not None else "",
            frozenset(conn.id for conn in skip),
        )
        sent = self._deliver(message, skip)
        if self.meter is not None:
            self.meter.broadcast(sent)
        if self.backend is not None:
            await self.backend.publish(message)
        return sent

    def _keep(self, ghost: Ghost, data: bytes) -> None:
        self._kept.append((ghost.token, data))
        if self._keeper is None:
            self._keeper = self._background.spawn(self._keep_all())

    async def _keep_all(self) -> None:
        kept = self._kept
        try:
            while kept:
                token, data = kept[0]
                try:
                    await self.store.missed(token, data)
                except Exception as exc:  # the store is down: lost for the resume
                    logger.warning("resume: a message for a parked session was lost: %r", exc)
                kept.popleft()
        finally:
            self._keeper = None  # no await since the last look at kept: nothing strands

    def _from_backend(self, message: Broadcast) -> None:
        if self.backend is not None and message.origin != self.backend.origin:
            # Excluded by id: a session resumed here from another process keeps its id.
            exclude = message.exclude
            skip = [c for c in self._connections.values() if c.id in exclude] if exclude else ()
            self._deliver(message, skip)

    def _deliver(self, message: Broadcast, skip: Collection[Connection]) -> int:
        """Queue ``message`` to its local recipients; how many it was queued to."""
        if message.room is None:
            targets: Iterable[Connection | Ghost] = list(self._connections.values())
        else:
            targets = list(self._rooms.iter_members(message.room))
        stages, label, data = message.stages, message.channel, message.data
        sent = 0
        for conn in targets:
            if isinstance(conn, Ghost):
                if label is None and (stages is None or conn.current in stages):
                    self._keep(conn, data)  # kept for its resume: queued all the same
                    sent += 1
                continue
            if conn in skip or conn.closed:
                continue
            if stages is not None and (not len(conn.stages) or conn.current not in stages):
                continue  # not in those stages (or still in setup, with none yet)
            if label is not None:
                side = conn.channel(label)
                if side is None or not side.is_open or not side.send(data):
                    self.skipped["no_channel"] += 1
                    continue
                sent += 1
                continue
            try:
                conn.write(data)
            except QueueFullError:
                self.skipped["queue_full"] += 1
                if self.meter is not None:
                    self.meter.queue_full += 1
                logger.warning(
                    "broadcast: connection %s is not keeping up; skipped",
                    conn.id,
                    extra=conn.log_context(),
                )
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
        if self._runs:  # sessions still parking (resume): the backend must outlive them
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.close_timeout):
                    await self._idle.wait()
        loop = asyncio.get_running_loop()
        for ghost in list(self._ghosts.values()):
            if self.backend is not None and ghost.timer is not None:  # hand it on
                rooms = tuple(sorted(self._rooms.rooms_of(ghost)))
                left = ghost.timer.when() - loop.time()
                await self.backend.adopt(ghost.token, rooms, ghost.current, left)
            self._drop_ghost(ghost)
        await self._background.finish(cancel=False)
        if self.backend is not None:
            await self.backend.close()

    # -- what adapters call ----------------------------------------------------------

    async def respond(self, request: Request) -> Response | None:
        """The HTTP answer for ``request`` (:meth:`Handshake.answer`), after admission
        for a private route (``/status``, ``/metrics``): ``None`` for an upgrade."""
        handshake = self.handshake
        if handshake.is_private(request):
            try:
                handshake.check_host(request)
                handshake.admission.check_origin(request)
                await handshake.admission.authenticated(request)
            except HandshakeRejected as exc:
                return refusal(exc)
        return handshake.answer(request)

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
        user = await self.handshake.admission.authenticated(request)
        if self._closing:  # authenticate may have waited
            raise HandshakeRejected(HTTPStatus.SERVICE_UNAVAILABLE, "server shutting down")
        self._hold(key, request, user)

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
        conn._membership = self
        if self.backend is not None:
            # Ids travel with resumed sessions and broadcasts' exclude lists: unique
            # across the processes, not only in this one.
            conn.id = f"{self.backend.origin[:8]}-{conn.id}"
        if self.meter is not None:
            conn._meter = self.meter
            conn.stages.observer = self.meter.moved
        place = self._ip_places.pop(key, None)
        if place is not None and place.detach() is not None:
            self._ip_of[conn] = request.remote_ip  # released when the connection ends
        if settings.on_open is not None:
            conn.on_open(settings.on_open)
        if settings.on_close is not None:
            conn.on_close(settings.on_close)
        if settings.on_error is not None:
            conn.on_error(settings.on_error)
        return conn

    async def run(self, conn: Connection, reader: Awaitable[None]) -> None:
        """Register ``conn``, run setup, then ``reader`` (the adapter's read pump) until
        the socket closes. A failing setup closes the connection with 1011. With
        ``resume=``, a token in the request resumes a parked session first, and the
        session is parked again when the connection drops."""
        self._runs += 1
        try:  # one coroutine, not two: servers hold thousands of these frames
            try:  # the resume inside: its failure must release what was taken too
                prepare = await self._resume(conn) if self.settings.resume is not None else None
                self._connections[conn.id] = conn
                if self._closing:  # its handshake finished while close() was running
                    conn._close_soon(CloseCode.GOING_AWAY, "server shutting down")
                else:
                    await conn._start(self.setup, prepare)
                await reader
            finally:
                rooms = self._rooms.leave_all(conn)
                if not (conn.may_resume and await self._park(conn, rooms)):
                    for room in rooms:
                        if self.backend is not None:
                            self.backend.left(room)
                self._connections.pop(conn.id, None)  # last: parked first, if it may resume
                ip = self._ip_of.pop(conn, None)
                if ip is not None:
                    self._per_ip.release(ip)
                self._release_token(conn)
        finally:
            self._runs -= 1
            if not self._runs and self._idle is not None:
                self._idle.set()

    # -- resume ----------------------------------------------------------------------

    async def _resume(self, conn: Connection) -> Callable[[], Awaitable[None]] | None:
        """Claim the session named by the request's token, if any; send the client its
        next token. Returns what to do once setup has built the chain."""
        token = _token_in(conn.request.query)
        claimed, fresh = None, ""
        if token:
            old = self._by_token.get(token)
            if old is not None:
                await self._take_over(old, token)
            if self._keeper is not None:  # what was kept for it must be stored first
                await asyncio.wait([self._keeper])
            try:
                claimed = await self.store.claim(token)
            except Exception as exc:
                logger.warning("resume: the store failed; starting fresh: %r", exc)
            if claimed is None:
                fresh = "unknown, used or expired token"
            elif claimed[1].overflowed:
                claimed, fresh = None, "too many messages were sent while it was away"
        conn.resume_token = new_token()
        self._by_token[conn.resume_token] = conn
        conn.write(encode(Resume(conn.resume_token, claimed is not None, fresh)))
        if claimed is None:
            return None
        record, missed = claimed
        conn.id, conn.user, conn.state, conn.resumed = record.id, record.user, record.state, True
        # The ghost's rooms pass to the connection with no await in between, and the
        # missed messages go right after the RESUME frame: no broadcast is lost or
        # overtakes them while setup runs.
        ghost = self._ghosts.get(record.id)
        if ghost is not None:  # parked here: the new connection takes its place
            self._drop_ghost(ghost, tell_backend=False)
        for room in record.rooms:
            if self._rooms.join(conn, room) and ghost is None and self.backend is not None:
                self.backend.joined(room)  # parked elsewhere: its count is ours now
        for data in missed.messages:
            conn.write(data)

        async def prepare() -> None:
            stage = conn._resume_stage(record.stage) if record.stage else ""
            if stage and stage != conn.current:
                with contextlib.suppress(KeyError):  # a stage this chain no longer has
                    conn.stages.jump(stage)

        return prepare

    async def _take_over(self, old: Connection, token: str) -> None:
        """The client is back with the token of a connection this process still holds:
        its old socket is dead, but nothing has noticed yet (that may take a keepalive
        timeout). Only that client knows the token, so drop the old socket now, without
        a close frame (1006, as a vanished peer), let it park, then resume as usual."""
        abort: Callable[[], None] | None = getattr(old._transport, "abort", None)
        if abort is None:  # ASGI cannot drop a socket: this session starts fresh
            return
        logger.info(
            "resume: the client came back; dropping its old connection %s",
            old.id,
            extra=old.log_context(),
        )
        parked = self._handover.get(token)
        if parked is None:
            parked = self._handover[token] = asyncio.get_running_loop().create_future()
            abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(parked), self.settings.close_timeout)

    def _release_token(self, conn: Connection) -> None:
        token = conn.resume_token
        if token is None:
            return
        if self._by_token.get(token) is conn:
            del self._by_token[token]
        parked = self._handover.pop(token, None)
        if parked is not None and not parked.done():
            parked.set_result(None)  # parked (or not): the reconnect may claim it now

    async def _park(self, conn: Connection, rooms: frozenset[str]) -> bool:
        """Park a dropped session for its resume; ``False`` if it could not be."""
        grace, token = self.settings.resume, conn.resume_token
        assert grace is not None and token is not None
        stage = conn.current if len(conn.stages) else ""
        record = Parked(conn.id, conn.user, conn.state, tuple(sorted(rooms)), stage)
        # The ghost takes the rooms before the store is awaited: a broadcast meanwhile
        # is kept for it, not lost.
        ghost = None if self._closing else self._new_ghost(conn.id, stage, token, rooms)
        try:
            await self.store.park(token, record, grace)
        except Exception as exc:
            if ghost is not None:
                self._drop_ghost(ghost, tell_backend=False)  # the caller tells the backend
            why = (
                f"{exc} (user and state must be JSON)"
                if isinstance(exc, (TypeError, ValueError))
                else f"the store failed: {exc!r}"
            )
            logger.warning(
                "resume: session %s not parked: %s", conn.id, why, extra=conn.log_context()
            )
            return False
        if ghost is None and self.backend is not None:  # closing: another process keeps it
            await self.backend.adopt(token, tuple(sorted(rooms)), stage, grace)
        return True

    def _new_ghost(self, id: str, stage: str, token: str, rooms: frozenset[str]) -> Ghost:
        ghost = Ghost(id, stage, token)
        for room in rooms:
            self._rooms.join(ghost, room)
        self._ghosts[id] = ghost
        grace = self.settings.resume
        assert grace is not None
        ghost.timer = asyncio.get_running_loop().call_later(grace, self._drop_ghost, ghost)
        return ghost

    def _drop_ghost(self, ghost: Ghost, *, tell_backend: bool = True) -> None:
        if self._ghosts.get(ghost.id) is ghost:
            del self._ghosts[ghost.id]
        if ghost.timer is not None:
            ghost.timer.cancel()
        for room in self._rooms.leave_all(ghost):
            if tell_backend and self.backend is not None:
                self.backend.left(room)


def _token_in(query: str) -> str | None:
    values = parse_qs(query).get(QUERY_KEY)
    return values[0] if values else None
