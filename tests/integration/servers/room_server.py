"""A server of rooms for the multi-process tests (test_redis, test_workers, test_nginx).

``python room_server.py --port P [--redis URL]`` serves it in a process of its own (it
prints ``ready PORT PID`` once it listens, and stops on SIGTERM, Ctrl-C or the end of
its stdin); ``aiosocker run room_server:setup`` serves it with workers (run from this
folder). Each client message is a command; replies start with a word and a colon:

* ``join:ROOM`` / ``leave:ROOM`` -> ``joined:ROOM`` / ``left:ROOM``
* ``say:ROOM:TEXT`` -> broadcasts ``TEXT`` to ``ROOM`` from this process (no reply)
* ``count:ROOM`` -> ``count:ROOM:N`` (``await server.members(ROOM)``, every process)
* ``whoami`` -> ``pid:PID`` (which process the client reached)
* ``id`` -> ``id:ID`` (the connection's id on the server: a resumed session gets its own
  back, also on another process)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

import aiosocker

server: aiosocker.Server | None = None

OPTIONS = {"path": "/rooms"}
"""More serve() options, for ``aiosocker run room_server:setup --options room_server:OPTIONS``."""
NOT_OPTIONS = {"no_such_option": 1}


def the_server() -> aiosocker.Server:
    if server is not None:
        return server
    from aiosocker.run import current_server

    return current_server()


def setup(conn: aiosocker.Connection) -> None:
    @conn.stage()
    async def lobby(message: bytes) -> bool:
        verb, _, rest = message.decode().partition(":")
        if verb == "join":
            conn.join(rest)
            conn.write(b"joined:" + rest.encode())
        elif verb == "leave":
            conn.leave(rest)
            conn.write(b"left:" + rest.encode())
        elif verb == "say":
            room, _, text = rest.partition(":")
            await the_server().broadcast(text.encode(), room=room)
        elif verb == "count":
            count = await the_server().members(rest)
            conn.write(f"count:{rest}:{count}".encode())
        elif verb == "whoami":
            conn.write(f"pid:{os.getpid()}".encode())
        elif verb == "id":
            conn.write(f"id:{conn.id}".encode())
        return False


async def main(port: int, redis: str | None, resume: float | None) -> None:
    global server
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def stdin_closed() -> None:
        while await reader.readline():
            pass
        stop.set()

    watcher = asyncio.create_task(stdin_closed())
    async with aiosocker.serve(setup, "127.0.0.1", port, redis=redis, resume=resume) as server:
        print(f"ready {server.port} {os.getpid()}", flush=True)
        await stop.wait()
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--resume", type=float, default=None)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.redis, args.resume))
