"""A :class:`~aiosocker.connection.Transport` over a ``websockets`` connection (server
or client side), and its read pump."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, TypeVar, cast

from websockets.asyncio.connection import Connection as WsConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close
from websockets.protocol import State
from websockets.version import version as ws_version

from ...connection import Connection
from ...errors import ConnectionClosedError, close_outcome
from ...options import Settings

__all__ = ["READ_SLICE", "WebsocketsTransport", "ending", "feed_sliced", "frames_held", "pump"]


C = TypeVar("C", bound=WsConnection)

_SENDING = "send_in_progress" if int(ws_version.split(".")[0]) >= 16 else "fragmented_send_waiter"
"""websockets' attribute set while a fragmented message is being sent (renamed in 16)."""

READ_SLICE = 64 * 1024
"""The most bytes websockets is handed at once (see :func:`feed_sliced`)."""


def feed_sliced(ws: C, data: bytes, received: Callable[[C, bytes], None]) -> None:
    """Hand ``data``, one socket read (up to 256 KiB with asyncio), to websockets'
    ``received`` (its ``data_received``) in slices of at most :data:`READ_SLICE` bytes.

    websockets appends each read to its reader's buffer and then takes frame after
    frame off the front, halving the buffer as it shrinks: a 256 KiB read costs a
    ~260 KiB buffer and a chain of 128, 64, ... KiB copies, on top of asyncio's
    256 KiB read buffer, per read. glibc's malloc serves chunks that big from the top
    of its heap and, once they are freed, gives them back to the kernel (its trim
    threshold): in many heap layouts every read grows the heap again and touches fresh
    pages, ~1.5 page faults per 4 KiB message, a third of the server's CPU. Slices of
    64 KiB keep websockets' buffers well under glibc's thresholds (128 KiB by
    default), so their memory is reused (docs/performance.md, ws_stream_4k). To
    websockets it is the network delivering smaller segments."""
    size = len(data)
    if size <= READ_SLICE:
        received(ws, data)
        return
    view = memoryview(data)
    for start in range(0, size, READ_SLICE):
        # websockets copies what it is given (bytearray +=): a view is enough.
        received(ws, cast(bytes, view[start : start + READ_SLICE]))


def frames_held(settings: Settings) -> int:
    """How many received frames websockets may buffer before it stops reading: as many
    ``max_size`` messages as fit ``max_memory`` (websockets' default, 16, would let one
    connection hold 16 MiB)."""
    return max(1, min(16, settings.max_memory // settings.max_size))


class WebsocketsTransport:
    """A :class:`~aiosocker.connection.Transport` over a ``websockets`` connection."""

    __slots__ = ("close_timeout", "ws")

    def __init__(self, ws: WsConnection, close_timeout: float | None = None) -> None:
        self.ws = ws
        self.close_timeout = close_timeout

    @property
    def remote_address(self) -> Any:
        return self.ws.remote_address

    @property
    def latency(self) -> float:
        return self.ws.latency

    def try_write(self, data: bytes) -> bool:
        """:class:`~aiosocker.connection.TryWrite`: as ``websockets.broadcast()`` writes,
        but only when nothing waits in the socket's buffer (so nothing is overtaken and
        at most this one message sits outside the connection's ``max_memory``)."""
        ws = self.ws
        if (
            ws.protocol.state is not State.OPEN
            or getattr(ws, _SENDING) is not None  # a fragmented send is in progress
            or ws.transport.get_write_buffer_size()
        ):
            return False
        ws.protocol.send_binary(data)
        ws.send_data()
        return True

    async def send(self, data: bytes) -> None:
        try:
            await self.ws.send(data)
        except ConnectionClosed as exc:
            raise self.closed_error(exc) from exc

    @property
    def direct_send(self) -> tuple[Callable[[bytes], Awaitable[None]], type[BaseException]]:
        """:class:`~aiosocker.connection.DirectSend`: ``Connection.send`` awaits
        ``ws.send`` itself and maps ``ConnectionClosed`` with :meth:`closed_error`."""
        return self.ws.send, ConnectionClosed

    def closed_error(self, exc: BaseException) -> ConnectionClosedError:
        return ConnectionClosedError(*ending(self.ws))

    def abort(self) -> None:
        """Drop the socket now (after a close frame for a peer that floods)."""
        self.ws.transport.abort()

    async def close(self, code: int, reason: str) -> None:
        # websockets bounds the wait for the peer's close frame, not the wait for room
        # to send ours: a peer that never reads would hold the connection until the
        # next keepalive. Past close_timeout in all, drop the socket.
        try:
            async with asyncio.timeout(self.close_timeout):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()


def _pair(frame: Close | None) -> tuple[int, str] | None:
    return None if frame is None else (frame.code, frame.reason)


def ending(ws: WsConnection) -> tuple[int | None, str]:
    """The close code and reason that ended ``ws``, from whichever side closed first."""
    protocol = ws.protocol
    return close_outcome(
        _pair(protocol.close_sent),
        _pair(protocol.close_rcvd),
        bool(protocol.close_rcvd_then_sent),
    )


def pump(
    ws: WsConnection,
    conn: Connection,
    first: Callable[[bytes | str], Awaitable[bool]] | None = None,
) -> Coroutine[Any, Any, None]:
    """Read ``ws`` into ``conn`` until it closes, then report the end to ``conn``.
    ``first`` sees the first message before the chain does and may consume it (the
    client's RESUME frame).

    The connection's own read loop (:meth:`Connection._read`), handed back as it is:
    every coroutine between the connection's task and ``ws.recv()`` is resumed on each
    message, so the fewer the better."""
    return conn._read(ws.recv, ConnectionClosed, partial(ending, ws), first)
