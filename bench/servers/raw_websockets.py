"""Kind ``raw-websockets``: ``websockets.asyncio.server.serve``, compression off."""

from __future__ import annotations

import time

from .base import HOST, Life, Ready, parse_hello, report


async def raw_websockets(mode: str, ready: Ready, life: Life) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def stream(ws: ServerConnection) -> None:
        n = parse_hello(await ws.recv())  # type: ignore[arg-type]
        t0, c0 = time.perf_counter_ns(), time.process_time_ns()
        count = 0
        async for _ in ws:
            count += 1
            if count == n:
                report(n, t0, c0)

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def idle(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    handler = {"stream": stream, "echo": echo, "idle": idle}[mode]
    async with serve(handler, HOST, 0, compression=None) as server:
        ready(server.sockets[0].getsockname()[1])
        await life.wait()
