"""WebSocket figures: one-way streams, echo round trips, memory per idle connection.

Every server under test is a ``python -m bench.servers`` subprocess (see
:mod:`bench.servers` for the kinds); the client is :mod:`bench.clients.ws` in this process.
A server kind that cannot run yet (``aiosocker.serve`` missing) answers ``NA`` and its
figures come out ``n/a``; the raw baselines are measured regardless.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..clients import ws as wsclient
from ..procs import ServerProcess, pinned, raise_nofile, settled_rss_kib, usable_cpus
from ..runner import Config, Interleaved, Results, Unavailable, interleave, log

RAW = "raw-websockets"
SOCKER = "aiosocker"
TICK = "socker-tick"
RAW_FAST = "raw-picows"
SOCKER_FAST = "socker-picows"


@dataclass(frozen=True)
class StreamSample:
    msgs_per_s: float
    """Server side: messages / (wall time from its first message to its n-th)."""
    cpu_us: float
    """Server CPU (utime + stime from /proc) per message, handshake included."""
    cpu_us_inproc: float
    """The server's own process CPU time over the same span as msgs_per_s."""
    faults_per_msg: float = 0.0
    """The server's minor page faults per message (/proc): memory the allocator handed
    back to the kernel and took again (see ws_stream_4k in docs/performance.md)."""


@dataclass(frozen=True)
class EchoSample:
    rtt_per_s: float
    cpu_us: float


# -- measurements ----------------------------------------------------------------------


def stream_once(server: ServerProcess, payload_size: int, n: int, timeout: float) -> StreamSample:
    """One connection, ``n`` one-way messages of ``payload_size`` bytes, as fast as the
    server takes them."""
    cpu0 = server.cpu_seconds()
    faults0 = minor_faults(server.pid)
    sock = wsclient.stream(server.port, payload_size, n, timeout=timeout)
    try:
        count, wall_ns, cpu_ns = (int(x) for x in server.expect("DONE", timeout))
        cpu1 = server.cpu_seconds()
        faults1 = minor_faults(server.pid)
    finally:
        wsclient.goodbye(sock)
    if count != n:
        raise RuntimeError(f"{server.kind} counted {count} of {n}")
    return StreamSample(
        n / (wall_ns / 1e9), (cpu1 - cpu0) * 1e6 / n, cpu_ns / 1e3 / n, (faults1 - faults0) / n
    )


def minor_faults(pid: int) -> int:
    """minflt of ``pid`` from ``/proc/<pid>/stat``: pages it touched for the first time
    (fresh memory from the kernel)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return int(data[data.rindex(")") + 2 :].split()[7])  # field 10, minflt


def echo_once(server: ServerProcess, payload_size: int, n: int, timeout: float) -> EchoSample:
    """``n`` request/response round trips on one connection, one at a time."""
    cpu0 = server.cpu_seconds()
    elapsed = wsclient.echo(server.port, payload_size, n, timeout=timeout)
    cpu1 = server.cpu_seconds()
    return EchoSample(n / elapsed, (cpu1 - cpu0) * 1e6 / n)


def conn_mem_once(kind: str, count: int, warm: int = 10) -> dict[str, float]:
    """A fresh server; ``warm`` connections, then ``count`` more: RSS growth per connection."""
    server = ServerProcess(kind, "idle", nofile=count + warm + 256)
    socks = []
    try:
        socks += wsclient.open_idle(server.port, warm)
        before = settled_rss_kib(server.pid)
        socks += wsclient.open_idle(server.port, count)
        after = settled_rss_kib(server.pid)
    finally:
        server.kill()  # first: so the server never sees 2,000 connections drop
        for sock in socks:
            sock.close()
    return {"kib": (after - before) / count, "rss_before_kib": before, "rss_after_kib": after}


# -- plumbing --------------------------------------------------------------------------


Variant = tuple[str, str]
"""A server to measure: (kind, mode) of ``python -m bench.servers``."""


def _start(
    variants: Mapping[str, Variant], *, cpu: int | None
) -> tuple[dict[str, ServerProcess], dict[str, str], dict[str, str]]:
    servers: dict[str, ServerProcess] = {}
    unavailable: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, (kind, mode) in variants.items():
        try:
            servers[name] = ServerProcess(kind, mode, cpu=cpu)
        except Unavailable as exc:
            unavailable[name] = str(exc)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name} server did not start: {exc}")
    for name, why in unavailable.items():
        log(f"{name}: n/a ({why})")
    return servers, unavailable, errors


def _run_servers(
    variants: Iterable[str] | Mapping[str, Variant],
    mode: str,
    measure: Callable[[ServerProcess], Any],
    warm: Callable[[ServerProcess], Any] | None,
    *,
    rounds: int,
    budget_s: float,
    server_cpu: int | None,
    client_cpu: int | None,
) -> Interleaved:
    """Start one server per variant (a kind, in ``mode``; or a name: (kind, mode)), then
    interleave ``measure`` over them for ``rounds``."""
    if not isinstance(variants, Mapping):
        variants = {kind: (kind, mode) for kind in variants}
    servers, unavailable, errors = _start(variants, cpu=server_cpu)
    try:
        with pinned(client_cpu):
            runs = {name: _per_round(measure, server) for name, server in servers.items()}
            warmup = None if warm is None else (lambda name: warm(servers[name]))
            done = interleave(runs, rounds, budget_s=budget_s, warmup=warmup)
    finally:
        for server in servers.values():
            server.close()
    done.unavailable.update(unavailable)
    done.errors.update(errors)
    for name in variants:
        done.samples.setdefault(name, [])
    return done


def _per_round(
    measure: Callable[[ServerProcess], Any], server: ServerProcess
) -> Callable[[int], Any]:
    return lambda r: measure(server)


def _missing(done: Interleaved, kinds: Iterable[str]) -> tuple[str, str]:
    """Status and reason for a figure that needs ``kinds`` when one has no samples."""
    for kind in kinds:
        if kind in done.errors:
            return "error", f"{kind}: {done.errors[kind]}"
    for kind in kinds:
        if kind in done.unavailable:
            return "n/a", f"{kind}: {done.unavailable[kind]}"
    return "error", "no samples"


def _put(
    results: Results, key: str, done: Interleaved, kind: str, field: str, **detail: Any
) -> None:
    values = [getattr(sample, field) for sample in done.samples[kind]]
    if values and field == "cpu_us" and hasattr(done.samples[kind][0], "cpu_us_inproc"):
        inproc = [sample.cpu_us_inproc for sample in done.samples[kind]]
        detail["cpu_us_inproc_median"] = round(statistics.median(inproc), 3)
        faults = [sample.faults_per_msg for sample in done.samples[kind]]
        detail["page_faults_per_msg"] = [round(x, 3) for x in faults]
    if values:
        results.put_samples(key, values, server=kind, rounds=done.rounds, **detail)
    else:
        status, why = _missing(done, [kind])
        (results.na if status == "n/a" else results.error)(key, why)


def _put_ratio(
    results: Results, key: str, done: Interleaved, num: str, den: str, field: str
) -> None:
    a = [getattr(sample, field) for sample in done.samples[num]]
    b = [getattr(sample, field) for sample in done.samples[den]]
    if a and b:
        results.put_ratio(key, a, b, numerator=num, denominator=den)
    else:
        status, why = _missing(done, [num, den])
        (results.na if status == "n/a" else results.error)(key, why)


def _split_cpus() -> tuple[int | None, int | None]:
    """(server CPU, client CPU): apart when there are two or more."""
    cpus = usable_cpus()
    return (cpus[-1], cpus[0]) if len(cpus) >= 2 else (None, None)


def _note_failures(done: Interleaved) -> None:
    for kind, why in done.errors.items():
        log(f"{kind}: error: {why}")


# -- groups ----------------------------------------------------------------------------


SOCKER_ASYNC = "aiosocker-async-handler"
"""The ws_stream variant with an ``async def`` counting stage: kind ``aiosocker``, mode
``stream-async``."""


def run_stream(cfg: Config, results: Results) -> None:
    """64 B one-way: websockets and socker (async and tick drive, and an async handler),
    picows and socker on it."""
    n_ws = cfg.pick(100_000, 30_000)
    n_fast = cfg.pick(1_000_000, 300_000)
    variants: Mapping[str, Variant] = {
        RAW: (RAW, "stream"),
        SOCKER: (SOCKER, "stream"),
        SOCKER_ASYNC: (SOCKER, "stream-async"),
        TICK: (TICK, "stream"),
        RAW_FAST: (RAW_FAST, "stream"),
        SOCKER_FAST: (SOCKER_FAST, "stream"),
    }
    counts = {RAW_FAST: n_fast, SOCKER_FAST: n_fast}  # by kind; n_ws for the others
    server_cpu, client_cpu = _split_cpus()

    def measure(server: ServerProcess) -> StreamSample:
        return stream_once(server, 64, counts.get(server.kind, n_ws), timeout=60)

    def warm(server: ServerProcess) -> StreamSample:
        return stream_once(server, 64, counts.get(server.kind, n_ws) // 10, timeout=60)

    done = _run_servers(
        variants,
        "stream",
        measure,
        warm,
        rounds=cfg.pick(7, 4),
        budget_s=cfg.pick(220, 45),
        server_cpu=server_cpu,
        client_cpu=client_cpu,
    )
    _note_failures(done)
    detail = {"payload_bytes": 64}
    _put(results, "ws_stream_raw_msgs_per_s", done, RAW, "msgs_per_s", messages=n_ws, **detail)
    _put(results, "ws_stream_socker_msgs_per_s", done, SOCKER, "msgs_per_s", **detail)
    _put_ratio(results, "ws_stream_ratio", done, SOCKER, RAW, "msgs_per_s")
    _put(results, "ws_stream_raw_cpu_us", done, RAW, "cpu_us")
    _put(results, "ws_stream_socker_cpu_us", done, SOCKER, "cpu_us")
    _put(
        results,
        "ws_stream_async_msgs_per_s",
        done,
        SOCKER_ASYNC,
        "msgs_per_s",
        handler="async def counting stage",
        **detail,
    )
    _put(results, "ws_stream_async_cpu_us", done, SOCKER_ASYNC, "cpu_us")
    _put_ratio(results, "ws_stream_async_ratio", done, SOCKER_ASYNC, RAW, "msgs_per_s")
    _put(results, "tick_msgs_per_s", done, TICK, "msgs_per_s", **detail)
    _put(results, "tick_cpu_us", done, TICK, "cpu_us")
    _put_ratio(results, "tick_ratio", done, TICK, SOCKER, "msgs_per_s")
    _put(results, "fast_raw_msgs_per_s", done, RAW_FAST, "msgs_per_s", messages=n_fast, **detail)
    _put(results, "fast_socker_msgs_per_s", done, SOCKER_FAST, "msgs_per_s", **detail)
    _put(results, "fast_raw_cpu_us", done, RAW_FAST, "cpu_us")
    _put(results, "fast_socker_cpu_us", done, SOCKER_FAST, "cpu_us")
    _put_ratio(results, "fast_stream_ratio", done, SOCKER_FAST, RAW_FAST, "msgs_per_s")
    _put_ratio(results, "fast_vs_default", done, SOCKER_FAST, SOCKER, "msgs_per_s")


def run_stream_4k(cfg: Config, results: Results) -> None:
    """4 KiB one-way: websockets against socker."""
    n = cfg.pick(50_000, 15_000)
    server_cpu, client_cpu = _split_cpus()
    done = _run_servers(
        (RAW, SOCKER),
        "stream",
        partial(_stream_measure, 4096, n),
        partial(_stream_measure, 4096, n // 10),
        rounds=cfg.pick(7, 3),
        budget_s=cfg.pick(90, 15),
        server_cpu=server_cpu,
        client_cpu=client_cpu,
    )
    _note_failures(done)
    detail = {"payload_bytes": 4096, "messages": n}
    _put(results, "ws_stream_4k_raw_msgs_per_s", done, RAW, "msgs_per_s", **detail)
    _put(results, "ws_stream_4k_socker_msgs_per_s", done, SOCKER, "msgs_per_s", **detail)
    _put_ratio(results, "ws_stream_4k_ratio", done, SOCKER, RAW, "msgs_per_s")
    _put(results, "ws_stream_4k_raw_cpu_us", done, RAW, "cpu_us")
    _put(results, "ws_stream_4k_socker_cpu_us", done, SOCKER, "cpu_us")


def _stream_measure(payload_size: int, n: int, server: ServerProcess) -> StreamSample:
    return stream_once(server, payload_size, n, timeout=60)


def run_echo(cfg: Config, results: Results) -> None:
    """64 B request/response round trips; client and server pinned to one CPU."""
    n = cfg.pick(10_000, 3_000)
    cpu = usable_cpus()[-1]
    done = _run_servers(
        (RAW, SOCKER),
        "echo",
        lambda server: echo_once(server, 64, n, timeout=60),
        lambda server: echo_once(server, 64, n // 10, timeout=60),
        rounds=cfg.pick(7, 3),
        budget_s=cfg.pick(90, 15),
        server_cpu=cpu,
        client_cpu=cpu,
    )
    _note_failures(done)
    detail = {"payload_bytes": 64, "round_trips": n, "cpu": cpu}
    _put(results, "ws_echo_raw_rtt_per_s", done, RAW, "rtt_per_s", **detail)
    _put(results, "ws_echo_socker_rtt_per_s", done, SOCKER, "rtt_per_s", **detail)
    _put_ratio(results, "ws_echo_ratio", done, SOCKER, RAW, "rtt_per_s")
    _put(results, "ws_echo_raw_cpu_us", done, RAW, "cpu_us")
    _put(results, "ws_echo_socker_cpu_us", done, SOCKER, "cpu_us")


@dataclass(frozen=True)
class MemSample:
    kib: float
    rss_before_kib: float
    rss_after_kib: float


def run_conn_mem(cfg: Config, results: Results) -> None:
    """RSS growth per idle connection at 2,000 connections, a fresh server each round."""
    count = cfg.pick(2000, 500)
    raise_nofile(count + 1024)

    def measure(kind: str, r: int) -> MemSample:
        return MemSample(**conn_mem_once(kind, count))

    done = interleave(
        {RAW: partial(measure, RAW), SOCKER: partial(measure, SOCKER)},
        cfg.pick(7, 3),
        budget_s=cfg.pick(150, 25),
    )
    for kind in (RAW, SOCKER):
        done.samples.setdefault(kind, [])
    _note_failures(done)
    results.put("conn_mem_connections", count)
    _put(results, "conn_mem_raw_kib", done, RAW, "kib", connections=count)
    _put(results, "conn_mem_kib", done, SOCKER, "kib", connections=count)
    _put_ratio(results, "conn_mem_ratio", done, SOCKER, RAW, "kib")
