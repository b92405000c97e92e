"""WebRTC figures: time to open a DataChannel, opens at once, small-message throughput.

The baseline is a minimal hand-written aiortc offer/answer over a raw ``websockets``
connection: the client offers one unordered, unreliable channel (``ordered=False,
maxRetransmits=0``), the server (a ``python -m bench.server --kind raw-aiortc``
subprocess) answers. No STUN/TURN (``RTCConfiguration(iceServers=[])``).

socker's side is its own flow with its defaults: a ``aiosocker.serve`` server (kind
``socker-rtc``) whose chain is ``server_stages(conn)`` then a final ``control`` stage, and
a ``aiosocker.connect`` client whose chain is ``client_stages(conn)`` then ``control``; the
client sends READY once connected, the server offers socker's default channel (``game``:
unordered, ``maxRetransmits=0``), the client answers, both confirm with OPEN. Browser:
headless Chromium runs the same flow with ``/aiosocker.js`` (``bench/rtc_page.html``).

ICE (:func:`ice_setup`): aioice is left alone by default, as users run it; it offers the
machine's non-loopback addresses and the peers meet there. It leaves 127.0.0.1 out, so on
a machine with no other address (or with ``BENCH_RTC_ICE=loopback``) every process of
these figures, raw and socker alike, replaces ``aioice.ice.get_host_addresses`` to offer
127.0.0.1 only (:func:`loopback_only`). Each figure's details say which (``ice``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .procs import ServerProcess
from .runner import Config, Interleaved, Results, Unavailable, interleave, log

if TYPE_CHECKING:
    import aiosocker

    from .server import Life

T = TypeVar("T")

RAW = "raw-aiortc"
SOCKER = "socker-rtc"
DC_PAYLOAD = 100
DC_HIGH_WATER = 64 * 1024
DC_LOW_WATER = 16 * 1024
ICE_ENV = "BENCH_RTC_ICE"
DC_TICK_S = 0.005
"""aiosocker's sender: one burst every 5 ms (a 200 Hz game loop)..."""
DC_BURST = 150
"""... of this many 100 B sends: 30,000 msg/s (3 MB/s) offered. On a quiet 2-core machine
the receiving aiortc takes up to ~45,000 without loss; beyond, or when other work keeps it
off the CPU for ~60 ms, it does not drain its UDP socket in time, the kernel drops
datagrams, and SCTP stalls (see docs/performance.md). 30,000 leaves some margin."""
BROWSER_PATH = "/bench-rtc"
BROWSER_PAGE = (Path(__file__).parent / "rtc_page.html").read_text()
"""The page Chromium loads from the socker-rtc server: one rtc flow per ``openOnce()``."""


_host_addresses: Any = None
"""aioice's own ``get_host_addresses``, once :func:`loopback_only` replaced it."""


def loopback_only() -> None:
    """Make aioice gather a single host candidate, 127.0.0.1 (it skips loopback itself)."""
    import aioice.ice

    global _host_addresses
    if _host_addresses is None:
        _host_addresses = aioice.ice.get_host_addresses

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback


def ice_setup() -> str:
    """Set up ICE the same way in every process of the rtc figures; returns the mode.

    ``BENCH_RTC_ICE=host`` (the default) leaves aioice alone, as users run it: it offers
    the machine's non-loopback addresses, and the peers meet there (still this machine).
    Where there are none, or with ``BENCH_RTC_ICE=loopback``, :func:`loopback_only`.
    The server subprocesses inherit the variable, so raw and socker always match.
    """
    import aioice.ice

    wanted = os.environ.get(ICE_ENV, "host")
    if wanted not in ("host", "loopback"):
        raise ValueError(f"{ICE_ENV} is 'host' or 'loopback', got {wanted!r}")
    host_addresses = _host_addresses or aioice.ice.get_host_addresses
    if wanted == "host" and host_addresses(use_ipv4=True, use_ipv6=False):
        aioice.ice.get_host_addresses = host_addresses
        return "host"
    loopback_only()
    return "loopback"


def _config() -> Any:
    from aiortc import RTCConfiguration

    return RTCConfiguration(iceServers=[])  # never a public STUN server


# -- the raw baseline: server side (runs in the bench.server subprocess) ----------------


async def serve_raw_aiortc(ready: Callable[[int], None], life: Life) -> None:
    """Per WebSocket: read an offer, answer it, then answer ``"stats"`` requests with what
    the DataChannel received (count, first/last arrival in ns)."""
    ice_setup()
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        pc = RTCPeerConnection(_config())
        stats = {"count": 0, "first_ns": 0, "last_ns": 0}

        @pc.on("datachannel")  # type: ignore[misc]
        def on_datachannel(channel: Any) -> None:
            @channel.on("message")  # type: ignore[misc]
            def on_message(message: bytes) -> None:
                now = time.perf_counter_ns()
                if not stats["count"]:
                    stats["first_ns"] = now
                stats["count"] += 1
                stats["last_ns"] = now

        try:
            offer = json.loads(await ws.recv())
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
            await pc.setLocalDescription(await pc.createAnswer())
            local = pc.localDescription
            await ws.send(json.dumps({"sdp": local.sdp, "type": local.type}))
            async for message in ws:
                if message == "stats":
                    await ws.send(json.dumps(stats))
        finally:
            await pc.close()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        ready(server.sockets[0].getsockname()[1])
        await life.wait()


# -- the raw baseline: client side (this process) ----------------------------------------


@dataclass
class RawPeer:
    pc: Any
    ws: Any
    channel: Any
    open_ms: float

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pc.close()
        with contextlib.suppress(Exception):
            await self.ws.close()


async def raw_open(port: int) -> RawPeer:
    """WebSocket connect -> offer/answer -> the channel is open; the time that took."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from websockets.asyncio.client import connect

    start = time.perf_counter()
    ws = await connect(f"ws://127.0.0.1:{port}/", compression=None)
    pc = RTCPeerConnection(_config())
    peer = RawPeer(pc, ws, None, 0.0)
    try:
        channel = pc.createDataChannel("data", ordered=False, maxRetransmits=0)
        peer.channel = channel
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await pc.setLocalDescription(await pc.createOffer())
        local = pc.localDescription
        await ws.send(json.dumps({"sdp": local.sdp, "type": local.type}))
        answer = json.loads(await ws.recv())
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        await opened.wait()
        peer.open_ms = (time.perf_counter() - start) * 1000
    except BaseException:
        await peer.close()
        raise
    return peer


async def raw_open_ms(server: ServerProcess, opens: int, limit_s: float) -> float:
    """Median of ``opens`` sequential opens (each peer closed before the next)."""
    times = []
    for _ in range(opens):
        peer = await asyncio.wait_for(raw_open(server.port), limit_s)
        times.append(peer.open_ms)
        await peer.close()
    return statistics.median(times)


async def raw_concurrent(server: ServerProcess, clients: int, limit_s: float) -> list[float | None]:
    """``clients`` opens started together: each one's ms, ``None`` if it did not open."""
    tasks = [asyncio.ensure_future(raw_open(server.port)) for _ in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=limit_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    times: list[float | None] = []
    for task in tasks:
        if task in done and task.exception() is None:
            peer = task.result()
            times.append(peer.open_ms)
            await peer.close()
        else:
            times.append(None)
    return times


async def raw_dc_rate(server: ServerProcess, duration: float, limit_s: float) -> DcSample:
    """Unbatched 100 B sends one way for ``duration`` s, paced by ``bufferedAmount``."""
    peer = await asyncio.wait_for(raw_open(server.port), limit_s)
    cpu0 = server.cpu_seconds()
    try:
        channel = peer.channel
        channel.bufferedAmountLowThreshold = DC_LOW_WATER
        low = asyncio.Event()
        channel.on("bufferedamountlow", low.set)
        payload = bytes(DC_PAYLOAD)
        loop = asyncio.get_running_loop()
        sent = 0
        end = loop.time() + duration
        while loop.time() < end:
            if channel.bufferedAmount > DC_HIGH_WATER:
                low.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(low.wait(), max(0.001, end - loop.time()))
                continue
            channel.send(payload)
            sent += 1
            if sent % 32 == 0:
                await asyncio.sleep(0)
        if channel.bufferedAmount:  # let the queue drain (bounded)
            channel.bufferedAmountLowThreshold = 0
            low.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(low.wait(), 2.0)
        await asyncio.sleep(0.2)  # the last packets' way across
        await peer.ws.send("stats")
        stats = json.loads(await asyncio.wait_for(peer.ws.recv(), 5))
        drops = udp_drops(server.pid)
        cpu = server.cpu_seconds() - cpu0
    finally:
        await peer.close()
    return DcSample.of(
        sent,
        stats["count"],
        stats["first_ns"],
        stats["last_ns"],
        frames=sent,
        udp_drops=drops,
        server_cpu_s=cpu,
    )


def udp_drops(pid: int) -> int:
    """Datagrams the kernel dropped on the UDP sockets ``pid`` holds now (the ``drops``
    column of ``/proc/net/udp{,6}``): a receiver that did not drain its socket in time.
    0 where ``/proc`` does not say."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if len(fields) > 12 and fields[9] in inodes:
                    total += int(fields[-1])
    return total


@dataclass(frozen=True)
class DcSample:
    msgs_per_s: float
    """Messages delivered per second: received / (last arrival - first arrival)."""
    loss_pct: float
    sent: int
    received: int
    frames: int | None = None
    """DataChannel messages the sender handed to aiortc (socker: after batching)."""
    dropped: int = 0
    """Messages socker's ``Channel.send`` refused (counted in ``sent`` and lost)."""
    udp_drops: int = 0
    """:func:`udp_drops` of the server (the receiver) at the end of the sample."""
    server_cpu_us: float | None = None
    """The server's (receiver's) CPU time per message received, from ``/proc``."""

    @classmethod
    def of(
        cls,
        sent: int,
        received: int,
        first_ns: int,
        last_ns: int,
        *,
        frames: int | None = None,
        dropped: int = 0,
        udp_drops: int = 0,
        server_cpu_s: float | None = None,
    ) -> DcSample:
        span = (last_ns - first_ns) / 1e9
        rate = received / span if span > 0 else 0.0
        loss = (sent - received) / sent * 100 if sent else 0.0
        cpu = server_cpu_s * 1e6 / received if server_cpu_s is not None and received else None
        return cls(rate, loss, sent, received, frames, dropped, udp_drops, cpu)


# -- the socker side: server (runs in the bench.server subprocess) -----------------------

STAGE_TIMEOUT = 5.0
"""aiosocker's default per-stage timeout, kept: the figures are what a user gets."""


def socker_rtc_setup(conn: aiosocker.Connection) -> None:
    """The rtc stages first (the client sends READY as soon as it is connected), then
    ``control``: answers ``stats`` with what the channel delivered, as the raw server."""
    from aiosocker.rtc.session import server_stages

    stats = {"count": 0, "first_ns": 0, "last_ns": 0}
    session = server_stages(conn, timeout=STAGE_TIMEOUT)

    @session.on_message()
    def on_message(message: bytes) -> None:
        now = time.perf_counter_ns()
        if not stats["count"]:
            stats["first_ns"] = now
        stats["count"] += 1
        stats["last_ns"] = now

    @conn.stage()
    async def control(message: bytes) -> bool:
        if message == b"stats":
            await conn.send(json.dumps(stats).encode())
        return False


async def serve_socker_rtc(ready: Callable[[int], None], life: Life) -> None:
    """Server kind ``socker-rtc``: ``aiosocker.serve`` with :func:`socker_rtc_setup`; it also
    serves the browser page (:data:`BROWSER_PAGE`) at :data:`BROWSER_PATH`."""
    ice_setup()
    import aiortc  # noqa: F401  (imported up front, as the raw server does)

    import aiosocker
    from aiosocker import Route

    routes = {BROWSER_PATH: Route.html(BROWSER_PAGE)}
    async with aiosocker.serve(socker_rtc_setup, "127.0.0.1", 0, routes=routes) as server:
        ready(server.port)
        await life.wait()


# -- the socker side: Python client (this process) ---------------------------------------


@dataclass
class SockerPeer:
    conn: Any
    session: Any
    replies: asyncio.Queue[bytes]
    exit: contextlib.AsyncExitStack
    open_ms: float

    async def stats(self) -> dict[str, int]:
        await self.conn.send(b"stats")
        reply = await asyncio.wait_for(self.replies.get(), 5)
        result: dict[str, int] = json.loads(reply)
        return result

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.exit.aclose()


async def socker_open(port: int) -> SockerPeer:
    """``aiosocker.connect`` -> READY -> offer/answer -> OPEN both ways; the time that took.

    The clock starts before the WebSocket connect and stops in the session's ``on_open``
    hook (every channel open on both sides), as the raw client's starts before its
    connect and stops at its channel's ``open``.
    """
    import aiosocker
    from aiosocker.rtc.session import client_stages

    loop = asyncio.get_running_loop()
    opened: asyncio.Future[float] = loop.create_future()
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    holder: dict[str, Any] = {}

    def setup(conn: aiosocker.Connection) -> None:
        session = holder["session"] = client_stages(conn, timeout=STAGE_TIMEOUT)

        @session.on_open
        def on_open(_: Any) -> None:
            if not opened.done():
                opened.set_result(time.perf_counter())

        @conn.stage()
        def control(message: bytes) -> bool:
            replies.put_nowait(message)
            return False

        @conn.on_close
        def on_close(conn: aiosocker.Connection, code: int, reason: str) -> None:
            if not opened.done():
                opened.set_exception(ConnectionError(f"closed {code} {reason!r} before open"))

    exit = contextlib.AsyncExitStack()
    start = time.perf_counter()
    try:
        conn = await exit.enter_async_context(
            aiosocker.connect(f"ws://127.0.0.1:{port}/", setup=setup)
        )
        peer = SockerPeer(conn, holder["session"], replies, exit, 0.0)
        await peer.session.ready()
        peer.open_ms = (await opened - start) * 1000
    except BaseException:
        await exit.aclose()
        raise
    return peer


async def socker_rtc_open_ms(server: ServerProcess, opens: int, limit_s: float) -> float:
    """``rtc_open_ms_python``: median of ``opens`` sequential socker opens (each peer
    closed before the next), as :func:`raw_open_ms`."""
    times = []
    for _ in range(opens):
        peer = await asyncio.wait_for(socker_open(server.port), limit_s)
        times.append(peer.open_ms)
        await peer.close()
    return statistics.median(times)


async def socker_concurrent(
    server: ServerProcess, clients: int, limit_s: float
) -> list[float | None]:
    """``rtc_concurrent_*``: ``clients`` socker opens started together, as
    :func:`raw_concurrent`; ``None`` for one that did not complete the rtc flow."""
    tasks = [asyncio.ensure_future(socker_open(server.port)) for _ in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=limit_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    times: list[float | None] = []
    failures: dict[str, int] = {}
    for task in tasks:
        if task in done and task.exception() is None:
            peer = task.result()
            times.append(peer.open_ms)
            await peer.close()
        else:
            times.append(None)
            exc = task.exception() if task in done else TimeoutError("harness timeout")
            why = f"{type(exc).__name__}: {exc}"[:120]
            failures[why] = failures.get(why, 0) + 1
    for why, count in failures.items():
        log(f"socker-rtc: {count} of {clients} clients did not open: {why}")
    return times


async def socker_dc_rate(server: ServerProcess, duration: float, limit_s: float) -> DcSample:
    """``dc_msgs_per_s``: 100 B messages one way for ``duration`` s on the default
    (unordered, unreliable) channel with socker's batching, as a game sends them: a burst
    of :data:`DC_BURST` sends every :data:`DC_TICK_S`, each burst one frame or a few.

    Paced like the raw side: a tick's burst waits while more than ``DC_HIGH_WATER``
    bytes are queued in the WebRTC stack, so nothing is offered that the link cannot
    take. ``sent`` counts every ``send()`` call, so a message socker drops on its own
    (``Channel.dropped``) counts as lost.
    """
    peer = await asyncio.wait_for(socker_open(server.port), limit_s)
    cpu0 = server.cpu_seconds()
    try:
        channel = peer.session.channel()
        payload = bytes(DC_PAYLOAD)
        send = peer.session.send
        loop = asyncio.get_running_loop()
        attempted = 0
        end = loop.time() + duration
        due = loop.time()
        while loop.time() < end:
            if channel.buffered_amount <= DC_HIGH_WATER:
                for _ in range(DC_BURST):
                    send(payload)
                attempted += DC_BURST
            due += DC_TICK_S
            delay = due - loop.time()
            if delay < 0:  # fell behind: no catch-up burst
                due, delay = loop.time(), 0.0
            await asyncio.sleep(delay)
        for _ in range(400):  # let the queue drain (bounded: 2 s)
            if not channel.buffered_amount:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)  # the last packets' way across
        stats = await peer.stats()
        drops = udp_drops(server.pid)
        cpu = server.cpu_seconds() - cpu0
    finally:
        await peer.close()
    return DcSample.of(
        attempted,
        stats["count"],
        stats["first_ns"],
        stats["last_ns"],
        frames=channel.frames_sent,
        dropped=channel.dropped,
        udp_drops=drops,
        server_cpu_s=cpu,
    )


CHROMIUM = os.environ.get("SOCKER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [  # as tests/browser: Chromium's default mDNS handling, nothing to reach out
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class BrowserSample:
    times_ms: list[float]
    """Open times of the measured page loads."""
    cold_ms: float
    """The first load's (not in ``times_ms``): the browser's WebRTC stack starting up."""
    connect_ms: float
    """Median of the WebSocket connect alone (part of each time)."""
    stages: list[list[Any]]
    """The last load's stage history, ``[stage, ms since t0]``."""


def browser_rtc_open_ms(server: ServerProcess, opens: int, timeout: float) -> BrowserSample:
    """``rtc_open_ms_browser``: headless Chromium (Playwright driving Debian's
    ``/usr/bin/chromium``; never ``playwright install``) loads :data:`BROWSER_PATH` from
    the socker-rtc server ``opens + 1`` times; each load runs one flow with ``/aiosocker.js``
    and times it in the page (``performance.now()``, from before ``aiosocker.connect`` to
    the session's ``onOpen``). The first load is the cold one, reported apart.

    Chromium keeps its default mDNS handling (its host candidates are ``xxxx.local``
    names, which the server strips; its checks reveal its address, a peer-reflexive
    candidate), as a user's browser does.
    """
    import shutil

    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise Unavailable(f"playwright is not installed: {exc}") from exc
    if not shutil.which(CHROMIUM):
        raise Unavailable(f"no Chromium at {CHROMIUM} (set SOCKER_CHROMIUM)")
    url = f"http://127.0.0.1:{server.port}{BROWSER_PATH}"
    limit_ms = int(timeout * 1000)
    samples: list[dict[str, Any]] = []
    logs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=20000)
        try:
            page = browser.new_page()
            page.on("console", lambda msg: logs.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: logs.append(f"pageerror: {exc}"))
            for _ in range(opens + 1):
                try:
                    page.goto(url, timeout=limit_ms)
                    page.wait_for_function("window.pageReady === true", timeout=limit_ms)
                    sample = page.evaluate("(o) => window.openOnce(o)", {"limitMs": limit_ms})
                except PlaywrightError as exc:
                    tail = "; ".join(logs[-5:])
                    raise RuntimeError(f"{exc.message.splitlines()[0]} (console: {tail})") from exc
                samples.append(sample)
        finally:
            browser.close()
    cold, *warm = samples
    return BrowserSample(
        [s["ms"] for s in warm],
        cold["ms"],
        statistics.median(s["connectedMs"] for s in warm),
        samples[-1]["stages"],
    )


# -- groups ----------------------------------------------------------------------------


class _Loop:
    """One event loop for a group's client side; samples run to completion on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        async def wrapped() -> T:
            return await make()

        return self.loop.run_until_complete(wrapped())

    def close(self) -> None:
        async def cancel_leftovers() -> None:
            pending = asyncio.all_tasks() - {asyncio.current_task()}
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=5) if pending else None

        try:
            self.loop.run_until_complete(cancel_leftovers())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()


def _servers(kinds: tuple[str, ...]) -> tuple[dict[str, ServerProcess], Interleaved]:
    servers: dict[str, ServerProcess] = {}
    state = Interleaved({kind: [] for kind in kinds})
    for kind in kinds:
        try:
            servers[kind] = ServerProcess(kind, "rtc")
        except Unavailable as exc:
            state.unavailable[kind] = str(exc)
            log(f"{kind}: n/a ({exc})")
        except Exception as exc:
            state.errors[kind] = f"{type(exc).__name__}: {exc}"
            log(f"{kind} server did not start: {exc}")
    return servers, state


def _merge(into: Interleaved, done: Interleaved) -> Interleaved:
    for kind, samples in done.samples.items():
        into.samples[kind] = samples
    into.unavailable.update(done.unavailable)
    into.errors.update(done.errors)
    into.rounds = done.rounds
    return into


def _why(state: Interleaved, *kinds: str) -> tuple[str, str]:
    for kind in kinds:
        if kind in state.errors:
            return "error", f"{kind}: {state.errors[kind]}"
    for kind in kinds:
        if kind in state.unavailable:
            return "n/a", f"{kind}: {state.unavailable[kind]}"
    return "error", "no samples"


def _missing(results: Results, key: str, state: Interleaved, *kinds: str) -> None:
    status, why = _why(state, *kinds)
    (results.na if status == "n/a" else results.error)(key, why)


def _run_interleaved(
    cfg: Config,
    measures: dict[str, Callable[[ServerProcess], Coroutine[Any, Any, Any]]],
    *,
    rounds: int,
    budget_s: float,
    warm: bool = True,
) -> Interleaved:
    ice_setup()
    servers, state = _servers(tuple(measures))
    client = _Loop()
    try:
        variants = {
            kind: _sample(client, measures[kind], server) for kind, server in servers.items()
        }
        done = interleave(
            variants,
            rounds,
            budget_s=budget_s,
            warmup=(lambda kind: variants[kind](-1)) if warm else None,
        )
    finally:
        client.close()
        for server in servers.values():
            server.close()
    return _merge(state, done)


def _sample(
    client: _Loop,
    measure: Callable[[ServerProcess], Coroutine[Any, Any, Any]],
    server: ServerProcess,
) -> Callable[[int], Any]:
    return lambda r: client.run(lambda: measure(server))


def run_open(cfg: Config, results: Results) -> None:
    """Connect -> channel open: raw aiortc against socker's Python client (and browser)."""
    opens = cfg.pick(3, 2)
    timeout = 20.0
    ice = ice_setup()
    state = _run_interleaved(
        cfg,
        {
            RAW: lambda server: raw_open_ms(server, opens, timeout),
            SOCKER: lambda server: socker_rtc_open_ms(server, opens, timeout),
        },
        rounds=cfg.pick(7, 3),
        budget_s=cfg.pick(60, 12),
    )
    raw, ours = state.samples[RAW], state.samples[SOCKER]
    detail = {"opens_per_round": opens, "rounds": state.rounds, "ice": ice}
    if raw:
        results.put_samples("rtc_open_ms_raw", raw, **detail)
    else:
        _missing(results, "rtc_open_ms_raw", state, RAW)
    if ours:
        results.put_samples("rtc_open_ms_python", ours, **detail)
    else:
        _missing(results, "rtc_open_ms_python", state, SOCKER)
    if raw and ours:
        results.put_ratio("rtc_open_ratio", ours, raw, ice=ice)
    else:
        _missing(results, "rtc_open_ratio", state, SOCKER, RAW)
    # The browser figure has no raw twin (no raw browser client); it runs on its own.
    loads = cfg.pick(9, 4)
    try:
        with ServerProcess(SOCKER, "rtc") as server:
            browser = browser_rtc_open_ms(server, loads, timeout)
    except Unavailable as exc:
        results.na("rtc_open_ms_browser", str(exc))
    except Exception as exc:
        log(f"browser: {type(exc).__name__}: {exc}")
        results.error("rtc_open_ms_browser", f"{type(exc).__name__}: {exc}")
    else:
        results.put_samples(
            "rtc_open_ms_browser",
            browser.times_ms,
            loads=loads,
            cold_ms=round(browser.cold_ms, 1),
            ws_connect_ms=round(browser.connect_ms, 1),
            stages_ms=browser.stages,
            chromium_mdns="default (hidden behind .local names; the server strips them)",
            ice=ice,
        )


def run_concurrent(cfg: Config, results: Results) -> None:
    """N clients started together (50; 10 under --quick): how many open, p50/p95 ms."""
    clients = cfg.pick(50, 10)
    timeout = cfg.pick(60.0, 30.0)
    ice = ice_setup()
    state = _run_interleaved(
        cfg,
        {
            RAW: lambda server: raw_concurrent(server, clients, timeout),
            SOCKER: lambda server: socker_concurrent(server, clients, timeout),
        },
        rounds=cfg.pick(3, 1),
        budget_s=cfg.pick(120, 20),
        warm=False,
    )
    for kind, prefix in ((RAW, "rtc_concurrent_raw_"), (SOCKER, "rtc_concurrent_")):
        keys = (f"{prefix}opens", f"{prefix}p50_ms", f"{prefix}p95_ms")
        rounds = state.samples[kind]
        if not rounds:
            for key in keys:
                _missing(results, key, state, kind)
            continue
        opened = [sum(t is not None for t in times) for times in rounds]
        merged = sorted(t for times in rounds for t in times if t is not None)
        detail: dict[str, Any] = {
            "clients": clients,
            "rounds": len(rounds),
            "timeout_s": timeout,
            "ice": ice,
        }
        if kind == SOCKER:
            detail["stage_timeout_s"] = STAGE_TIMEOUT
        results.put_samples(keys[0], opened, **detail)
        if merged:
            results.put(keys[1], _percentile(merged, 50), opens=len(merged), **detail)
            results.put(keys[2], _percentile(merged, 95), opens=len(merged), **detail)
        else:
            results.error(keys[1], "no client opened")
            results.error(keys[2], "no client opened")


def _percentile(sorted_values: list[float], pct: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def run_dc(cfg: Config, results: Results) -> None:
    """100 B one way on the unreliable channel: socker batched vs raw aiortc unbatched."""
    duration = cfg.pick(2.0, 1.0)
    timeout = 20.0
    ice = ice_setup()
    state = _run_interleaved(
        cfg,
        {
            RAW: lambda server: raw_dc_rate(server, duration, timeout),
            SOCKER: lambda server: socker_dc_rate(server, duration, timeout),
        },
        rounds=cfg.pick(7, 3),
        budget_s=cfg.pick(90, 15),
        warm=False,
    )
    detail = {
        "payload_bytes": DC_PAYLOAD,
        "duration_s": duration,
        "rounds": state.rounds,
        "ice": ice,
    }
    senders = {
        RAW: "one send() per message while bufferedAmount <= 64 KiB",
        SOCKER: f"{DC_BURST} sends every {DC_TICK_S * 1000:g} ms (one loop iteration, so "
        f"batched; {DC_BURST / DC_TICK_S:,.0f} msg/s offered), a tick skipped while "
        "bufferedAmount > 64 KiB",
    }
    raw, ours = state.samples[RAW], state.samples[SOCKER]
    for sample_list, rate_key, loss_key, kind in (
        (raw, "dc_raw_msgs_per_s", "dc_raw_loss_pct", RAW),
        (ours, "dc_msgs_per_s", "dc_loss_pct", SOCKER),
    ):
        if sample_list:
            results.put_samples(
                rate_key,
                [s.msgs_per_s for s in sample_list],
                sent=[s.sent for s in sample_list],
                received=[s.received for s in sample_list],
                frames=[s.frames for s in sample_list],
                dropped_by_send=[s.dropped for s in sample_list],
                receiver_udp_drops=[s.udp_drops for s in sample_list],
                sender=senders[kind],
                **detail,
            )
            results.put_samples(loss_key, [s.loss_pct for s in sample_list], **detail)
        else:
            _missing(results, rate_key, state, kind)
            _missing(results, loss_key, state, kind)
    for sample_list, key, kind in ((raw, "dc_raw_cpu_us", RAW), (ours, "dc_cpu_us", SOCKER)):
        cpu = [s.server_cpu_us for s in sample_list if s.server_cpu_us is not None]
        if cpu:
            results.put_samples(key, cpu, **detail)
        else:
            _missing(results, key, state, kind)
    raw_cpu = [s.server_cpu_us for s in raw]
    our_cpu = [s.server_cpu_us for s in ours]
    if raw and ours and None not in raw_cpu and None not in our_cpu:
        # Receiver CPU per message is steadier than wall rates: the efficiency batching buys.
        results.put_ratio("dc_cpu_gain", raw_cpu, our_cpu)
    else:
        _missing(results, "dc_cpu_gain", state, SOCKER, RAW)
    if raw and ours:
        raw_loss = statistics.median(s.loss_pct for s in raw)
        our_loss = statistics.median(s.loss_pct for s in ours)
        extra = our_loss - raw_loss
        results.put_ratio(
            "dc_batch_gain",
            [s.msgs_per_s for s in ours],
            [s.msgs_per_s for s in raw],
            loss_pct={"aiosocker": round(our_loss, 2), "raw": round(raw_loss, 2)},
            socker_offered_msgs_per_s=DC_BURST / DC_TICK_S,
            note=f"with {extra:.1f} points more loss than raw" if extra > 0.5 else None,
        )
    else:
        _missing(results, "dc_batch_gain", state, SOCKER, RAW)
