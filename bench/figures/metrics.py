"""``metrics_overhead`` (issue 12): the ``ws_stream`` scenario (one connection, 64 B
messages one way; :func:`bench.figures.ws.stream_once`) on the ``aiosocker`` kind and on
``socker-metrics`` (the same server with ``serve(..., metrics=True)``), interleaved in
the same rounds, the servers on the last CPU and the client on the first.

``metrics_overhead`` = msgs/s without metrics / msgs/s with them (per round, then the
median): above 1 means slower with metrics (1.05: 5% fewer messages per second).
``metrics_overhead_cpu`` = server CPU per message with / without (the same direction;
the server's own process time over the stream, not ``/proc``'s 10 ms ticks).
"""

from __future__ import annotations

from ..procs import ServerProcess, pinned, usable_cpus
from ..runner import Config, Results, Unavailable, interleave, log
from .ws import StreamSample, stream_once

OFF = "aiosocker"
ON = "socker-metrics"


def run_metrics(cfg: Config, results: Results) -> None:
    n = cfg.pick(150_000, 50_000)
    cpus = usable_cpus()
    server_cpu, client_cpu = (cpus[-1], cpus[0]) if len(cpus) >= 2 else (None, None)
    servers: dict[str, ServerProcess] = {}
    try:
        for kind in (OFF, ON):
            try:
                servers[kind] = ServerProcess(kind, "stream", cpu=server_cpu)
            except Unavailable as exc:
                for key in ("metrics_overhead", "metrics_overhead_cpu"):
                    results.na(key, f"{kind}: {exc}")
                return
        with pinned(client_cpu):
            done = interleave(
                {
                    kind: (lambda r, s=server: stream_once(s, 64, n, timeout=60))
                    for kind, server in servers.items()
                },
                cfg.pick(9, 4),
                budget_s=cfg.pick(60, 15),
                warmup=lambda kind: stream_once(servers[kind], 64, n // 10, timeout=60),
            )
    finally:
        for server in servers.values():
            server.close()
    for kind, why in done.errors.items():
        log(f"{kind}: error: {why}")
    off: list[StreamSample] = done.samples.get(OFF, [])
    on: list[StreamSample] = done.samples.get(ON, [])
    if not (off and on):
        why = "; ".join(f"{k}: {v}" for k, v in done.errors.items()) or "no samples"
        for key in ("metrics_overhead", "metrics_overhead_cpu"):
            results.error(key, why)
        return
    detail = {"payload_bytes": 64, "messages": n}
    results.put_samples("metrics_off_msgs_per_s", [s.msgs_per_s for s in off], **detail)
    results.put_samples("metrics_on_msgs_per_s", [s.msgs_per_s for s in on], **detail)
    # CPU: the server's own process time from its first message to the n-th (ns
    # resolution; /proc's 10 ms ticks are too coarse for a 5% question).
    results.put_samples("metrics_off_cpu_us", [s.cpu_us_inproc for s in off])
    results.put_samples("metrics_on_cpu_us", [s.cpu_us_inproc for s in on])
    results.put_ratio(
        "metrics_overhead",
        [s.msgs_per_s for s in off],
        [s.msgs_per_s for s in on],
        meaning="msgs/s without metrics / with: > 1 is slower with metrics",
    )
    results.put_ratio(
        "metrics_overhead_cpu",
        [s.cpu_us_inproc for s in on],
        [s.cpu_us_inproc for s in off],
        meaning="server CPU per message with metrics / without: > 1 costs more",
    )
