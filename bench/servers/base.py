"""What every server kind shares: where it listens, how long it lives, the stream report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable

HOST = "127.0.0.1"

Ready = Callable[[int], None]
"""Called once the server listens, with its port (``__main__`` prints ``PORT <n>``)."""


class Life:
    """Until when the server runs: stdin closed, or the lifetime spent."""

    def __init__(self, lifetime: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self.deadline = self.loop.time() + lifetime
        fd = sys.stdin.fileno()

        def on_stdin() -> None:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                self.loop.remove_reader(fd)
                self.stop.set()

        self.loop.add_reader(fd, on_stdin)

    def over(self) -> bool:
        return self.stop.is_set() or self.loop.time() >= self.deadline

    async def wait(self) -> None:
        remaining = max(0.0, self.deadline - self.loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), remaining)


def report(n: int, t0: int, c0: int) -> None:
    """The stream's end: ``DONE <n> <wall_ns> <cpu_ns>`` since its first message."""
    wall = time.perf_counter_ns() - t0
    cpu = time.process_time_ns() - c0
    print(f"DONE {n} {wall} {cpu}", flush=True)


def parse_hello(message: bytes) -> int:
    if not message.startswith(b"N:"):
        raise ValueError(f"stream must start with b'N:<count>', got {message[:20]!r}")
    return int(message[2:])
