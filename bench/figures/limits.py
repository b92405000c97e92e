"""The flood (issue 11, "Rate and fairness"): five clients' echo latency while a sixth
floods tiny frames, with ``serve(..., rate=aiosocker.Rate(messages=200))`` and without.

Two ``flood-socker`` servers (:mod:`bench.servers.limits`, websockets transport, on the
last CPU): mode ``limited`` (the rate, 1 s of burst; past it 4429) and ``unlimited``. The
clients (:mod:`bench.clients.flood`, on the first CPU) say hello, then echo 16 B at
100 Hz each for the window. After a warm-up (a short quiet window on each server, not
kept), a round runs, on each server, a quiet window, then the same
window with a sixth client that starts 0.5 s in and sends 200,000 frames of 1 B without
ever saying hello (the chain's first stage ignores them: the cost is the server's, per
frame). Between windows the bench waits for the server's CPU to go quiet. The figure is
the median over rounds of (p99 under the flood / quiet p99 of the same round).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from ..clients.flood import echo_window
from ..procs import ServerProcess, pinned, run_delay, usable_cpus
from ..rooms_common import FLOOD_RATE_MESSAGES
from ..runner import Config, Results, interleave, log

KIND = "flood-socker"
MODES = ("limited", "unlimited")
FLOOD_FRAMES = 200_000


@dataclass(frozen=True)
class FloodSample:
    quiet_p99: float
    flood_p99: float
    quiet_p50: float
    flood_p50: float
    flood: dict[str, Any]
    server_wait: float
    """Share of the flooded window the server waited for a CPU (other work)."""
    unanswered: tuple[int, int]
    """Echo requests never answered (quiet, flooded), refused sends included ..."""
    blocked_sends: tuple[int, int]
    """... of which the clients' sockets refused (``EAGAIN``): the server stopped reading."""


def settle(server: ServerProcess, limit_s: float = 10.0) -> None:
    """Wait until the server used under 5% of a CPU for 200 ms (at most ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        c0 = server.cpu_seconds()
        time.sleep(0.2)
        if server.cpu_seconds() - c0 <= 0.01:
            return


def flood_round(server: ServerProcess, seconds: float) -> FloodSample:
    settle(server)
    quiet = echo_window(server.port, seconds)
    settle(server)
    wait0, t0 = run_delay(server.pid), time.perf_counter()
    flood = echo_window(server.port, seconds, flood_frames=FLOOD_FRAMES)
    wait = (run_delay(server.pid) - wait0) / (time.perf_counter() - t0)
    for window in (quiet, flood):
        if math.isnan(window["p99_ms"]):
            raise RuntimeError(f"{server.mode}: no echo answered")
    return FloodSample(
        quiet["p99_ms"],
        flood["p99_ms"],
        quiet["p50_ms"],
        flood["p50_ms"],
        flood["flood"] or {},
        wait,
        (quiet["unanswered"], flood["unanswered"]),
        (quiet["blocked_sends"], flood["blocked_sends"]),
    )


def run_flood(cfg: Config, results: Results) -> None:
    seconds = 1.5
    cpus = usable_cpus()
    server_cpu, client_cpu = (cpus[-1], cpus[0]) if len(cpus) >= 2 else (None, None)
    servers: dict[str, ServerProcess] = {}
    try:
        for mode in MODES:
            servers[mode] = ServerProcess(KIND, mode, cpu=server_cpu)
        with pinned(client_cpu):
            done = interleave(
                {mode: (lambda r, s=servers[mode]: flood_round(s, seconds)) for mode in MODES},
                cfg.pick(5, 2),
                budget_s=cfg.pick(90, 20),
                # round 0's quiet window, the first, would pay for first calls otherwise
                warmup=lambda mode: echo_window(servers[mode].port, 0.5),
            )
    finally:
        for server in servers.values():
            server.close()
    for mode, why in done.errors.items():
        log(f"flood {mode}: {why}")
    detail = {
        "clients": 5,
        "echo_hz": 100,
        "window_s": seconds,
        "flood_frames": FLOOD_FRAMES,
        "rate_messages": FLOOD_RATE_MESSAGES,
    }
    keys = {
        "limited": ("flood_p99_ratio", "flood_quiet_p99_ms", "flood_p99_ms"),
        "unlimited": (
            "flood_p99_ratio_unlimited",
            "flood_unlimited_quiet_p99_ms",
            "flood_unlimited_p99_ms",
        ),
    }
    for mode, (ratio_key, quiet_key, flood_key) in keys.items():
        samples = done.samples.get(mode, [])
        if not samples:
            why = done.errors.get(mode) or done.unavailable.get(mode) or "no samples"
            for key in (ratio_key, quiet_key, flood_key):
                results.error(key, why)
            continue
        flood = [s.flood_p99 for s in samples]
        quiet = [s.quiet_p99 for s in samples]
        results.put_ratio(
            ratio_key,
            flood,
            quiet,
            mode=mode,
            flooder=[s.flood for s in samples],
            quiet_p50_ms=[round(s.quiet_p50, 3) for s in samples],
            flood_p50_ms=[round(s.flood_p50, 3) for s in samples],
            server_wait=[round(s.server_wait, 3) for s in samples],
            unanswered_quiet_flood=[list(s.unanswered) for s in samples],
            blocked_sends_quiet_flood=[list(s.blocked_sends) for s in samples],
            **detail,
        )
        results.put_samples(quiet_key, quiet, mode=mode)
        results.put_samples(flood_key, flood, mode=mode)
