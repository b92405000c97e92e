"""The Go README's Server.go in socker: one stage per step of the exchange.

    python examples/staged_server.py [port] [seconds]

Listens on 127.0.0.1 (port 8765 by default; 0 picks a free one) until Ctrl-C / SIGTERM
or, when given, for that many seconds. Then run ``examples/staged_client.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import aiosocker

# Buffered scene data every newcomer gets first: other players, networked objects, state.
SCENE = b"scene:player-1,player-2,crate-7"


async def setup(conn: aiosocker.Connection) -> None:
    """Called once per new connection, like the Go example: build its chain."""

    @conn.stage()
    async def hello(message: bytes) -> bool:
        # Client connects and sends a message: send all buffered data.
        await conn.send(SCENE)
        return True

    @conn.stage(timeout=10)
    async def handshake(message: bytes) -> bool:
        # Client sent the handshake for WebRTC: create the data channel, create an
        # offer, send the offer to the client. (aiosocker.rtc does this for real.)
        if message != b"ready":
            return False  # stay until the client is ready
        await conn.send(b"offer:v=0 (an SDP offer)")
        return True

    @conn.stage(timeout=10)
    def answer(message: bytes) -> bool:
        # Client sent the answer: set it as the remote description.
        conn.state["answer"] = message
        print(f"{conn.id}: set up after {' -> '.join(conn.stages.names[:3])}", flush=True)
        return True

    @conn.stage()
    def playing(message: bytes) -> bool:
        # Done setting up: data that must reach the server (a disconnect, some state).
        print(f"{conn.id}: {message.decode(errors='replace')}", flush=True)
        conn.write(b"ack:" + message)
        return False  # the final stage stays

    @conn.on_close
    def closed(conn: aiosocker.Connection, code: int, reason: str) -> None:
        print(f"{conn.id}: closed {code} {reason}".rstrip(), flush=True)


async def main(port: int = 8765, seconds: float | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with aiosocker.serve(setup, host="127.0.0.1", port=port) as server:
        print(f"listening on {server.url}", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        print("shutting down", flush=True)
    # Leaving `async with` closed every connection with 1001 and ran their hooks.
    print("server closed", flush=True)


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 8765,
            float(sys.argv[2]) if len(sys.argv) > 2 else None,
        )
    )
