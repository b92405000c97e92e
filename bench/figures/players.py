"""Players per core: how many players one server core holds at a game's rates.

N players each send a 32 B input at 30 Hz; the server's 20 Hz game loop sends every
player its room's 256 B state (rooms of 10). The server runs alone on one CPU (the last),
the players in one process of their own on another (:mod:`bench.clients.players`: raw
sockets, pre-built frames; they report the latency from each input to the state that
carries it, with the kernel's receive timestamps, and their own CPU).

A variant's ramp runs N = 50, 100, 200, ... 3,200 (a fresh server and a fresh players
process per step) until a step fails, then tries the geometric middle of the last
doubling. A step passes when:

* the p99 input-to-state latency is at most 100 ms: the 50 ms the issue allows on top
  of the up-to-50 ms every input waits for the next tick of a 20 Hz loop (an idle
  server's p99 is already ~51 ms, so a bare 50 ms would fail every server at any N);
* the server's CPU stays under 95% of its core (not saturated);
* the players kept up: their CPU under 90% of their core and their sends on schedule
  (p99 lag <= 10 ms). A step the players could not drive fails as ``players``: then the
  figure is a lower bound, and its details say so.

A step whose server waited for its CPU more than 5% of the window, or the players more
than 15% (other work on the machine, ``/proc/<pid>/schedstat``), is run again after a
pause (twice at most; once under ``--quick``); the waits stay in the details. Later
rounds start at the median so far and step by 2^(1/4), up while passing or down while
failing (3 steps at most). Variants take turns, order reversed each round, as in the
other groups.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..players_common import INPUT_HZ, ROOM_SIZE, STATE_BYTES, TICK_HZ
from ..procs import ServerProcess, raise_nofile, usable_cpus
from ..runner import DEFAULT_JSON, ROOT, Config, Interleaved, Results, interleave, log

LATENCY_LIMIT_MS = 1000 / TICK_HZ + 50
"""p99 input-to-state latency allowed: one tick's wait (50 ms at 20 Hz) plus 50 ms."""
SATURATED = 0.95
"""Server CPU (fraction of its core) counted as a saturated core."""
PLAYERS_CPU_MAX = 0.90
PLAYERS_LAG_MAX_MS = 10.0
DISTURBED = 0.05
"""Server run-queue wait (fraction of the window) past which a step is run again."""
PLAYERS_DISTURBED = 0.15
"""The same for the players' process."""
RETRIES = 2
RETRY_PAUSE_S = 3.0
STEP_UP = 2**0.25

VARIANTS: dict[str, tuple[str, str]] = {
    # name in the JSON keys: (server kind, players' protocol)
    "ws": ("aiosocker", "socker"),
    "ws_tick": ("socker-tick", "socker"),
    "fast": ("socker-picows", "socker"),
    "fast_tick": ("socker-picows-tick", "socker"),
    "socketio": ("socketio", "socketio"),
}
ABOUT = {
    "ws": "socker, websockets transport, drive='async'",
    "ws_tick": "socker, websockets transport, drive='tick' (server.tick() in the 20 Hz loop)",
    "fast": "socker, picows transport, drive='async'",
    "fast_tick": "socker, picows transport, drive='tick'",
    "socketio": "python-socketio (ASGI) under uvicorn on uvloop; rooms, emit(..., room=)",
}


@dataclass
class Step:
    n: int
    data: dict[str, Any]
    failed: str | None
    """``None`` (passed), ``latency``, ``server core``, ``players``, ``disturbed`` (it
    failed while other work held the server or the players up, after the retries) or
    ``error: ...``."""
    retried: bool = False

    def brief(self) -> dict[str, Any]:
        d = self.data
        out: dict[str, Any] = {"n": self.n, "result": self.failed or "pass"}
        if d:
            out |= {
                "p50_ms": d["latency_ms"]["p50"],
                "p99_ms": d["latency_ms"]["p99"],
                "server_cpu": d["server_cpu"],
                "players_cpu": d["players_cpu"],
                "server_wait": d["server_wait"],
                "players_wait": d["players_wait"],
            }
        if self.retried:
            out["retried"] = True
        if d and _disturbed(d):
            out["disturbed"] = True
        return out


@dataclass
class Ramp:
    """One round of one variant: the largest N that passed, and how the ramp went."""

    n: int
    at: Step | None
    stopped: Step | None
    """The first failing step above ``n`` (``None``: the cap was reached)."""
    steps: list[Step] = field(default_factory=list)
    open_end: str = ""
    """Why no step above ``n`` failed, when none did: the cap, or the steps ran out."""

    @property
    def limited_by(self) -> str:
        if self.stopped is not None:
            return str(self.stopped.failed)
        return self.open_end or "cap"


@dataclass(frozen=True)
class Plan:
    ramp: tuple[int, ...]
    refine: int
    retries: int
    warm: float
    measure: float
    drain: float
    server_cpu: int | None
    players_cpu: int | None


def _disturbed(d: dict[str, Any]) -> bool:
    return bool(d["server_wait"] > DISTURBED or d["players_wait"] > PLAYERS_DISTURBED)


def _verdict(d: dict[str, Any]) -> str | None:
    lagging = (d["send_lag_ms"]["p99"] or 0) > PLAYERS_LAG_MAX_MS
    # Late sends are the players' own limit when they had their CPU and used most of it;
    # when they waited for it, other work on the machine held them up.
    if d["players_cpu"] >= PLAYERS_CPU_MAX or (lagging and d["players_wait"] <= PLAYERS_DISTURBED):
        return "players"
    if d["latency_ms"]["p99"] is None or d["latency_ms"]["p99"] > LATENCY_LIMIT_MS:
        return "latency"
    if d["server_cpu"] >= SATURATED:
        return "server core"
    return None


def run_players(kind: str, proto: str, n: int, plan: Plan) -> dict[str, Any]:
    """One step: a fresh server on its CPU, ``n`` players in a process on theirs."""
    timeout = 60 + n / 50 + plan.warm + plan.measure + plan.drain
    server = ServerProcess(kind, "players", cpu=plan.server_cpu, nofile=n + 512)
    try:
        args = [sys.executable, "-m", "bench.clients.players", "--proto", proto]
        args += ["--port", str(server.port), "--players", str(n)]
        args += ["--server-pid", str(server.pid), "--warm", str(plan.warm)]
        args += ["--measure", str(plan.measure), "--drain", str(plan.drain)]
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
            )
            try:
                if plan.players_cpu is not None:
                    os.sched_setaffinity(proc.pid, {plan.players_cpu})
                out, _ = proc.communicate(timeout=timeout)
            except BaseException:
                proc.kill()
                proc.wait(timeout=5)
                raise
            lines = out.decode(errors="replace").splitlines()
            for line in lines:
                if line.startswith("RESULT "):
                    result: dict[str, Any] = json.loads(line[7:])
                    return result
            err.seek(0)
            tail = err.read().decode(errors="replace")[-600:].strip()
        problem = next((line for line in lines if line.startswith("ERR")), tail)
        raise RuntimeError(f"players ({proto}, N={n}): {problem or 'no result'}")
    finally:
        server.kill()


def _step(kind: str, proto: str, n: int, plan: Plan) -> Step:
    retried = False
    for attempt in range(plan.retries + 1):
        try:
            data = run_players(kind, proto, n, plan)
        except Exception as exc:
            return Step(n, {}, f"error: {type(exc).__name__}: {exc}"[:300], retried)
        if not _disturbed(data) or attempt == plan.retries:
            break
        log(
            f"{kind} N={n}: the server waited {data['server_wait']:.0%} for its CPU, the "
            f"players {data['players_wait']:.0%}: other work on the machine; again"
        )
        retried = True
        time.sleep(RETRY_PAUSE_S if plan.retries > 1 else 1.0)
    failed = _verdict(data)
    if failed and _disturbed(data):
        # Still held up by other work after the retries: the server cannot be blamed.
        failed = "disturbed"
    step = Step(n, data, failed, retried)
    lat = data["latency_ms"]
    log(
        f"{kind} N={n}: p50/p99 {lat['p50']}/{lat['p99']} ms, server CPU "
        f"{data['server_cpu']:.0%}, players CPU {data['players_cpu']:.0%}: "
        + (step.failed or "pass")
    )
    return step


def _tens(x: float) -> int:
    return max(ROOM_SIZE, round(x / ROOM_SIZE) * ROOM_SIZE)


def first_ramp(kind: str, proto: str, plan: Plan) -> Ramp:
    """Double N until a step fails (or the cap), then narrow the last doubling down."""
    steps: list[Step] = []
    best: Step | None = None
    stopped: Step | None = None
    for n in plan.ramp:
        step = _step(kind, proto, n, plan)
        steps.append(step)
        if step.failed:
            stopped = step
            break
        best = step
    if best is None and stopped is not None and stopped.failed and "error" in stopped.failed:
        raise RuntimeError(stopped.failed)
    for _ in range(plan.refine):
        if best is None or stopped is None or str(stopped.failed).startswith("error"):
            break
        mid = _tens(math.sqrt(best.n * stopped.n))
        if mid in (best.n, stopped.n):
            break
        step = _step(kind, proto, mid, plan)
        steps.append(step)
        if step.failed:
            stopped = step
        else:
            best = step
    return Ramp(best.n if best else 0, best, stopped, steps)


def ramp_around(kind: str, proto: str, plan: Plan, estimate: int) -> Ramp:
    """A later round: N at the estimate, then steps of 2^(1/4) up while it passes, or down
    while it fails (at most 3 steps either way)."""
    steps: list[Step] = []
    step = _step(kind, proto, estimate, plan)
    steps.append(step)
    if not step.failed:
        best = step
        for _ in range(3):
            n = min(_tens(best.n * STEP_UP), max(plan.ramp))
            if n <= best.n:
                return Ramp(best.n, best, None, steps)
            up = _step(kind, proto, n, plan)
            steps.append(up)
            if up.failed:
                return Ramp(best.n, best, up, steps)
            best = up
        return Ramp(best.n, best, None, steps, "not found in 3 steps up")
    stopped = step
    for _ in range(3):
        n = _tens(stopped.n / STEP_UP)
        if n >= stopped.n:
            break
        down = _step(kind, proto, n, plan)
        steps.append(down)
        if not down.failed:
            return Ramp(down.n, down, stopped, steps)
        stopped = down
    return Ramp(0, None, stopped, steps)


def _variant(name: str, plan: Plan, history: dict[str, list[Ramp]]) -> Callable[[int], Ramp]:
    kind, proto = VARIANTS[name]

    def one_round(r: int) -> Ramp:
        done = [ramp.n for ramp in history[name] if ramp.n]
        if done:
            ramp = ramp_around(kind, proto, plan, _tens(statistics.median(done)))
        else:
            ramp = first_ramp(kind, proto, plan)
        history[name].append(ramp)
        return ramp

    return one_round


# -- the group -------------------------------------------------------------------------


def _plan(cfg: Config) -> Plan:
    cpus = usable_cpus()
    server_cpu, players_cpu = (cpus[-1], cpus[0]) if len(cpus) >= 2 else (None, None)
    if cfg.quick:
        return Plan((100, 400), 0, 1, 0.5, 1.0, 0.3, server_cpu, players_cpu)
    ramp = tuple(50 * 2**i for i in range(7))  # 50 ... 3,200
    return Plan(ramp, 1, RETRIES, 0.8, 2.0, 0.4, server_cpu, players_cpu)


def _cpu_us_per_message(step: Step) -> float:
    """Server CPU per message handled (an input in, or a state out) at that step."""
    rate = step.n * (INPUT_HZ + TICK_HZ)
    return float(step.data["server_cpu"]) / rate * 1e6


def run(cfg: Config, results: Results) -> None:
    plan = _plan(cfg)
    raise_nofile(max(plan.ramp) * 2 + 1024)
    history: dict[str, list[Ramp]] = {name: [] for name in VARIANTS}
    variants = {name: _variant(name, plan, history) for name in VARIANTS}
    done = interleave(variants, cfg.pick(3, 1), budget_s=cfg.pick(240, 60))
    for name, why in done.errors.items():
        log(f"players {name}: error: {why}")
    common = {
        "scenario": (
            f"{INPUT_HZ} Hz x 32 B inputs per player, a {TICK_HZ} Hz loop sending each "
            f"room of {ROOM_SIZE} its {STATE_BYTES} B state"
        ),
        "limit": (
            f"p99 input-to-state <= {LATENCY_LIMIT_MS:g} ms (one tick + 50 ms), server CPU "
            f"< {SATURATED:.0%}, players CPU < {PLAYERS_CPU_MAX:.0%} and on schedule"
        ),
        "server_cpu_index": plan.server_cpu,
        "players_cpu_index": plan.players_cpu,
        "ramp": list(plan.ramp),
        "window_s": plan.measure,
    }
    for name in VARIANTS:
        _put_variant(results, name, done, common)
    for key, name in (("players_vs_socketio", "ws"), ("players_vs_socketio_fast", "fast")):
        ours = [ramp.n for ramp in done.samples[name]]
        theirs = [ramp.n for ramp in done.samples["socketio"]]
        if ours and theirs and any(theirs):
            results.put_ratio(key, ours, theirs, numerator=name, denominator="socketio")
        else:
            _missing(results, key, done, (name, "socketio"))


def _missing(results: Results, key: str, done: Interleaved, names: tuple[str, ...]) -> None:
    for name in names:
        if name in done.errors:
            results.error(key, f"{name}: {done.errors[name]}")
            return
    for name in names:
        if name in done.unavailable:
            results.na(key, f"{name}: {done.unavailable[name]}")
            return
    results.error(key, "no samples")


def _put_variant(results: Results, name: str, done: Interleaved, common: dict[str, Any]) -> None:
    ramps: list[Ramp] = done.samples[name]
    keys = (
        f"players_per_core_{name}",
        f"players_{name}_p50_ms",
        f"players_{name}_p99_ms",
        f"players_{name}_cpu_us",
    )
    if not ramps:
        for key in keys:
            _missing(results, key, done, (name,))
        return
    passed = [ramp for ramp in ramps if ramp.at is not None]
    at = [ramp.at for ramp in passed if ramp.at is not None]
    limited = [ramp.limited_by for ramp in ramps]
    headroom = [round(1 - s.data["players_cpu"], 3) for s in at]
    players_max = max(
        (s.data["players_cpu"] for ramp in ramps for s in ramp.steps if s.data), default=0.0
    )
    note = None
    if any(by == "disturbed" for by in limited):
        note = (
            "other work on the machine held the server or the players up at the step that "
            "stopped some rounds, after the retries: there the figure is a lower bound"
        )
    elif any(by == "players" for by in limited):
        note = (
            "the players, not the server, stopped the ramp in some rounds: there the "
            "figure is a lower bound (see limited_by)"
        )
    elif any(by == "cap" for by in limited):
        note = "the ramp reached its cap in some rounds: there the figure is a lower bound"
    detail: dict[str, Any] = {
        "about": ABOUT[name],
        "limited_by": limited,
        "players_headroom_at_n": headroom,
        "players_cpu_max_seen": round(players_max, 3),
        "server_cpu_at_n": [s.data["server_cpu"] for s in at],
        "server_cpu_system_at_n": [s.data["server_cpu_system"] for s in at],
        "delivery_p99_ms_at_n": [s.data["delivery_ms"]["p99"] for s in at],
        "states_received_pct_at_n": [
            round(100 * s.data["states"] / max(1, s.data["states_expected"]), 1) for s in at
        ],
        "steps": [[s.brief() for s in ramp.steps] for ramp in ramps],
        **common,
    }
    if note:
        detail["note"] = note
    results.put_samples(keys[0], [ramp.n for ramp in ramps], **detail)
    if at:
        results.put_samples(
            keys[1], [s.data["latency_ms"]["p50"] for s in at], players=[s.n for s in at]
        )
        results.put_samples(
            keys[2], [s.data["latency_ms"]["p99"] for s in at], players=[s.n for s in at]
        )
        results.put_samples(
            keys[3],
            [_cpu_us_per_message(s) for s in at],
            players=[s.n for s in at],
            server_cpu_at_n=[s.data["server_cpu"] for s in at],
            messages="inputs in + states out, per second: N x (30 + 20)",
        )
    else:
        for key in keys[1:]:
            results.error(key, "no step passed, not even the first")


# -- the plot --------------------------------------------------------------------------

PLOTTED = (("ws", "tab:blue"), ("fast", "tab:green"), ("socketio", "tab:red"))


def plot_path(json_path: Path) -> Path:
    """``docs/players-per-core.png`` for the real results (the docs show it), else
    beside the JSON."""
    if json_path.resolve() == DEFAULT_JSON.resolve():
        return ROOT / "docs" / "players-per-core.png"
    return json_path.with_name(json_path.stem + "-players.png")


def plot(doc: dict[str, Any], path: Path) -> str:
    """Latency (p50 dashed, p99 solid) and server CPU against N, from every step of the
    ramps (the median where a step size ran more than once; steps other work disturbed
    are left out)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "players plot skipped: matplotlib is not installed"
    series = {}
    for name, _color in PLOTTED:
        detail = doc.get("details", {}).get(f"players_per_core_{name}", {})
        by_n: dict[int, list[dict[str, Any]]] = {}
        for ramp in detail.get("steps", []):
            for step in ramp:
                if "p99_ms" in step and not step.get("disturbed"):
                    by_n.setdefault(step["n"], []).append(step)
        if by_n:
            series[name] = sorted(by_n.items())
    if not series:
        return "players plot skipped: no ramp measured"
    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, color in PLOTTED:
        if name not in series:
            continue
        ns = [n for n, _ in series[name]]

        def med(key: str, rows: list[list[dict[str, Any]]]) -> list[float]:
            return [statistics.median(float(step[key]) for step in steps) for steps in rows]

        rows = [steps for _, steps in series[name]]
        value = doc.get(f"players_per_core_{name}")
        label = f"{ABOUT_SHORT[name]}: {value:,.0f}" if isinstance(value, (int, float)) else name
        lat.plot(ns, med("p99_ms", rows), color=color, marker="o", label=label)
        lat.plot(ns, med("p50_ms", rows), color=color, linestyle="--", alpha=0.6)
        cpu.plot(ns, [100 * x for x in med("server_cpu", rows)], color=color, marker="o")
        cpu.plot(ns, [100 * x for x in med("players_cpu", rows)], color=color, linestyle=":")
    lat.axhline(LATENCY_LIMIT_MS, color="black", linewidth=1)
    lat.annotate(" limit (p99)", (lat.get_xlim()[0], LATENCY_LIMIT_MS), va="bottom", fontsize=8)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ramp_sizes = {50 * 2**i for i in range(8)}
    ticks = sorted({n for rows in series.values() for n, _ in rows if n in ramp_sizes})
    for ax in (lat, cpu):
        ax.set_xscale("log")
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    lat.set_yscale("log")
    top = max(lat.get_ylim()[1], 2 * LATENCY_LIMIT_MS)
    lat.set_yticks([y for y in (25, 50, 100, 200, 400, 800, 1600, 3200) if y <= top])
    lat.yaxis.set_major_formatter(ScalarFormatter())
    lat.yaxis.set_minor_formatter(NullFormatter())
    lat.set_xlabel("players N (one server core)")
    lat.set_ylabel("input-to-state latency, ms (p99 solid, p50 dashed)")
    lat.legend(fontsize=8, title="players per core", title_fontsize=8)
    cpu.axhline(100 * SATURATED, color="black", linewidth=1)
    cpu.set_ylim(0, 105)
    cpu.set_xlabel("players N")
    cpu.set_ylabel("% of one core: server (solid), players (dotted)")
    quick = " (quick)" if doc.get("meta", {}).get("quick") else ""
    fig.suptitle(f"Players per core: socker vs python-socketio, 30 Hz inputs, 20 Hz states{quick}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"players plot written to {path}"


ABOUT_SHORT = {
    "ws": "socker, websockets",
    "fast": "socker, picows",
    "socketio": "python-socketio",
}
