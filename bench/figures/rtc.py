"""WebRTC figures: time to open a DataChannel, opens at once, small-message throughput.

The raw side is a minimal hand-written aiortc offer/answer (kind ``raw-aiortc``, its
client in :mod:`bench.clients.rtc`); socker's side is its own flow with its defaults (kind
``socker-rtc``; the Python client in :mod:`bench.clients.rtc`, headless Chromium in
:mod:`bench.clients.browser`). Every process sets ICE up alike
(:func:`bench.rtc_common.ice_setup`); each figure's details say which (``ice``).
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ..clients.browser import browser_rtc_open_ms
from ..clients.rtc import (
    DC_BURST,
    DC_PAYLOAD,
    DC_TICK_S,
    raw_concurrent,
    raw_dc_rate,
    raw_open_ms,
    socker_concurrent,
    socker_dc_rate,
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
