"""The soak's server, in its own process: ``python -m bench.soak.server``.

``aiosocker.serve()`` on 127.0.0.1, port 0, with the chain of :mod:`bench.soak.common`
and the limits there (``max_size``, ``max_memory``, ``rate``, ``close_timeout``). It prints
``PORT <n>`` once listening, then answers commands, one per line on stdin, with one line
on stdout:

* ``STATS``: ``STATS <json>``: live connections, asyncio tasks, open fds, UDP sockets,
  open aiortc peer connections (after ``gc.collect()``), RSS and its high-water mark, the
  peaks seen so far, and every close its ``on_close`` hook saw, by code and by client tag;
* ``TRIM``: the same, after ``malloc_trim(0)`` gave the allocator's free memory back.

It stops when its stdin closes or ``--lifetime`` seconds pass, whichever is first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import sys
import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..procs import raise_nofile
from ..rtc_common import loopback_only
from .common import (
    CLOSE_TIMEOUT,
    GO,
    HELLO,
    HOST,
    MAX_MEMORY,
    MAX_SIZE,
    PING_INTERVAL,
    RATE_MESSAGES,
    READY,
    SCENE,
    STAGE_TIMEOUT,
    seq_of,
)

if TYPE_CHECKING:
    from aiosocker import Connection, Server

SAMPLE_EVERY = 0.25
"""Seconds between the server's own samples of its connections and tasks (peaks)."""


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def udp_sockets() -> int:
    """UDP sockets this process holds (aiortc's ICE candidates hold one each)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    count = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as f:
            count += sum(1 for line in f.readlines()[1:] if line.split()[9] in inodes)
    return count


def memory_kib() -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of this process, in KiB."""
    found = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                found[line.split(":")[0]] = int(line.split()[1])
    return {"rss_kib": found["VmRSS"], "hwm_kib": found["VmHWM"]}


def peer_connections() -> tuple[int, int]:
    """aiortc peer connections alive in this process: (not closed, all)."""
    from aiortc import RTCPeerConnection

    gc.collect()
    pcs = [obj for obj in gc.get_objects() if issubclass(type(obj), RTCPeerConnection)]
    return sum(1 for pc in pcs if pc.connectionState != "closed"), len(pcs)


def malloc_trim() -> bool:
    """Give free heap memory back to the system (glibc); ``False`` where unavailable."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.malloc_trim(0))


class Soak:
    """The server's setup and hooks, and what they saw."""

    def __init__(self) -> None:
        self.closes: Counter[int] = Counter()
        self.by_tag: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self.reasons: dict[str, dict[int, str]] = defaultdict(dict)
        self.opened: Counter[str] = Counter()
        self.played: Counter[str] = Counter()
        """Messages the playing stage received in order, by client tag."""
        self.out_of_order: Counter[str] = Counter()
        """Messages the playing stage received out of order or not numbered, by tag."""
        self.rtc_echoed = 0
        self.lifetimes: defaultdict[str, list[float]] = defaultdict(list)
        """Seconds from setup to on_close, by tag."""
        self.peak_connections = 0
        self.peak_tasks = 0
        self.live = 0

    def setup(self, conn: Connection) -> None:
        from aiosocker import OverMemoryError, QueueFullError

        who = parse_qs(conn.request.query).get("who", ["?"])[0]
        conn.state["who"] = who
        conn.state["next"] = 0
        conn.state["t0"] = time.monotonic()

        @conn.stage(timeout=STAGE_TIMEOUT)
        async def hello(message: bytes) -> bool:
            if message != HELLO:
                return False
            await conn.send(SCENE)
            return True

        @conn.stage(timeout=STAGE_TIMEOUT)
        async def handshake(message: bytes) -> bool:
            if message != READY:
                return False
            await conn.send(GO)
            return True

        if who.startswith("rtc"):
            from aiosocker.rtc import server_stages

            session = server_stages(conn, timeout=STAGE_TIMEOUT)

            @session.on_message()
            def game(message: bytes) -> None:
                self.rtc_echoed += 1
                session.send(message)

        @conn.stage()
        def playing(message: bytes) -> bool:
            if seq_of(message) == conn.state["next"]:
                conn.state["next"] += 1
                self.played[who] += 1
            else:
                self.out_of_order[who] += 1
            try:
                conn.write(message)
            except QueueFullError as exc:  # the peer does not read: our decision, 4413
                raise OverMemoryError(str(exc)) from None
            return False

    def on_open(self, conn: Connection) -> None:
        conn.state["opened"] = True
        self.opened[conn.state.get("who", "?")] += 1
        self.live += 1
        self.peak_connections = max(self.peak_connections, self.live)

    def on_close(self, conn: Connection, code: int, reason: str) -> None:
        who = conn.state.get("who", "?")
        if conn.state.get("opened"):  # on_open ran (setup did not fail)
            self.live -= 1
        self.closes[code] += 1
        self.by_tag[who][code] += 1
        self.reasons[who].setdefault(code, reason)
        if "t0" in conn.state:
            self.lifetimes[who].append(time.monotonic() - conn.state["t0"])

    def stats(self, server: Server) -> dict[str, Any]:
        open_pcs, all_pcs = peer_connections()
        return {
            "connections": len(server.connections),
            "tasks": len(asyncio.all_tasks()),
            "fds": fds(),
            "udp_sockets": udp_sockets(),
            "peer_connections": open_pcs,
            "peer_objects": all_pcs,
            **memory_kib(),
            "peak_connections": self.peak_connections,
            "peak_tasks": self.peak_tasks,
            "opened": dict(self.opened),
            "closes": {str(code): n for code, n in sorted(self.closes.items())},
            "closes_by_tag": {
                who: {str(code): n for code, n in sorted(codes.items())}
                for who, codes in sorted(self.by_tag.items())
            },
            "reasons": {
                who: {str(code): reason for code, reason in sorted(reasons.items())}
                for who, reasons in sorted(self.reasons.items())
            },
            "lifetime_s": {
                who: {"min": round(min(v), 2), "max": round(max(v), 2)}
                for who, v in sorted(self.lifetimes.items())
            },
            "played": dict(self.played),
            "out_of_order": dict(self.out_of_order),
            "rtc_echoed": self.rtc_echoed,
        }

    async def sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.peak_tasks = max(self.peak_tasks, len(asyncio.all_tasks()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


async def main(transport: str, lifetime: float) -> None:
    loopback_only()  # ICE on 127.0.0.1 only, as the clients
    import aiortc  # noqa: F401  (imported before the baseline is measured)

    import aiosocker

    soak = Soak()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    commands: asyncio.Queue[str] = asyncio.Queue()
    fd = sys.stdin.fileno()
    buffer = b""

    def on_stdin() -> None:
        nonlocal buffer
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            commands.put_nowait("")  # stdin closed: stop
            return
        buffer += data
        while b"\n" in buffer:
            line, _, buffer = buffer.partition(b"\n")
            commands.put_nowait(line.decode().strip())

    loop.add_reader(fd, on_stdin)
    server = aiosocker.serve(
        soak.setup,
        HOST,
        0,
        transport=transport,  # type: ignore[arg-type]
        max_size=MAX_SIZE,
        max_memory=MAX_MEMORY,
        rate=aiosocker.Rate(messages=RATE_MESSAGES),
        close_timeout=CLOSE_TIMEOUT,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_INTERVAL,
        on_open=soak.on_open,
        on_close=soak.on_close,
    )
    deadline = time.monotonic() + lifetime
    async with server:
        sampler = asyncio.create_task(soak.sample(stop))
        print(f"PORT {server.port}", flush=True)
        while True:
            try:
                command = await asyncio.wait_for(commands.get(), deadline - time.monotonic())
            except TimeoutError:
                break
            if not command:
                break
            if command == "TRIM":
                malloc_trim()
            if command in ("STATS", "TRIM"):
                print("STATS " + json.dumps(soak.stats(server)), flush=True)
            else:
                print(f"ERR unknown command {command!r}", flush=True)
        stop.set()
        await sampler


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak.server")
    parser.add_argument("--transport", default="websockets", choices=("websockets", "picows"))
    parser.add_argument("--lifetime", type=float, default=900.0)
    parser.add_argument("--nofile", type=int, default=8192)
    args = parser.parse_args()
    raise_nofile(args.nofile)
    try:
        asyncio.run(main(args.transport, args.lifetime))
    except Exception as exc:
        print(f"ERR {exc!r}", flush=True)
        raise


if __name__ == "__main__":
    run()
