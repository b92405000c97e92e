"""Kind ``raw-aiortc``: the WebRTC baseline's server, a minimal hand-written aiortc
answerer over a raw ``websockets`` connection (its client: :mod:`bench.clients.rtc`).
No STUN/TURN (``RTCConfiguration(iceServers=[])``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..rtc_common import ice_setup, rtc_config
from .base import Life, Ready


async def serve_raw_aiortc(ready: Callable[[int], None], life: Life) -> None:
    """Per WebSocket: read an offer, answer it, then answer ``"stats"`` requests with what
    the DataChannel received (count, first/last arrival in ns)."""
    ice_setup()
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        pc = RTCPeerConnection(rtc_config())
        stats = {"count": 0, "first_ns": 0, "last_ns": 0}

        @pc.on("datachannel")  # type: ignore[misc]
        def on_datachannel(channel: Any) -> None:
            @channel.on("message")  # type: ignore[misc]
            def on_message(message: bytes) -> None:
                now = time.perf_counter_ns()
                if not stats["count"]:
                    stats["first_ns"] = now
                stats["count"] += 1
                stats["last_ns"] = now

        try:
            offer = json.loads(await ws.recv())
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
            await pc.setLocalDescription(await pc.createAnswer())
            local = pc.localDescription
            await ws.send(json.dumps({"sdp": local.sdp, "type": local.type}))
            async for message in ws:
                if message == "stats":
                    await ws.send(json.dumps(stats))
        finally:
            await pc.close()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        ready(server.sockets[0].getsockname()[1])
        await life.wait()


async def raw_aiortc(mode: str, ready: Ready, life: Life) -> None:
    await serve_raw_aiortc(ready, life)
