"""WebRTC figures: time to open a DataChannel, opens at once, small-message throughput.

The baseline is a minimal hand-written aiortc offer/answer over a raw ``websockets``
connection: the client offers one unordered, unreliable channel (``ordered=False,
maxRetransmits=0``), the server (a ``python -m bench.server --kind raw-aiortc``
subprocess) answers. No STUN/TURN (``RTCConfiguration(iceServers=[])``) and ICE is kept
on loopback: aioice leaves 127.0.0.1 out of its host candidates, so both sides replace
``aioice.ice.get_host_addresses`` to offer 127.0.0.1 only (:func:`loopback_only`).

The socker side plugs in at the functions marked PLUG POINT below; until then each raises
:class:`~bench.runner.Unavailable` and its figures are ``n/a``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .procs import ServerProcess
from .runner import Config, Interleaved, Results, Unavailable, interleave, log

if TYPE_CHECKING:
    from .server import Life

T = TypeVar("T")

RAW = "raw-aiortc"
SOCKER = "socker-rtc"
DC_PAYLOAD = 100
DC_HIGH_WATER = 64 * 1024
DC_LOW_WATER = 16 * 1024


def loopback_only() -> None:
    """Make aioice gather a single host candidate, 127.0.0.1 (it skips loopback itself)."""
    import aioice.ice

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback


def _config() -> Any:
    from aiortc import RTCConfiguration

    return RTCConfiguration(iceServers=[])  # never a public STUN server


# -- the raw baseline: server side (runs in the bench.server subprocess) ----------------


async def serve_raw_aiortc(ready: Callable[[int], None], life: Life) -> None:
    """Per WebSocket: read an offer, answer it, then answer ``"stats"`` requests with what
    the DataChannel received (count, first/last arrival in ns)."""
    loopback_only()
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
    finally:
        await peer.close()
    return DcSample.of(sent, stats["count"], stats["first_ns"], stats["last_ns"])


@dataclass(frozen=True)
class DcSample:
    msgs_per_s: float
    """Messages delivered per second: received / (last arrival - first arrival)."""
    loss_pct: float
    sent: int
    received: int

    @classmethod
    def of(cls, sent: int, received: int, first_ns: int, last_ns: int) -> DcSample:
        span = (last_ns - first_ns) / 1e9
        rate = received / span if span > 0 else 0.0
        loss = (sent - received) / sent * 100 if sent else 0.0
        return cls(rate, loss, sent, received)


# -- PLUG POINTS: the socker side ------------------------------------------------------


async def serve_socker_rtc(ready: Callable[[int], None], life: Life) -> None:
    """PLUG POINT (server, ``--kind socker-rtc``): a socker server offering the rtc flow.

    TODO(socker rtc): ``async with socker.serve(setup, host="127.0.0.1", port=0, ...) as
    server:`` with rtc enabled, loopback ICE (call :func:`loopback_only` first), a stage
    chain that counts DataChannel messages like :func:`serve_raw_aiortc` (count,
    first_ns, last_ns) and answers a ``stats`` request; then ``ready(server.port)`` and
    ``await life.wait()``.
    """
    import socker

    if not hasattr(socker, "serve"):
        raise Unavailable("socker.serve does not exist yet")
    raise Unavailable("socker rtc server not wired into the bench yet (serve_socker_rtc)")


async def socker_rtc_open_ms(server: ServerProcess, opens: int, limit_s: float) -> float:
    """PLUG POINT (``rtc_open_ms_python``): median ms of ``opens`` sequential socker Python
    client opens, WebSocket connect -> channels open, against ``server.port``.

    TODO(socker rtc): mirror :func:`raw_open_ms` with socker's Python rtc client.
    """
    raise Unavailable("socker Python rtc client not wired into the bench yet")


async def socker_concurrent(
    server: ServerProcess, clients: int, limit_s: float
) -> list[float | None]:
    """PLUG POINT (``rtc_concurrent_*``): ``clients`` socker Python clients started
    together; each one's open time in ms, ``None`` if it did not complete the rtc flow.

    TODO(socker rtc): mirror :func:`raw_concurrent`.
    """
    raise Unavailable("socker Python rtc client not wired into the bench yet")


async def socker_dc_rate(server: ServerProcess, duration: float, limit_s: float) -> DcSample:
    """PLUG POINT (``dc_msgs_per_s``): 100 B messages one way for ``duration`` s on the
    unreliable channel with socker's batching; the :class:`DcSample` (server counts).

    TODO(socker rtc): mirror :func:`raw_dc_rate` with socker's sending API.
    """
    raise Unavailable("socker DataChannel sending not wired into the bench yet")


def browser_rtc_open_ms(server: ServerProcess, opens: int, timeout: float) -> float:
    """PLUG POINT (``rtc_open_ms_browser``): median ms for headless Chromium (Playwright,
    ``/usr/bin/chromium``, loopback ICE flags) to connect to ``server.url`` and open the
    channels; measured in the page with ``performance.now()``.

    TODO(socker rtc): needs the socker browser client script served by the socker server.
    """
    raise Unavailable("socker browser client not wired into the bench yet")


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
    loopback_only()
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
    detail = {"opens_per_round": opens, "rounds": state.rounds}
    if raw:
        results.put_samples("rtc_open_ms_raw", raw, **detail)
    else:
        _missing(results, "rtc_open_ms_raw", state, RAW)
    if ours:
        results.put_samples("rtc_open_ms_python", ours, **detail)
    else:
        _missing(results, "rtc_open_ms_python", state, SOCKER)
    if raw and ours:
        results.put_ratio("rtc_open_ratio", ours, raw)
    else:
        _missing(results, "rtc_open_ratio", state, SOCKER, RAW)
    # The browser figure has no raw twin in the same process; it runs on its own.
    try:
        with ServerProcess(SOCKER, "rtc") as server:
            results.put_samples(
                "rtc_open_ms_browser", [browser_rtc_open_ms(server, opens * 3, timeout)]
            )
    except Unavailable as exc:
        results.na("rtc_open_ms_browser", str(exc))


def run_concurrent(cfg: Config, results: Results) -> None:
    """N clients started together (50; 10 under --quick): how many open, p50/p95 ms."""
    clients = cfg.pick(50, 10)
    timeout = cfg.pick(60.0, 30.0)
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
        detail = {"clients": clients, "rounds": len(rounds), "timeout_s": timeout}
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
    detail = {"payload_bytes": DC_PAYLOAD, "duration_s": duration, "rounds": state.rounds}
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
                **detail,
            )
            results.put_samples(loss_key, [s.loss_pct for s in sample_list], **detail)
        else:
            _missing(results, rate_key, state, kind)
            _missing(results, loss_key, state, kind)
    if raw and ours:
        results.put_ratio(
            "dc_batch_gain", [s.msgs_per_s for s in ours], [s.msgs_per_s for s in raw]
        )
    else:
        _missing(results, "dc_batch_gain", state, SOCKER, RAW)
