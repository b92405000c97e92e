"""A :class:`~aiosocker.connection.Transport` over a ``websockets`` connection (server
or client side), and its read pump."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.connection import Connection as WsConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from ...connection import Connection
from ...errors import ConnectionClosedError, close_outcome
from ...options import Settings

__all__ = ["WebsocketsTransport", "ending", "frames_held", "pump"]


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

    async def send(self, data: bytes) -> None:
        try:
            await self.ws.send(data)
        except ConnectionClosed as exc:
            raise ConnectionClosedError(*ending(self.ws)) from exc

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


async def pump(
    ws: WsConnection,
    conn: Connection,
    first: Callable[[bytes | str], Awaitable[bool]] | None = None,
) -> None:
    """Read ``ws`` into ``conn`` until it closes, then report the end to ``conn``.
    ``first`` sees the first message before the chain does and may consume it (the
    client's RESUME frame)."""
    receive = conn._reader()
    try:
        if first is not None:
            async for message in ws:
                if not await first(message):
                    waiter = receive(message)
                    if waiter is not None:
                        await waiter
                break
        async for message in ws:
            waiter = receive(message)
            if waiter is not None:
                await waiter
    except ConnectionClosed:
        pass  # ending() tells how; the close hooks hear it
    finally:
        code, reason = ending(ws)
        await conn._transport_closed(code, reason)
