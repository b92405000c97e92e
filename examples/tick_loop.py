"""A 60 Hz game loop that drives socker with ``drive="tick"``.

    python examples/tick_loop.py [seconds] [bots]

The server only queues incoming messages. Each frame the loop calls ``server.tick()``,
which handles everything pending on every connection without waiting for anything,
then moves the world one step and sends every player the new state with
``broadcast()`` (which queues with ``write()``: it never blocks the frame). A few bot
clients in the same process play along; at the end the loop prints its stats.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass, field

import aiosocker

FPS = 60


@dataclass
class Player:
    name: str
    x: int = 0
    speed: int = 0


@dataclass
class World:
    players: dict[str, Player] = field(default_factory=dict)
    inputs: int = 0

    def step(self) -> None:
        for player in self.players.values():
            player.x += player.speed

    def snapshot(self) -> bytes:
        return ";".join(f"{p.name}={p.x}" for p in self.players.values()).encode()


def game_server(world: World) -> aiosocker.Setup:
    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage(timeout=5)
        def join(message: bytes) -> bool:
            # b"join:<name>": the only message accepted before playing.
            if not message.startswith(b"join:"):
                return False
            world.players[conn.id] = Player(message[5:].decode())
            return True

        @conn.stage()
        def playing(message: bytes) -> bool:
            # An input: b"L", b"R" or b"S"top. Runs inside server.tick(), so the world
            # never changes in the middle of a frame.
            world.players[conn.id].speed = {b"L": -1, b"R": 1}.get(message, 0)
            world.inputs += 1
            return False

        conn.on_close(lambda conn, code, reason: world.players.pop(conn.id, None))

    return setup


async def bot(url: str, name: str, stop: asyncio.Event) -> int:
    """A player that presses keys 20 times a second; returns how many states it saw."""
    states = 0

    def state(message: bytes) -> bool:
        nonlocal states
        states += 1
        return False

    async with aiosocker.connect(url) as conn:
        conn.add(state, name="state")
        await conn.send(f"join:{name}".encode())
        while not stop.is_set():
            conn.write(random.choice([b"L", b"R", b"S"]))
            await asyncio.sleep(1 / 20)
    return states


async def main(seconds: float = 3.0, bots: int = 3) -> dict[str, float]:
    world = World()
    async with aiosocker.serve(
        game_server(world), host="127.0.0.1", port=0, drive="tick"
    ) as server:
        stop = asyncio.Event()
        players = [asyncio.create_task(bot(server.url, f"bot{i}", stop)) for i in range(bots)]
        loop = asyncio.get_running_loop()
        start = next_frame = loop.time()
        frames = handled = 0
        worst = 0.0
        while loop.time() - start < seconds:
            began = time.perf_counter()
            handled += server.tick()  # every pending message, every connection
            world.step()
            if world.players:
                await server.broadcast(world.snapshot(), stage="playing")
            worst = max(worst, time.perf_counter() - began)
            frames += 1
            next_frame += 1 / FPS  # a fixed schedule: a late frame doesn't shift the rest
            await asyncio.sleep(max(0.0, next_frame - loop.time()))
        elapsed = loop.time() - start
        stop.set()
        seen = await asyncio.gather(*players)
    stats = {
        "frames": frames,
        "rate": frames / elapsed,
        "handled": handled,
        "inputs": world.inputs,
        "worst_ms": worst * 1000,
        "states": min(seen, default=0),
    }
    print(f"frames: {frames} in {elapsed:.2f} s ({stats['rate']:.1f} Hz)")
    print(f"messages handled by tick(): {handled} ({world.inputs} inputs from {bots} bots)")
    print(f"slowest frame (tick + step + broadcast): {stats['worst_ms']:.2f} ms")
    print(f"states received per bot: {', '.join(str(n) for n in seen)}")
    return stats


if __name__ == "__main__":
    asyncio.run(
        main(
            float(sys.argv[1]) if len(sys.argv) > 1 else 3.0,
            int(sys.argv[2]) if len(sys.argv) > 2 else 3,
        )
    )
