"""The fast listener: ``picows`` (Cython WebSockets) running connections on a Hub.

* :class:`_Front` (an ``asyncio.Protocol`` on our own server socket) reads each HTTP
  request head and asks the sans-I/O handshake and the hub, exactly as the other
  transports do; it writes every non-upgrade answer itself. An admitted upgrade is
  handed to a picows protocol with the bytes read so far, and picows finishes the
  101 handshake.
* One :class:`PicowsSocket` (a ``picows.WSListener``) per connection is also its
  :class:`~aiosocker.connection.Transport`. A final binary frame goes straight from
  ``on_ws_frame`` to the connection; when a handler does not finish at once, later
  messages queue in order behind it and reading pauses past :data:`BACKLOG_PAUSE`.
  Fragments and the closing handshake are kept by the sans-I/O ``framing`` module.

Differences from the ``websockets`` listener (see docs/architecture.md): a keepalive
ping left unanswered ends the connection with 1011 for the hooks, as on websockets,
but picows puts 1001 on the wire; ``ping_timeout`` is capped at ``ping_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ...background import Background
from ...connection import Connection
from ...errors import CloseCode, ConnectionClosedError, HandshakeRejected
from ...handshake import BAD_REQUEST, HEAD_TOO_LARGE, MAX_HEAD, Request, parse_head, refusal
from ...hub import Hub
from . import _picows as pw
from .framing import CloseBook, Reassembler, Violation, check_close_code, check_reserved_bits

__all__ = ["BACKLOG_PAUSE", "HANDSHAKE_TIMEOUT", "PicowsListener", "PicowsSocket"]

logger = logging.getLogger("aiosocker")

HANDSHAKE_TIMEOUT = 10.0
"""Seconds a new connection has to send its request and pass ``authenticate``."""

BACKLOG_PAUSE = 64
"""Messages queued behind a running ``async`` handler before reading pauses."""

_BINARY, _TEXT, _CONTINUATION = pw.BINARY, pw.TEXT, pw.CONTINUATION
_CLOSE, _PING, _PONG = pw.CLOSE, pw.PING, pw.PONG


class PicowsSocket(pw.WSListener):
    """One connection: a picows listener and the Transport of its Connection."""

    __slots__ = (
        "_backlog",
        "_book",
        "_busy",
        "_conn",
        "_direct",
        "_gone",
        "_latency",
        "_owner",
        "_parts",
        "_ping_at",
        "_pump",
        "_read_paused",
        "_receive",
        "_request",
        "_timer",
        "_writable",
        "_ws",
    )

    def __init__(self, owner: PicowsListener, request: Request) -> None:
        super().__init__()
        self._owner = owner
        self._request = request
        self._ws: Any = None
        self._conn: Connection | None = None
        self._receive: Callable[[bytes | str], Awaitable[None] | None] | None = None
        # Fast path: a final binary frame goes straight to the connection. Off until
        # the connection is set up, while a handler runs, fragments are pending, or
        # closing; then frames take the careful path (_frame).
        self._direct = False
        self._busy = True  # not set up yet / a handler runs: messages wait in _backlog
        self._backlog: deque[bytes | str] = deque()
        self._pump: asyncio.Task[None] | None = None
        self._read_paused = False
        self._parts = Reassembler(owner.hub.settings.max_size)
        self._book = CloseBook()
        self._timer: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None
        self._gone: asyncio.Future[None] = owner.loop.create_future()
        self._latency = 0.0
        self._ping_at = 0.0

    # -- Transport -------------------------------------------------------------------

    @property
    def remote_address(self) -> Any:
        return self._request.remote_address

    @property
    def latency(self) -> float:
        return self._latency

    def try_write(self, data: bytes) -> bool:
        """:class:`~aiosocker.connection.TryWrite`: only when nothing waits in the
        socket's buffer (a paused transport, or bytes the kernel has not taken)."""
        ws = self._ws
        if (
            ws is None
            or self._writable is not None
            or self._gone.done()
            or self._book.sent
            or ws.underlying_transport.get_write_buffer_size()
        ):
            return False
        ws.send(_BINARY, data)
        return True

    async def send(self, data: bytes) -> None:
        if self._gone.done() or self._book.sent:
            raise ConnectionClosedError(*self._book.outcome())
        self._ws.send(_BINARY, data)
        if self._writable is not None:
            await self._wait_writable()

    def abort(self) -> None:
        """Drop the socket now (after a close frame for a peer that floods)."""
        if self._ws is not None:
            self._ws.underlying_transport.abort()

    async def close(self, code: int, reason: str) -> None:
        self._start_closing(code, reason)
        await asyncio.shield(self._gone)

    # -- picows callbacks ------------------------------------------------------------

    def on_ws_connected(self, transport: Any) -> None:
        self._ws = transport
        owner = self._owner
        if owner.hub.closing:
            self._start_closing(CloseCode.GOING_AWAY, "server shutting down")
            return
        owner.sockets.add(self)
        conn = self._conn = owner.hub.open(self, self, self._request)
        self._receive = conn._reader()
        owner.spawn(owner.hub.run(conn, self._read()))

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        # The hot path: keep it to these few lines. (is_close_frame_sent: picows closed
        # on its own, e.g. 1009, yet may still parse frames that were in flight.)
        if (
            frame.msg_type is _BINARY
            and frame.fin
            and self._direct
            and not (frame.rsv1 or frame.rsv2 or frame.rsv3)
            and not transport.is_close_frame_sent
        ):
            waiter = self._receive(frame.get_payload_as_bytes())  # type: ignore[misc]
            if waiter is not None:
                self._hold(waiter)
            return
        self._frame(transport, frame)

    def on_ws_disconnected(self, transport: Any) -> None:
        self._direct = False
        self._note_library_close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._owner.sockets.discard(self)
        self._wake_writer()
        if not self._gone.done():
            self._gone.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._owner.loop.create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    def send_user_specific_ping(self, transport: Any) -> None:
        self._ping_at = self._owner.loop.time()
        transport.send_ping()

    def is_user_specific_pong(self, frame: Any) -> bool:
        if frame.msg_type is _PONG:
            self._latency = self._owner.loop.time() - self._ping_at
            return True
        return False

    # -- receiving, the careful path -------------------------------------------------

    async def _read(self) -> None:
        """The reader given to ``Hub.run``: setup has run; deliver what arrived
        meanwhile, then wait for the socket to go and report how it ended."""
        assert self._conn is not None
        await self._drain()
        await asyncio.shield(self._gone)
        if self._pump is not None:  # the message in flight (and those before the close)
            await asyncio.wait([self._pump])
        await self._conn._transport_closed(*self._book.outcome())

    def _frame(self, transport: Any, frame: Any) -> None:
        kind = frame.msg_type
        try:
            check_reserved_bits(frame.rsv1, frame.rsv2, frame.rsv3)
            if kind is _CLOSE:
                self._close_frame(frame)
                return
            if self._book.sent or transport.is_close_frame_sent:
                return  # closing: data after our close frame is dropped
            if kind is _PING:
                self._check_backlog()
                self._ws.send_pong(frame.get_payload_as_bytes())
                return
            if kind is _BINARY or kind is _TEXT:
                payload = frame.get_payload_as_bytes()
                message = self._parts.start(payload, text=kind is _TEXT, fin=frame.fin)
            elif kind is _CONTINUATION:
                message = self._parts.more(frame.get_payload_as_memoryview(), fin=frame.fin)
            else:
                return  # an unsolicited PONG
        except Violation as exc:
            logger.info("picows: closing a connection: %s", exc)
            self._start_closing(exc.code, exc.reason)
            if kind is _CLOSE and self._ws is not None:
                self._ws.disconnect()  # the peer has closed already: no answer to wait for
            return
        self._update_direct()
        if message is not None:
            self._deliver(message)

    def _deliver(self, message: bytes | str) -> None:
        if self._busy:
            self._backlog.append(message)
            if len(self._backlog) >= BACKLOG_PAUSE and not self._read_paused:
                self._read_paused = True
                self._ws.underlying_transport.pause_reading()
            return
        waiter = self._receive(message)  # type: ignore[misc]
        if waiter is not None:
            self._hold(waiter)

    def _hold(self, waiter: Awaitable[None]) -> None:
        """A handler did not finish at once: later messages wait behind it, in order."""
        self._busy = True
        self._direct = False
        self._pump = self._owner.loop.create_task(self._finish(waiter))

    async def _finish(self, waiter: Awaitable[None]) -> None:
        try:
            await waiter
            await self._drain()
        finally:
            self._pump = None

    async def _drain(self) -> None:
        """Deliver queued messages one at a time, then return to the fast path."""
        backlog, receive = self._backlog, self._receive
        assert receive is not None
        while backlog:
            waiter = receive(backlog.popleft())
            if waiter is not None:
                await waiter
        self._busy = False
        self._update_direct()
        if self._read_paused:
            self._read_paused = False
            if not self._ws.is_disconnected:
                self._ws.underlying_transport.resume_reading()

    def _update_direct(self) -> None:
        self._direct = not (self._busy or self._book.sent or self._parts.pending)

    # -- closing ---------------------------------------------------------------------

    def _note_library_close(self) -> None:
        # picows may have sent a close frame on its own (1009, keepalive): book it.
        ws = self._ws
        handshake = ws.close_handshake if ws is not None else None
        if handshake is not None and handshake.sent is not None and not self._book.sent:
            sent = handshake.sent
            self._book.library_sent(int(cast(Any, sent.code)), sent.reason or "")

    def _check_backlog(self) -> None:
        # Every PING is answered at once; a peer that pings and never reads would pile
        # the pongs up in the socket's write buffer: that counts against max_memory.
        limit = self._owner.hub.settings.max_memory
        buffered = self._ws.underlying_transport.get_write_buffer_size()
        if buffered > limit:
            raise Violation(
                CloseCode.OVER_MEMORY,
                f"{buffered} bytes unread by the peer (max_memory={limit})",
            )

    def _close_frame(self, frame: Any) -> None:
        self._direct = False
        self._note_library_close()
        code = int(frame.get_close_code()) if frame.payload_size >= 2 else None
        if code is not None:
            check_close_code(code)
        reason = frame.get_close_message() if frame.payload_size > 2 else None
        echo = self._book.receive(code, (reason or b"").decode(errors="replace"))
        if echo is not None:  # RFC 6455 5.5.1: echo the peer's close, then hang up
            if code is None:
                self._ws.send(_CLOSE, b"")
            else:
                self._ws.send_close(pw.WSCloseCode(code), reason)
        self._ws.disconnect()

    def _start_closing(self, code: int, reason: str) -> None:
        """Send our close frame (once) and wait, reading, for the peer's answer."""
        ws = self._ws
        if ws is None or ws.is_disconnected:
            return
        self._direct = False
        self._note_library_close()
        if self._book.send(code, reason):
            ws.send_close(pw.WSCloseCode(code), reason.encode())
        if self._book.received:
            ws.disconnect()
            return
        if self._read_paused:  # the answer must get through
            self._read_paused = False
            ws.underlying_transport.resume_reading()
        if self._timer is None:
            # Past close_timeout, drop the socket: a graceful disconnect would wait for
            # a peer that never reads to take what is still buffered, forever.
            timeout = self._owner.hub.settings.close_timeout
            self._timer = self._owner.loop.call_later(timeout, ws.disconnect, False)

    def _wake_writer(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    async def _wait_writable(self) -> None:
        writable = self._writable
        if writable is not None:
            await asyncio.shield(writable)
        if self._gone.done():
            raise ConnectionClosedError(*self._book.outcome())


class _Front(asyncio.Protocol):
    """Holds a new TCP connection until its request head is in and answered or
    admitted, then hands an admitted socket to picows (and costs nothing after)."""

    def __init__(self, owner: PicowsListener) -> None:
        self._owner = owner
        self._head = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Future[Any] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._owner.fronts.add(self)
        self._timer = self._owner.loop.call_later(HANDSHAKE_TIMEOUT, self.abort)

    def data_received(self, data: bytes) -> None:
        self._head += data
        transport = self._transport
        if self._task is not None or transport is None:
            return  # admission runs: keep what comes for picows
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD:
                self._answer(HEAD_TOO_LARGE.to_http())
            return
        transport.pause_reading()
        try:
            request = parse_head(
                bytes(self._head[:end]),
                transport.get_extra_info("peername"),
                transport.get_extra_info("sockname"),
            )
        except ValueError:
            self._answer(BAD_REQUEST.to_http())
            return
        self._task = self._owner.spawn(self._admit(PicowsSocket(self._owner, request)))

    async def _admit(self, sock: PicowsSocket) -> None:
        hub = self._owner.hub
        answer = await hub.respond(sock._request)
        if answer is not None:
            self._answer(answer.to_http())
            return
        try:
            await hub.admit(sock, sock._request)
        except HandshakeRejected as exc:
            self._answer(refusal(exc).to_http())
            return
        self._hand_over(sock)

    def _answer(self, response: bytes) -> None:
        self._stop()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(response)
            self._transport.close()

    def _hand_over(self, sock: PicowsSocket) -> None:
        self._stop()
        transport = self._transport
        owner = self._owner
        if transport is None or transport.is_closing():
            owner.hub.release(sock)
            return
        protocol = owner.picows_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data = bytes(self._head)
        self._head.clear()
        owner.verdict = sock
        try:
            while data:  # what picows would have read itself
                buffer = protocol.get_buffer(len(data))
                n = min(len(buffer), len(data))
                buffer[:n] = data[:n]
                protocol.buffer_updated(n)
                data = data[n:]
        finally:
            owner.verdict = None
        if not transport.is_closing():
            transport.resume_reading()

    def _stop(self) -> None:
        self._owner.fronts.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self) -> None:
        """Drop the connection (handshake too slow, or the server closing)."""
        self._stop()
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        if self._task is not None:
            self._task.cancel()
        self._transport = None


class PicowsListener:
    """A :class:`~aiosocker.transports.Listener` on picows."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.loop = asyncio.get_running_loop()
        self.sockets: set[PicowsSocket] = set()
        """Upgraded sockets not yet disconnected."""
        self.fronts: set[_Front] = set()
        """Connections still in their HTTP handshake."""
        self.tasks = Background()
        """Admissions running, and one per upgraded socket (its connection)."""
        self.verdict: PicowsSocket | None = None
        """Set while a front hands a socket to picows: the listener picows must use."""
        self.picows_protocol = pw.protocol_factory(hub.settings, self.accept)
        self._server: asyncio.Server | None = None

    def spawn(self, awaitable: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run ``awaitable`` as a task the listener waits for when it closes."""
        return self.tasks.spawn(awaitable)

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port."""
        self._server = await self.loop.create_server(
            lambda: _Front(self),
            host,
            port,
            reuse_port=os.environ.get("AIOSOCKER_REUSE_PORT") == "1",  # aiosocker run --workers
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    def accept(self, upgrade: Any) -> Any:
        """picows' handshake hook: the socket the front admitted (``None``: 404)."""
        pw.normalize_upgrade(upgrade)
        return self.verdict

    def close(self) -> None:
        """Stop accepting; :meth:`wait_closed` ends what is open."""
        if self._server is not None:
            self._server.close()

    async def wait_closed(self) -> None:
        for front in list(self.fronts):
            front.abort()  # still in the handshake
        await asyncio.gather(
            *(sock.close(CloseCode.GOING_AWAY, "server shutting down") for sock in self.sockets),
            return_exceptions=True,
        )
        await self.tasks.finish(cancel=False)
        if self._server is not None:
            close_clients = getattr(self._server, "close_clients", None)  # Python 3.13+
            if close_clients is not None:  # half-open handshakes would hold wait_closed
                close_clients()
            await self._server.wait_closed()
