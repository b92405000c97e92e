"""Fixtures for tests with a real headless Chromium and a socker server on 127.0.0.1.

Debian's ``/usr/bin/chromium``, driven by Playwright's async API (never ``playwright
install``). Two ways to launch it (``launch(mode)``):

* ``"mdns"``: Chromium's default, hiding local addresses behind ``xxxx.local`` names (the
  server drops those candidates; Chromium's checks still reveal its address).
* ``"loopback"``: ``--allow-loopback-in-peer-connection`` and ``WebRtcHideLocalIpsWithMdns``
  disabled. Chromium honours only the *last* ``--disable-features`` flag and Playwright
  passes its own, so ours is Playwright's list plus ``WebRtcHideLocalIpsWithMdns``, and
  Playwright's flag is left out with ``ignore_default_args``. Playwright's list is read
  from a default browser's ``chrome://version``, so it stays right when Playwright changes.

Playwright and the browsers are shared by a module's tests (which run on one event loop,
``loop_scope="module"``); every test gets its own servers and browser contexts, and the
autouse ``no_leaks`` fixture checks afterwards that no asyncio task and no open aiortc
peer connection is left.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import pytest_asyncio

# Imported here, not in the first test: aiortc's import (~0.3 s) would skew timings.
# No skipping: `make test` installs all of this, and a missing piece must fail loudly.
from aiortc import RTCPeerConnection
from playwright import async_api as playwright_api

import aiosocker
from aiosocker import Route

CHROMIUM = os.environ.get("SOCKER_CHROMIUM", "/usr/bin/chromium")

HOST = "127.0.0.1"
PAGE_PATH = "/page"
PAGE = (Path(__file__).parent / "pages" / "flow.html").read_text()

# --no-sandbox because these machines run tests as root; the rest keep Chromium quiet
# (no GPU, no QUIC, no background network traffic of its own).
BASE_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK_ARGS = ["--allow-loopback-in-peer-connection"]
HIDE_MDNS_FEATURE = "WebRtcHideLocalIpsWithMdns"

Mode = Literal["mdns", "loopback"]

# Open times measured by the tests, printed at the end of the session.
TIMINGS: list[tuple[str, float, str]] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("browser rtc timings")
    for what, ms, detail in TIMINGS:
        terminalreporter.write_line(f"{what}: {ms:.0f} ms ({detail})")


async def command_line(browser: Any) -> list[str]:
    """The browser process's command line, as ``chrome://version`` shows it."""
    page = await browser.new_page()
    try:
        await page.goto("chrome://version", timeout=5000)
        text: str = await page.inner_text("#command_line", timeout=5000)
    finally:
        await page.close()
    return text.split()


def disable_features_flags(args: list[str]) -> list[str]:
    return [arg for arg in args if arg.startswith("--disable-features=")]


@dataclass
class Tab:
    """A page of the test site, with what its console said."""

    page: Any
    logs: list[str] = field(default_factory=list)

    async def wait_for(self, expression: str, within_ms: float = 5000, what: str = "") -> Any:
        """``page.wait_for_function`` with a bound, failing with the page's state and logs."""
        try:
            return await self.page.wait_for_function(expression, timeout=within_ms)
        except playwright_api.TimeoutError:
            state = await self.page.evaluate("JSON.stringify(window.results ?? null).slice(0, 2e3)")
            pytest.fail(
                f"timed out after {within_ms:.0f} ms waiting for {what or expression}\n"
                f"results: {state}\nconsole:\n" + "\n".join(self.logs[-30:])
            )

    async def eval(self, expression: str, arg: Any = None) -> Any:
        return await self.page.evaluate(expression, arg)


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def no_leaks() -> AsyncIterator[None]:
    """Set up first, torn down last: once a test's pages and servers are gone, nothing of
    theirs may be left running (Playwright's own tasks predate the test)."""
    before = set(asyncio.all_tasks())
    yield
    me = asyncio.current_task()
    deadline = time.monotonic() + 2
    while True:
        extra = {t for t in asyncio.all_tasks() if t not in before and t is not me}
        if not extra or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    assert not extra, f"tasks left running: {extra}"
    gc.collect()
    live = [
        o
        for o in gc.get_objects()
        if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"
    ]
    assert not live, f"aiortc peer connections left open: {live}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def playwright() -> AsyncIterator[Any]:
    """One Playwright (its node driver) and at most one browser per mode, per module;
    each test gets fresh contexts (their own renderer processes)."""
    assert shutil.which(CHROMIUM), f"no Chromium at {CHROMIUM}: apt-get install chromium"
    pw = await playwright_api.async_playwright().start()
    pw.socker_browsers = {}
    try:
        yield pw
    finally:
        for browser in pw.socker_browsers.values():
            await browser.close()
        await pw.stop()


async def _launch(pw: Any, mode: Mode) -> Any:
    if mode == "mdns":
        options: dict[str, Any] = {"args": list(BASE_ARGS)}
    elif mode == "loopback":
        # Playwright's own flag, read from a browser it launched with its defaults.
        flags = disable_features_flags(await command_line(await _browser(pw, "mdns")))
        assert len(flags) == 1, f"expected Playwright's one --disable-features flag, got {flags}"
        theirs = flags[0]
        options = {
            "args": [*BASE_ARGS, *LOOPBACK_ARGS, f"{theirs},{HIDE_MDNS_FEATURE}"],
            "ignore_default_args": [theirs],
        }
    else:
        raise ValueError(f"mode is 'mdns' or 'loopback', got {mode!r}")
    return await pw.chromium.launch(executable_path=CHROMIUM, timeout=15000, **options)


async def _browser(pw: Any, mode: Mode) -> Any:
    browsers = pw.socker_browsers
    if mode not in browsers or not browsers[mode].is_connected():
        browsers[mode] = await _launch(pw, mode)
    return browsers[mode]


@pytest_asyncio.fixture(loop_scope="module")
async def launch(playwright: Any) -> Callable[[Mode], Awaitable[Any]]:
    """``await launch(mode)``: the module's headless Chromium for that mode."""

    async def launch(mode: Mode = "mdns") -> Any:
        return await _browser(playwright, mode)

    return launch


@pytest_asyncio.fixture(loop_scope="module")
async def start_server() -> AsyncIterator[Callable[..., Awaitable[aiosocker.Server]]]:
    """``await start_server(setup, **options)``: a socker server on 127.0.0.1, port 0,
    serving the test page at ``/page`` (and ``/aiosocker.js``, built in)."""
    servers: list[aiosocker.Server] = []

    async def start(setup: aiosocker.Setup, **options: Any) -> aiosocker.Server:
        routes = {PAGE_PATH: Route.html(PAGE), **options.pop("routes", {})}
        server = aiosocker.serve(setup, HOST, 0, routes=routes, **options)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await asyncio.wait_for(server.close(), 5)
        assert not server.connections, f"connections left after close: {server.connections}"


@pytest_asyncio.fixture(loop_scope="module")
async def open_page() -> AsyncIterator[Callable[..., Awaitable[Tab]]]:
    """``await open_page(browser, server)``: the test page, loaded and ready."""
    contexts: list[Any] = []

    async def open_page(browser: Any, server: aiosocker.Server) -> Tab:
        context = await browser.new_context()
        contexts.append(context)
        page = await context.new_page()
        tab = Tab(page)
        page.on("console", lambda msg: tab.logs.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: tab.logs.append(f"pageerror: {exc}"))
        await page.goto(server.http_url + PAGE_PATH.lstrip("/"), timeout=5000)
        await tab.wait_for("window.pageReady === true", what="the page's module to load")
        return tab

    yield open_page
    for context in contexts:
        await context.close()


async def eventually(condition: Callable[[], object], what: str, within: float = 5.0) -> None:
    """Poll ``condition`` (on the Python side) until it is true; fail after ``within``
    seconds, naming ``what``."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)
