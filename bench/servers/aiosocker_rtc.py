"""Kind ``socker-rtc``: ``aiosocker.serve`` whose chain is ``server_stages(conn)`` then a
final ``control`` stage (socker's rtc flow with its defaults; its clients:
:mod:`bench.clients.rtc` and :mod:`bench.clients.browser`).
"""

from __future__ import annotations

import json
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


async def serve_socker_rtc(ready: Callable[[int], None], life: Life) -> None:
    """Server kind ``socker-rtc``: ``aiosocker.serve`` with :func:`socker_rtc_setup`; it also
    serves the browser page (:data:`BROWSER_PAGE`) at :data:`BROWSER_PATH`."""
    ice_setup()
    import aiortc  # noqa: F401  (imported up front, as the raw server does)

    import aiosocker
    from aiosocker import Route

    routes = {BROWSER_PATH: Route.html(BROWSER_PAGE)}
    async with aiosocker.serve(socker_rtc_setup, "127.0.0.1", 0, routes=routes) as server:
        ready(server.port)
        await life.wait()


async def socker_rtc(mode: str, ready: Ready, life: Life) -> None:
    await serve_socker_rtc(ready, life)
