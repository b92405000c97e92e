"""WebRTC figures: time to open a DataChannel, opens at once, the unreliable channel's
capacity for small messages (the highest paced rate with at most 0.1 % lost).

The raw side is a minimal hand-written aiortc offer/answer (kind ``raw-aiortc``, its
client in :mod:`bench.clients.rtc`); socker's side is its own flow with its defaults (kind
``socker-rtc``; the Python client in :mod:`bench.clients.rtc`, headless Chromium in
:mod:`bench.clients.browser`). Every process sets ICE up alike
(:func:`bench.rtc_common.ice_setup`); each figure's details say which (``ice``).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..clients.browser import browser_rtc_open_ms
from ..clients.rtc import (
    DC_HIGH_WATER,
    DC_MAX_LAG,
    DC_MAX_LOSS_PCT,
    DC_PAYLOAD,
    DC_TICK_S,
    DcSample,
    raw_concurrent,
    raw_dc_trial,
    raw_open_ms,
    socker_concurrent,
    socker_dc_trial,
    socker_open,
    socker_rtc_open_ms,
)
from ..procs import ServerProcess
from ..rtc_common import STAGE_TIMEOUT, ice_setup
from ..runner import Config, Interleaved, Results, Unavailable, interleave, log

T = TypeVar("T")

RAW = "raw-aiortc"
SOCKER = "socker-rtc"


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
    """N clients started together (50; 10 under --quick): how many open, p50/p95 ms;
    ``rtc_concurrent_ratio`` pairs each round's socker p50 with the raw one, and the
    details carry each side's CPU per open (the server's from ``/proc``, the clients'
    as this process's CPU time: where a difference comes from)."""
    clients = cfg.pick(50, 10)
    timeout = cfg.pick(60.0, 30.0)
    ice = ice_setup()

    def measured(
        concurrent: Callable[[ServerProcess, int, float], Coroutine[Any, Any, list[float | None]]],
    ) -> Callable[[ServerProcess], Coroutine[Any, Any, Concurrent]]:
        async def run(server: ServerProcess) -> Concurrent:
            server0, client0 = server.cpu_seconds(), time.process_time()
            times = await concurrent(server, clients, timeout)
            return Concurrent(
                times,
                (server.cpu_seconds() - server0) * 1000 / clients,
                (time.process_time() - client0) * 1000 / clients,
            )

        return run

    state = _run_interleaved(
        cfg,
        {RAW: measured(raw_concurrent), SOCKER: measured(socker_concurrent)},
        rounds=cfg.pick(5, 1),
        budget_s=cfg.pick(120, 20),
        warm=True,  # a first round of each pays for first calls in this process
    )
    p50s: dict[str, list[float | None]] = {}
    for kind, prefix in ((RAW, "rtc_concurrent_raw_"), (SOCKER, "rtc_concurrent_")):
        keys = (f"{prefix}opens", f"{prefix}p50_ms", f"{prefix}p95_ms")
        rounds: list[Concurrent] = state.samples[kind]
        if not rounds:
            for key in keys:
                _missing(results, key, state, kind)
            continue
        opened = [sum(t is not None for t in run.times) for run in rounds]
        merged = sorted(t for run in rounds for t in run.times if t is not None)
        # Indexed by round (a variant stops at its first failure, so index i is round i).
        # A client that did not open counts at the time limit (a lower bound), so a
        # slow side's failures raise its p50 rather than vanish; no opens at all: no p50.
        p50s[kind] = [
            _percentile(sorted(timeout * 1000 if t is None else t for t in run.times), 50)
            if any(t is not None for t in run.times)
            else None
            for run in rounds
        ]
        detail: dict[str, Any] = {
            "clients": clients,
            "rounds": len(rounds),
            "timeout_s": timeout,
            "ice": ice,
            "server_cpu_ms_per_open": [round(run.server_cpu_ms, 2) for run in rounds],
            "client_cpu_ms_per_open": [round(run.client_cpu_ms, 2) for run in rounds],
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
    pairs = [
        (ours, raw)
        for ours, raw in zip(p50s.get(SOCKER, []), p50s.get(RAW, []), strict=False)
        if ours is not None and raw is not None
    ]
    if pairs:
        results.put_ratio(
            "rtc_concurrent_ratio",
            [ours for ours, _ in pairs],
            [raw for _, raw in pairs],
            clients=clients,
            ice=ice,
            rounds_paired=len(pairs),
            how=(
                "per round: socker's p50 / raw aiortc's p50 (rounds interleaved; a client"
                f" that did not open counts as {timeout:g} s, the time limit: a lower"
                " bound; a round where either side opened none is left out)"
            ),
        )
    else:
        _missing(results, "rtc_concurrent_ratio", state, SOCKER, RAW)


@dataclass(frozen=True)
class Concurrent:
    """One round of opens started together: each one's ms (``None``: did not open) and
    the CPU each side spent per client."""

    times: list[float | None]
    server_cpu_ms: float
    client_cpu_ms: float


def _percentile(sorted_values: list[float], pct: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass
class RateSearch:
    """The highest paced rate that passes, searched once per round.

    The first round doubles from ``start`` until a rate fails (halves while it fails),
    then bisects the last doubling geometrically ``bisect`` times (3: to within 2^(1/8),
    ~9 %). Later rounds start at the median so far and step by 2^(1/8) up while
    passing, or down while failing, so their spread is the round-to-round noise. Rates
    are rounded to 100 msg/s.
    """

    start: float
    bisect: int = 3
    fine: float = 2**0.125
    floor: float = 100.0
    cap: float = 400_000.0
    max_trials: int = 12
    found: list[float] = field(default_factory=list)

    def round(self, trial: Callable[[float], DcSample]) -> Capacity:
        trials: list[DcSample] = []

        def run(rate: float) -> DcSample:
            sample = trial(_round100(rate))
            trials.append(sample)
            log(
                f"  {sample.rate:>9,.0f} msg/s: {'pass' if sample.passed else 'FAIL'}"
                f" ({sample.why}: {sample.loss_pct:.2f} % lost, lag {sample.lag_s * 1000:.0f} ms)"
            )
            return sample

        best: DcSample | None = None
        if not self.found:
            low: DcSample | None = None
            high: float | None = None
            rate = self.start
            while len(trials) < self.max_trials:
                sample = run(rate)
                if sample.passed:
                    low = sample
                    if high is not None or rate * 2 > self.cap:
                        break
                    rate *= 2
                else:
                    high = rate
                    if low is not None or rate / 2 < self.floor:
                        break
                    rate /= 2
            best = low
            if low is not None and high is not None:
                lo, hi = low.rate, high
                for _ in range(self.bisect):
                    if len(trials) >= self.max_trials or hi / lo < 1.05:
                        break
                    mid = (lo * hi) ** 0.5
                    sample = run(mid)
                    if sample.passed:
                        lo, best = sample.rate, sample
                    else:
                        hi = sample.rate
        else:
            rate = statistics.median(self.found)
            sample = run(rate)
            if sample.passed:
                best = sample
                while len(trials) < 6 and rate * self.fine <= self.cap:
                    rate *= self.fine
                    sample = run(rate)
                    if not sample.passed:
                        break
                    best = sample
            else:
                while len(trials) < 6 and rate / self.fine >= self.floor:
                    rate /= self.fine
                    sample = run(rate)
                    if sample.passed:
                        best = sample
                        break
        if best is not None:
            self.found.append(best.rate)
        return Capacity(best, trials)


@dataclass(frozen=True)
class Capacity:
    """One round's search: its best passing trial (``None``: none passed) and all."""

    best: DcSample | None
    trials: list[DcSample]

    @property
    def rate(self) -> float:
        return 0.0 if self.best is None else self.best.rate


DISTURBED = 0.05
"""A failed trial whose receiver waited runnable for a CPU more than this share of it is
run again once (other work on the machine, not the receiver's limit)."""


def _round100(rate: float) -> float:
    return float(max(100, round(rate / 100) * 100))


def run_dc(cfg: Config, results: Results) -> None:
    """Capacity of the unreliable channel, 100 B messages one way: the highest paced rate
    with at most 0.1 % lost, raw aiortc unbatched against socker batched."""
    duration = cfg.pick(3.0, 1.0)
    timeout = 20.0
    ice = ice_setup()
    searches = {
        RAW: RateSearch(start=6_000, bisect=cfg.pick(3, 2)),
        SOCKER: RateSearch(start=60_000, bisect=cfg.pick(3, 2)),
    }
    trials: dict[str, Callable[..., Coroutine[Any, Any, DcSample]]] = {
        RAW: raw_dc_trial,
        SOCKER: socker_dc_trial,
    }
    servers, state = _servers((RAW, SOCKER))
    client = _Loop()
    disturbed = {RAW: 0, SOCKER: 0}

    def variant(kind: str) -> Callable[[int], Capacity]:
        server = servers[kind]

        def one(rate: float) -> DcSample:
            sample = client.run(lambda: trials[kind](server, rate, duration, timeout))
            time.sleep(0.3)  # the receiver catches up before the next trial
            if not sample.passed and sample.receiver_wait_ms > DISTURBED * duration * 1000:
                # Other work held the receiver off its CPU: not its limit. Once more.
                log(f"  {rate:,.0f} msg/s: receiver waited {sample.receiver_wait_ms:.0f} ms")
                disturbed[kind] += 1
                time.sleep(2)
                sample = client.run(lambda: trials[kind](server, rate, duration, timeout))
                time.sleep(0.3)
            return sample

        def search(r: int) -> Capacity:
            log(f"{kind}: round {r + 1}")
            return searches[kind].round(one)

        return search

    try:
        done = interleave(
            {kind: variant(kind) for kind in servers},
            cfg.pick(6, 1),
            budget_s=cfg.pick(60, 15),
        )
    finally:
        client.close()
        for server in servers.values():
            server.close()
    state = _merge(state, done)
    detail = {
        "payload_bytes": DC_PAYLOAD,
        "duration_s": duration,
        "max_loss_pct": DC_MAX_LOSS_PCT,
        "max_sender_lag": f"{DC_MAX_LAG:.0%} of the duration",
        "rounds": state.rounds,
        "ice": ice,
        "sender": f"paced: a {1 / DC_TICK_S:.0f} Hz loop sends the messages due at each tick;"
        f" a tick's messages are dropped (lost) while > {DC_HIGH_WATER // 1024} KiB wait in"
        " the WebRTC stack",
    }
    senders = {
        RAW: "one channel.send() per message (unbatched)",
        SOCKER: "session.send() per message, batched by socker per loop iteration",
    }
    rounds: dict[str, list[Capacity]] = {k: state.samples[k] for k in (RAW, SOCKER)}
    for kind, rate_key, loss_key, cpu_key in (
        (RAW, "dc_raw_msgs_per_s", "dc_raw_loss_pct", "dc_raw_cpu_us"),
        (SOCKER, "dc_msgs_per_s", "dc_loss_pct", "dc_cpu_us"),
    ):
        found = [c for c in rounds[kind] if c.best is not None]
        if not found:
            for key in (rate_key, loss_key, cpu_key):
                if rounds[kind]:
                    results.error(key, "no paced rate passed")
                else:
                    _missing(results, key, state, kind)
            continue
        best = [c.best for c in found if c.best is not None]
        results.put_samples(
            rate_key,
            [c.rate for c in found],
            delivered_per_s=[round(b.msgs_per_s) for b in best],
            frames=[b.frames for b in best],
            receiver_udp_drops=[b.udp_drops for b in best],
            trials=[[t.brief() for t in c.trials] for c in rounds[kind]],
            disturbed_trials_run_again=disturbed[kind],
            how=senders[kind],
            **detail,
        )
        results.put_samples(loss_key, [b.loss_pct for b in best], at="the capacity", **detail)
        cpu = [b.server_cpu_us for b in best if b.server_cpu_us is not None]
        if cpu:
            results.put_samples(cpu_key, cpu, at="the capacity", **detail)
        else:
            results.error(cpu_key, "no CPU reading")
    paired = [
        (ours, raw)
        for ours, raw in zip(rounds[SOCKER], rounds[RAW], strict=False)
        if ours.best is not None and raw.best is not None
    ]
    if paired:
        results.put_ratio(
            "dc_batch_gain",
            [ours.rate for ours, _ in paired],
            [raw.rate for _, raw in paired],
            what="capacity: socker batched / raw unbatched, paired by round",
        )
        our_cpu = [ours.best.server_cpu_us for ours, _ in paired if ours.best]
        raw_cpu = [raw.best.server_cpu_us for _, raw in paired if raw.best]
        if None not in our_cpu and None not in raw_cpu:
            # Receiver CPU per message at each side's capacity: what batching saves.
            results.put_ratio("dc_cpu_gain", raw_cpu, our_cpu)  # type: ignore[arg-type]
        else:
            results.error("dc_cpu_gain", "no CPU reading")
    else:
        _missing(results, "dc_batch_gain", state, SOCKER, RAW)
        _missing(results, "dc_cpu_gain", state, SOCKER, RAW)


COLD_WARM_OPENS = 3
"""Opens after the first on each fresh server: their median is that run's warm time."""


async def _first_and_warm(server: ServerProcess, limit_s: float) -> tuple[float, float]:
    """The fresh server's first open (ms), then the median of the next opens."""
    times = []
    for _ in range(1 + COLD_WARM_OPENS):
        peer = await asyncio.wait_for(socker_open(server.port), limit_s)
        times.append(peer.open_ms)
        await peer.close()
    return times[0], statistics.median(times[1:])


def run_cold(cfg: Config, results: Results) -> None:
    """The first open of a fresh socker-rtc server process against its warm opens: with
    ``aiosocker.rtc.preload()`` awaited before it listens (mode ``rtc-preload``), and
    without (mode ``rtc-cold``, information). The client (this process) is warmed first,
    against a server of its own, so only the server is cold."""
    timeout = 20.0
    ice = ice_setup()
    client = _Loop()
    samples: dict[str, list[tuple[float, float]]] = {"rtc-preload": [], "rtc-cold": []}
    errors: dict[str, str] = {}
    try:
        with ServerProcess(SOCKER, "rtc") as warmer:  # the client's own warm-up
            client.run(lambda: _first_and_warm(warmer, timeout))
        deadline = time.monotonic() + cfg.pick(90, 25)
        for r in range(cfg.pick(7, 3)):
            if r and time.monotonic() > deadline:
                break
            order = ("rtc-preload", "rtc-cold") if r % 2 == 0 else ("rtc-cold", "rtc-preload")
            for mode in order:
                if mode in errors:
                    continue
                try:
                    with ServerProcess(SOCKER, mode) as server:
                        time.sleep(0.2)  # past its start: the server idles, as one would
                        pair = client.run(lambda s=server: _first_and_warm(s, timeout))
                except Exception as exc:
                    errors[mode] = f"{type(exc).__name__}: {exc}"
                    log(f"{mode}: {errors[mode]}")
                    continue
                samples[mode].append(pair)
                log(f"{mode}: first {pair[0]:.1f} ms, warm {pair[1]:.1f} ms")
    finally:
        client.close()
    detail = {
        "runs": {mode: len(pairs) for mode, pairs in samples.items()},
        "warm_opens_per_run": COLD_WARM_OPENS,
        "ice": ice,
        "how": "a fresh server process per run; its first Python-client open (WebSocket"
        " connect -> channels open) against the median of its next opens; the client"
        " process is warm",
    }
    for mode, cold_key, warm_key, ratio_key in (
        ("rtc-preload", "rtc_open_cold_ms", "rtc_open_cold_warm_ms", "rtc_open_cold_ratio"),
        ("rtc-cold", "rtc_open_nopreload_ms", None, "rtc_open_nopreload_ratio"),
    ):
        pairs = samples[mode]
        keys = [k for k in (cold_key, warm_key, ratio_key) if k]
        if not pairs:
            for key in keys:
                results.error(key, errors.get(mode, "no samples"))
            continue
        server = (
            "awaits aiosocker.rtc.preload() before listening"
            if mode == "rtc-preload"
            else (
                "imports nothing of aiortc before its first open (but aioice, for the ICE set-up)"
            )
        )
        results.put_samples(cold_key, [c for c, _ in pairs], server=server, **detail)
        if warm_key:
            results.put_samples(warm_key, [w for _, w in pairs], server=server, **detail)
        results.put_ratio(
            ratio_key, [c for c, _ in pairs], [w for _, w in pairs], server=server, **detail
        )


CROWD_PROCS = 4
CROWD_FIELD = (
    "dtls",
    "ice",
    "sctp",
    "aiortc (other)",
    "crypto/ssl",
    "aiosocker",
    "websockets",
    "asyncio loop",
    "other",
)


def _bucket(filename: str, name: str) -> str:
    """The part of the stack a profiled function belongs to (by its file)."""
    f = filename.replace("\\", "/")
    if "/aiortc/rtcdtlstransport" in f:
        return "dtls"
    if "/aioice/" in f or "/aiortc/rtcicetransport" in f:
        return "ice"
    if "/aiortc/rtcsctptransport" in f or "/aiortc/rtcdatachannel" in f:
        return "sctp"
    if "/aiortc/" in f:
        return "aiortc (other)"
    if "/OpenSSL/" in f or "/cryptography/" in f or f.endswith("/ssl.py"):
        return "crypto/ssl"
    if "/aiosocker/" in f:
        return "aiosocker"
    if "/websockets/" in f:
        return "websockets"
    if "/asyncio/" in f or f.endswith("/selectors.py"):
        return "asyncio loop"
    return "other"


def profile_summary(path: str) -> dict[str, Any]:
    """Busy self time by part of the stack (sums to the profiled busy total; a C
    function's time goes to the part its caller belongs to; the loop's wait in
    ``epoll.poll`` is idle, left out), and the top functions by cumulative time."""
    import pstats

    stats = pstats.Stats(path)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    parts = dict.fromkeys(CROWD_FIELD, 0.0)
    idle = 0.0
    for (filename, _line, name), (_cc, _nc, tt, _ct, callers) in raw.items():
        if filename == "~" and "poll" in name and "epoll" in name:
            idle += tt  # the loop waiting for work: not busy time
        elif filename == "~" and callers:
            for (cfile, _cl, cname), caller_times in callers.items():
                parts[_bucket(cfile, cname)] += caller_times[2]
        else:
            parts[_bucket(filename, name)] += tt
    total = sum(parts.values()) or 1.0
    top = sorted(raw.items(), key=lambda kv: kv[1][3], reverse=True)
    return {
        "busy_s": round(total, 2),
        "idle_s": round(idle, 2),
        "self_time_pct": {k: round(v / total * 100, 1) for k, v in parts.items() if v},
        "top_cumulative_s": [
            f"{fn.rsplit('/', 1)[-1]}:{line} {name} {ct:.2f}"
            for (fn, line, name), (_cc, _nc, _tt, ct, _c) in top[:30]
        ],
    }


def _crowd(server: ServerProcess, clients: int, timeout: float) -> dict[str, Any]:
    """``clients`` opens against ``server`` from :data:`CROWD_PROCS` client processes,
    started together; opens per second over the crowd, and the server's CPU."""
    import json
    import subprocess
    import sys

    from ..procs import ROOT

    per = [clients // CROWD_PROCS + (i < clients % CROWD_PROCS) for i in range(CROWD_PROCS)]
    at = time.time() + 4.0  # the client processes start and warm up before
    procs = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "bench.clients.rtc_crowd", "--port", str(server.port)),
                *("--clients", str(n), "--at", str(at), "--timeout", str(timeout)),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for n in per
    ]
    time.sleep(max(0.0, at - time.time() - 0.05))
    cpu0 = server.cpu_seconds()
    done_at: list[float] = []
    failures: dict[str, int] = {}
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout + 30)
            report = json.loads(out.decode().strip().splitlines()[-1])
            done_at += [t for t in report["done_at"] if t is not None]
            for why, n in report["failures"].items():
                failures[why] = failures.get(why, 0) + n
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
    cpu = server.cpu_seconds() - cpu0  # includes the closes after the crowd
    span = (max(done_at) - at) if done_at else 0.0
    for why, n in failures.items():
        log(f"rtc_crowd: {n} of {clients} did not open: {why}")
    return {
        "opened": len(done_at),
        "span_s": span,
        "per_s": len(done_at) / span if span > 0 else 0.0,
        "p50_ms": _percentile(sorted((t - at) * 1000 for t in done_at), 50) if done_at else None,
        "server_cpu_ms_per_open": cpu * 1000 / len(done_at) if done_at else None,
        "failures": failures,
    }


def run_crowd(cfg: Config, results: Results) -> None:
    """``rtc_opens_per_s``: complete opens one socker-rtc server process (preloaded)
    finishes per second with 200 clients (40 under --quick) arriving together from
    :data:`CROWD_PROCS` client processes; then the same crowd against a profiled server
    (cProfile), whose summary goes in the details."""
    import os

    from ..servers.aiosocker_rtc import profile_path

    clients = cfg.pick(200, 40)
    timeout = 60.0
    ice = ice_setup()
    runs = []
    try:
        for r in range(cfg.pick(3, 1)):
            with ServerProcess(SOCKER, "rtc-preload", lifetime=300) as server:
                run = _crowd(server, clients, timeout)
            log(f"rtc_crowd round {r + 1}: {run['opened']}/{clients} in {run['span_s']:.2f} s")
            runs.append(run)
        server = ServerProcess(SOCKER, "rtc-profile", lifetime=300)
        path = profile_path(server.pid)
        try:
            profiled = _crowd(server, clients, timeout)
        finally:
            server.close()
        profile = profile_summary(path) if os.path.exists(path) else {"error": "no profile"}
        if os.path.exists(path):
            os.unlink(path)
    except Exception as exc:
        log(f"rtc_crowd: {type(exc).__name__}: {exc}")
        if not runs:
            results.error("rtc_opens_per_s", f"{type(exc).__name__}: {exc}")
            return
        profiled, profile = {}, {"error": f"{type(exc).__name__}: {exc}"}
    results.put_samples(
        "rtc_opens_per_s",
        [run["per_s"] for run in runs],
        clients=clients,
        client_processes=CROWD_PROCS,
        opened=[run["opened"] for run in runs],
        span_s=[round(run["span_s"], 2) for run in runs],
        open_p50_ms=[round(run["p50_ms"] or 0, 1) for run in runs],
        server_cpu_ms_per_open=[round(run["server_cpu_ms_per_open"] or 0, 2) for run in runs],
        server_cpu_bound_opens_per_s=[
            round(1000 / run["server_cpu_ms_per_open"]) if run["server_cpu_ms_per_open"] else 0
            for run in runs
        ],
        failures=[run["failures"] for run in runs],
        profiled_run={k: (round(v, 2) if isinstance(v, float) else v) for k, v in profiled.items()},
        profile=profile,
        ice=ice,
        how="opens completed / (last open's completion - the common start); server kind"
        " socker-rtc, mode rtc-preload; the clients share the machine's CPUs with it",
    )
