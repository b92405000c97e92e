"""``/status``: a live page of one server's stage funnel, close codes and timings.

The page (``static/status.html``, no build step, like the demo) polls
``/status.json``, which is :meth:`Meter.snapshot <aiosocker.meter.Meter.snapshot>`:
the same numbers as ``/metrics``. Both routes are private: they answer only requests
that pass the server's ``origins`` and ``authenticate``.
"""

from __future__ import annotations

import json
from importlib.resources import files

from .meter import Metered
from .routes import Route

__all__ = ["STATUS_JSON_PATH", "STATUS_PATH", "status_routes"]

STATUS_PATH = "/status"
STATUS_JSON_PATH = "/status.json"


def status_routes(hub: Metered) -> dict[str, Route]:
    """The page and its feed, for ``hub``."""
    page = files("aiosocker").joinpath("static", "status.html").read_bytes()

    def feed() -> bytes:
        meter = hub.meter
        assert meter is not None
        return json.dumps(meter.snapshot(hub.live_stages())).encode()

    return {
        STATUS_PATH: Route("text/html; charset=utf-8", page, private=True),
        STATUS_JSON_PATH: Route("application/json", feed, private=True),
    }
