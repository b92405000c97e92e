"""Fixtures for the real-network tests: a lab of network namespaces (``netlab.Lab``: an
aiosocker server and coturn in "pub", a NAT router, players behind it in "client"),
coturn on loopback, the lab's peers as processes, Chromium inside the lab.

Every test builds its own lab and removes it at teardown, also when it fails: processes
in the namespaces are killed by pid, the namespaces deleted (their veths and nft tables
go with them). A lab a killed run left behind is removed at the next session's start.

These tests need root (``ip netns``), as CI runs ``make test``; elsewhere they skip,
saying so. Missing tools (nftables, coturn, Chromium) fail: ``make system`` installs them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright import async_api as playwright_api

from aiosocker.rtc.turn import turn_credentials

from .netlab import (
    CHROMIUM,
    SERVER_IP,
    TURN_IP,
    TURN_PORT,
    Lab,
    LabError,
    Proc,
    Turn,
    chromium_in,
    missing_tools,
    not_root,
    python_peer,
    sweep,
)

PAGE = Path(__file__).parent / "pages" / "lab.html"

# Chromium as the browser tests run it (tests/browser/conftest.py), headless, as root.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# What the tests measured, printed at the end of the session.
FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("real networks (network namespaces, coturn)")
        for line in FIGURES:
            terminalreporter.write_line(line)


def record(line: str) -> None:
    FIGURES.append(line)


@pytest.fixture(scope="session")
def lab_machine() -> None:
    """Skip without root; fail without ``ip`` or ``nft``; remove labs a killed run left
    behind."""
    reason = not_root()
    if reason is not None:
        pytest.skip(reason)
    missing = missing_tools()
    if missing is not None:
        pytest.fail(missing)
    sweep()


@pytest.fixture
def lab(lab_machine: None) -> Iterator[Lab]:
    built = Lab()
    try:
        built.build()
    except LabError as exc:
        pytest.fail(str(exc))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def lab_turn(lab: Lab, tmp_path: Path) -> Iterator[Turn]:
    """coturn in the lab's pub namespace, on its own address (``TURN_IP``)."""
    turn = Turn(TURN_IP, TURN_PORT, tmp_path / "turn", lab=lab)
    try:
        turn.start()
    except LabError as exc:
        pytest.fail(str(exc))
    try:
        yield turn
    finally:
        turn.stop()


def ice_for(
    turn: Turn, transport: Literal["udp", "tcp"] = "udp", user: str = "player", ttl: float = 600
) -> list[dict[str, Any]]:
    """An ICE server list with fresh TURN REST credentials, as the peers (and the
    browser's ``iceServers``) take it."""
    username, password = turn_credentials(turn.secret, user, ttl)
    return [{"urls": turn.urls(transport), "username": username, "credential": password}]


def turn_config(
    turn: Turn, transport: Literal["udp", "tcp"] = "udp", ttl: float = 600
) -> dict[str, Any]:
    """The server peer's ``turn`` option (a ``TurnSecret``'s fields): the server mints
    each player's credentials and sends them in ICE_SERVERS."""
    return {"urls": turn.urls(transport), "secret": turn.secret, "ttl": ttl}


class Peers:
    """Start the lab's server and players; stops them all at teardown."""

    def __init__(self, lab: Lab | None, logs: Path) -> None:
        self.lab = lab
        self.logs = logs
        self.procs: list[Proc] = []

    async def server(self, **config: Any) -> tuple[Proc, str]:
        """The aiosocker server in pub (or on the host without a lab); returns it and its
        WebSocket URL."""
        config.setdefault("host", SERVER_IP if self.lab else "127.0.0.1")
        config.setdefault("page", str(PAGE))
        proc = python_peer(
            self.lab, self.lab.pub if self.lab else None, "server", config, self._log("server")
        )
        self.procs.append(proc)
        await proc.start()
        ready = await proc.event("ready")
        return proc, str(ready["url"])

    async def client(self, url: str, **config: Any) -> Proc:
        """A Python player behind the NAT (or on the host without a lab)."""
        proc = python_peer(
            self.lab,
            self.lab.client if self.lab else None,
            "client",
            {"url": url, **config},
            self._log("client"),
        )
        self.procs.append(proc)
        return await proc.start()

    def _log(self, name: str) -> Path:
        count = sum(1 for p in self.procs if p.log.name.startswith(name))
        return self.logs / f"{name}{count}.log"

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.procs), return_exceptions=True)


@pytest.fixture
async def peers(lab: Lab, tmp_path: Path) -> AsyncIterator[Peers]:
    made = Peers(lab, tmp_path)
    try:
        yield made
    finally:
        await made.stop()


@pytest.fixture
async def host_peers(tmp_path: Path) -> AsyncIterator[Peers]:
    """Peers on the host, for the loopback TURN tests."""
    made = Peers(None, tmp_path)
    try:
        yield made
    finally:
        await made.stop()


async def event(proc: Proc, kind: str, timeout: float = 20) -> dict[str, Any]:  # noqa: ASYNC109
    try:
        return await proc.event(kind, timeout)
    except LabError as exc:
        pytest.fail(str(exc))


# -- Chromium ----------------------------------------------------------------------------


class Browser:
    """Chromium, in a lab namespace or on the host, driven by Playwright from here."""

    def __init__(self, pw: Any, folder: Path) -> None:
        self.pw = pw
        self.folder = folder
        self.browsers: list[Any] = []
        self.logs: list[str] = []

    async def launch(self, lab: Lab | None = None, ns: str | None = None) -> Any:
        executable = chromium_in(lab, ns, self.folder) if lab and ns else Path(CHROMIUM)
        browser = await self.pw.chromium.launch(
            executable_path=str(executable), args=CHROMIUM_ARGS, timeout=20000
        )
        self.browsers.append(browser)
        return browser

    async def page(self, browser: Any, url: str) -> Any:
        page = await browser.new_page()
        page.on("console", lambda msg: self.logs.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.logs.append(f"pageerror: {exc}"))
        await page.goto(url, timeout=10000)
        await page.wait_for_function("window.pageReady === true", timeout=10000)
        return page

    async def wait_open(self, page: Any, within_ms: float = 20000) -> float:
        with contextlib.suppress(playwright_api.TimeoutError):
            await page.wait_for_function(
                "window.results.openMs !== null || window.results.closed !== null",
                timeout=within_ms,
            )
        results = await page.evaluate("JSON.stringify(window.results)")
        opened = await page.evaluate("window.results.openMs")
        if opened is None:
            pytest.fail(f"the browser's channels did not open: {results}\n" + self.tail())
        return float(opened)

    def tail(self) -> str:
        return "console:\n" + "\n".join(self.logs[-30:])


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[Browser]:
    pw = await playwright_api.async_playwright().start()
    browser = Browser(pw, tmp_path)
    try:
        yield browser
    finally:
        for b in browser.browsers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(b.close(), 10)
        await pw.stop()


def page_url(ws_url: str) -> str:
    return ws_url.replace("ws://", "http://", 1).rstrip("/") + "/page"
