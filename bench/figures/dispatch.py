"""The stage machine's own cost, in process, against the floor of doing its job inline.

Each sample times one big batch with ``time.perf_counter_ns`` (garbage collector off)
and divides by the batch size; the loop's own overhead is in every variant alike.
Variants run interleaved, many rounds; the figure is the median.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiosocker import Stages

from ..runner import Config, Results, interleave, log

MESSAGE = b"x" * 64


def _chain(handler: Callable[[bytes], Any], name: str, timeout: float | None = None) -> Stages:
    """A one-stage chain (socker imported late: a broken socker fails this group only)."""
    from aiosocker import Stages

    stages = Stages()
    stages.add(handler, name=name, timeout=timeout)
    return stages


def _stay(message: bytes) -> bool:
    return False


async def _stay_async(message: bytes) -> bool:
    return False


def _timed(run: Callable[[int], None], n: int) -> float:
    """ns per iteration of ``run(n)``, with the collector paused."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        run(n)
        return (time.perf_counter_ns() - start) / n
    finally:
        if enabled:
            gc.enable()


# -- synchronous -----------------------------------------------------------------------


def sync_stages(n: int) -> None:
    """``Stages.handle_sync`` with a trivial handler that stays (returns False)."""
    stages = _chain(_stay, "stay")
    handle = stages.handle_sync
    message = MESSAGE
    for _ in range(n):
        handle(message)


def sync_floor(n: int) -> None:
    """The floor: the same list lookup + call + ``is False`` check, inline."""
    handlers: list[Callable[[bytes], bool]] = [_stay]
    index = 0
    message = MESSAGE
    for _ in range(n):
        if handlers[index](message) is False:
            pass


def sync_feed(n: int) -> None:
    """``Stages.feed`` (the never-blocking driver path) with the same sync handler."""
    stages = _chain(_stay, "stay")
    feed = stages.feed
    message = MESSAGE
    for _ in range(n):
        feed(message)


def sync_jump(n: int) -> None:
    """``handle_sync`` with a handler naming its own stage: re-entry, history, deadline."""
    stages = _chain(lambda message: "again", "again", timeout=60)
    handle = stages.handle_sync
    message = MESSAGE
    for _ in range(n):
        handle(message)


# -- asynchronous ----------------------------------------------------------------------


async def async_stages(n: int) -> None:
    """``await stages.handle(msg)`` with an ``async`` handler that stays."""
    stages = _chain(_stay_async, "stay")
    handle = stages.handle
    message = MESSAGE
    for _ in range(n):
        await handle(message)


async def async_floor(n: int) -> None:
    """The floor: a fresh coroutine per message, ``await handler(msg)`` inline."""
    handlers: list[Callable[[bytes], Coroutine[Any, Any, bool]]] = [_stay_async]
    index = 0
    message = MESSAGE
    for _ in range(n):
        if await handlers[index](message) is False:
            pass


async def async_sync_handler(n: int) -> None:
    """``await stages.handle(msg)`` with a *sync* handler (one coroutine: handle's own)."""
    stages = _chain(_stay, "stay")
    handle = stages.handle
    message = MESSAGE
    for _ in range(n):
        await handle(message)


def run(cfg: Config, results: Results) -> None:
    rounds = cfg.pick(21, 11)
    n_sync = cfg.pick(300_000, 100_000)
    n_async = cfg.pick(100_000, 30_000)
    loop = asyncio.new_event_loop()
    try:

        def on_loop(body: Callable[[int], Coroutine[Any, Any, None]]) -> Callable[[int], None]:
            return lambda n: loop.run_until_complete(body(n))

        variants: dict[str, Callable[[int], float]] = {
            "sync": lambda r: _timed(sync_stages, n_sync),
            "sync_floor": lambda r: _timed(sync_floor, n_sync),
            "feed": lambda r: _timed(sync_feed, n_sync),
            "jump": lambda r: _timed(sync_jump, n_sync // 4),
            "async": lambda r: _timed(on_loop(async_stages), n_async),
            "async_floor": lambda r: _timed(on_loop(async_floor), n_async),
            "await_sync": lambda r: _timed(on_loop(async_sync_handler), n_async),
        }
        done = interleave(
            variants,
            rounds,
            budget_s=cfg.pick(60, 15),
            warmup=lambda name: variants[name](-1),
        )
    finally:
        loop.close()
    for name, why in {**done.unavailable, **done.errors}.items():
        log(f"dispatch variant {name}: {why}")
    s = done.samples
    common = {"rounds": done.rounds, "batch_sync": n_sync, "batch_async": n_async}
    results.put_samples("dispatch_ns", s["sync"], **common)
    results.put_samples("dispatch_floor_ns", s["sync_floor"], **common)
    results.put_ratio("dispatch_ratio", s["sync"], s["sync_floor"])
    results.put_samples("dispatch_feed_ns", s["feed"], **common)
    results.put_samples("dispatch_jump_ns", s["jump"], **common)
    results.put_samples("dispatch_async_ns", s["async"], **common)
    results.put_samples("dispatch_async_floor_ns", s["async_floor"], **common)
    results.put_ratio("dispatch_async_ratio", s["async"], s["async_floor"])
    results.put_samples("dispatch_await_sync_ns", s["await_sync"], **common)
