"""The Python client's socket: a ``websockets`` client connection as a Connection."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from ...connection import Connection
from ...errors import HandshakeRejected, SignalingError
from ...handshake import Request
from ...options import Settings
from ...resume import QUERY_KEY
from ...rtc.envelope import Resume, decode, is_signaling
from .transport import WebsocketsTransport, feed_sliced, frames_held, pump

__all__ = ["RETRYABLE", "open_client", "read", "take_resume", "with_query"]

logger = logging.getLogger("aiosocker")

RETRYABLE = (OSError, InvalidHandshake, TimeoutError)
"""Failures to open that a reconnecting client retries (refusals other than 503 are
final)."""


received = ClientConnection.data_received


class SlicedConnection(ClientConnection):
    """Reads go to websockets in slices, as on the server (see
    :func:`~.transport.feed_sliced`)."""

    def data_received(self, data: bytes) -> None:
        feed_sliced(self, data, received)


async def open_client(
    url: str,
    settings: Settings,
    *,
    origin: str | None,
    headers: Mapping[str, str],
    open_timeout: float | None,
    resume_token: str | None = None,
) -> tuple[Connection, WebsocketsTransport]:
    """Open a WebSocket to ``url``; the connection is not reading yet (see
    :func:`read`). A refusal raises :class:`~aiosocker.HandshakeRejected`."""
    if resume_token is not None:
        url = with_query(url, {QUERY_KEY: resume_token})
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
            create_connection=SlicedConnection,
        )
    except InvalidStatus as exc:
        response = exc.response
        reason = bytes(response.body or b"").decode(errors="replace").strip()
        raise HandshakeRejected(response.status_code, reason) from exc
    parts = urlsplit(url)
    request = Request(parts.path or "/", parts.query, {}, ws.remote_address)
    transport = WebsocketsTransport(ws, settings.close_timeout)
    return Connection(transport, request=request, settings=settings), transport


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added to (or replacing those in) its query string."""
    parts = urlsplit(url)
    query = {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params}
    return urlunsplit(parts._replace(query=urlencode({**query, **params})))


async def take_resume(conn: Connection, message: bytes | str) -> bool:
    """The client's first message: a server with ``resume=`` sends RESUME first."""
    if not isinstance(message, bytes) or not is_signaling(message):
        return False
    try:
        frame = decode(message)
    except SignalingError:
        return False  # not ours to judge: the chain sees it
    if not isinstance(frame, Resume):
        return False
    conn.resume_token = frame.token
    conn.resumed = frame.resumed
    if frame.fresh_reason:
        logger.info("connection %s started fresh: %s", conn.id, frame.fresh_reason)
    await conn._resumed_hooks()  # before any other message reaches the chain
    return True


async def read(conn: Connection, transport: WebsocketsTransport) -> None:
    """The client's read pump: run ``conn``'s stages until the socket closes."""
    await pump(transport.ws, conn, first=lambda message: take_resume(conn, message))
