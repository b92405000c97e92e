"""The demo, as a person would use it: two browser pages and some bots in one world."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

from aiosocker import CloseCode
from aiosocker.demo.app import demo_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

STAGE_OPEN = "document.getElementById('stage').textContent === 'open'"


async def dot_of(page: Any, pid: int) -> tuple[float, float]:
    return tuple(await page.evaluate(f"[demo.players.get({pid}).x, demo.players.get({pid}).y]"))


async def test_two_pages_and_bots_share_a_live_world(
    launch: Callable[..., Any], tmp_path: Path
) -> None:
    browser = await launch("mdns")
    async with demo_server("127.0.0.1", 0, bots=2) as server:
        pages = []
        for _ in range(2):
            page = await browser.new_page(viewport={"width": 1100, "height": 800})
            await page.goto(server.http_url)
            pages.append(page)
        for page in pages:
            await page.wait_for_function(STAGE_OPEN, timeout=15_000)
        a, b = pages
        a_id = await a.evaluate("demo.me")
        b_id = await b.evaluate("demo.me")
        assert a_id != b_id

        # Everyone is counted: two pages and two bots (stats arrive once a second).
        for page in pages:
            await page.wait_for_function(
                "document.getElementById('players').textContent === '4'", timeout=5_000
            )

        # Each page sees the other's dot move after the other presses keys.
        for mover, watcher, mover_id, key in ((a, b, a_id, "ArrowRight"), (b, a, b_id, "s")):
            await watcher.wait_for_function(f"demo.players.has({mover_id})", timeout=5_000)
            before = await dot_of(watcher, mover_id)
            await mover.keyboard.down(key)
            await asyncio.sleep(0.6)
            await mover.keyboard.up(key)
            moved = (
                f"Math.hypot(demo.players.get({mover_id}).x - {before[0]},"
                f" demo.players.get({mover_id}).y - {before[1]}) > 20"
            )
            await watcher.wait_for_function(moved, timeout=5_000)

        # The data-channel round trip is measured and shown as a number.
        for page in pages:
            await page.wait_for_function(
                "!isNaN(parseFloat(document.getElementById('rtt').textContent))", timeout=5_000
            )
            assert float(await page.inner_text("#rtt")) >= 0

        # The timeline names every stage the client went through, with milliseconds.
        timeline = await a.inner_text("#timeline")
        for stage in ("connect", "scene", "rtc_offer", "rtc_open", "open"):
            assert stage in timeline
        assert "ms" in timeline
        await a.screenshot(path=str(tmp_path / "demo.png"))
        assert (tmp_path / "demo.png").stat().st_size > 10_000

        # Closing the server tells the pages with 1001.
        await server.close()
        for page in pages:
            await page.wait_for_function(
                "document.getElementById('stage').textContent === 'closed 1001'", timeout=5_000
            )
            await page.close()


async def test_bad_input_gets_close_codes_and_never_disturbs_players(
    launch: Callable[..., Any],
) -> None:
    browser = await launch("mdns")
    async with demo_server("127.0.0.1", 0, bots=1) as server:
        page = await browser.new_page()
        await page.goto(server.http_url)
        await page.wait_for_function(STAGE_OPEN, timeout=15_000)

        async with ws_connect(server.url) as ws:  # a text frame
            await ws.send("hello")
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == CloseCode.UNSUPPORTED_DATA

        async with ws_connect(server.url) as ws:  # garbage where hello belongs
            await ws.send(b"\x00\x01garbage")
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == CloseCode.INTERNAL_ERROR
            assert "hello" in (ws.close_reason or "")

        async with ws_connect(server.url) as ws:  # says hello, then stalls in rtc_ready
            await ws.send(json.dumps({"type": "hello", "name": "staller"}).encode())
            scene = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert scene["type"] == "scene"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == CloseCode.STAGE_TIMEOUT
            assert "rtc_ready" in (ws.close_reason or "")

        # The player in the browser never noticed: still open, the bot still moves.
        assert await page.inner_text("#stage") == "open"
        bot = await page.evaluate("[...demo.players.values()].find((p) => p.bot).id")
        x, y = await dot_of(page, bot)
        await page.wait_for_function(
            f"Math.hypot(demo.players.get({bot}).x - {x}, demo.players.get({bot}).y - {y}) > 5",
            timeout=5_000,
        )
        await page.wait_for_function(
            "document.getElementById('players').textContent === '2'", timeout=5_000
        )
        await page.close()
