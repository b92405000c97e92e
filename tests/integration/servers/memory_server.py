"""A server for tests/integration/test_memory.py, run in its own process so that its
RSS can be measured: ``python memory_server.py TRANSPORT`` (default options: the
``max_memory`` budget under test is the default one). It prints its port, then
runs until stdin closes; every line it reads is answered with its VmHWM/VmRSS in KiB
and the close codes its connections ended with."""

from __future__ import annotations

import asyncio
import gc
import json
import sys

import aiosocker
from aiosocker.rtc import server_stages

closes: list[int] = []


def setup(conn: aiosocker.Connection) -> None:
    # hello -> rtc stages -> playing; a first message b"echo" jumps to the echo stage.
    @conn.stage()
    def hello(message: bytes) -> bool | str:
        return "echo" if message == b"echo" else message == b"hello"

    server_stages(conn, timeout=30)

    @conn.stage()
    def playing(message: bytes) -> bool:
        return False

    @conn.stage()
    def echo(message: bytes) -> bool:
        conn.write(message)  # to a peer that never reads: the outbox fills
        return False


def memory() -> dict[str, int]:
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                fields[name] = int(value.split()[0])
    return fields


async def main(transport: str) -> None:
    async with aiosocker.serve(
        setup,
        "127.0.0.1",
        0,
        transport=transport,  # type: ignore[arg-type]
        on_close=lambda conn, code, reason: closes.append(code),
    ) as server:
        print(server.port, flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while await reader.readline():
            gc.collect()
            print(json.dumps({**memory(), "closes": closes}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
