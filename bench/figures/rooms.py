"""Rooms (issue 10): a room broadcast's fan-out, a broadcast across processes on Redis,
and a session resumed on another process.

**Fan-out** (group ``fanout``). One server process (the last CPU) holds 1,000 connections
in one room; its receivers are another process (:mod:`bench.clients.fanout`, the first
CPU: raw sockets, one ``epoll``). A round asks the server for ``count`` broadcasts of
64 B to the room, each followed by ``await asyncio.sleep(0)`` (a game loop's broadcast
per tick, not a batch), and counts what every receiver got. Three servers take turns:
a raw ``websockets`` server doing ``websockets.broadcast(room, data)``, and
``await server.broadcast(data, room=...)`` on aiosocker's websockets and picows
transports. Delivered per second = frames the receivers got / (the last one's arrival -
the first broadcast call); the server's CPU per delivery comes from ``/proc``.

**Redis** (group ``redis``). A ``redis-server`` on a free loopback port (no persistence),
started and stopped here; two ``redis-socker`` server processes on it. Latency: a
member on each process; the first process broadcasts stamped probes to the room every
10 ms; the member on the *other* process measures arrival (kernel timestamp) minus the
stamp: ``redis_broadcast_p50_ms`` / ``_p95_ms``; the member on the sending process
gives the same without Redis (``redis_broadcast_local_*``). The two processes take turns
sending. Resume: ``resume=15`` servers; a raw session walks to ``playing`` on one
process, is cut with a TCP reset, and ``aiosocker.connect(url, resume_token=...)``
resumes it on the other: ``resume_ms`` runs from the reset until the resumed stage's
reply arrives. ``resume_fresh_ms`` is a new session walked to the same point.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..clients import redis_pub
from ..clients import rooms as roomclient
from ..clients.players import cpu_times
from ..clients.ws import frame
from ..procs import ServerProcess, raise_nofile, run_delay, usable_cpus
from ..rooms_common import LATENCY_ROOM, REDIS_ENV
from ..runner import (
    ROOT,
    Config,
    Interleaved,
    Results,
    Unavailable,
    interleave,
    log,
    percentile,
)

RAW = "fanout-raw"
SOCKER = "fanout-socker"
FAST = "fanout-socker-picows"
MEMBERS = 1000
PAYLOAD = 64
REDIS_KIND = "redis-socker"
PUBSUB_CHANNEL = "bench:pubsub"
HOST = "127.0.0.1"


# -- a line-speaking child process -------------------------------------------------------


class Child:
    """A helper process that answers one line per command on its stdout."""

    def __init__(self, args: list[str], name: str, *, cpu: int | None = None) -> None:
        self.name = name
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close)
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
        )
        self._buf = b""
        if cpu is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.proc.pid, {cpu})

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def expect(self, word: str, timeout: float) -> str:
        """The rest of the next line, which must start with ``word``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name} said nothing for {timeout:g} s")
            if not select.select([fd], [], [], remaining)[0]:
                continue
            data = os.read(fd, 65536)
            if not data:
                raise RuntimeError(f"{self.name} exited: {self.stderr_tail()}")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        head, _, rest = line.decode().strip().partition(" ")
        if head != word:
            raise RuntimeError(f"{self.name}: expected {word}, got {line[:300]!r}")
        return rest

    def stderr_tail(self, limit: int = 2000) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._err.seek(0)
            return self._err.read().decode(errors="replace")[-limit:].strip()
        return ""

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()


# -- fan-out -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FanoutSample:
    per_s: float
    """Frames delivered / (last arrival - first broadcast call)."""
    cpu_us: float
    """Server CPU (/proc) per delivered frame, the whole round."""
    queued_s: float
    """The server's broadcast loop (all calls made)."""
    delivered: int
    expected: int
    receivers_cpu: float
    server_wait: float
    """Share of the round the server waited for a CPU (other work on the machine)."""
    sys_us: float
    """The kernel's part of ``cpu_us`` (system time: the sends, loopback TCP)."""


class FanoutRig:
    """A fan-out server and its receivers' process, kept for every round."""

    def __init__(self, kind: str, members: int, server_cpu: int | None, client_cpu: int | None):
        self.server = ServerProcess(kind, "fanout", cpu=server_cpu, nofile=members + 256)
        try:
            self.receivers = Child(
                [
                    "-m",
                    "bench.clients.fanout",
                    "--port",
                    str(self.server.port),
                    "--conns",
                    str(members),
                ],
                f"{kind} receivers",
                cpu=client_cpu,
            )
            self.receivers.expect("OPEN", 60)
        except BaseException:
            self.server.kill()
            raise

    def round(self, count: int, timeout: float = 60.0) -> FanoutSample:
        server = self.server
        cpu0, wait0, t0 = server.cpu_seconds(), run_delay(server.pid), time.perf_counter()
        sys0 = cpu_times(server.pid)[1]
        self.receivers.send(f"GO {count} {PAYLOAD} {timeout}")
        line = server.readline(timeout)
        word, _, rest = line.partition(" ")
        if word != "FANOUT":
            raise RuntimeError(f"{server.kind}: {line}")
        start, end, _cpu_ns = rest.split()
        got = json.loads(self.receivers.expect("RESULT", timeout + 10))
        cpu1, wait1, t1 = server.cpu_seconds(), run_delay(server.pid), time.perf_counter()
        sys1 = cpu_times(server.pid)[1]
        if got["timed_out"]:
            # "last" is then the last complete receiver's, not the round's end; and the
            # late frames would land in the next round: drop the rig (interleave's error)
            raise RuntimeError(f"{server.kind}: receivers timed out after {timeout:g} s ({got})")
        if got["delivered"] < got["expected"]:
            log(f"{server.kind}: {got['delivered']} of {got['expected']} delivered: {got}")
        if got["extra_bytes"]:
            log(f"{server.kind}: {got['extra_bytes']} bytes past the round's frames: {got}")
        if not got["delivered"] or not got["last"]:
            raise RuntimeError(f"{server.kind}: nothing delivered ({got})")
        return FanoutSample(
            per_s=got["delivered"] / (got["last"] - float(start)),
            cpu_us=(cpu1 - cpu0) * 1e6 / got["delivered"],
            queued_s=float(end) - float(start),
            delivered=got["delivered"],
            expected=got["expected"],
            receivers_cpu=got["receivers_cpu"],
            server_wait=(wait1 - wait0) / (t1 - t0),
            sys_us=(sys1 - sys0) * 1e6 / got["delivered"],
        )

    def close(self) -> None:
        self.receivers.close()
        self.server.close()


def _put_series(
    results: Results, key: str, done: Interleaved, kind: str, field: str, **detail: Any
) -> None:
    values = [getattr(s, field) for s in done.samples.get(kind, [])]
    if values:
        results.put_samples(key, values, server=kind, rounds=done.rounds, **detail)
    elif kind in done.unavailable:
        results.na(key, f"{kind}: {done.unavailable[kind]}")
    else:
        results.error(key, f"{kind}: {done.errors.get(kind, 'no samples')}")


def _put_paired(
    results: Results,
    key: str,
    done: Interleaved,
    num: str,
    den: str,
    field: str,
    *,
    invert: bool = False,
) -> None:
    a = [getattr(s, field) for s in done.samples.get(num, [])]
    b = [getattr(s, field) for s in done.samples.get(den, [])]
    if a and b:
        if invert:  # a cost (lower is better): den / num, so > 1 still means num is faster
            a, b = b, a
        results.put_ratio(key, a, b, numerator=num, denominator=den, of=field)
        return
    for kind in (num, den):
        if kind in done.unavailable:
            results.na(key, f"{kind}: {done.unavailable[kind]}")
            return
    results.error(key, "; ".join(f"{k}: {v}" for k, v in done.errors.items()) or "no samples")


def run_fanout(cfg: Config, results: Results) -> None:
    """A room broadcast to 1,000 connections: websockets.broadcast, socker, socker on picows."""
    count = cfg.pick(50, 30)
    cpus = usable_cpus()
    server_cpu, client_cpu = (cpus[-1], cpus[0]) if len(cpus) >= 2 else (None, None)
    raise_nofile(3 * MEMBERS + 512)
    rigs: dict[str, FanoutRig] = {}
    unavailable: dict[str, str] = {}
    errors: dict[str, str] = {}
    try:
        for kind in (RAW, SOCKER, FAST):
            try:
                rigs[kind] = FanoutRig(kind, MEMBERS, server_cpu, client_cpu)
            except Unavailable as exc:
                unavailable[kind] = str(exc)
                log(f"{kind}: n/a ({exc})")
            except Exception as exc:
                errors[kind] = f"{type(exc).__name__}: {exc}"
                log(f"{kind} did not start: {exc}")
        done = interleave(
            {kind: (lambda r, rig=rig: rig.round(count)) for kind, rig in rigs.items()},
            cfg.pick(7, 3),
            budget_s=cfg.pick(60, 30),
            warmup=lambda kind: rigs[kind].round(max(5, count // 10)),
        )
    finally:
        for rig in rigs.values():
            rig.close()
    done.unavailable.update(unavailable)
    done.errors.update(errors)
    detail = {"members": MEMBERS, "broadcasts": count, "payload_bytes": PAYLOAD}
    for kind in (RAW, SOCKER, FAST):
        samples = done.samples.get(kind, [])
        if samples:
            detail[f"{kind}_delivered_of_expected"] = [
                f"{s.delivered}/{s.expected}" for s in samples
            ]
            detail[f"{kind}_server_wait"] = [round(s.server_wait, 3) for s in samples]
            detail[f"{kind}_receivers_cpu"] = [s.receivers_cpu for s in samples]
            detail[f"{kind}_sys_us"] = [round(s.sys_us, 2) for s in samples]
    _put_series(results, "broadcast_fanout_raw_per_s", done, RAW, "per_s", **detail)
    _put_series(results, "broadcast_fanout_per_s", done, SOCKER, "per_s")
    _put_series(results, "broadcast_fanout_fast_per_s", done, FAST, "per_s")
    _put_paired(results, "broadcast_fanout_ratio", done, SOCKER, RAW, "per_s")
    _put_paired(results, "fast_fanout_vs_default", done, FAST, SOCKER, "per_s")
    _put_series(results, "broadcast_fanout_raw_cpu_us", done, RAW, "cpu_us")
    _put_series(results, "broadcast_fanout_cpu_us", done, SOCKER, "cpu_us")
    _put_series(results, "broadcast_fanout_fast_cpu_us", done, FAST, "cpu_us")
    _put_paired(results, "broadcast_fanout_cpu_ratio", done, SOCKER, RAW, "cpu_us", invert=True)
    _put_paired(results, "fast_fanout_cpu_vs_default", done, FAST, SOCKER, "cpu_us", invert=True)


# -- Redis -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A ``redis-server`` on a free loopback port, no persistence; yields its URL."""
    program = shutil.which("redis-server")
    if program is None:
        raise Unavailable("redis-server is not installed (Debian: apt-get install redis-server)")
    if importlib.util.find_spec("redis") is None:
        raise Unavailable("the redis package is missing (pip install 'aiosocker[redis]')")
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        port = _free_port()
        log_path = Path(workdir) / "redis.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [program, "--port", str(port), "--bind", HOST, "--save", "",
                 "--appendonly", "no", "--dir", workdir, "--protected-mode", "yes"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while not _redis_ping(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {log_path.read_text()[-500:]}")
                time.sleep(0.02)
            yield f"redis://{HOST}:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_servers(url: str, mode: str, n: int = 2) -> Iterator[list[ServerProcess]]:
    """``n`` ``redis-socker`` processes on ``url`` (passed in their environment)."""
    before = os.environ.get(REDIS_ENV)
    os.environ[REDIS_ENV] = url
    servers: list[ServerProcess] = []
    try:
        for _ in range(n):
            servers.append(ServerProcess(REDIS_KIND, mode))
    except BaseException:
        for server in servers:
            server.close()
        raise
    finally:
        if before is None:
            os.environ.pop(REDIS_ENV, None)
        else:
            os.environ[REDIS_ENV] = before
    try:
        yield servers
    finally:
        for server in servers:
            server.close()


@dataclass(frozen=True)
class LatencySample:
    remote_p50: float
    remote_p95: float
    local_p50: float
    local_p95: float
    remote: list[float]
    local: list[float]
    in_order_once: bool
    server_wait: float
    """The larger share of the burst either server process waited for a CPU."""


def latency_burst(sender: ServerProcess, other: ServerProcess, count: int) -> LatencySample:
    """A member on each process; ``sender`` broadcasts ``count`` probes, 10 ms apart."""
    local = roomclient.member(sender.port, "local")
    remote = roomclient.member(other.port, "remote")
    try:
        time.sleep(0.05)  # both joins done (a join is local; the subscription is older)
        waits0 = [run_delay(p) for p in (sender.pid, other.pid)]
        t0 = time.perf_counter()
        local.sendall(frame(f"burst:{LATENCY_ROOM}:{count}:10".encode()))
        got = roomclient.read_probes([local, remote], count, timeout=count * 0.01 + 10)
        took = time.perf_counter() - t0
        wait = max(run_delay(p) - w for p, w in zip((sender.pid, other.pid), waits0, strict=True))
    finally:
        local.close()
        remote.close()
    here, there = got
    if there["received"] < count or here["received"] < count:
        raise RuntimeError(
            f"probes lost: local {here['received']}, remote {there['received']} of {count}"
        )
    return LatencySample(
        percentile(there["latency_ms"], 0.50),
        percentile(there["latency_ms"], 0.95),
        percentile(here["latency_ms"], 0.50),
        percentile(here["latency_ms"], 0.95),
        there["latency_ms"],
        here["latency_ms"],
        bool(here["in_order_once"] and there["in_order_once"]),
        wait / took,
    )


@dataclass(frozen=True)
class ResumeSample:
    ms: float
    connect_ms: float
    resume_frame_ms: float
    attempts: list[int]


async def _resume_round(a: ServerProcess, b: ServerProcess, drops: int) -> ResumeSample:
    runs = []
    for i in range(drops):
        first, other = (a, b) if i % 2 == 0 else (b, a)
        sock, token = roomclient.first_session(first.port, f"p{i}")
        dropped = roomclient.drop(sock)
        runs.append(await roomclient.resume(f"ws://{HOST}:{other.port}/", token, dropped))
    return ResumeSample(
        statistics.median(r["ms"] for r in runs),
        statistics.median(r["connect_ms"] for r in runs),
        statistics.median(r["resume_frame_ms"] for r in runs),
        [r["attempts"] for r in runs],
    )


async def _fresh_round(server: ServerProcess, runs: int) -> float:
    url = f"ws://{HOST}:{server.port}/"
    return statistics.median([await roomclient.fresh(url, f"f{i}") for i in range(runs)])


def _pubsub_round(url: str, publisher: Child, probes: int) -> list[float]:
    """The floor: ``probes`` stamped messages published by redis-py in another process,
    received by a redis-py subscription here."""
    lat = asyncio.run(
        redis_pub.subscribe_probes(
            url,
            PUBSUB_CHANNEL,
            probes,
            lambda: publisher.send(f"GO {probes} 10"),
            within=probes * 0.01 + 10,
        )
    )
    publisher.expect("DONE", 10)
    if len(lat) < probes:
        raise RuntimeError(f"redis-py: {len(lat)} of {probes} probes arrived")
    return lat


def _put_latency(results: Results, done: Interleaved, probes: int) -> None:
    samples = done.samples["a->b"] + done.samples["b->a"]
    if not samples:
        why = "; ".join(f"{k}: {v}" for k, v in {**done.errors, **done.unavailable}.items())
        for key in ("redis_broadcast_p50_ms", "redis_broadcast_p95_ms"):
            results.error(key, why or "no samples")
        return
    remote = [x for s in samples for x in s.remote]
    local = [x for s in samples for x in s.local]
    results.put_samples(
        "redis_broadcast_p50_ms",
        [s.remote_p50 for s in samples],
        pooled=round(percentile(remote, 0.50), 3),
        probes_per_burst=probes,
        interval_ms=10,
        bursts=len(samples),
        in_order_once=all(s.in_order_once for s in samples),
        server_wait=[round(s.server_wait, 3) for s in samples],
    )
    results.put_samples(
        "redis_broadcast_p95_ms",
        [s.remote_p95 for s in samples],
        pooled=round(percentile(remote, 0.95), 3),
        pooled_p99=round(percentile(remote, 0.99), 3),
        pooled_max=round(max(remote), 3),
    )
    results.put_samples(
        "redis_broadcast_local_p50_ms",
        [s.local_p50 for s in samples],
        pooled=round(percentile(local, 0.50), 3),
    )
    results.put_samples(
        "redis_broadcast_local_p95_ms",
        [s.local_p95 for s in samples],
        pooled=round(percentile(local, 0.95), 3),
    )
    raw: list[list[float]] = done.samples.get("redis-py", [])
    if not raw:
        for key in ("redis_pubsub_p50_ms", "redis_pubsub_p95_ms", "redis_broadcast_vs_pubsub"):
            results.error(key, done.errors.get("redis-py", "no samples"))
        return
    pooled = [x for lat in raw for x in lat]
    results.put_samples(
        "redis_pubsub_p50_ms",
        [percentile(lat, 0.50) for lat in raw],
        pooled=round(percentile(pooled, 0.50), 3),
    )
    results.put_samples(
        "redis_pubsub_p95_ms",
        [percentile(lat, 0.95) for lat in raw],
        pooled=round(percentile(pooled, 0.95), 3),
    )
    socker: list[float] = []
    floor: list[float] = []
    for name in ("a->b", "b->a"):  # paired with the redis-py burst of the same round
        for sample, lat in zip(done.samples[name], raw, strict=False):
            socker.append(sample.remote_p50)
            floor.append(percentile(lat, 0.50))
    results.put_ratio("redis_broadcast_vs_pubsub", socker, floor, of="p50")


def _put_resume(results: Results, done: Interleaved, drops: int) -> None:
    res: list[ResumeSample] = done.samples["resume"]
    fresh: list[float] = done.samples["fresh"]
    if res:
        results.put_samples(
            "resume_ms",
            [s.ms for s in res],
            drops_per_round=drops,
            reconnected_ms=round(statistics.median(s.connect_ms for s in res), 3),
            resume_frame_ms=round(statistics.median(s.resume_frame_ms for s in res), 3),
            attempts=[a for s in res for a in s.attempts],
        )
    else:
        results.error("resume_ms", done.errors.get("resume", "no samples"))
    if fresh:
        results.put_samples("resume_fresh_ms", fresh, runs_per_round=drops)
    else:
        results.error("resume_fresh_ms", done.errors.get("fresh", "no samples"))
    if res and fresh:
        results.put_ratio("resume_vs_fresh", [s.ms for s in res], fresh)


def run_redis(cfg: Config, results: Results) -> None:
    """Two server processes on one loopback Redis: broadcast latency (and redis-py's own
    publish -> subscription between two processes), then resume."""
    probes = cfg.pick(100, 50)
    rounds = cfg.pick(7, 3)
    drops = cfg.pick(6, 4)
    with redis_server() as url:
        publisher = Child(
            ["-m", "bench.clients.redis_pub", "--url", url, "--channel", PUBSUB_CHANNEL],
            "redis-py publisher",
        )
        try:
            publisher.expect("READY", 10)
            with redis_servers(url, "latency") as (a, b):
                done = interleave(
                    {
                        "a->b": lambda r: latency_burst(a, b, probes),
                        "b->a": lambda r: latency_burst(b, a, probes),
                        "redis-py": lambda r: _pubsub_round(url, publisher, probes),
                    },
                    rounds,
                    budget_s=cfg.pick(60, 20),
                    # each direction warms its own sender and receiver
                    warmup=lambda name: (
                        _pubsub_round(url, publisher, 20)
                        if name == "redis-py"
                        else latency_burst(*((a, b) if name == "a->b" else (b, a)), 20)
                    ),
                )
        finally:
            publisher.close()
        _put_latency(results, done, probes)
        with redis_servers(url, "resume") as (a, b):
            done = interleave(
                {
                    "resume": lambda r: asyncio.run(_resume_round(a, b, drops)),
                    "fresh": lambda r: asyncio.run(_fresh_round(b if r % 2 else a, drops)),
                },
                rounds,
                budget_s=cfg.pick(60, 20),
                warmup=lambda name: (
                    asyncio.run(_resume_round(a, b, 2))
                    if name == "resume"
                    else [asyncio.run(_fresh_round(s, 2)) for s in (a, b)]  # rounds alternate
                ),
            )
        _put_resume(results, done, drops)
