"""Memory one client can make the server hold is bounded in bytes (``max_memory``).

A real server runs in its own process (``servers/memory_server.py``, default options,
so ``max_memory`` is 4 MiB) and three clients attack it with each pattern of the
hardening issue; the test reads the server's peak RSS (VmHWM) from /proc and its
connections' close codes. Without the budget these patterns took a server from ~70 MB
to ~1 GB (deferred frames), ~430 MB (an echo nobody reads) and ~430 MB (pongs nobody
reads, picows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .raw import frame, upgraded

pytestmark = pytest.mark.timeout(120)

SERVER = Path(__file__).parent / "servers" / "memory_server.py"
MIB = 2**20
CLIENTS = 3
GROWTH_BOUND_KIB = 64 * 1024
"""Peak RSS the attack may add: 3 x 4 MiB budgets plus read buffers, aiortc's imports
and the allocator's slack. Measured: 11-37 MiB with the budget; without it (checked by
hand with max_memory=2**31 and websockets' 16-frame queue) this same attack grew the
server by 96-156 MiB, and longer attacks by ~400-900 MB."""


class Server:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port

    async def status(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"?\n")
        await self.proc.stdin.drain()
        return dict(json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 10)))


@contextlib.asynccontextmanager
async def server_process(transport: str) -> AsyncIterator[Server]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SERVER),
        transport,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 30))
        yield Server(proc, port)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def flood(port: int, first: bytes, message: bytes, count: int) -> None:
    """Say ``first``, then send ``count`` frames of ``message`` as fast as the socket
    takes them, never reading; stop when the server hangs up."""
    _, writer = await upgraded(port)
    try:
        writer.write(frame(0x2, first))
        for _ in range(count):
            writer.write(message)
            await asyncio.wait_for(writer.drain(), 3)
    except (ConnectionError, TimeoutError):
        pass  # closed on us (or stopped reading us): the point
    finally:
        writer.transport.abort()


BIG = frame(0x2, b"\x01" * (MIB - 64))
PATTERNS = {
    # App frames during the rtc handshake are deferred: before, 1,024 x 1 MiB each.
    "deferred": (b"hello", BIG, 40),
    # An echo handler writing to a peer that never reads.
    "unread echo": (b"echo", BIG, 40),
    # Pings whose pongs the peer never reads.
    "unread pongs": (b"hello", frame(0x9, b"p" * 125) * 1000, 400),
}


@pytest.mark.parametrize("pattern", PATTERNS)
async def test_one_client_cannot_make_the_server_hold_more_than_its_budget(
    transport: str, pattern: str
) -> None:
    first, message, count = PATTERNS[pattern]
    async with server_process(transport) as server:
        before = await server.status()
        await asyncio.wait_for(
            asyncio.gather(*(flood(server.port, first, message, count) for _ in range(CLIENTS))),
            60,
        )
        after = await server.status()
        for _ in range(100):  # the server may still be closing the last ones
            if len(after["closes"]) >= CLIENTS:
                break
            await asyncio.sleep(0.1)
            after = await server.status()
    growth = after["VmHWM"] - before["VmRSS"]
    print(f"{transport} {pattern}: peak +{growth // 1024} MiB, closes {after['closes']}")
    assert growth < GROWTH_BOUND_KIB, f"peak RSS grew by {growth // 1024} MiB"
    if pattern != "unread echo":  # there, the app's write() raises QueueFullError
        assert after["closes"] == [4413] * CLIENTS
