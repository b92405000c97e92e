"""The floor of the Redis broadcast figure: ``redis-py`` alone, no WebSocket, no aiosocker.

``python -m bench.clients.redis_pub --url URL --channel CHANNEL`` connects with
``redis.asyncio`` (the client aiosocker's Redis backend uses), prints ``READY``, then
for each ``GO <count> <interval_ms>`` line on stdin publishes ``count`` stamped probes
(:func:`bench.rooms_common.stamped`, the wall clock right before ``PUBLISH``) one every
``interval_ms`` and prints ``DONE``. The bench process subscribes
(:func:`subscribe_probes`) and measures arrival minus stamp: one publish and one
subscription between two processes, what a cross-process broadcast cannot go below.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from ..rooms_common import stamped, unstamp


async def _publish(url: str, channel: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        await client.ping()
        print("READY", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            _, count, interval_ms = line.split()
            for seq in range(int(count)):
                await client.publish(channel, stamped(seq, time.time()))
                await asyncio.sleep(float(interval_ms) / 1000)
            print("DONE", flush=True)
    finally:
        await client.aclose()


async def subscribe_probes(
    url: str, channel: str, count: int, start: Any, within: float
) -> list[float]:
    """Subscribe, call ``start()`` (which makes the publisher go), and collect the
    latencies (ms) of ``count`` probes, for at most ``within`` seconds."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    lat: list[float] = []
    try:
        await pubsub.subscribe(channel)
        start()
        deadline = time.monotonic() + within
        while len(lat) < count and time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None or message.get("type") != "message":
                continue
            arrived = time.time()
            _, sent = unstamp(message["data"])
            lat.append((arrived - sent) * 1e3)
    finally:
        await pubsub.aclose()
        await client.aclose()
    return lat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clients.redis_pub", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--channel", required=True)
    args = parser.parse_args(argv)
    asyncio.run(asyncio.wait_for(_publish(args.url, args.channel), 900))
    return 0


if __name__ == "__main__":
    sys.exit(main())
