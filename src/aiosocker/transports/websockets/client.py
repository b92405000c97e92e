"""The Python client's socket: a ``websockets`` client connection as a Connection."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from ...connection import Connection
from ...errors import HandshakeRejected
from ...handshake import Request
from ...options import Settings
from .transport import WebsocketsTransport, frames_held, pump

__all__ = ["RETRYABLE", "open_client", "read"]

RETRYABLE = (OSError, InvalidHandshake, TimeoutError)
"""Failures to open that a reconnecting client retries (refusals other than 503 are
final)."""


async def open_client(
    url: str,
    settings: Settings,
    *,
    origin: str | None,
    headers: Mapping[str, str],
    open_timeout: float | None,
) -> tuple[Connection, WebsocketsTransport]:
    """Open a WebSocket to ``url``; the connection is not reading yet (see
    :func:`read`). A refusal raises :class:`~aiosocker.HandshakeRejected`."""
    try:
        ws = await ws_connect(
            url,
            origin=origin,  # type: ignore[arg-type]  # websockets' Origin is a str NewType
            additional_headers=dict(headers),
            max_size=settings.max_size,
            max_queue=frames_held(settings),
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            close_timeout=settings.close_timeout,
            open_timeout=open_timeout,
            compression=None,
        )
    except InvalidStatus as exc:
        response = exc.response
        reason = bytes(response.body or b"").decode(errors="replace").strip()
        raise HandshakeRejected(response.status_code, reason) from exc
    parts = urlsplit(url)
    request = Request(parts.path or "/", parts.query, {}, ws.remote_address)
    transport = WebsocketsTransport(ws)
    return Connection(transport, request=request, settings=settings), transport


async def read(conn: Connection, transport: WebsocketsTransport) -> None:
    """The client's read pump: run ``conn``'s stages until the socket closes."""
    await pump(transport.ws, conn)
