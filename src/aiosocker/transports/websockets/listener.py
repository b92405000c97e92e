"""The default listener: a ``websockets`` server running connections on a Hub."""

from __future__ import annotations

import os
from collections.abc import Awaitable

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers as WsHeaders
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from ...errors import CloseCode, HandshakeRejected
from ...handshake import Request, Response, refusal
from ...hub import Hub
from .transport import WebsocketsTransport, feed_sliced, frames_held, pump

__all__ = ["WebsocketsListener"]

received = ServerConnection.data_received
WRITE_HIGH = 2**15
"""websockets' default ``write_limit`` (high-water mark of the socket's write buffer)."""


def _request(ws: ServerConnection, raw: WsRequest) -> Request:
    method = getattr(raw, "method", "GET")  # websockets < 16 parses GET only
    return Request.from_target(raw.path, raw.headers, ws.remote_address, method, ws.local_address)


def bounded_connection(max_memory: int) -> type[ServerConnection]:
    """websockets answers every ping at once, straight into the socket's write buffer:
    a peer that pings and never reads would pile the pongs up. Past ``max_memory``
    bytes unread, close with 4413 and drop the socket (the close frame could only
    queue behind what the peer does not read). Reads go to websockets in slices (see
    :func:`~.transport.feed_sliced`)."""
    # The write buffer passes max_memory only past websockets' high-water mark
    # (WRITE_HIGH, passed to serve()), where the transport has paused websockets'
    # writing (``paused``): until then a read needs no look at the buffer.
    always = max_memory < WRITE_HIGH

    class BoundedConnection(ServerConnection):
        def data_received(self, data: bytes) -> None:
            feed_sliced(self, data, received)
            if self.paused or always:
                transport = self.transport
                buffered = transport.get_write_buffer_size()
                if buffered > max_memory and not transport.is_closing():
                    self.protocol.fail(
                        CloseCode.OVER_MEMORY,
                        f"{buffered} bytes unread by the peer (max_memory={max_memory})",
                    )
                    transport.abort()

    return BoundedConnection


def _response(answer: Response) -> WsResponse:
    return WsResponse(answer.status, answer.reason, WsHeaders(answer.headers), answer.body)


class WebsocketsListener:
    """A :class:`~aiosocker.transports.Listener` on the ``websockets`` library."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._server: WsServer | None = None

    async def start(self, host: str, port: int) -> int:
        settings = self.hub.settings
        self._server = await ws_serve(
            self._handler,
            host,
            port,
            process_request=self._process_request,
            process_response=self._process_response,
            create_connection=bounded_connection(settings.max_memory),
            compression=None,  # binary game data; deflate costs ~60 KiB per connection
            max_size=settings.max_size,
            max_queue=frames_held(settings),
            write_limit=WRITE_HIGH,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            close_timeout=settings.close_timeout,
            server_header="aiosocker",
            reuse_port=os.environ.get("AIOSOCKER_REUSE_PORT") == "1",  # aiosocker run --workers
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.close(close_connections=False)

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()

    async def _process_request(self, ws: ServerConnection, raw: WsRequest) -> WsResponse | None:
        hub = self.hub
        request = _request(ws, raw)
        answer = await hub.respond(request)
        if answer is not None:
            return _response(answer)
        try:
            await hub.admit(ws, request)
        except HandshakeRejected as exc:
            return _response(refusal(exc))
        return None

    def _process_response(self, ws: ServerConnection, raw: WsRequest, response: WsResponse) -> None:
        if response.status_code != 101:
            # Admitted, then refused by websockets: the place is free again.
            self.hub.release(ws)

    def _handler(self, ws: ServerConnection) -> Awaitable[None]:
        # A plain function handing websockets the hub's coroutine to await: one
        # coroutine level less on every wake-up of the connection's task.
        raw = ws.request
        assert raw is not None
        request = _request(ws, raw)
        transport = WebsocketsTransport(ws, self.hub.settings.close_timeout)
        conn = self.hub.open(ws, transport, request)
        return self.hub.run(conn, pump(ws, conn))
