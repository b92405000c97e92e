"""Adapter for ``picows`` (Cython WebSockets): the fast server transport.

``serve(..., transport="picows")`` (extra ``aiosocker[fast]``) runs the same connections,
stages, hooks and close codes as the default ``websockets`` transport on a ``picows``
server, which spends several times less CPU per message.

How it maps picows onto :class:`~aiosocker.connection.Transport`:

* One :class:`PicowsSocket` (a ``picows.WSListener``) per connection. A binary frame
  goes straight from ``on_ws_frame`` to ``Connection.receive`` with no task and no
  allocation beyond the payload's ``bytes``. When ``receive`` answers with an awaitable
  (an ``async`` handler, a full tick queue), later messages queue in order behind it
  and one task runs them; reading pauses once that queue holds
  :data:`BACKLOG_PAUSE` messages, so a slow handler pushes back on the peer over TCP.
* Fragmented messages are reassembled (``max_size`` applies to the whole message); a
  frame over ``max_size`` is refused by picows before it is buffered, with close code
  1009. Pings are answered by picows; keepalive pings use picows' auto-ping, and their
  round trip is :attr:`PicowsSocket.latency`.
* ``send`` writes at once and waits only while the socket's write buffer is above its
  high-water mark (``pause_writing`` / ``resume_writing``).

Admission answers with HTTP statuses exactly as on ``websockets`` (403, 503, 401...):
picows' handshake hook is synchronous, so without ``authenticate`` it runs the checks
inline; with an ``authenticate`` hook (which may wait), a small asyncio protocol holds
each new connection until its request is in and admitted, then hands the socket (and
the verdict) to picows. Upgrade requests are checked as ``websockets`` does (426 for a
plain GET, 400 for a bad key or version, 403 for a doubled Origin) before admission,
so refused requests never hold a place under ``max_connections``.

Differences from the ``websockets`` transport:

* A keepalive ping without a pong within ``ping_timeout`` ends the connection with
  1011 ``"keepalive ping timeout"`` for the hooks, as on ``websockets``, but the close
  frame picows sends says 1001. ``ping_timeout`` is capped at ``ping_interval``
  (``None`` means ``ping_interval``).
* Without ``authenticate``, ``Request.remote_address`` is ``None`` during admission
  (nothing reads it there); ``conn.request`` and ``conn.remote_address`` have it.
* picows logs protocol violations (e.g. a frame over ``max_size``) at ERROR on the
  ``picows.server`` logger, and each connection at INFO.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

from multidict import CIMultiDict

try:
    from picows import (
        WSAutoPingStrategy,
        WSCloseCode,
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        WSUpgradeResponse,
        WSUpgradeResponseWithListener,
        ws_create_server,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "transport='picows' needs the picows package: pip install 'aiosocker[fast]'"
    ) from exc

from ..connection import Connection, Request
from ..errors import CloseCode, ConnectionClosedError, HandshakeRejected

if TYPE_CHECKING:
    from ..server import Server

__all__ = [
    "BACKLOG_PAUSE",
    "CLOSE_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "PicowsListener",
    "PicowsSocket",
    "listen",
]

logger = logging.getLogger("aiosocker")

CLOSE_TIMEOUT = 10.0
"""Seconds to wait for the peer's answer to our close frame before dropping the socket."""

HANDSHAKE_TIMEOUT = 10.0
"""Seconds a new connection has to send its request and pass ``authenticate``."""

BACKLOG_PAUSE = 64
"""Messages queued behind a running ``async`` handler before reading pauses."""

# Enum members looked up once: attribute access on a picows enum costs ~150 ns.
_BINARY = WSMsgType.BINARY
_TEXT = WSMsgType.TEXT
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
_PONG = WSMsgType.PONG
_PROTOCOL_ERROR = 1002
_MAX_HEAD = 16 * 1024  # HTTP request head, as picows allows
_PING_TIMEOUT = "peer has not replied to ping"  # picows' close reason
_NO_STATUS = 1005  # what a close frame without a code is reported as (RFC 6455 7.1.5)

Factory = WSListener | WSUpgradeResponseWithListener | None


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Factory:
    """An HTTP answer instead of an upgrade (picows sends it and hangs up)."""
    if status == HTTPStatus.OK:
        response = WSUpgradeResponse.create_ok_response(body, headers)
    else:
        response = WSUpgradeResponse.create_error_response(status, body, headers)
    return WSUpgradeResponseWithListener(response, None)


class _Resume:
    """Finish, inside a task, a coroutine that was started by hand and suspended.

    Without ``authenticate``, the handshake hook steps ``server.admit()`` synchronously:
    it does not wait today. Should it ever wait, the rest runs in the connection's task
    through this (each yielded future is passed up to the task), and a refusal can only
    close the WebSocket (1008, or 1013 for 503).
    """

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self._coro, self._yielded
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task, e.g. cancellation
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    return done.value


class PicowsSocket(WSListener):
    """One connection: a ``picows`` listener and the socker
    :class:`~aiosocker.connection.Transport` of its :class:`~aiosocker.Connection`."""

    __slots__ = (
        "_admitting",
        "_backlog",
        "_busy",
        "_close_received",
        "_close_sent",
        "_close_timer",
        "_closing",
        "_conn",
        "_direct",
        "_fragments",
        "_fragments_text",
        "_gone",
        "_hub",
        "_latency",
        "_ping_at",
        "_pump",
        "_read_paused",
        "_receive",
        "_request",
        "_writable",
        "_write_paused",
        "_ws",
    )

    def __init__(self, hub: PicowsListener, request: Request) -> None:
        super().__init__()
        self._hub = hub
        self._request = request
        self._ws: WSTransport | None = None
        self._conn: Connection | None = None
        self._receive: Callable[[bytes | str], Awaitable[None] | None] | None = None
        self._admitting: Awaitable[Any] | None = None
        # Fast path on: a final binary frame goes straight to the connection. Off while
        # the connection is not ready, a message is in flight, fragments are pending,
        # or the connection is closing; then on_ws_frame takes the careful path.
        self._direct = False
        self._busy = True  # not ready yet / a handler runs: messages wait in _backlog
        self._backlog: deque[bytes | str] = deque()
        self._pump: asyncio.Task[None] | None = None
        self._read_paused = False
        self._fragments: bytearray | None = None
        self._fragments_text = False
        self._write_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._closing = False
        self._close_sent = False
        self._close_received = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._gone: asyncio.Future[None] = hub.loop.create_future()
        self._latency = 0.0
        self._ping_at = 0.0

    # -- Transport -------------------------------------------------------------------

    @property
    def remote_address(self) -> Any:
        return self._request.remote_address

    @property
    def latency(self) -> float:
        return self._latency

    async def send(self, data: bytes) -> None:
        if self._closing:
            raise ConnectionClosedError(*self._ending())
        assert self._ws is not None
        self._ws.send(_BINARY, data)
        if self._write_paused:
            await self._wait_writable()

    async def close(self, code: int, reason: str) -> None:
        if not self._gone.done():
            self._start_closing(code, reason)
        await asyncio.shield(self._gone)

    # -- picows callbacks ------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._ws = transport
        peer = transport.underlying_transport.get_extra_info("peername")
        self._request = dataclasses.replace(self._request, remote_address=peer)
        hub = self._hub
        if hub.closing:
            self._start_closing(CloseCode.GOING_AWAY, "server shutting down")
            return
        hub.sockets.add(self)
        task = hub.loop.create_task(self._run())
        hub.tasks.add(task)
        task.add_done_callback(hub.tasks.discard)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        # The hot path: keep it to these few lines. (is_close_frame_sent: picows closed
        # on its own, e.g. 1009, yet may still parse frames that were in flight.)
        if (
            frame.msg_type is _BINARY
            and frame.fin
            and self._direct
            and not transport.is_close_frame_sent
        ):
            waiter = self._receive(frame.get_payload_as_bytes())  # type: ignore[misc]
            if waiter is not None:
                self._hold(waiter)
            return
        self._frame(transport, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closing = True
        self._direct = False
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._hub.sockets.discard(self)
        writable = self._writable
        if writable is not None:
            self._writable = None
            if not writable.done():
                writable.set_result(None)
        if not self._gone.done():
            self._gone.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        writable = self._writable
        if writable is not None:
            self._writable = None
            if not writable.done():
                writable.set_result(None)

    def send_user_specific_ping(self, transport: WSTransport) -> None:
        self._ping_at = self._hub.loop.time()
        transport.send_ping()

    def is_user_specific_pong(self, frame: WSFrame) -> bool:
        if frame.msg_type is _PONG:
            self._latency = self._hub.loop.time() - self._ping_at
            return True
        return False

    # -- the connection's life -------------------------------------------------------

    async def _run(self) -> None:
        server = self._hub.server
        admitting = self._admitting
        if admitting is not None and not await self._admit(admitting):
            return
        if self._gone.done():
            return
        conn = server.open_connection(self, self, self._request)
        self._conn = conn
        self._receive = conn.receive
        await server.run_connection(conn, self._read())

    async def _admit(self, admitting: Awaitable[Any]) -> bool:
        self._admitting = None
        try:
            await admitting
        except HandshakeRejected as exc:
            # Too late for an HTTP status (see _Resume): say it with a close code.
            code = 1013 if exc.status == HTTPStatus.SERVICE_UNAVAILABLE else 1008
            self._start_closing(code, f"HTTP {exc.status} {exc.reason}".strip())
            await asyncio.shield(self._gone)
            return False
        except Exception:
            logger.exception("picows: admission raised")
            self._start_closing(CloseCode.INTERNAL_ERROR, "authentication failed")
            await asyncio.shield(self._gone)
            return False
        return True

    async def _read(self) -> None:
        """The reader given to ``Server.run_connection``: setup has run; deliver what
        arrived meanwhile, then wait for the socket to go and report how it ended."""
        assert self._conn is not None
        await self._drain()
        await asyncio.shield(self._gone)
        pump = self._pump
        if pump is not None:  # let the message in flight (and those before the close) finish
            await asyncio.wait([pump])
        await self._conn.transport_closed(*self._ending())

    def _ending(self) -> tuple[int | None, str]:
        """The close code and reason that ended the socket, from whichever side closed
        first (``None`` if no close frame was exchanged)."""
        ws = self._ws
        handshake = ws.close_handshake if ws is not None else None
        if handshake is None:
            return None, ""
        sent, received = handshake.sent, handshake.recv
        if sent is not None and (received is None or not handshake.recv_then_sent):
            info = sent
        elif received is not None:
            info = received
        else:
            return None, ""
        code = int(cast(Any, info.code))  # an int enum; custom codes too
        reason = info.reason or ""
        if info is sent and code == CloseCode.GOING_AWAY and reason.startswith(_PING_TIMEOUT):
            # picows' keepalive gave up (and sent 1001): report it as websockets does.
            return CloseCode.INTERNAL_ERROR, "keepalive ping timeout"
        return (code or _NO_STATUS), reason

    # -- receiving, the careful path -------------------------------------------------

    def _frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is _CLOSE:
            self._close_frame(frame)
            return
        if self._closing or transport.is_close_frame_sent:
            self._closing = True
            return  # closing: data after a close frame is dropped
        if kind is _BINARY or kind is _TEXT:
            if self._fragments is not None:
                self._fail(_PROTOCOL_ERROR, "expected a continuation frame")
                return
            if not frame.fin:
                self._fragments = bytearray(frame.get_payload_as_memoryview())
                self._fragments_text = kind is _TEXT
                self._direct = False
                return
            if kind is _BINARY:
                self._deliver(frame.get_payload_as_bytes())
            else:
                self._deliver(frame.get_payload_as_bytes().decode(errors="replace"))
        elif kind is _CONTINUATION:
            fragments = self._fragments
            if fragments is None:
                self._fail(_PROTOCOL_ERROR, "continuation frame without a start")
                return
            if len(fragments) + frame.payload_size > self._hub.server.max_size:
                self._fragments = None
                self._fail(
                    CloseCode.MESSAGE_TOO_BIG,
                    f"message over max_size ({self._hub.server.max_size} bytes)",
                )
                return
            fragments += frame.get_payload_as_memoryview()
            if frame.fin:
                self._fragments = None
                self._update_direct()
                if self._fragments_text:
                    self._deliver(fragments.decode(errors="replace"))
                else:
                    self._deliver(bytes(fragments))
        # PONG (unsolicited) and PING (answered by picows) need nothing here.

    def _deliver(self, message: bytes | str) -> None:
        if self._busy:
            backlog = self._backlog
            backlog.append(message)
            if len(backlog) >= BACKLOG_PAUSE and not self._read_paused and self._ws is not None:
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
        self._pump = self._hub.loop.create_task(self._finish(waiter))

    async def _finish(self, waiter: Awaitable[None]) -> None:
        try:
            await waiter
            await self._drain()
        finally:
            self._pump = None

    async def _drain(self) -> None:
        """Deliver queued messages one at a time, then return to the fast path."""
        backlog = self._backlog
        receive = self._receive
        assert receive is not None
        while backlog:
            waiter = receive(backlog.popleft())
            if waiter is not None:
                await waiter
        self._busy = False
        self._update_direct()
        if self._read_paused:
            self._read_paused = False
            if self._ws is not None and not self._ws.is_disconnected:
                self._ws.underlying_transport.resume_reading()

    def _update_direct(self) -> None:
        self._direct = not (self._busy or self._closing or self._fragments is not None)

    # -- closing ---------------------------------------------------------------------

    def _close_frame(self, frame: WSFrame) -> None:
        ws = self._ws
        assert ws is not None
        self._close_received = True
        self._closing = True
        self._direct = False
        if not self._close_sent:
            # Echo the peer's close (RFC 6455 5.5.1), then hang up: the server closes TCP.
            self._close_sent = True
            if frame.payload_size >= 2:
                ws.send_close(frame.get_close_code(), frame.get_close_message())
            else:
                ws.send(_CLOSE, b"")
        ws.disconnect()

    def _start_closing(self, code: int, reason: str) -> None:
        """Send our close frame (once) and wait, reading, for the peer's answer."""
        ws = self._ws
        if ws is None or ws.is_disconnected:
            return
        self._closing = True
        self._direct = False
        if not self._close_sent:
            self._close_sent = True
            ws.send_close(WSCloseCode(code), reason)
        if self._close_received:
            ws.disconnect()
            return
        if self._read_paused:  # the answer must get through
            self._read_paused = False
            ws.underlying_transport.resume_reading()
        if self._close_timer is None:
            self._close_timer = self._hub.loop.call_later(
                self._hub.server.close_timeout, ws.disconnect
            )

    def _fail(self, code: int, reason: str) -> None:
        logger.info("picows: closing a connection: %s (%d)", reason, code)
        self._start_closing(code, reason)

    async def _wait_writable(self) -> None:
        writable = self._writable
        if writable is None:
            writable = self._writable = self._hub.loop.create_future()
        await asyncio.shield(writable)
        if self._closing and self._gone.done():
            raise ConnectionClosedError(*self._ending())


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def _refusal(headers: CIMultiDict[str]) -> Factory | None:
    """Check an upgrade request to the WebSocket's path before admission, answering as
    the ``websockets`` transport does (426 / 400 / 403); ``None`` if it is fine.

    Also normalizes ``Connection`` / ``Upgrade``: picows compares them whole, which would
    refuse e.g. Firefox's ``Connection: keep-alive, Upgrade``.
    """
    if "websocket" not in _tokens(headers.get("Upgrade", "")) or "upgrade" not in _tokens(
        headers.get("Connection", "")
    ):
        return _response(
            HTTPStatus.UPGRADE_REQUIRED,
            b"this is a WebSocket endpoint: send an Upgrade: websocket request\n",
            {"Upgrade": "websocket"},
        )
    if headers.get("Sec-WebSocket-Version") != "13":
        return _response(
            HTTPStatus.BAD_REQUEST,
            b"unsupported Sec-WebSocket-Version (13 is)\n",
            {"Sec-WebSocket-Version": "13"},
        )
    try:
        key = base64.b64decode(headers.get("Sec-WebSocket-Key", ""), validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 16:
        return _response(HTTPStatus.BAD_REQUEST, b"invalid Sec-WebSocket-Key\n")
    for name in ("Origin", "Host"):
        if len(headers.getall(name, ())) > 1:
            return _response(HTTPStatus.FORBIDDEN, f"more than one {name} header\n".encode())
    headers["Connection"] = "upgrade"
    headers["Upgrade"] = "websocket"
    return None


def _parse_request(head: bytes) -> tuple[str, CIMultiDict[str]] | None:
    """Request target and headers of an HTTP GET (``None`` if it is not one)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":
        return None
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            return None
        headers.add(name.strip().decode("latin-1"), value.strip().decode("latin-1"))
    return parts[1].decode("latin-1"), headers


class _Front(asyncio.Protocol):
    """Holds a new TCP connection until its HTTP request is in and admitted (an async
    ``authenticate`` may wait), then hands the socket to picows with the verdict.

    Used only when the server has an ``authenticate`` hook; it costs nothing after the
    handshake (picows then owns the socket).
    """

    def __init__(self, hub: PicowsListener) -> None:
        self._hub = hub
        self._head = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's, or aiofastnet's (which is not an asyncio.Transport subclass)
        self._transport = cast(asyncio.Transport, transport)
        self._hub.fronts.add(self)
        self._timer = self._hub.loop.call_later(HANDSHAKE_TIMEOUT, self.abort)

    def data_received(self, data: bytes) -> None:
        self._head += data
        transport = self._transport
        if self._task is not None or transport is None:
            return  # admission runs: keep what comes for picows
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_HEAD:
                self._hand_over(None)  # picows answers (and refuses) it
            return
        transport.pause_reading()
        parsed = _parse_request(bytes(self._head[:end]))
        hub = self._hub
        if parsed is None:
            self._hand_over(None)
            return
        target, headers = parsed
        path, _, query = target.partition("?")
        if path != hub.server.path or _refusal(headers) is not None:
            self._hand_over(None)  # routes, 404, refusals: the handshake hook answers
            return
        peer = transport.get_extra_info("peername")
        sock = PicowsSocket(hub, Request(path, query, headers, peer))
        self._task = hub.loop.create_task(self._admit(sock))
        hub.tasks.add(self._task)
        self._task.add_done_callback(hub.tasks.discard)

    async def _admit(self, sock: PicowsSocket) -> None:
        verdict: Factory
        try:
            await self._hub.server.admit(sock, sock._request)
            verdict = sock
        except HandshakeRejected as exc:
            verdict = _response(exc.status, f"{exc.reason}\n".encode())
        except Exception:
            logger.exception("picows: admission raised")
            verdict = _response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n")
        self._hand_over(verdict)

    def _hand_over(self, verdict: Factory) -> None:
        self._stop()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        hub = self._hub
        protocol = hub.picows_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data = bytes(self._head)
        self._head.clear()
        hub.verdict = verdict
        try:
            while data:  # what picows would have read itself
                buffer = protocol.get_buffer(len(data))
                n = min(len(buffer), len(data))
                buffer[:n] = data[:n]
                protocol.buffer_updated(n)
                data = data[n:]
        finally:
            hub.verdict = None
        if not transport.is_closing():
            transport.resume_reading()

    def _stop(self) -> None:
        self._hub.fronts.discard(self)
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
    """The picows server of a socker :class:`~aiosocker.Server` (its ``_fast``)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.closing = False
        self.sockets: set[PicowsSocket] = set()
        """Upgraded sockets not yet disconnected."""
        self.fronts: set[_Front] = set()
        """Connections whose handshake waits for ``authenticate``."""
        self.tasks: set[asyncio.Task[None]] = set()
        """One per upgraded socket (its connection), one per running admission."""
        self.verdict: Factory = None
        """Set while a :class:`_Front` hands a socket to picows: the handshake's answer."""
        self.picows_protocol: Callable[[], Any] = lambda: None
        self._server: Any = None  # asyncio.Server, or aiofastnet's

    async def start(self) -> int:
        server = self.server
        interval = float(server.ping_interval or 0)
        keepalive = interval > 0
        timeout = server.ping_timeout
        # picows wants reply <= interval; no timeout at all is not an option there.
        reply = interval if timeout is None else min(float(timeout), interval)
        front = server.admission.authenticate is not None
        self._server = await ws_create_server(
            self.accept,
            server.host,
            server._requested_port,
            max_frame_size=server.max_size,
            enable_auto_ping=keepalive,
            auto_ping_idle_timeout=interval if keepalive else 20.0,
            auto_ping_reply_timeout=reply if keepalive else 20.0,
            auto_ping_strategy=WSAutoPingStrategy.PING_PERIODICALLY,
            enable_auto_pong=True,
            start_serving=not front,
        )
        if front:
            # authenticate may wait, picows' handshake hook may not: put _Front before
            # picows (both asyncio's and aiofastnet's servers read this attribute when
            # they accept).
            self.picows_protocol = self._server._protocol_factory
            self._server._protocol_factory = lambda: _Front(self)
            await self._server.start_serving()
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def accept(self, upgrade: WSUpgradeRequest) -> Factory:
        """picows' handshake hook: answer an HTTP request (synchronously)."""
        server = self.server
        path, _, query = upgrade.path.decode("latin-1").partition("?")
        request = Request(path, query, upgrade.headers, None)
        if path != server.path:
            route = server.route(request)
            if route is None:
                return _response(HTTPStatus.NOT_FOUND, b"not found\n")
            try:
                content_type, body = route.render()
            except Exception:
                logger.exception("picows: route %s raised", path)
                return _response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n")
            return _response(
                HTTPStatus.OK, body, {"Content-Type": content_type, "Cache-Control": "no-cache"}
            )
        refusal = _refusal(upgrade.headers)
        if refusal is not None:
            return refusal
        if self.verdict is not None:
            return self.verdict  # admitted (or refused) by _Front
        sock = PicowsSocket(self, request)
        coro = server.admit(sock, request)
        try:
            yielded = coro.send(None)
        except StopIteration:
            return sock  # admitted, synchronously: the usual case
        except HandshakeRejected as exc:
            return _response(exc.status, f"{exc.reason}\n".encode())
        except Exception:
            logger.exception("picows: admission raised")
            return _response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n")
        sock._admitting = _Resume(coro, yielded)
        return sock

    def close(self) -> None:
        """Stop accepting (``Server.close`` then closes the connections)."""
        self.closing = True
        if self._server is not None:
            self._server.close()

    async def wait_closed(self) -> None:
        """Close what ``Server.close`` does not know of yet, wait for every task."""
        for front in list(self.fronts):
            front.abort()  # still in the handshake
        await asyncio.gather(
            *(sock.close(CloseCode.GOING_AWAY, "server shutting down") for sock in self.sockets),
            return_exceptions=True,
        )
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._server is not None:
            close_clients = getattr(self._server, "close_clients", None)
            if close_clients is not None:  # half-open handshakes would hold wait_closed
                close_clients()
            await self._server.wait_closed()


async def listen(server: Server) -> tuple[PicowsListener, int]:
    """Start a picows server for ``server``; return it and the port it listens on."""
    listener = PicowsListener(server)
    port = await listener.start()
    return listener, port
