"""Connection: binds a :class:`~aiosocker.Stages` chain to a transport.

The transport adapter (websockets, ASGI, picows) owns the socket. It pushes each
incoming message into ``Connection._receive`` and reports the end with
``Connection._transport_closed`` (private: only adapters and the hub call them); the
connection runs the stages, enforces stage timeouts with loop timers, turns failures
into close codes and calls the hooks.

Two drives:

* ``"async"`` (default): ``receive`` runs the current handler at once. A sync handler
  finishes inline; an ``async`` one returns an awaitable the adapter awaits before it
  reads the next message, so one connection's messages are handled one at a time, in
  order.
* ``"tick"``: ``receive`` only queues (bounded). :meth:`Connection.poll`, called from a
  game loop (usually through ``Server.tick()``), handles everything pending without
  waiting. An ``async`` handler is started as a task and the connection's later messages
  wait for it, so order still holds and the game loop never blocks.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias, TypeVar, cast

from .background import Background
from .errors import (
    CloseCode,
    ConnectionClosedError,
    OutOfStagesError,
    OverMemoryError,
    QueueFullError,
    RateExceededError,
    SignalingError,
    StageTimeoutError,
)
from .handshake import Request
from .limits import Bucket, Rate
from .meter import Meter
from .options import DEFAULTS, Drive, Settings, TextPolicy
from .stages import Stages

__all__ = [
    "ChannelLike",
    "CloseHook",
    "Connection",
    "ErrorHook",
    "Membership",
    "OpenHook",
    "ResumeHook",
    "Setup",
    "Transport",
]

logger = logging.getLogger("aiosocker")

OpenHook: TypeAlias = Callable[["Connection"], "Awaitable[None] | None"]
CloseHook: TypeAlias = Callable[["Connection", int, str], "Awaitable[None] | None"]
ErrorHook: TypeAlias = Callable[["Connection", BaseException], "Awaitable[None] | None"]
ResumeHook: TypeAlias = Callable[["Connection", bool], "Awaitable[None] | None"]
Setup: TypeAlias = Callable[["Connection"], "Awaitable[None] | None"]
"""Called once per new connection to build its chain and hooks, like the Go example."""

H = TypeVar("H", bound=Callable[..., Any])

RESUMABLE = frozenset({1001, 1006})
"""Close codes after which a session may be resumed (see :attr:`Connection.may_resume`)."""
_KEEPALIVE = "keepalive ping timeout"

# Close reasons must fit a control frame: 123 bytes of UTF-8.
_MAX_REASON = 123
_ids = itertools.count(1)


class Membership(Protocol):
    """Where a connection's rooms are kept (the hub of a server connection)."""

    def join(self, conn: Connection, room: str) -> None:
        """Put ``conn`` in ``room``."""

    def leave(self, conn: Connection, room: str) -> None:
        """Take ``conn`` out of ``room``."""

    def rooms_of(self, conn: Connection) -> frozenset[str]:
        """The rooms ``conn`` is in."""


class ChannelLike(Protocol):
    """What a broadcast needs of a side channel (an rtc DataChannel)."""

    @property
    def is_open(self) -> bool:
        """Whether the channel can send now."""

    def send(self, data: bytes) -> bool:
        """Send ``data`` without waiting; ``False`` if it was dropped."""


class Transport(Protocol):
    """What a connection needs from the socket underneath (an adapter implements it)."""

    @property
    def remote_address(self) -> Any:
        """The peer's address."""

    @property
    def latency(self) -> float:
        """Last measured keepalive round trip, in seconds (0 if unknown)."""

    async def send(self, data: bytes) -> None:
        """Send one binary message, waiting for flow control."""

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; return once it is done or has timed out."""


class DirectSend(Protocol):
    """What a transport may offer besides :class:`Transport` so that
    :meth:`Connection.send` calls the socket library's own send, without the
    transport's ``send`` coroutine around it (one frame less per message)."""

    @property
    def direct_send(self) -> tuple[Callable[[bytes], Awaitable[Any]], type[BaseException]]:
        """The library's send coroutine function, and the exception it raises once the
        connection has closed."""

    def closed_error(self, exc: BaseException) -> ConnectionClosedError:
        """What :meth:`Transport.send` would have raised instead of ``exc``."""


class TryWrite(Protocol):
    """What a transport may offer besides :class:`Transport` so that
    :meth:`Connection.write` hands a message to the socket at once when nothing waits
    to be sent (no task, no queue: a broadcast to a thousand members costs a thousand
    of these calls, not a thousand tasks)."""

    def try_write(self, data: bytes) -> bool:
        """Write ``data`` now and return ``True``, or return ``False`` (and write
        nothing) when anything is still waiting to go out or the connection is not
        open: the caller queues it then, behind what waits."""


def _truncate(reason: str) -> str:
    encoded = reason.encode()
    if len(encoded) <= _MAX_REASON:
        return reason
    return encoded[: _MAX_REASON - 3].decode(errors="ignore") + "..."


async def _call_hook(hook: Callable[..., Any], *args: Any) -> None:
    result = hook(*args)
    if inspect.isawaitable(result):
        await result


class Connection:
    """One WebSocket connection and its chain of stages.

    Build the chain in the ``setup`` function given to ``serve()`` or ``connect()``::

        async def setup(conn: aiosocker.Connection) -> None:
            @conn.stage()
            async def hello(message: bytes) -> bool:
                await conn.send(b"scene")
                return True
    """

    # Slots and lazily made queues, sets and futures: an idle connection is mostly this
    # object, and servers hold thousands (see conn_mem in docs/performance.md).
    __slots__ = (
        "_begin",
        "_bucket",
        "_budget",
        "_cancelling",
        "_channels",
        "_close_hooks",
        "_close_sent",
        "_closing",
        "_deferred",
        "_deferred_bytes",
        "_direct",
        "_ended",
        "_error_hooks",
        "_handling",
        "_in_bytes",
        "_inbox",
        "_inbox_room",
        "_intercept",
        "_limited",
        "_loop",
        "_max_queue",
        "_membership",
        "_meter",
        "_open_hooks",
        "_opened",
        "_out_bytes",
        "_outbox",
        "_pending",
        "_rate",
        "_resume_hooks",
        "_resume_routes",
        "_send",
        "_send_closed",
        "_tasks",
        "_text",
        "_timer",
        "_transport",
        "_try_write",
        "_writer",
        "close_code",
        "close_reason",
        "drive",
        "error",
        "id",
        "request",
        "resume_token",
        "resumed",
        "stages",
        "state",
        "user",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        request: Request | None = None,
        settings: Settings = DEFAULTS,
        user: Any = None,
    ) -> None:
        drive = settings.drive
        self.id: str = f"c{next(_ids)}"
        """A short id, unique in this process."""
        self.request = request or Request(path="/")
        """The HTTP request that opened the connection."""
        self.user: Any = user
        """What the server's ``authenticate`` hook returned for this connection."""
        self.state: dict[str, Any] = {}
        """Free space for the application's per-connection data."""
        self.stages = Stages()
        """The chain of stages; :attr:`current` names where the connection is."""
        self.drive: Drive = drive
        self._transport = transport
        direct = getattr(transport, "direct_send", None)
        self._send: Callable[[bytes], Awaitable[Any]]
        self._send_closed: type[BaseException]
        if direct is None:
            self._send, self._send_closed = transport.send, ConnectionClosedError
        else:
            self._send, self._send_closed = direct
        self._try_write: Callable[[bytes], bool] | None = getattr(transport, "try_write", None)
        self._loop = asyncio.get_running_loop()
        self._max_queue = settings.max_queue
        self._budget = settings.max_memory
        # Bytes held in the outbox, the deferred queue and the tick inbox.
        self._out_bytes = self._deferred_bytes = self._in_bytes = 0
        self._rate = settings.rate
        self._membership: Membership | None = None
        self._resume_routes: tuple[Callable[[str], str], ...] = ()
        self._meter: Meter | None = None
        self._channels: Callable[[str], ChannelLike | None] | None = None
        self._bucket: Bucket | None = None
        self._limited = settings.rate is not None  # some rate applies: no fast path
        self._text: TextPolicy = settings.text
        self._inbox: deque[bytes] | None = deque() if drive == "tick" else None
        self._inbox_room: asyncio.Event | None = None
        self._pending: asyncio.Task[None] | None = None
        self._handling: asyncio.Task[Any] | None = None
        self._cancelling = False
        self._outbox: deque[bytes] | None = None
        self._deferred: deque[bytes] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._intercept: Callable[[bytes], bool] | None = None
        # The common case (async drive, no intercept, no rate) takes a shortcut in
        # _receive().
        self._direct = drive == "async" and not self._limited
        self._begin = self.stages._begin
        self._tasks: Background | None = None  # made on first use: idle ones hold none
        self._open_hooks: tuple[OpenHook, ...] = ()
        self._resume_hooks: tuple[ResumeHook, ...] = ()
        self._close_hooks: tuple[CloseHook, ...] = ()
        self._error_hooks: tuple[ErrorHook, ...] = ()
        self._opened = False
        self._closing = False
        self._close_sent: tuple[int, str] | None = None
        self._ended: asyncio.Future[None] | bool = False
        self.close_code: int | None = None
        """How the connection ended (``None`` while open)."""
        self.close_reason: str = ""
        """Why, in words (empty while open)."""
        self.error: BaseException | None = None
        """The exception that made socker close the connection, if one did."""
        self.resumed = False
        """Whether this connection took over a dropped one (``resume=``): it has that
        one's id, user, state, rooms and stage."""
        self.resume_token: str | None = None
        """The token to resume this session with (the server's RESUME frame)."""

    # -- the chain -------------------------------------------------------------------

    def add(
        self,
        handler: H,
        *,
        name: str | None = None,
        timeout: float | None = None,
        rate: Rate | None = None,
    ) -> H:
        """Append a stage; see :meth:`aiosocker.Stages.add`. ``rate`` bounds how fast the
        peer may send while in it (4429 past it)."""
        self.stages.add(handler, name=name, timeout=timeout, rate=rate)
        if rate is not None:
            self._limited = True
            self._direct = False
        if self._opened and len(self.stages) == 1:
            self._arm_timer()
        return handler

    def stage(
        self, *, name: str | None = None, timeout: float | None = None, rate: Rate | None = None
    ) -> Callable[[H], H]:
        """Decorator form of :meth:`add`."""

        def decorate(handler: H) -> H:
            return self.add(handler, name=name, timeout=timeout, rate=rate)

        return decorate

    def intercept(self, handler: Callable[[bytes], bool] | None) -> None:
        """Run ``handler`` on every binary message before the stages see it.

        It returns ``True`` when it consumed the message. One per connection: the rtc
        layer uses it to route signaling that arrives outside its own stages (e.g. a
        renegotiation). ``None`` removes it.
        """
        if handler is not None and self._intercept is not None:
            raise RuntimeError(f"connection {self.id} already has an intercept handler")
        self._intercept = handler
        self._direct = (
            handler is None and self.drive == "async" and not self._closing and not self._limited
        )

    def log_context(self) -> dict[str, Any]:
        """The ``extra`` fields of every log line about this connection: ``conn_id``,
        ``stage`` and ``remote`` (never message payloads)."""
        remote = self.remote_address
        if isinstance(remote, (tuple, list)) and len(remote) >= 2:
            remote = f"{remote[0]}:{remote[1]}"
        stage = self.stages.current if len(self.stages) else ""
        return {"conn_id": self.id, "stage": stage, "remote": str(remote)}

    @property
    def meter(self) -> Meter | None:
        """The server's numbers this connection reports to (``metrics=`` or
        ``status_page=``), if any."""
        return self._meter

    def _reader(self) -> Callable[[bytes | str], Awaitable[None] | None]:
        """What an adapter calls with each incoming message (counted when metered)."""
        meter = self._meter
        return self._receive if meter is None else meter.reader(self._receive)

    # -- rooms and side channels ---------------------------------------------------

    def join(self, room: str) -> None:
        """Put this connection in ``room`` (a server's connections only): broadcasts
        to the room reach it. It leaves every room when it ends."""
        self._rooms_host("join").join(self, room)

    def leave(self, room: str) -> None:
        """Take this connection out of ``room`` (nothing happens if it was not in it)."""
        self._rooms_host("leave").leave(self, room)

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection is in."""
        membership = self._membership
        return frozenset() if membership is None else membership.rooms_of(self)

    def _rooms_host(self, what: str) -> Membership:
        if self._membership is None:
            raise RuntimeError(
                f"{what}(): rooms belong to a server; this connection has none (a client?)"
            )
        return self._membership

    def route_resume(self, route: Callable[[str], str]) -> None:
        """Let a layer choose where a resumed session goes back to: ``route(stage)``
        returns the stage to enter (the rtc session sends it through its own stages
        first, for a new peer connection)."""
        self._resume_routes += (route,)

    def _resume_stage(self, stage: str) -> str:
        for route in self._resume_routes:
            stage = route(stage)
        return stage

    def provide_channels(self, lookup: Callable[[str], ChannelLike | None] | None) -> None:
        """Let broadcasts reach this connection's side channels by label (the rtc
        session calls this with its channels' lookup); ``None`` removes it."""
        self._channels = lookup

    def channel(self, label: str) -> ChannelLike | None:
        """The side channel labelled ``label`` (an rtc DataChannel), if any."""
        lookup = self._channels
        return None if lookup is None else lookup(label)

    def jump(self, name: str) -> None:
        """Move to stage ``name`` from outside a handler (e.g. when a channel dies)."""
        self.stages.jump(name)
        self._arm_timer()

    @property
    def current(self) -> str:
        """Name of the current stage."""
        return self.stages.current

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the transport reports it."""
        return self._transport.remote_address

    @property
    def latency(self) -> float:
        """Keepalive round-trip time in seconds, from the last ping (0 before one)."""
        return self._transport.latency

    @property
    def may_resume(self) -> bool:
        """Whether a client may resume this session once it has ended: resume is on and
        the end was not final (the peer vanished, 1006; a server going away, 1001; an
        unanswered keepalive ping). Useful in ``on_close`` hooks."""
        return self.resume_token is not None and (
            self.close_code in RESUMABLE
            or (self.close_code == CloseCode.INTERNAL_ERROR and self.close_reason == _KEEPALIVE)
        )

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._ended is True

    @property
    def pending(self) -> int:
        """Messages queued for :meth:`poll` (tick drive)."""
        return len(self._inbox) if self._inbox is not None else 0

    # -- hooks -----------------------------------------------------------------------

    def on_open(self, hook: OpenHook) -> OpenHook:
        """Call ``hook(conn)`` once the connection is set up (usable as decorator)."""
        self._open_hooks += (hook,)
        return hook

    def on_resume(self, hook: ResumeHook) -> ResumeHook:
        """Client side: call ``hook(conn, resumed)`` when the server's RESUME frame
        arrives (servers with ``resume=``), before any other message is handled. A
        resumed session goes on at the stage it had reached on the server: ``jump()``
        the client's chain to match (and, past the rtc stages, ask for a new offer)."""
        self._resume_hooks += (hook,)
        return hook

    async def _resumed_hooks(self) -> None:
        for hook in self._resume_hooks:
            await self._safe_hook("on_resume", hook, self, self.resumed)

    def on_close(self, hook: CloseHook) -> CloseHook:
        """Call ``hook(conn, code, reason)`` once when the connection ends."""
        self._close_hooks += (hook,)
        return hook

    def on_error(self, hook: ErrorHook) -> ErrorHook:
        """Call ``hook(conn, exc)`` when a handler raises or a stage times out."""
        self._error_hooks += (hook,)
        return hook

    # -- sending ---------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Send a binary message, waiting while the peer is slow (flow control)."""
        if (self._outbox or self._closing) and await self._send_behind(data):
            return
        if self._meter is not None:
            self._meter.sent(len(data))
        try:
            await self._send(data)
        except ConnectionClosedError:
            self._closing = True  # the peer is gone; the reader reports how it ended
            self._direct = False
            raise
        except self._send_closed as exc:  # the socket library's own (DirectSend)
            self._closing = True
            self._direct = False
            raise cast(DirectSend, self._transport).closed_error(exc) from exc

    async def _send_behind(self, data: bytes) -> bool:
        # send() while write()'s queue holds messages, or closing: whether ``data`` went
        # behind them (False: the queue has drained, send it now).
        while self._outbox and len(self._outbox) >= self._max_queue and self._writer is not None:
            await asyncio.wait([self._writer])  # write()'s queue is full: wait for room
        if self._closing:
            raise ConnectionClosedError(self.close_code, self.close_reason)
        if self._outbox:  # keep order with earlier write() calls
            self.write(data)
            writer = self._writer
            if writer is not None:
                await asyncio.wait([writer])  # cancelled when the connection ends
            if self._closing:
                raise ConnectionClosedError(self.close_code, self.close_reason)
            return True
        return False

    def write(self, data: bytes) -> None:
        """Send a binary message without blocking: handed to the socket at once when
        nothing waits to go out (no task, no queue), else queued behind what waits.

        Raises :class:`~aiosocker.QueueFullError` once ``max_queue`` messages or
        ``max_memory`` bytes wait: the peer reads slower than you write. Use :meth:`send`
        to wait for room instead.
        """
        if self._closing:
            raise ConnectionClosedError(self.close_code, self.close_reason)
        # Nothing waiting and the socket takes it: no queue, no task. What the socket
        # library buffers past the kernel is one message at most: the next write finds
        # it waiting and queues (counted in max_memory).
        if self._writer is not None or self._try_write is None or not self._try_write(data):
            self._queue(data)
        if self._meter is not None:
            self._meter.sent(len(data))

    def _queue(self, data: bytes) -> None:
        outbox = self._outbox = self._room(self._outbox, "queued; the peer is not keeping up")
        if self._held() + len(data) > self._budget:
            raise QueueFullError(
                f"connection {self.id}: {self._out_bytes} bytes queued; the peer is not"
                f" keeping up (max_memory={self._budget})"
            )
        outbox.append(data)
        self._out_bytes += len(data)
        if self._writer is None:
            # Spawned only while there is a backlog: an idle connection holds no task.
            self._writer = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        outbox = self._outbox
        assert outbox is not None
        try:
            while outbox and not self._closing:
                await self._transport.send(outbox[0])
                self._out_bytes -= len(outbox.popleft())
        except Exception as exc:  # the transport failed; its reader reports the end
            logger.debug("connection %s: write failed: %r", self.id, exc, extra=self.log_context())
            outbox.clear()
            self._out_bytes = 0
        finally:
            self._writer = None

    # -- receiving (called by the transport adapter) ---------------------------------

    def _receive(self, message: bytes | str) -> Awaitable[None] | None:
        """Hand one incoming message to the chain.

        Returns ``None`` when done, or an awaitable the adapter must await before
        passing the next message (an async handler is running, or the tick queue is
        full). Never raises: failures close the connection.
        """
        if self._direct and type(message) is bytes:  # _direct is off once closing
            # The hot path, inlined: async drive, no intercept (see _dispatch). An async
            # handler's coroutine comes back bare; _finish() applies its result.
            try:
                result = self._begin(message)
            except Exception as exc:
                self._fail(exc)
                return None
            if result is False:
                return None
            if result is True:
                return self._changed()
            return self._finish(result, True)
        if self._closing:
            return None
        if type(message) is not bytes:
            if isinstance(message, str):
                self._text_frame(message)
                return None
            message = bytes(message)
        if self._limited and not self._within_rate(message):
            return None
        inbox = self._inbox
        if inbox is not None:
            inbox.append(message)
            self._in_bytes += len(message)
            if not self._inbox_has_room():
                return self._wait_for_room()
            return None
        pending = self._dispatch(message)
        return None if pending is None else self._finish(pending)

    def _dispatch(self, message: bytes) -> Awaitable[Any] | None:
        # The one place a message meets the chain, for both drives.
        intercept = self._intercept
        try:
            if intercept is not None and intercept(message):
                return None
            result = self.stages.feed(message)
        except Exception as exc:
            self._fail(exc)
            return None
        if result is True:
            return self._changed()
        if result is not False:
            return result
        return None

    def _changed(self) -> Awaitable[None] | None:
        # The stage changed: restart the stage clock and hand the new stage what the
        # old one deferred, before anything newer.
        self._arm_timer()
        deferred = self._deferred
        if not deferred:
            return None
        if self._inbox is not None:
            self._inbox.extendleft(reversed(deferred))
            self._in_bytes += self._deferred_bytes
            self._deferred_bytes = 0
            deferred.clear()
            return None
        return self._replay()

    async def _replay(self) -> None:
        deferred = self._deferred
        assert deferred is not None
        batch = list(deferred)
        deferred.clear()  # what the next stage defers again waits for the one after
        self._deferred_bytes = 0
        for message in batch:
            if self._closing:
                return
            pending = self._dispatch(message)
            if pending is not None:
                await self._finish(pending)

    def defer(self, message: bytes) -> None:
        """From a handler: hand ``message`` to the next stage entered, instead of this
        one (e.g. an app message that arrives during the rtc handshake). Deferred
        messages come before newer ones; at most ``max_queue`` wait, and together with
        the connection's other queues at most ``max_memory`` bytes: past that the
        connection closes with 4413 (the peer is sending what nobody takes yet)."""
        deferred = self._deferred = self._room(self._deferred, f"deferred in {self.current!r}")
        if self._held() + len(message) > self._budget:
            raise OverMemoryError(
                f"{self._deferred_bytes + len(message)} bytes deferred (max_memory={self._budget})"
            )
        deferred.append(message)
        self._deferred_bytes += len(message)

    def _held(self) -> int:
        return self._out_bytes + self._deferred_bytes + self._in_bytes

    def _inbox_has_room(self) -> bool:
        inbox = self._inbox
        return inbox is None or (len(inbox) < self._max_queue and self._held() < self._budget)

    def _within_rate(self, message: bytes) -> bool:
        # The current stage's rate, else the connection's; one bucket while it holds.
        rate = self._rate
        if len(self.stages):
            rate = self.stages.current_stage.rate or rate
        if rate is None:
            return True
        now = self._loop.time()
        bucket = self._bucket
        if bucket is None or bucket.rate is not rate:
            bucket = self._bucket = Bucket(rate, now)
        if bucket.take(len(message), now):
            return True
        stage = self.stages.current if len(self.stages) else "?"
        self._report(RateExceededError(stage, rate))
        self._close_soon(CloseCode.OVER_RATE, f"stage {stage!r}: over its rate limit", drop=True)
        return False

    def _room(self, queue: deque[bytes] | None, what: str) -> deque[bytes]:
        # Queues are made on first use (an idle connection holds none) and bounded.
        if queue is None:
            return deque()
        if len(queue) >= self._max_queue:
            raise QueueFullError(
                f"connection {self.id}: {len(queue)} messages {what} (max_queue={self._max_queue})"
            )
        return queue

    def _stopped_by_close(self, task: asyncio.Task[Any] | None) -> bool:
        # An async handler (or setup) runs right in the adapter's reading task: no task
        # per message. close() cancels that task to stop one that hangs (a stage
        # timeout, a shutdown); this takes the cancellation back, so the reader goes on
        # to see the end of the connection. Other cancellations propagate.
        if not (self._cancelling and task is not None):
            return False
        self._cancelling = False
        task.uncancel()
        return True

    async def _finish(self, pending: Awaitable[Any], begun: bool = False) -> None:
        # ``begun``: ``pending`` is a handler's own awaitable from Stages._begin (the
        # direct path), whose result the chain applies here; otherwise it gives whether
        # the stage changed. current_task() given the loop skips get_running_loop().
        task = self._handling = asyncio.current_task(self._loop)
        try:
            changed = await pending
            if begun:
                changed = self.stages._end(changed)
        except BaseException as exc:
            if self._caught(exc, task):
                return
            raise
        finally:
            self._handling = None
        if changed is True:
            replay = self._changed()
            if replay is not None:
                await replay

    def _caught(self, exc: BaseException, task: asyncio.Task[Any] | None) -> bool:
        """What a handler (awaited in ``task``) raised: whether it is dealt with here
        (the connection fails with the matching close code, or ends quietly); the rest,
        a cancellation not from close() among them, propagates."""
        if isinstance(exc, asyncio.CancelledError):
            return self._stopped_by_close(task)
        if isinstance(exc, ConnectionClosedError):
            if not self._closing:
                self._fail(exc)  # not ours: another connection's send() failed
            return True  # ours ended mid-handler: not a handler error
        if isinstance(exc, Exception):
            self._fail(exc)
            return True
        return False

    async def _read(
        self,
        recv: Callable[[], Awaitable[bytes | str]],
        closed: type[BaseException],
        ending: Callable[[], tuple[int | None, str]],
        first: Callable[[bytes | str], Awaitable[bool]] | None = None,
    ) -> None:
        """A read pump for adapters whose socket library reads with a coroutine
        (websockets): ``await recv()`` message after message until it raises ``closed``,
        then report ``ending()`` (code, reason) with :meth:`_transport_closed`. ``first``
        sees the first message before the chain does and may consume it (the client's
        RESUME frame).

        What :meth:`_receive` and :meth:`_finish` do per message, with the async
        drive's common case (no intercept, rate or meter; binary) inline: no call and
        no coroutine of socker's own between ``recv()`` and the handler."""
        receive = self._reader()
        metered = self._meter is not None
        begin, end = self.stages._begin, self.stages._end
        task = asyncio.current_task(self._loop)
        try:
            if first is not None:
                message = await recv()
                if not await first(message):
                    waiter = receive(message)
                    if waiter is not None:
                        await waiter
            while True:
                message = await recv()
                if metered or not self._direct or type(message) is not bytes:
                    waiter = receive(message)
                    if waiter is not None:
                        await waiter
                    continue
                try:
                    result = begin(message)
                except Exception as exc:
                    self._fail(exc)
                    continue
                if result is False:
                    continue
                if result is not True:  # an async handler: await it here
                    self._handling = task
                    try:
                        outcome = await result
                        changed = outcome is not False and end(outcome)
                    except BaseException as exc:
                        if self._caught(exc, task):
                            continue
                        raise
                    finally:
                        self._handling = None
                    if not changed:
                        continue
                replay = self._changed()
                if replay is not None:
                    await replay
        except closed:
            pass  # ending() tells how; the close hooks hear it
        finally:
            code, reason = ending()
            await self._transport_closed(code, reason)

    async def _wait_for_room(self) -> None:
        # Tick drive with a full queue: stop reading (TCP pushes back on the peer)
        # until poll() has made room.
        if self._inbox_room is None:
            self._inbox_room = asyncio.Event()
        self._inbox_room.clear()
        await self._inbox_room.wait()

    def _text_frame(self, message: str) -> None:
        if self._text == "ignore":
            logger.info(
                "connection %s: ignored a text frame (%d chars)",
                self.id,
                len(message),
                extra=self.log_context(),
            )
            return None
        self._close_soon(CloseCode.UNSUPPORTED_DATA, "text frames are not supported; send binary")
        return None

    def poll(self) -> int:
        """Handle every queued message now, without waiting (tick drive).

        Returns how many messages were handed to handlers. Stops early at an ``async``
        handler, which runs as a task; the rest wait for a later poll.
        """
        inbox = self._inbox
        if inbox is None:
            raise RuntimeError("poll() is for drive='tick'; this connection runs 'async'")
        handled = 0
        while inbox and self._pending is None and not self._closing:
            handled += 1
            message = inbox.popleft()
            self._in_bytes -= len(message)
            pending = self._dispatch(message)
            if pending is not None:
                self._pending = self._loop.create_task(self._finish_pending(pending))
        room = self._inbox_room
        if room is not None and self._inbox_has_room():
            room.set()
        return handled

    async def _finish_pending(self, pending: Awaitable[bool]) -> None:
        try:
            await self._finish(pending)
        finally:
            self._pending = None

    # -- timeouts and failures -------------------------------------------------------

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.stages.deadline
        if deadline is not None and not self._closing:
            # Stages uses time.monotonic(), as asyncio's loop.time() does.
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if self._closing or not self.stages.expired(self._loop.time()):
            self._arm_timer()
            return
        stage = self.stages.current_stage
        assert stage.timeout is not None
        exc = StageTimeoutError(stage.name, stage.timeout)
        self._report(exc)
        self._close_soon(CloseCode.STAGE_TIMEOUT, str(exc))

    def _fail(self, exc: Exception, *, where: str | None = None) -> None:
        """Close the connection because of ``exc``, with the code its kind maps to
        (see ``docs/close-codes.md``), after telling the on_error hooks."""
        if where is not None:
            self._report(exc)
            self._close_soon(CloseCode.INTERNAL_ERROR, f"{where} raised {type(exc).__name__}")
            logger.error(
                "connection %s: %s raised", self.id, where, exc_info=exc, extra=self.log_context()
            )
            return
        stage = self.stages.current if len(self.stages) else "?"
        if self._meter is not None:
            self._meter.error(stage)
        if isinstance(exc, SignalingError):
            code, reason = CloseCode.BAD_SIGNALING, f"stage {stage!r}: {exc}"
        elif isinstance(exc, OverMemoryError):
            code, reason = CloseCode.OVER_MEMORY, f"stage {stage!r}: {exc}"
        elif isinstance(exc, OutOfStagesError):
            code, reason = CloseCode.INTERNAL_ERROR, f"stage {stage!r} ran past the last stage"
        else:
            code = CloseCode.INTERNAL_ERROR
            reason = f"stage {stage!r} raised {type(exc).__name__}"
            logger.error(
                "connection %s: stage %r raised",
                self.id,
                stage,
                exc_info=exc,
                extra=self.log_context(),
            )
        self._report(exc)
        self._close_soon(code, reason, drop=code == CloseCode.OVER_MEMORY)

    def _report(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        for hook in self._error_hooks:
            self._spawn(self._safe_hook("on_error", hook, self, exc))

    def _close_soon(self, code: int, reason: str, *, drop: bool = False) -> None:
        # Closing from now on: no later message may reach a handler. The close frame
        # goes out from a task. ``drop``: a peer that floods or hoards gets its close
        # frame and loses the socket at once, so what it already sent is not parsed
        # while its close handshake runs (the other connections pay for that CPU).
        if not self._closing:
            closing = self._close_transport(*self._begin_close(code, reason))
            self._spawn(self._dropping(closing) if drop else closing)

    async def _dropping(self, closing: Awaitable[None]) -> None:
        abort: Callable[[], None] | None = getattr(self._transport, "abort", None)
        task = asyncio.ensure_future(closing)
        await asyncio.sleep(0)  # the close frame is written in the close's first step
        if abort is not None and not task.done():
            abort()
        await task

    def _spawn(self, coro: Awaitable[Any]) -> None:
        if self._tasks is None:
            self._tasks = Background()
        self._tasks.spawn(coro)

    async def _safe_hook(self, what: str, hook: Callable[..., Any], *args: Any) -> None:
        try:
            await _call_hook(hook, *args)
        except Exception:
            # A broken hook must not take the server down with it.
            logger.exception(
                "connection %s: %s hook raised", self.id, what, extra=self.log_context()
            )

    # -- lifecycle -------------------------------------------------------------------

    async def _start(
        self,
        setup: Callable[[Connection], Any] | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Called by the adapter: run ``setup(conn)`` (sync or async; if it raises, the
        connection closes with 1011, and close() stops one that hangs), then
        ``prepare()`` (the hub's resume), arm the stage timers, run the on_open hooks."""
        if setup is not None:
            task = self._handling = asyncio.current_task()
            try:
                result = setup(self)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                if self._stopped_by_close(task):
                    return
                raise
            except Exception as exc:
                self._fail(exc, where="setup")
                return
            finally:
                self._handling = None
            if self._closing:
                return
        if prepare is not None:
            await prepare()
            if self._closing:
                return
        self._opened = True
        self._arm_timer()
        for hook in self._open_hooks:
            await self._safe_hook("on_open", hook, self)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close with ``code`` and ``reason``; return once the close hooks have run.

        Called from inside a stage handler, it returns once the close frame is sent: the
        hooks run after the handler returns.
        """
        handling = self._handling
        inside = handling is not None and handling is asyncio.current_task()
        if not self._closing:
            await self._close_transport(*self._begin_close(code, reason))
        if not inside:
            await self.wait_closed()

    def _begin_close(self, code: int, reason: str) -> tuple[int, str]:
        self._closing = True
        self._direct = False
        self._close_sent = (int(code), _truncate(reason))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        handling = self._handling
        # Not when the handler itself is closing (it raised, or called close()).
        if handling is not None and handling is not asyncio.current_task():
            self._cancelling = True
            handling.cancel()  # a handler stuck mid-stage must not hold the close
        return self._close_sent

    async def _close_transport(self, code: int, reason: str) -> None:
        try:
            await self._transport.close(code, reason)
        except Exception as exc:  # already gone: the reader reports the end
            logger.debug("connection %s: close failed: %r", self.id, exc, extra=self.log_context())

    async def wait_closed(self) -> None:
        """Wait until the connection has ended and its close hooks have run."""
        ended = self._ended
        if ended is True:
            return
        if ended is False:
            ended = self._ended = self._loop.create_future()
        await asyncio.shield(ended)

    async def _transport_closed(self, code: int | None, reason: str) -> None:
        """Called once by the adapter when the socket is gone: runs the close hooks."""
        if self._ended is True:
            return
        self._closing = True
        self._direct = False
        if code is None and self._close_sent is not None:
            # The transport saw no close frame go either way (ASGI cannot tell): say
            # what we asked for. Otherwise its report is what went on the wire.
            code, reason = self._close_sent
        self.close_code = 1006 if code is None else code  # 1006: ended without a close frame
        self.close_reason = reason
        if self._meter is not None:
            history = self.stages.history
            self._meter.ended(
                history[-1] if history else None,
                self.close_code,
                self.close_code == CloseCode.STAGE_TIMEOUT,
            )
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._inbox_room is not None:
            self._inbox_room.set()
        for task in (self._writer, self._pending):
            if task is not None and not task.done():
                task.cancel()
        for hook in self._close_hooks:
            await self._safe_hook("on_close", hook, self, self.close_code, reason)
        waiters, self._ended = self._ended, True
        if isinstance(waiters, asyncio.Future) and not waiters.done():
            waiters.set_result(None)
        if self._tasks is not None:
            # on_error hooks and close() calls spawned by failures: none may outlive us.
            await self._tasks.finish(cancel=False)

    def __repr__(self) -> str:
        where = self.stages.current if len(self.stages) else "no stages"
        state = f"closed {self.close_code}" if self.closed else "open"
        return f"<Connection {self.id} {state} at {where!r}>"
