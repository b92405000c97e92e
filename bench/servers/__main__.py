"""The server under test, run as its own process: ``python -m bench.servers --kind K --mode M``.

It listens on 127.0.0.1, port 0, prints ``PORT <n>`` once listening (``NA <reason>`` if
this kind cannot run yet, ``ERR <error>`` if it failed) and runs until its stdin closes
(the bench exiting closes it) or ``--lifetime`` seconds pass.

Kinds (the same work on each side, so their costs compare):

* ``raw-websockets``: ``websockets.asyncio.server.serve``, compression off
  (:mod:`bench.servers.raw_websockets`).
* ``aiosocker``: ``aiosocker.serve(setup, drive="async")`` with stage handlers.
* ``socker-tick``: ``aiosocker.serve(setup, drive="tick")`` and a 60 Hz loop of ``server.tick()``.
* ``raw-picows``: a ``picows`` listener (:mod:`bench.servers.raw_picows`).
* ``socker-picows``: ``aiosocker.serve(setup, drive="async", transport="picows")``;
  ``socker-picows-tick``: the same with ``drive="tick"``.
  (The four ``aiosocker`` kinds: :mod:`bench.servers.aiosocker_ws`.)
* ``socketio``: python-socketio as an ASGI app under uvicorn, on uvloop (mode
  ``players`` only; :mod:`bench.servers.players_socketio`).
* ``raw-aiortc`` / ``socker-rtc``: the WebRTC figures (:mod:`bench.servers.raw_aiortc`,
  :mod:`bench.servers.aiosocker_rtc`; see :mod:`bench.figures.rtc`).
* ``fanout-raw``, ``fanout-socker``, ``fanout-socker-picows`` (mode ``fanout``) and
  ``redis-socker`` (modes ``latency``, ``resume``): :mod:`bench.servers.rooms`;
  ``flood-socker``, ``flood-socker-picows`` (modes ``limited``, ``unlimited``):
  :mod:`bench.servers.limits`; ``socker-metrics`` (mode ``stream``):
  :mod:`bench.servers.metrics`.

Modes:

* ``stream``: the first message is ``b"N:<n>"``; the server counts the ``n`` messages
  that follow and prints ``DONE <n> <wall_ns> <cpu_ns>`` (wall and process CPU time from
  that first message to the n-th). ``stream-async`` (socker kinds): the same, counted by
  an ``async def`` stage.
* ``echo``: every message is sent back.
* ``idle``: connections are accepted and read from; nothing else.
* ``players``: the players-per-core game: rooms of 10, inputs in, a 20 Hz loop sending
  each room its state (:mod:`bench.servers.players_socker`,
  :mod:`bench.servers.players_socketio`; ``players-binary``: socketio with binary
  attachments instead of hex text).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback
from collections.abc import Awaitable, Callable

from ..procs import raise_nofile
from ..runner import Unavailable
from .aiosocker_rtc import socker_rtc
from .aiosocker_ws import socker_async, socker_picows, socker_picows_tick, socker_tick
from .base import Life, Ready
from .limits import flood_socker, flood_socker_picows
from .metrics import socker_metrics
from .players_socketio import socketio_players
from .raw_aiortc import raw_aiortc
from .raw_picows import raw_picows
from .raw_websockets import raw_websockets
from .rooms import fanout_raw, fanout_socker, fanout_socker_picows, redis_socker

SOCKER_MODES = ("stream", "stream-async", "echo", "idle", "players")
KINDS: dict[str, tuple[Callable[[str, Ready, Life], Awaitable[None]], tuple[str, ...]]] = {
    "raw-websockets": (raw_websockets, ("stream", "echo", "idle")),
    "aiosocker": (socker_async, SOCKER_MODES),
    "socker-tick": (socker_tick, SOCKER_MODES),
    "raw-picows": (raw_picows, ("stream", "echo", "idle")),
    "socker-picows": (socker_picows, SOCKER_MODES),
    "socker-picows-tick": (socker_picows_tick, SOCKER_MODES),
    "raw-aiortc": (raw_aiortc, ("rtc",)),
    "socker-rtc": (socker_rtc, ("rtc", "rtc-preload", "rtc-cold", "rtc-profile")),
    "socketio": (socketio_players, ("players", "players-binary")),
    # rooms, flood and metrics figures (bench.servers.rooms, .limits, .metrics)
    "fanout-raw": (fanout_raw, ("fanout",)),
    "fanout-socker": (fanout_socker, ("fanout",)),
    "fanout-socker-picows": (fanout_socker_picows, ("fanout",)),
    "redis-socker": (redis_socker, ("latency", "resume")),
    "flood-socker": (flood_socker, ("limited", "unlimited")),
    "flood-socker-picows": (flood_socker_picows, ("limited", "unlimited")),
    "socker-metrics": (socker_metrics, ("stream",)),
}
UVLOOP_KINDS = frozenset({"socketio"})
"""Kinds whose event loop is uvloop's (python-socketio as it is deployed: uvicorn on
uvloop); every other kind runs on asyncio's default loop."""


def ready(port: int) -> None:
    print(f"PORT {port}", flush=True)


async def _main(kind: str, mode: str, lifetime: float) -> None:
    run, modes = KINDS[kind]
    if mode not in modes:
        raise SystemExit(f"kind {kind!r} has no mode {mode!r} (modes: {', '.join(modes)})")
    await run(mode, ready, Life(lifetime))


def _loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if kind not in UVLOOP_KINDS:
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise Unavailable("uvloop is not installed (pip install 'aiosocker[bench]')") from exc
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__)
    parser.add_argument("--kind", required=True, choices=sorted(KINDS))
    parser.add_argument("--mode", required=True)
    parser.add_argument("--lifetime", type=float, default=900.0, help="exit after this (s)")
    parser.add_argument("--nofile", type=int, default=0, help="raise RLIMIT_NOFILE to this")
    args = parser.parse_args(argv)
    if args.nofile:
        raise_nofile(args.nofile)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.kind)) as runner:
            runner.run(_main(args.kind, args.mode, args.lifetime))
    except Unavailable as exc:
        print(f"NA {exc}", flush=True)
        return 0
    except Exception as exc:
        traceback.print_exc()
        print(f"ERR {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
