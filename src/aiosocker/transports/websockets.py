"""Adapter for the ``websockets`` library (asyncio API): server and client connections."""

from __future__ import annotations

from typing import Any

from websockets.asyncio.connection import Connection as WsConnection
from websockets.exceptions import ConnectionClosed

from ..connection import Connection, Request
from ..errors import ConnectionClosedError

__all__ = ["WebsocketsTransport", "ending", "pump", "request_of"]


class WebsocketsTransport:
    """A :class:`~aiosocker.connection.Transport` over a ``websockets`` connection."""

    __slots__ = ("ws",)

    def __init__(self, ws: WsConnection) -> None:
        self.ws = ws

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
        await self.ws.close(code, reason)


def request_of(ws: WsConnection, path: str | None = None) -> Request:
    """The socker :class:`Request` for a websockets server connection."""
    request = getattr(ws, "request", None)
    full = request.path if request is not None else (path or "/")
    route, _, query = full.partition("?")
    headers = request.headers if request is not None else {}
    return Request(route, query, headers, ws.remote_address)


def ending(ws: WsConnection) -> tuple[int | None, str]:
    """The close code and reason that ended ``ws``, from whichever side closed first."""
    protocol = ws.protocol
    sent, received = protocol.close_sent, protocol.close_rcvd
    if sent is not None and (received is None or not protocol.close_rcvd_then_sent):
        return sent.code, sent.reason
    if received is not None:
        return received.code, received.reason
    return None, ""


async def pump(ws: WsConnection, conn: Connection) -> None:
    """Read ``ws`` into ``conn`` until it closes, then report the end to ``conn``."""
    receive = conn.receive
    try:
        async for message in ws:
            waiter = receive(message)
            if waiter is not None:
                await waiter
    except ConnectionClosed:
        pass  # ending() tells how; the close hooks hear it
    finally:
        code, reason = ending(ws)
        await conn.transport_closed(code, reason)
