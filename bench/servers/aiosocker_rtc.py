"""Kind ``socker-rtc``: ``aiosocker.serve`` whose chain is ``server_stages(conn)`` then a
final ``control`` stage (socker's rtc flow with its defaults; its clients:
:mod:`bench.clients.rtc` and :mod:`bench.clients.browser`).

Modes: ``rtc`` imports aiortc before listening (as the raw server); ``rtc-preload``
awaits ``aiosocker.rtc.preload()`` before listening, as a server should; ``rtc-cold``
does neither (its first open pays the import: information); ``rtc-profile`` is
``rtc-preload`` under cProfile, the stats written to :func:`profile_path` at exit.
"""

from __future__ import annotations

import cProfile
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..rtc_common import BROWSER_PATH, STAGE_TIMEOUT, ice_setup
from .base import Life, Ready

if TYPE_CHECKING:
    import aiosocker

BROWSER_PAGE = (Path(__file__).parent.parent / "rtc_page.html").read_text()
"""The page Chromium loads from the socker-rtc server: one rtc flow per ``openOnce()``."""


def socker_rtc_setup(conn: aiosocker.Connection) -> None:
    """The rtc stages first (the client sends READY as soon as it is connected), then
    ``control``: answers ``stats`` with what the channel delivered, as the raw server."""
    from aiosocker.rtc.session import server_stages

    stats = {"count": 0, "first_ns": 0, "last_ns": 0}
    session = server_stages(conn, timeout=STAGE_TIMEOUT)

    @session.on_message()
    def on_message(message: bytes) -> None:
        now = time.perf_counter_ns()
        if not stats["count"]:
            stats["first_ns"] = now
        stats["count"] += 1
        stats["last_ns"] = now

    @conn.stage()
    async def control(message: bytes) -> bool:
        if message == b"stats":
            await conn.send(json.dumps(stats).encode())
        return False


def profile_path(pid: int) -> str:
    """Where a ``rtc-profile`` server with process id ``pid`` writes its cProfile stats."""
    return os.path.join(tempfile.gettempdir(), f"aiosocker-bench-rtc-{pid}.prof")


async def serve_socker_rtc(ready: Callable[[int], None], life: Life, mode: str = "rtc") -> None:
    """Server kind ``socker-rtc``: ``aiosocker.serve`` with :func:`socker_rtc_setup`; it also
    serves the browser page (:data:`BROWSER_PAGE`) at :data:`BROWSER_PATH`."""
    ice_setup()
    import aiosocker
    from aiosocker import Route

    if mode == "rtc":
        import aiortc  # noqa: F401  (imported up front, as the raw server does)
    elif mode in ("rtc-preload", "rtc-profile"):
        import aiosocker.rtc

        await aiosocker.rtc.preload()
    profiler = cProfile.Profile() if mode == "rtc-profile" else None
    routes = {BROWSER_PATH: Route.html(BROWSER_PAGE)}
    try:
        async with aiosocker.serve(socker_rtc_setup, "127.0.0.1", 0, routes=routes) as server:
            if profiler is not None:
                profiler.enable()
            ready(server.port)
            await life.wait()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_path(os.getpid()))


async def socker_rtc(mode: str, ready: Ready, life: Life) -> None:
    await serve_socker_rtc(ready, life, mode)
