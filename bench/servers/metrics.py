"""Kind ``socker-metrics`` (mode ``stream``): the ``aiosocker`` kind's one-way stream
(:func:`bench.servers.aiosocker_ws.socker_stream_setup`, async drive, the same options)
with ``serve(..., metrics=True)``: every message also counted for ``/metrics``. The
figure (:mod:`bench.figures.metrics`) runs it against the ``aiosocker`` kind.
"""

from __future__ import annotations

from typing import Any

from ..runner import Unavailable
from .aiosocker_ws import socker_stream_setup
from .base import HOST, Life, Ready


async def socker_metrics(mode: str, ready: Ready, life: Life) -> None:
    import aiosocker

    server: Any = None
    try:
        server = aiosocker.serve(socker_stream_setup, HOST, 0, drive="async", metrics=True)
        await server.start()
    except ImportError as exc:  # the metrics extra (prometheus_client) is missing
        raise Unavailable(f"serve(metrics=True): {exc}") from exc
    try:
        ready(server.port)
        await life.wait()
    finally:
        await server.close()
