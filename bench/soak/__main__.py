"""``python -m bench.soak [--short] [--transport T] [--json PATH]``: run the soak, print a
table, write JSON, exit 1 if a check failed.

1. Start the server (:mod:`bench.soak.server`) in its own process; read its baseline
   (``STATS``: tasks, fds, UDP sockets, peer connections) and its settled RSS.
2. Start the client processes (:mod:`bench.soak.clients`): the WebSocket clients, the
   rtc clients and the hostile ones, for the plan's duration; sample the server's RSS
   from ``/proc`` meanwhile (:mod:`bench.procs`).
3. Once every client process has reported, wait (bounded) for the server to have no
   connection and no open peer connection, then read its ``STATS`` (the closes its
   ``on_close`` hook saw, the resources it holds) and its settled RSS; then ``TRIM``.
4. Check: every well-behaved session got all its echoes, in order, and the server got
   every message in order; every hostile client got its close code; tasks, fds, UDP
   sockets and peer connections are back to the baseline; the RSS at the end is within
   :data:`RSS_END_FACTOR` times the start.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..procs import ServerProcess, raise_nofile, rss_kib, settled_rss_kib
from ..runner import ROOT
from .clients import GRACE, STEP
from .common import (
    ABRUPT_RTC,
    ABRUPT_WS,
    HOSTILE,
    PLANS,
    SLOWLORIS_LIMIT,
    WELL_RTC,
    WELL_WS,
    Plan,
    percentile,
)

DEFAULT_JSON = ROOT / "bench" / "soak" / "results.json"
"""Where ``make soak`` (the full plan) writes its JSON; ``--short`` writes only with
``--json``."""
RSS_END_FACTOR = 2.0
"""The server's RSS at the end (settled, before ``malloc_trim``) must stay below this
many times its RSS at the start (aiortc imported, no connection yet): the allocator keeps
some of the peak, a leak would keep growing."""
DRAIN_LIMIT = 30.0
"""Seconds the server gets, once the clients are done, to hold no connection."""
SAMPLE_EVERY = 0.2
"""Seconds between RSS samples of the server during the run."""


def log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


class SoakServer(ServerProcess):
    """``python -m bench.soak.server``: a :class:`~bench.procs.ServerProcess` (its line
    reader, ``/proc`` readings and shutdown) on the soak's own server module."""

    def __init__(self, transport: str, lifetime: float, start_timeout: float = 30.0) -> None:
        self.kind = "soak"
        self.mode = transport
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in _release)
        args = [sys.executable, "-m", "bench.soak.server", "--transport", transport]
        args += ["--lifetime", str(lifetime)]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self.pid = self.proc.pid
        self._buf = b""
        try:
            self.port = int(self.expect("PORT", start_timeout)[0])
        except BaseException:
            self.kill()
            raise

    def ask(self, command: str, timeout: float = 30.0) -> dict[str, Any]:
        """Send ``STATS`` or ``TRIM``; the server's answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        head, _, body = self.readline(timeout).partition(" ")
        if head != "STATS":
            raise RuntimeError(f"soak server answered {head} {body[:200]}")
        answer: dict[str, Any] = json.loads(body)
        return answer


class Clients:
    """One client process: ``python -m bench.soak.clients ROLE ...``."""

    def __init__(self, role: str, port: int, plan: Plan, clients: int, seed: int) -> None:
        self.role = role
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in result)
        args = [sys.executable, "-m", "bench.soak.clients", role, "--port", str(port)]
        args += ["--clients", str(clients), "--seed", str(seed)]
        args += ["--plan", json.dumps(plan.to_json())]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def result(self, timeout: float) -> dict[str, Any]:
        """Its ``RESULT`` line (killed if it takes longer than ``timeout``)."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace")[-2000:]
        self._stderr.close()
        for line in out.decode(errors="replace").splitlines():
            if line.startswith("RESULT "):
                result: dict[str, Any] = json.loads(line[7:])
                return result
        raise RuntimeError(f"{self.role} clients exited ({self.proc.returncode}): {err}")


def split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, max(1, parts))
    return [base + (1 if i < extra else 0) for i in range(max(1, parts))]


def run(plan: Plan, transport: str, seed: int) -> dict[str, Any]:
    """One soak run; everything the report and the checks need."""
    t_start = time.monotonic()
    lifetime = plan.duration + GRACE + 8 * STEP + DRAIN_LIMIT + 60
    server = SoakServer(transport, lifetime)
    with server:
        baseline = server.ask("STATS")
        rss_start = settled_rss_kib(server.pid)
        log(f"server pid {server.pid} on port {server.port}; RSS {rss_start / 1024:.0f} MiB")
        procs = [Clients("hostile", server.port, plan, 0, seed)]
        for i, n in enumerate(split(plan.ws_clients, plan.ws_procs)):
            procs.append(Clients("ws", server.port, plan, n, seed * 1000 + 1 + i))
        for i, n in enumerate(split(plan.rtc_clients, plan.rtc_procs)):
            procs.append(Clients("rtc", server.port, plan, n, seed * 1000 + 101 + i))
        t0 = time.monotonic()
        samples: list[tuple[float, int]] = []
        rss_peak = rss_start
        limit = t0 + plan.duration + GRACE + 4 * STEP
        while any(p.running() for p in procs) and time.monotonic() < limit:
            rss = rss_kib(server.pid)
            rss_peak = max(rss_peak, rss)
            samples.append((round(time.monotonic() - t0, 1), rss))
            time.sleep(SAMPLE_EVERY)
        results = [p.result(timeout=max(1.0, limit - time.monotonic())) for p in procs]
        clients_s = time.monotonic() - t0
        log(f"clients done after {clients_s:.1f} s")
        drain_limit = time.monotonic() + DRAIN_LIMIT
        while True:
            end = server.ask("STATS")
            quiet = not end["connections"] and not end["peer_connections"]
            if (quiet and end["tasks"] <= baseline["tasks"]) or time.monotonic() > drain_limit:
                break
            time.sleep(0.5)
        rss_end = settled_rss_kib(server.pid)
        end = server.ask("STATS")
        trimmed = server.ask("TRIM")
        rss_trimmed = settled_rss_kib(server.pid)
    halfway = [r for t, r in samples if t <= plan.duration / 2]
    return {
        "plan": plan.to_json(),
        "transport": transport,
        "seed": seed,
        "seconds": {
            "clients": round(clients_s, 1),
            "total": round(time.monotonic() - t_start, 1),
        },
        "baseline": baseline,
        "end": end,
        "rss_kib": {
            "start": rss_start,
            "peak": max(rss_peak, end["hwm_kib"]),
            "end": rss_end,
            "after_trim": rss_trimmed,
            "second_half": rss_end - (halfway[-1] if halfway else rss_start),
            "samples": samples[:: max(1, int(1 / SAMPLE_EVERY))],
        },
        "trimmed": {"rss_kib": trimmed["rss_kib"]},
        "clients": results,
    }


# -- what the run says -----------------------------------------------------------------


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    """Totals per role, percentiles, and the checks."""
    by_role: dict[str, dict[str, Any]] = {}
    hostile: list[dict[str, Any]] = []
    for r in run["clients"]:
        if r["role"] == "hostile":
            hostile += r["hostile"]
            continue
        agg = by_role.setdefault(
            r["role"],
            {
                "sessions": Counter(),
                "abrupt_at": Counter(),
                "closed_with": Counter(),
                "errors": Counter(),
                "bad": [],
                "open_ms": [],
                "chain_ms": [],
                "rtc_ms": [],
                **dict.fromkeys(
                    ("sent", "received", "in_order", "bad_count", "dc_sent", "dc_received"), 0
                ),
            },
        )
        for key in ("sessions", "abrupt_at", "closed_with", "errors"):
            agg[key].update(r[key])
        for key in ("sent", "received", "in_order", "bad_count", "dc_sent", "dc_received"):
            agg[key] += r[key]
        for key in ("open_ms", "chain_ms", "rtc_ms", "bad"):
            agg[key] += r[key]
    latency = {}
    for role, agg in by_role.items():
        for key in ("open_ms", "chain_ms", "rtc_ms"):
            values = agg.pop(key)
            if values:
                latency[f"{role}_{key}"] = {
                    "n": len(values),
                    "p50": percentile(values, 50),
                    "p95": percentile(values, 95),
                    "max": max(values),
                }
        for key in ("sessions", "abrupt_at", "closed_with", "errors"):
            agg[key] = dict(agg[key])
    checks = check(run, by_role, hostile)
    return {"roles": by_role, "latency_ms": latency, "hostile": hostile, "checks": checks}


def check(
    run: dict[str, Any], roles: dict[str, dict[str, Any]], hostile: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    end, base = run["end"], run["baseline"]
    by_tag = end["closes_by_tag"]
    played = end["played"]
    out: dict[str, dict[str, Any]] = {}

    def add(name: str, ok: bool, detail: str) -> None:
        out[name] = {"ok": bool(ok), "detail": detail}

    rounds = run["plan"]["hostile_rounds"]
    for role, well_tag in (("ws", WELL_WS), ("rtc", WELL_RTC)):
        agg = roles.get(role)
        if agg is None:
            add(f"{role}: reliable", False, "no result")
            continue
        well = agg["sessions"].get("well", 0)
        add(
            f"{role}: reliable, in order",
            well > 0
            and agg["bad_count"] == 0
            and agg["in_order"] == well
            and agg["sent"] == agg["received"],
            f"{well} well-behaved sessions, {agg['in_order']} with every echo in order; "
            f"sent {agg['sent']}, echoed back {agg['received']}; {agg['bad_count']} failed",
        )
        add(
            f"{role}: server got all, in order",
            played.get(well_tag, 0) == agg["sent"] and not end["out_of_order"].get(well_tag),
            f"server received {played.get(well_tag, 0)} in order of {agg['sent']} sent, "
            f"{end['out_of_order'].get(well_tag, 0)} out of order",
        )
        add(
            f"{role}: closes 1000",
            by_tag.get(well_tag, {}) == {"1000": well},
            f"server on_close for {well_tag}: {by_tag.get(well_tag, {})}",
        )
    for tag in (ABRUPT_WS, ABRUPT_RTC):
        codes = by_tag.get(tag, {})
        add(f"{tag}: 1006", set(codes) <= {"1006"}, f"server on_close: {codes}")
    for tag, (code, _) in HOSTILE.items():
        if code is None:
            continue
        got = by_tag.get(tag, {})
        add(f"hostile {tag}: {code}", got == {str(code): rounds}, f"server on_close: {got}")
    loris = [h for h in hostile if h.get("who") == "slowloris"]
    add(
        "hostile slowloris: dropped",
        len(loris) == rounds
        and all(h["dropped"] and h["seconds"] <= SLOWLORIS_LIMIT for h in loris)
        and "slowloris" not in by_tag,
        f"dropped after {[h.get('seconds') for h in loris]} s (limit {SLOWLORIS_LIMIT:g})",
    )
    errors = [h for h in hostile if "error" in h]
    add("hostile clients ran", not errors, f"{len(hostile)} runs, errors: {errors[:3]}")
    for key in ("connections", "tasks", "fds", "udp_sockets", "peer_connections"):
        add(
            f"{key} back to baseline",
            end[key] == base[key],
            f"baseline {base[key]}, end {end[key]}, peak {end.get('peak_' + key, '-')}",
        )
    rss = run["rss_kib"]
    add(
        "RSS end near start",
        rss["end"] <= RSS_END_FACTOR * rss["start"],
        f"start {rss['start'] / 1024:.0f} MiB, peak {rss['peak'] / 1024:.0f}, end "
        f"{rss['end'] / 1024:.0f} (limit {RSS_END_FACTOR:g} x start), after malloc_trim "
        f"{rss['after_trim'] / 1024:.0f}; the second half of the run added "
        f"{rss['second_half'] / 1024:+.1f}",
    )
    return out


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}es"


def table(run: dict[str, Any], summary: dict[str, Any]) -> str:
    plan = run["plan"]
    roles = summary["roles"]
    end = run["end"]
    lines = [
        f"soak ({plan['name']}, {run['transport']}): {plan['ws_clients']} WebSocket clients in "
        f"{plural(plan['ws_procs'], 'process')}, {plan['rtc_clients']} rtc clients in "
        f"{plural(plan['rtc_procs'], 'process')}, hostile x{plan['hostile_rounds']}, "
        f"{plan['duration']:g} s; "
        f"clients took {run['seconds']['clients']:g} s, the run {run['seconds']['total']:g} s",
        "",
        f"{'reliable path (well-behaved)':34} {'sessions':>9} {'sent':>9} {'echoed':>9} "
        f"{'in order':>9} {'server got':>10} {'abrupt':>7}",
    ]
    for role, tag in (("ws", WELL_WS), ("rtc", WELL_RTC)):
        agg = roles.get(role)
        if agg is None:
            continue
        well = agg["sessions"].get("well", 0)
        lines.append(
            f"{role + ' (WebSocket)':34} {well:>9} {agg['sent']:>9} {agg['received']:>9} "
            f"{agg['in_order']:>9} {end['played'].get(tag, 0):>10} "
            f"{agg['sessions'].get('abrupt', 0):>7}"
        )
    rtc = roles.get("rtc")
    if rtc is not None and rtc["dc_sent"]:
        loss = 100 * (1 - rtc["dc_received"] / rtc["dc_sent"])
        lines.append(
            f"{'rtc (DataChannel, unreliable)':34} {'':>9} {rtc['dc_sent']:>9} "
            f"{rtc['dc_received']:>9} {'':>9} {end['rtc_echoed']:>10}   ({loss:.1f}% lost)"
        )
    lines += ["", f"{'latency (ms)':34} {'n':>7} {'p50':>8} {'p95':>8} {'max':>8}"]
    names = {
        "ws_open_ms": "WebSocket open (ws)",
        "ws_chain_ms": "connect -> playing (ws chain)",
        "rtc_open_ms": "WebSocket open (rtc)",
        "rtc_rtc_ms": "connect -> DataChannel open (rtc)",
    }
    for key, name in names.items():
        lat = summary["latency_ms"].get(key)
        if lat:
            lines.append(
                f"{name:34} {lat['n']:>7} {lat['p50']:>8.1f} {lat['p95']:>8.1f} {lat['max']:>8.1f}"
            )
    closes = ", ".join(f"{code}: {n}" for code, n in end["closes"].items())
    lines += ["", f"closes by code (server on_close): {closes}"]
    lines.append(f"{'closes by client':34} {'expected':>9}  got (code: count)   lifetime s")
    for tag, codes in end["closes_by_tag"].items():
        want = HOSTILE.get(tag, (None, ""))[0]
        if tag in (WELL_WS, WELL_RTC):
            want = 1000
        elif tag in (ABRUPT_WS, ABRUPT_RTC):
            want = 1006
        life = end["lifetime_s"].get(tag, {})
        got = ", ".join(f"{c}: {n}" for c, n in codes.items())
        lines.append(
            f"{tag:34} {want if want is not None else '-':>9}  {got:19} "
            f"{life.get('min', 0):g}-{life.get('max', 0):g}"
        )
    for h in summary["hostile"]:
        if h.get("who") == "slowloris":
            lines.append(
                f"{'slowloris (no WebSocket)':34} {'drop':>9}  dropped after {h['seconds']:g} s"
            )
    base = run["baseline"]
    rss = run["rss_kib"]
    lines += [
        "",
        f"{'server':34} {'start':>9} {'peak':>9} {'end':>9}",
        f"{'RSS (MiB)':34} {rss['start'] / 1024:>9.1f} {rss['peak'] / 1024:>9.1f} "
        f"{rss['end'] / 1024:>9.1f}   (after malloc_trim {rss['after_trim'] / 1024:.1f})",
    ]
    for key in ("connections", "tasks", "fds", "udp_sockets", "peer_connections"):
        peak = end.get("peak_" + key, "")
        lines.append(f"{key:34} {base[key]:>9} {peak:>9} {end[key]:>9}")
    lines.append("")
    for name, c in summary["checks"].items():
        lines.append(f"{'ok  ' if c['ok'] else 'FAIL'} {name}: {c['detail']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the test suite's short run")
    parser.add_argument("--transport", default="websockets", choices=("websockets", "picows"))
    parser.add_argument("--json", type=Path, default=None, help=f"default: {DEFAULT_JSON}")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    plan = PLANS["short" if args.short else "full"]
    raise_nofile(4096)
    result = run(plan, args.transport, args.seed)
    summary = summarize(result)
    result["summary"] = summary
    for r in result["clients"]:  # their percentiles are in the summary
        for key in ("open_ms", "chain_ms", "rtc_ms"):
            r.pop(key, None)
    print(table(result, summary), flush=True)
    path = args.json if args.json is not None else (None if args.short else DEFAULT_JSON)
    if path is not None:
        path.write_text(json.dumps(result, indent=1) + "\n")
        log(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0 if all(c["ok"] for c in summary["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
