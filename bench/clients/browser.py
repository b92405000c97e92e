"""The browser client: headless Chromium runs socker's rtc flow with ``/aiosocker.js``
(``bench/rtc_page.html``, served by the socker-rtc server at ``BROWSER_PATH``)."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from typing import Any

from ..procs import ServerProcess
from ..rtc_common import BROWSER_PATH
from ..runner import Unavailable

CHROMIUM = os.environ.get("SOCKER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [  # as tests/browser: Chromium's default mDNS handling, nothing to reach out
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class BrowserSample:
    times_ms: list[float]
    """Open times of the measured page loads."""
    cold_ms: float
    """The first load's (not in ``times_ms``): the browser's WebRTC stack starting up."""
    connect_ms: float
    """Median of the WebSocket connect alone (part of each time)."""
    stages: list[list[Any]]
    """The last load's stage history, ``[stage, ms since t0]``."""


def browser_rtc_open_ms(server: ServerProcess, opens: int, timeout: float) -> BrowserSample:
    """``rtc_open_ms_browser``: headless Chromium (Playwright driving Debian's
    ``/usr/bin/chromium``; never ``playwright install``) loads :data:`BROWSER_PATH` from
    the socker-rtc server ``opens + 1`` times; each load runs one flow with ``/aiosocker.js``
    and times it in the page (``performance.now()``, from before ``aiosocker.connect`` to
    the session's ``onOpen``). The first load is the cold one, reported apart.

    Chromium keeps its default mDNS handling (its host candidates are ``xxxx.local``
    names, which the server strips; its checks reveal its address, a peer-reflexive
    candidate), as a user's browser does.
    """
    import shutil

    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise Unavailable(f"playwright is not installed: {exc}") from exc
    if not shutil.which(CHROMIUM):
        raise Unavailable(f"no Chromium at {CHROMIUM} (set SOCKER_CHROMIUM)")
    url = f"http://127.0.0.1:{server.port}{BROWSER_PATH}"
    limit_ms = int(timeout * 1000)
    samples: list[dict[str, Any]] = []
    logs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=20000)
        try:
            page = browser.new_page()
            page.on("console", lambda msg: logs.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: logs.append(f"pageerror: {exc}"))
            for _ in range(opens + 1):
                try:
                    page.goto(url, timeout=limit_ms)
                    page.wait_for_function("window.pageReady === true", timeout=limit_ms)
                    sample = page.evaluate("(o) => window.openOnce(o)", {"limitMs": limit_ms})
                except PlaywrightError as exc:
                    tail = "; ".join(logs[-5:])
                    raise RuntimeError(f"{exc.message.splitlines()[0]} (console: {tail})") from exc
                samples.append(sample)
        finally:
            browser.close()
    cold, *warm = samples
    return BrowserSample(
        [s["ms"] for s in warm],
        cold["ms"],
        statistics.median(s["connectedMs"] for s in warm),
        samples[-1]["stages"],
    )
