"""The Go README's Client.go in socker: the client walks its own chain of stages.

    python examples/staged_client.py [url] [updates]

Start ``examples/staged_server.py`` first; the URL defaults to ws://127.0.0.1:8765/.
"""

from __future__ import annotations

import asyncio
import sys

import aiosocker


async def main(url: str = "ws://127.0.0.1:8765/", updates: int = 3) -> list[bytes]:
    acks: list[bytes] = []
    done = asyncio.Event()

    async with aiosocker.connect(url) as conn:

        @conn.stage(timeout=10)
        async def scene(message: bytes) -> bool:
            # Server sends buffered data: create all entities, then ask for WebRTC.
            print(f"scene: {message.decode()}", flush=True)
            await conn.send(b"ready")
            return True

        @conn.stage(timeout=10)
        async def offer(message: bytes) -> bool:
            # Server sends an offer: set it as the remote description, create an
            # answer and send it back.
            await conn.send(b"answer:v=0 (an SDP answer)")
            for i in range(updates):  # data that must reach the server
                conn.write(f"state:{i}".encode())
            return True

        @conn.stage()
        def final(message: bytes) -> bool:
            # Server data that must reach the client (a player joins, leaves...).
            acks.append(message)
            if len(acks) == updates:
                done.set()
            return False

        await conn.send(b"hello")
        await asyncio.wait_for(done.wait(), 10)
        print("stages: " + " -> ".join(entered.stage for entered in conn.stages.history))
        print("acks: " + ", ".join(ack.decode() for ack in acks), flush=True)
    print(f"closed {conn.close_code}", flush=True)
    return acks


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/",
            int(sys.argv[2]) if len(sys.argv) > 2 else 3,
        )
    )
