"""``python -m bench [--quick] [--only NAME[,NAME]] [--json PATH] [--no-plot]``.

Runs the benchmark groups (socker and the raw library underneath, interleaved), prints a
table on stdout (progress goes to stderr), writes the JSON and, when matplotlib is
installed, a PNG of the ratios beside it. See ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .figures import dispatch, limits, metrics, network, players, rooms, rtc, ws
from .runner import (
    DEFAULT_JSON,
    Config,
    Group,
    Results,
    plot,
    run_groups,
    select_groups,
    table,
    write_json,
)

GROUPS: tuple[Group, ...] = (
    Group("dispatch", dispatch.run, "stage machine dispatch vs an inline call (in process)"),
    Group("ws_stream", ws.run_stream, "one-way 64 B stream: websockets, socker, tick, picows"),
    Group("ws_stream_4k", ws.run_stream_4k, "one-way 4 KiB stream: websockets vs socker"),
    Group("ws_echo", ws.run_echo, "64 B echo round trips, client and server on one CPU"),
    Group("conn_mem", ws.run_conn_mem, "server memory per idle connection"),
    Group("rtc_open", rtc.run_open, "WebSocket connect -> DataChannel open"),
    Group("rtc_cold", rtc.run_cold, "a fresh rtc server's first open against its warm opens"),
    Group("rtc_concurrent", rtc.run_concurrent, "rtc opens started together"),
    Group("rtc_crowd", rtc.run_crowd, "rtc opens per second, 200 clients from 4 processes"),
    Group("dc", rtc.run_dc, "100 B messages/s one way on an unreliable DataChannel"),
    Group("players", players.run, "players per core: socker vs python-socketio, a 20 Hz game"),
    Group("network", network.run, "real networks (root): behind a NAT, through TURN, under loss"),
    Group("fanout", rooms.run_fanout, "a room broadcast to 1,000 connections, one process"),
    Group("redis", rooms.run_redis, "two processes on Redis: broadcast latency, resume"),
    Group("flood", limits.run_flood, "five clients' echo p99 while a sixth floods, rate= on/off"),
    Group("metrics", metrics.run_metrics, "ws_stream with metrics=True against without"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="aiosocker's benchmarks against the raw transports."
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller runs")
    parser.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        help="groups ("
        + ", ".join(group.name for group in GROUPS)
        + "), JSON keys, or aliases: ws, rtc, tick, fast, echo, mem, socketio, turn, rooms",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file")
    parser.add_argument("--no-plot", action="store_true", help="don't write the PNG")
    args = parser.parse_args(argv)
    cfg = Config(quick=args.quick, json_path=args.json, plot=not args.no_plot)
    groups = select_groups(GROUPS, args.only)

    start = time.monotonic()
    results = Results()
    took = run_groups(cfg, groups, results)
    doc = write_json(cfg, results, took)
    print()
    print(table(doc, doc["status"], doc["details"]))
    print()
    elapsed = time.monotonic() - start
    load = doc["meta"]["loadavg_start"]
    print(
        f"{'quick ' if cfg.quick else ''}run: {elapsed:.0f} s; results in {cfg.json_path}"
        f" (load average at start: {load[0]:.1f} on {doc['meta']['cpus']} CPUs)"
    )
    if cfg.plot:
        print(plot(doc, cfg.json_path.with_suffix(".png")))
        if any(group.name == "players" for group in groups):
            print(players.plot(doc, players.plot_path(cfg.json_path)))
    return 1 if "error" in results.status.values() else 0


if __name__ == "__main__":
    sys.exit(main())
