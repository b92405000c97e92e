"""``aiosocker demo``: a small real-time game on the socker stages, with its web page.

Stages of every player, server side: ``hello`` (the client says hello; the server sends
the buffered scene) -> ``rtc_ready`` -> ``rtc_answer`` -> ``rtc_open`` -> ``playing``
(joins, leaves and chat on the reliable WebSocket). Positions travel on the unreliable
DataChannel; the world state goes back to each player once per tick, batched.

With ``--workers N --redis URL`` several processes serve one game: each broadcasts its
own players' states (``server.broadcast(channel="game")``, so they reach every process's
players) and its joins, leaves, chat and stats, which name the process (``origin``) so a
page keeps each process's players apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from importlib.resources import files

from ..client import connect
from ..connection import Connection
from ..routes import Route
from ..rtc import preload
from ..rtc.session import ClientSession, ServerSession, client_stages, server_stages
from ..run import WorkerOptions, configure_logging, supervise
from ..server import Server, serve
from .world import SIZE, World, control, parse_control, position

__all__ = ["Demo", "demo_server", "run_bot", "run_demo", "run_demo_workers", "worker_server"]

TICK_HZ = 30


def page() -> bytes:
    """The demo's web page."""
    return files("aiosocker.demo").joinpath("static", "index.html").read_bytes()


@dataclass
class Demo:
    """The demo server's state: the world and the live sessions."""

    world: World = field(default_factory=World)
    sessions: dict[int, tuple[Connection, ServerSession]] = field(default_factory=dict)
    server: Server | None = None
    messages_in: int = 0
    messages_out: int = 0
    origin: str = ""
    """This process's name in the control messages (its Redis backend's origin)."""
    shared: bool = False
    """Other processes serve the same game (Redis): the world state is broadcast."""

    async def setup(self, conn: Connection) -> None:
        """Build one player's chain (called by the server for each connection)."""

        @conn.stage(timeout=10)
        async def hello(message: bytes) -> bool:
            request = parse_control(message)
            if request["type"] != "hello":
                raise ValueError(f"expected hello, got {request['type']!r}")
            player = self.world.join(str(request.get("name", "")), bot=bool(request.get("bot")))
            conn.state["player"] = player.id
            self.sessions[player.id] = (conn, rtc)
            await conn.send(self.world.scene(player.id, self.origin))
            await self.broadcast(
                control("join", player=player.public(), origin=self.origin), exclude=conn
            )
            return True

        rtc = server_stages(conn, timeout=5)

        @rtc.on_message()
        def game(message: bytes) -> None:
            self.messages_in += 1
            reply = self.world.move(conn.state["player"], message)
            if reply is not None and rtc.send(reply):
                self.messages_out += 1

        @conn.stage()
        async def playing(message: bytes) -> bool:
            request = parse_control(message)
            if request["type"] == "chat":
                pid = conn.state["player"]
                text = str(request.get("text", ""))[:200]
                await self.broadcast(control("chat", id=pid, text=text))
            return False

        @conn.on_close
        async def left(conn: Connection, code: int, reason: str) -> None:
            pid = conn.state.get("player")
            if pid is not None:
                self.world.leave(pid)
                self.sessions.pop(pid, None)
                await self.broadcast(control("leave", id=pid))

    async def broadcast(self, data: bytes, exclude: Connection | None = None) -> None:
        """Send a control message to every player in ``playing``: clients in the rtc
        stages expect signaling only (anything else there closes with 4400)."""
        if self.server is not None:
            await self.server.broadcast(data, stage="playing", exclude=exclude)

    def tick(self) -> None:
        """Send the world to every player whose channel is open (batched per tick)."""
        states = self.world.states()
        for _, rtc in list(self.sessions.values()):
            if rtc.is_open:
                for state in states:
                    if rtc.send(state):
                        self.messages_out += 1

    async def tick_shared(self) -> None:
        """Broadcast this process's players to every player of every process (on their
        open ``game`` channels; a channel batches what one tick sends)."""
        if self.server is None:
            return
        for state in self.world.states():
            self.messages_out += await self.server.broadcast(state, stage="playing", channel="game")

    def stats(self, seconds: float) -> bytes:
        """The stats control message, with rates over the last ``seconds``."""
        players = []
        for pid, (conn, _) in self.sessions.items():
            player = self.world.players.get(pid)
            if player is not None:
                player.stage = conn.current
                players.append(player.public())
        message = control(
            "stats",
            players=players,
            msgs_in=round(self.messages_in / seconds),
            msgs_out=round(self.messages_out / seconds),
            origin=self.origin,
        )
        self.messages_in = self.messages_out = 0
        return message

    async def run_loops(self) -> None:
        """The game loop (30 Hz) and the stats loop (1 Hz), until cancelled."""
        period = 1 / TICK_HZ
        last_stats = time.monotonic()
        while True:
            started = time.monotonic()
            if self.shared:
                await self.tick_shared()
            else:
                self.tick()
            if started - last_stats >= 1.0:
                await self.broadcast(self.stats(started - last_stats))
                last_stats = started
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))


async def run_bot(url: str, name: str, *, seconds: float | None = None) -> None:
    """One headless player that wanders around; stops after ``seconds`` or when the
    server goes away."""

    async def setup(conn: Connection) -> None:
        @conn.stage(timeout=10)
        async def scene(message: bytes) -> bool:
            parse_control(message)
            await rtc.ready()
            return True

        rtc = client_stages(conn, timeout=5)

        @conn.stage(name="open")
        def control_messages(message: bytes) -> bool:
            return False

        conn.state["rtc"] = rtc

    async with connect(url, setup) as conn:
        await conn.send(control("hello", name=name, bot=True))
        rtc: ClientSession = conn.state["rtc"]
        x, y = random.uniform(0, SIZE), random.uniform(0, SIZE)
        heading = random.uniform(0, 2 * math.pi)
        deadline = None if seconds is None else time.monotonic() + seconds
        while not conn.closed and (deadline is None or time.monotonic() < deadline):
            heading += random.uniform(-0.3, 0.3)
            x = min(max(x + 4 * math.cos(heading), 0), SIZE)
            y = min(max(y + 4 * math.sin(heading), 0), SIZE)
            if x in (0, SIZE) or y in (0, SIZE):
                heading += math.pi
            rtc.send(position(x, y))
            await asyncio.sleep(1 / TICK_HZ)


@contextlib.asynccontextmanager
async def demo_server(
    host: str = "127.0.0.1", port: int = 8000, *, bots: int = 0, redis: str | None = None
) -> AsyncIterator[Server]:
    """The demo server, its game loop and ``bots`` wandering players, running inside
    the ``async with``; shuts down cleanly (1001 to every client) at its end. With
    ``redis``, it shares the game with every other demo process on that Redis."""
    shared = redis is not None
    demo = Demo(world=World(random_ids=shared), shared=shared)
    await preload()  # the first player must not wait for aiortc's import
    routes = {"/": Route("text/html; charset=utf-8", page)}
    async with serve(
        demo.setup, host, port, path="/ws", routes=routes, redis=redis, status_page=True
    ) as server:
        demo.server = server
        if server.hub.backend is not None:
            demo.origin = server.hub.backend.origin
        tasks = [asyncio.create_task(demo.run_loops())]
        tasks += [asyncio.create_task(run_bot(server.url, f"bot{i + 1}")) for i in range(bots)]
        try:
            yield server
        finally:
            await server.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def run_demo(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    bots: int = 0,
    seconds: float | None = None,
    announce: Callable[[str], object] = print,
) -> None:
    """Serve the demo until Ctrl-C or SIGTERM (or for ``seconds``)."""
    async with demo_server(host, port, bots=bots) as server:
        announce(f"aiosocker demo: open {server.http_url} in a few browser tabs (Ctrl-C stops)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            announce("aiosocker demo: shutting down (code 1001 to every client)")


def worker_server(options: WorkerOptions) -> AbstractAsyncContextManager[Server]:
    """One process of ``aiosocker demo --workers N``: the demo server on the shared
    port and Redis (the bots, if any, run in worker 0)."""
    bots = int(options.extra.get("bots", 0)) if options.index == 0 else 0
    return demo_server(options.host, options.port, bots=bots, redis=options.redis)


def run_demo_workers(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int,
    redis: str | None,
    bots: int = 0,
    seconds: float | None = None,
    verbose: bool = False,
    announce: Callable[[str], object] | None = None,
) -> int:
    """Serve the demo with ``workers`` processes on one port, sharing the game through
    ``redis``, until Ctrl-C or SIGTERM (or for ``seconds``); returns the exit status."""
    configure_logging("text", "supervisor", verbose=verbose)
    options = WorkerOptions(
        entry="aiosocker.demo.app:worker_server",
        target=None,
        host=host,
        port=port,
        redis=redis,
        extra={"bots": bots, "verbose": verbose},
    )
    authority = f"[{host}]" if ":" in host else host
    say = announce or (lambda line: print(line, flush=True))

    def ready(bound: int) -> None:
        say(
            f"aiosocker demo: open http://{authority}:{bound}/ in a few browser tabs "
            f"({workers} processes; Ctrl-C stops)"
        )

    status = supervise(options, workers=workers, ready=ready, seconds=seconds)
    say("aiosocker demo: shutting down (code 1001 to every client)")
    return status
