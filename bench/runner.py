"""The harness: the figure registry, interleaved rounds, statistics, table, JSON and plot.

Every figure the benchmarks can produce is declared once in :data:`KEYS` (its JSON key,
unit, group and goal), so ``results.json`` always carries every key: a number, or
``null`` with a status saying why (``n/a``: the socker side does not exist yet;
``error``: it failed; ``not run``: excluded with ``--only``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "bench" / "results.json"

T = TypeVar("T")


class Unavailable(Exception):
    """A figure cannot be measured (yet): reported as ``n/a`` with this message."""


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """What the command line asked for."""

    quick: bool = False
    json_path: Path = DEFAULT_JSON
    plot: bool = True

    def pick(self, full: T, quick: T) -> T:
        """``full`` normally, ``quick`` under ``--quick``."""
        return quick if self.quick else full


def log(message: str) -> None:
    """Progress on stderr, so the table on stdout stays clean."""
    print(f"  {message}", file=sys.stderr, flush=True)


# -- the figures -----------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One figure in ``results.json``."""

    name: str
    unit: str
    group: str
    goal: str | None = None
    """``"<= 3"`` or ``">= 0.9"``; checked and shown in the table."""
    help: str = ""

    def meets(self, value: float) -> bool | None:
        if self.goal is None:
            return None
        op, _, bound = self.goal.partition(" ")
        limit = float(bound)
        return value <= limit if op == "<=" else value >= limit


def _k(name: str, unit: str, group: str, goal: str | None = None, help: str = "") -> Key:
    return Key(name, unit, group, goal, help)


KEYS: tuple[Key, ...] = (
    # dispatch: the stage machine in-process
    _k("dispatch_ns", "ns", "dispatch", help="Stages.handle_sync, trivial sync handler (stays)"),
    _k("dispatch_floor_ns", "ns", "dispatch", help="inline handlers[i](msg) + 'is False'"),
    _k("dispatch_ratio", "x", "dispatch", "<= 3"),
    _k("dispatch_feed_ns", "ns", "dispatch", help="Stages.feed, sync handler (info)"),
    _k("dispatch_jump_ns", "ns", "dispatch", help="handle_sync re-entering its stage (info)"),
    _k("dispatch_async_ns", "ns", "dispatch", help="await Stages.handle, async handler"),
    _k("dispatch_async_floor_ns", "ns", "dispatch", help="await handler(msg) inline"),
    _k("dispatch_async_ratio", "x", "dispatch", help="info; end to end: ws_stream_async_ratio"),
    _k("dispatch_await_sync_ns", "ns", "dispatch", help="await Stages.handle, sync handler"),
    # one-way 64 B stream; tick mode and picows ride in the same interleaved rounds
    _k("ws_stream_raw_msgs_per_s", "msg/s", "ws_stream", help="raw websockets server"),
    _k("ws_stream_socker_msgs_per_s", "msg/s", "ws_stream", help="socker, async drive"),
    _k("ws_stream_ratio", "x", "ws_stream", ">= 0.9"),
    _k("ws_stream_raw_cpu_us", "us/msg", "ws_stream", help="server CPU per message, /proc"),
    _k("ws_stream_socker_cpu_us", "us/msg", "ws_stream", help="server CPU per message, /proc"),
    _k("ws_stream_async_msgs_per_s", "msg/s", "ws_stream", help="socker, async def handler"),
    _k("ws_stream_async_cpu_us", "us/msg", "ws_stream", help="server CPU per message, /proc"),
    _k("ws_stream_async_ratio", "x", "ws_stream", ">= 0.9", "async def handler / raw async for"),
    _k("tick_msgs_per_s", "msg/s", "ws_stream", help="socker, tick drive at 60 Hz"),
    _k("tick_cpu_us", "us/msg", "ws_stream"),
    _k("tick_ratio", "x", "ws_stream", help="tick drive / async drive"),
    _k("fast_raw_msgs_per_s", "msg/s", "ws_stream", help="raw picows server"),
    _k("fast_socker_msgs_per_s", "msg/s", "ws_stream", help="socker on picows"),
    _k("fast_raw_cpu_us", "us/msg", "ws_stream"),
    _k("fast_socker_cpu_us", "us/msg", "ws_stream"),
    _k("fast_stream_ratio", "x", "ws_stream", ">= 0.85", "socker on picows / raw picows"),
    _k("fast_vs_default", "x", "ws_stream", ">= 5", "socker on picows / socker on websockets"),
    # one-way 4 KiB stream
    _k("ws_stream_4k_raw_msgs_per_s", "msg/s", "ws_stream_4k"),
    _k("ws_stream_4k_socker_msgs_per_s", "msg/s", "ws_stream_4k"),
    _k("ws_stream_4k_ratio", "x", "ws_stream_4k", ">= 0.9"),
    _k("ws_stream_4k_raw_cpu_us", "us/msg", "ws_stream_4k"),
    _k("ws_stream_4k_socker_cpu_us", "us/msg", "ws_stream_4k"),
    # request/response, client and server on one CPU
    _k("ws_echo_raw_rtt_per_s", "rt/s", "ws_echo", help="64 B round trips per second"),
    _k("ws_echo_socker_rtt_per_s", "rt/s", "ws_echo"),
    _k("ws_echo_ratio", "x", "ws_echo", ">= 0.95"),
    _k("ws_echo_raw_cpu_us", "us/rt", "ws_echo"),
    _k("ws_echo_socker_cpu_us", "us/rt", "ws_echo"),
    # memory per idle connection
    _k("conn_mem_raw_kib", "KiB", "conn_mem", help="raw websockets, per idle connection"),
    _k("conn_mem_kib", "KiB", "conn_mem", help="socker, per idle connection"),
    _k("conn_mem_ratio", "x", "conn_mem", "<= 1.2"),
    _k("conn_mem_connections", "conns", "conn_mem"),
    # WebRTC
    _k("rtc_open_ms_raw", "ms", "rtc_open", help="hand-written aiortc offer/answer"),
    _k("rtc_open_ms_python", "ms", "rtc_open", help="socker, Python client"),
    _k("rtc_open_ratio", "x", "rtc_open", "<= 1.1"),
    _k("rtc_open_ms_browser", "ms", "rtc_open", help="socker, headless Chromium"),
    _k("rtc_open_cold_ms", "ms", "rtc_cold", help="first open, fresh server with preload()"),
    _k("rtc_open_cold_warm_ms", "ms", "rtc_cold", help="the same servers' next opens (median)"),
    _k("rtc_open_cold_ratio", "x", "rtc_cold", "<= 1.2", "first open / warm, preload()"),
    _k("rtc_open_nopreload_ms", "ms", "rtc_cold", help="first open, fresh server, no preload"),
    _k("rtc_open_nopreload_ratio", "x", "rtc_cold", help="info: first / warm without preload"),
    _k("rtc_concurrent_raw_opens", "opens", "rtc_concurrent", help="raw aiortc, all at once"),
    _k("rtc_concurrent_raw_p50_ms", "ms", "rtc_concurrent"),
    _k("rtc_concurrent_raw_p95_ms", "ms", "rtc_concurrent"),
    _k("rtc_concurrent_opens", "opens", "rtc_concurrent", help="socker, all at once"),
    _k("rtc_concurrent_p50_ms", "ms", "rtc_concurrent"),
    _k("rtc_concurrent_p95_ms", "ms", "rtc_concurrent"),
    _k("rtc_concurrent_ratio", "x", "rtc_concurrent", "<= 1.1", "p50: socker / raw, per round"),
    _k("rtc_opens_per_s", "open/s", "rtc_crowd", help="200 clients at once, 4 client procs"),
    _k("dc_raw_msgs_per_s", "msg/s", "dc", help="raw aiortc capacity: paced, <= 0.1 % lost"),
    _k("dc_raw_loss_pct", "%", "dc"),
    _k("dc_msgs_per_s", "msg/s", "dc", help="socker capacity, batched: paced, <= 0.1 % lost"),
    _k("dc_loss_pct", "%", "dc"),
    _k("dc_batch_gain", "x", "dc", ">= 10", "capacity: socker / raw"),
    _k("dc_raw_cpu_us", "us/msg", "dc", help="receiving server CPU per message, /proc"),
    _k("dc_cpu_us", "us/msg", "dc", help="receiving server CPU per message, /proc"),
    _k("dc_cpu_gain", "x", "dc", help="raw / socker receiver CPU per message"),
    # players per core: 30 Hz inputs, a 20 Hz loop sending room states (rooms of 10)
    *(
        key
        for name, about in (
            ("ws", "socker, websockets, async drive"),
            ("ws_tick", "socker, websockets, tick drive"),
            ("fast", "socker, picows, async drive"),
            ("fast_tick", "socker, picows, tick drive"),
            ("socketio", "python-socketio, uvicorn, uvloop"),
        )
        for key in (
            _k(f"players_per_core_{name}", "players", "players", help=about),
            _k(f"players_{name}_p50_ms", "ms", "players", help="input-to-state p50 at that N"),
            _k(f"players_{name}_p99_ms", "ms", "players", help="input-to-state p99 at that N"),
            _k(f"players_{name}_cpu_us", "us/msg", "players", help="server CPU per message"),
        )
    ),
    _k("players_vs_socketio", "x", "players", ">= 10", "socker (websockets) / socketio"),
    _k("players_vs_socketio_fast", "x", "players", ">= 50", "socker (picows) / socketio"),
    # real networks: the lab of tests/netns (namespaces, a NAT, coturn), root only
    _k("rtc_open_ms_nat", "ms", "network", help="Python player behind a NAT, no TURN"),
    _k("rtc_open_ms_relay", "ms", "network", help="relay only on both sides, via coturn"),
    _k("dc_rtt_ms_host", "ms", "network", help="game channel round trip, NAT, no relay"),
    _k("dc_rtt_ms_relay", "ms", "network", help="game channel round trip through coturn"),
    _k("dc_delivered_pct_loss5", "%", "network", ">= 90", "unreliable, 5 % loss each way"),
    _k("dc_delivered_pct_loss20", "%", "network", ">= 72", "unreliable, 20 % loss each way"),
    # rooms (bench/figures/rooms.py): a room broadcast to 1,000 connections, one process
    _k("broadcast_fanout_raw_per_s", "msg/s", "fanout", help="websockets.broadcast(), delivered"),
    _k("broadcast_fanout_per_s", "msg/s", "fanout", help="socker broadcast(room=), websockets"),
    _k("broadcast_fanout_fast_per_s", "msg/s", "fanout", help="socker broadcast(room=), picows"),
    _k("broadcast_fanout_ratio", "x", "fanout", ">= 0.9", "socker (websockets) / raw"),
    _k("fast_fanout_vs_default", "x", "fanout", ">= 5", "socker on picows / on websockets"),
    _k("broadcast_fanout_raw_cpu_us", "us/msg", "fanout", help="server CPU per delivery"),
    _k("broadcast_fanout_cpu_us", "us/msg", "fanout", help="server CPU per delivery"),
    _k("broadcast_fanout_fast_cpu_us", "us/msg", "fanout", help="server CPU per delivery"),
    _k("broadcast_fanout_cpu_ratio", "x", "fanout", help="raw CPU / socker CPU per delivery"),
    _k("fast_fanout_cpu_vs_default", "x", "fanout", help="CPU per delivery, websockets / picows"),
    # rooms across processes: two server processes on a loopback redis-server
    _k("redis_broadcast_p50_ms", "ms", "redis", "<= 1", "member on the other process"),
    _k("redis_broadcast_p95_ms", "ms", "redis", "<= 5", "member on the other process"),
    _k("redis_broadcast_local_p50_ms", "ms", "redis", help="member on the sending process"),
    _k("redis_broadcast_local_p95_ms", "ms", "redis", help="member on the sending process"),
    _k("redis_pubsub_p50_ms", "ms", "redis", help="redis-py publish -> subscriber, no socker"),
    _k("redis_pubsub_p95_ms", "ms", "redis", help="redis-py publish -> subscriber, no socker"),
    _k("redis_broadcast_vs_pubsub", "x", "redis", help="p50: socker broadcast / redis-py"),
    _k("resume_ms", "ms", "redis", help="TCP reset -> resumed stage's reply, other process"),
    _k("resume_fresh_ms", "ms", "redis", help="a new session walked to the same point"),
    _k("resume_vs_fresh", "x", "redis", help="resume_ms / resume_fresh_ms"),
    # rate and fairness (bench/figures/limits.py): five echo clients, a sixth floods
    _k("flood_p99_ratio", "x", "flood", "<= 2", "flooded p99 / quiet p99, with rate="),
    _k("flood_p99_ratio_unlimited", "x", "flood", help="the same without a rate"),
    _k("flood_quiet_p99_ms", "ms", "flood", help="rate on, no flood"),
    _k("flood_p99_ms", "ms", "flood", help="rate on, flooded"),
    _k("flood_unlimited_quiet_p99_ms", "ms", "flood", help="no rate, no flood"),
    _k("flood_unlimited_p99_ms", "ms", "flood", help="no rate, flooded"),
    # metrics (bench/figures/metrics.py): the ws_stream scenario with metrics=True
    _k("metrics_off_msgs_per_s", "msg/s", "metrics", help="socker, metrics off"),
    _k("metrics_on_msgs_per_s", "msg/s", "metrics", help="socker, metrics=True"),
    _k("metrics_off_cpu_us", "us/msg", "metrics"),
    _k("metrics_on_cpu_us", "us/msg", "metrics"),
    _k("metrics_overhead", "x", "metrics", "<= 1.05", "msgs/s off / on: > 1 is slower with"),
    _k("metrics_overhead_cpu", "x", "metrics", help="CPU per message on / off"),
)
KEY_BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}


# -- statistics ------------------------------------------------------------------------


def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """Median and spread of one figure's samples (one per round)."""
    xs = sorted(float(x) for x in samples)
    if not xs:
        raise ValueError("no samples")
    median = statistics.median(xs)
    if len(xs) >= 2:
        p25, _, p75 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        p25 = p75 = median
    spread = (xs[-1] - xs[0]) / abs(median) * 100 if median else None
    return {
        "n": len(xs),
        "median": median,
        "min": _round(xs[0]),
        "max": _round(xs[-1]),
        "p25": _round(p25),
        "p75": _round(p75),
        "spread_pct": None if spread is None else round(spread, 1),
        "samples": [_round(x) for x in samples],
    }


def percentile(xs: Iterable[float], q: float) -> float:
    """The value at rank ``int(q * n)`` of ``xs`` sorted (``q`` in 0..1, nearest rank, no
    interpolation: a latency that happened); NaN if empty. The rtc figures keep their
    own, interpolated (:func:`bench.figures.rtc._percentile`)."""
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(q * len(ys)))] if ys else float("nan")


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """``a_i / b_i`` for the rounds both sides completed (round i ran A and B back to back)."""
    return [a / b for a, b in zip(numerator, denominator, strict=False) if b]


def _round(x: float) -> float:
    if x == 0 or not (abs(x) < float("inf")):
        return x
    magnitude = abs(x)
    digits = 4 if magnitude < 10 else 3 if magnitude < 1000 else 1
    return round(x, digits)


# -- interleaving ----------------------------------------------------------------------


@dataclass
class Interleaved:
    """What :func:`interleave` measured: samples per variant, and why some stopped."""

    samples: dict[str, list[Any]]
    unavailable: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    rounds: int = 0


def interleave(
    variants: Mapping[str, Callable[[int], Any]],
    rounds: int,
    *,
    budget_s: float,
    warmup: Callable[[str], object] | None = None,
) -> Interleaved:
    """Run every variant once per round, rounds interleaved: A B, B A, A B, ...

    The order reverses each round so no side always runs first (or right after the
    other). Stops starting rounds once ``budget_s`` is spent (at least one round runs).
    A variant raising :class:`Unavailable` or any error is dropped from later rounds and
    reported; the others go on.
    """
    names = list(variants)
    result = Interleaved({name: [] for name in names})
    live = list(names)

    def attempt(name: str, call: Callable[[], Any]) -> tuple[bool, Any]:
        try:
            return True, call()
        except Unavailable as exc:
            result.unavailable[name] = str(exc)
        except Exception as exc:
            result.errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name} failed:\n" + traceback.format_exc())
        live.remove(name)
        return False, None

    if warmup is not None:
        for name in list(live):
            attempt(name, partial(warmup, name))
    start = time.monotonic()
    for r in range(rounds):
        if not live:
            break
        if r and time.monotonic() - start > budget_s:
            log(f"time budget ({budget_s:.0f} s) spent after {r} rounds")
            break
        order = list(live) if r % 2 == 0 else list(reversed(live))
        for name in order:
            ok, value = attempt(name, partial(variants[name], r))
            if ok:
                result.samples[name].append(value)
        result.rounds = r + 1
    return result


# -- results ---------------------------------------------------------------------------


class Results:
    """Values, statuses and details of the figures measured in this run."""

    def __init__(self) -> None:
        self.values: dict[str, float | None] = {}
        self.status: dict[str, str] = {}
        self.details: dict[str, dict[str, Any]] = {}

    def _check(self, key: str) -> None:
        if key not in KEY_BY_NAME:
            raise KeyError(f"{key!r} is not declared in bench.runner.KEYS")

    def put(self, key: str, value: float, note: str | None = None, **detail: Any) -> None:
        self._check(key)
        self.values[key] = _round(float(value))
        self.status[key] = "ok"
        self.details[key] = {"unit": KEY_BY_NAME[key].unit, **detail}
        if note:
            self.details[key]["note"] = note

    def put_samples(self, key: str, samples: Sequence[float], **detail: Any) -> None:
        """The median of per-round samples, with their spread."""
        if not samples:
            self.error(key, "no samples")
            return
        stats = summarize(samples)
        self.put(key, stats.pop("median"), **stats, **detail)

    def put_ratio(
        self, key: str, numerator: Sequence[float], denominator: Sequence[float], /, **detail: Any
    ) -> None:
        """The median of per-round (paired) ratios ``numerator_i / denominator_i``."""
        ratios = paired_ratios(numerator, denominator)
        if not ratios:
            self.na(key, "no paired rounds")
            return
        stats = summarize(ratios)
        stats.pop("median")
        detail.setdefault(
            "ratio_of_medians",
            _round(statistics.median(numerator) / statistics.median(denominator)),
        )
        self.put(key, statistics.median(ratios), **stats, **detail)

    def na(self, key: str, reason: str) -> None:
        self._set_missing(key, "n/a", reason)

    def error(self, key: str, reason: str) -> None:
        self._set_missing(key, "error", reason)

    def _set_missing(self, key: str, status: str, reason: str) -> None:
        self._check(key)
        self.values[key] = None
        self.status[key] = status
        self.details[key] = {"unit": KEY_BY_NAME[key].unit, "note": reason}

    def fill_group(self, group: str, status: str, reason: str) -> None:
        """Mark every key of ``group`` not yet recorded."""
        for key in KEYS:
            if key.group == group and key.name not in self.status:
                self._set_missing(key.name, status, reason)


# -- groups ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """A set of figures measured together (their variants interleaved)."""

    name: str
    run: Callable[[Config, Results], None]
    about: str


def select_groups(groups: Sequence[Group], only: str | None) -> list[Group]:
    """Groups named by ``--only``: group names, JSON keys, or the aliases below."""
    if not only:
        return list(groups)
    aliases = {
        "tick": ["ws_stream"],
        "fast": ["ws_stream"],
        "ws": ["ws_stream", "ws_stream_4k", "ws_echo"],
        "rtc": ["rtc_open", "rtc_cold", "rtc_concurrent", "rtc_crowd", "dc"],
        "mem": ["conn_mem"],
        "echo": ["ws_echo"],
        "socketio": ["players"],
        "turn": ["network"],
        "rooms": ["fanout", "redis"],
    }
    by_name = {group.name: group for group in groups}
    wanted: list[str] = []
    for word in (part.strip() for part in only.split(",")):
        if not word:
            continue
        if word in by_name:
            names = [word]
        elif word in KEY_BY_NAME:
            names = [KEY_BY_NAME[word].group]
        elif word in aliases:
            names = aliases[word]
        else:
            choices = ", ".join([*by_name, *aliases])
            raise SystemExit(f"--only: unknown figure {word!r}; groups: {choices}; or a JSON key")
        wanted += [name for name in names if name not in wanted]
    return [by_name[name] for name in wanted]


_LOAD_AT_START: list[float] | None = None


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_groups(cfg: Config, groups: Iterable[Group], results: Results) -> dict[str, float]:
    """Run each group, turning a failure into ``error`` statuses; returns seconds taken."""
    global _LOAD_AT_START
    _LOAD_AT_START = _loadavg()
    took: dict[str, float] = {}
    for group in groups:
        print(f"[{group.name}] {group.about}", file=sys.stderr, flush=True)
        start = time.monotonic()
        try:
            group.run(cfg, results)
        except Unavailable as exc:
            results.fill_group(group.name, "n/a", str(exc))
        except Exception as exc:
            log(traceback.format_exc())
            results.fill_group(group.name, "error", f"{type(exc).__name__}: {exc}")
        results.fill_group(group.name, "n/a", "not produced by this run")
        took[group.name] = round(time.monotonic() - start, 1)
        log(f"{group.name}: {took[group.name]} s")
    return took


# -- output ----------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(values: Mapping[str, Any], status: Mapping[str, str], details: Mapping[str, Any]) -> str:
    """The figures as a fixed-width text table, grouped."""
    header = f"{'figure':<32}{'value':>12}  {'unit':<7}{'spread':>8}{'n':>4}  {'goal':<8}status"
    lines = [header, "-" * len(header)]
    group = None
    for key in KEYS:
        if key.name not in status:
            continue
        if key.group != group:
            if group is not None:
                lines.append("")
            group = key.group
        value = values.get(key.name)
        detail = details.get(key.name, {})
        spread = detail.get("spread_pct")
        spread_s = f"{spread:.0f}%" if isinstance(spread, (int, float)) else ""
        n = detail.get("n", "")
        state = status[key.name]
        if state == "ok" and value is not None:
            met = key.meets(value)
            state = "ok" if met is None else ("meets goal" if met else "MISSES goal")
        elif detail.get("note"):
            state = f"{state}: {detail['note']}"
        if detail.get("from_previous_run"):
            state += " (previous run)"
        lines.append(
            f"{key.name:<32}{_fmt(value):>12}  {key.unit:<7}{spread_s:>8}{n!s:>4}  "
            f"{key.goal or '':<8}{state}"
        )
    return "\n".join(lines)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def meta(cfg: Config, took: Mapping[str, float]) -> dict[str, Any]:
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": cfg.quick,
        "groups_s": dict(took),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        # Other work on the machine skews every figure: the 1/5/15-minute load averages
        # before the first group and after the last (the bench itself adds ~1-2).
        "loadavg_start": _LOAD_AT_START,
        "loadavg_end": _loadavg(),
        "commit": _git_commit(),
        "versions": {
            dist: _version(dist)
            for dist in (
                "aiosocker",
                "websockets",
                "picows",
                "aiortc",
                "python-socketio",
                "python-engineio",
                "uvicorn",
                "uvloop",
            )
        },
    }


def write_json(cfg: Config, results: Results, took: Mapping[str, float]) -> dict[str, Any]:
    """Write ``results.json``: every key of :data:`KEYS`, flat, plus status/details/meta.

    With ``--only`` the figures of groups not run keep their values from the existing
    file (their status too); figures never measured are ``null`` with status "not run".
    """
    old: dict[str, Any] = {}
    if cfg.json_path.exists():
        try:
            old = json.loads(cfg.json_path.read_text())
        except (OSError, ValueError):
            old = {}
    old_status = old.get("status", {}) if isinstance(old.get("status"), dict) else {}
    old_details = old.get("details", {}) if isinstance(old.get("details"), dict) else {}
    doc: dict[str, Any] = {}
    status: dict[str, str] = {}
    details: dict[str, Any] = {}
    for key in KEYS:
        if key.name in results.status:
            doc[key.name] = results.values.get(key.name)
            status[key.name] = results.status[key.name]
            details[key.name] = results.details.get(key.name, {})
        elif key.name in old_status:
            doc[key.name] = old.get(key.name)
            status[key.name] = old_status[key.name]
            details[key.name] = {**old_details.get(key.name, {}), "from_previous_run": True}
        else:
            doc[key.name] = None
            status[key.name] = "not run"
            details[key.name] = {"unit": key.unit, "note": "not run"}
    doc["status"] = status
    doc["details"] = details
    doc["meta"] = meta(cfg, took)
    cfg.json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cfg.json_path.with_name(cfg.json_path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, cfg.json_path)
    return doc


def plot(doc: Mapping[str, Any], path: Path) -> str:
    """A bar chart of the ratios against their goals (needs matplotlib: ``aiosocker[plot]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install 'aiosocker[plot]')"
    ratios = [
        key for key in KEYS if key.unit == "x" and isinstance(doc.get(key.name), (int, float))
    ]
    if not ratios:
        return "plot skipped: no ratio measured"
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ratios) + 1.2))
    names = [key.name for key in ratios]
    values = [float(doc[key.name]) for key in ratios]
    colors = []
    for key, value in zip(ratios, values, strict=True):
        met = key.meets(value)
        colors.append("tab:gray" if met is None else "tab:green" if met else "tab:red")
    ax.barh(names, values, color=colors)
    for i, key in enumerate(ratios):
        if key.goal:
            limit = float(key.goal.partition(" ")[2])
            ax.plot([limit, limit], [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax.annotate(f" {values[i]:.2f}", (values[i], i), va="center", fontsize=8)
    ax.axvline(1.0, color="tab:blue", linewidth=0.8, linestyle="--")
    if max(values) > 50 * max(min(v for v in values if v > 0), 1e-9):
        ax.set_xscale("log")  # a ratio in the hundreds (the flood) would hide the rest
    ax.invert_yaxis()
    ax.set_xlabel("ratio (black tick: goal; green meets it, red misses)")
    ax.set_title("socker vs raw transports" + (" (quick)" if doc["meta"]["quick"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to {path}"
