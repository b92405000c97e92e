"""The /status page in headless Chromium while bots walk the demo's chain: the numbers
it shows are the server's own. ``AIOSOCKER_STATUS_SHOT=docs/status.png`` also saves the
screenshot the docs show."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest

from aiosocker.demo.app import demo_server

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_the_status_page_shows_the_live_funnel(launch: Callable[..., Any]) -> None:
    browser = await launch("mdns")
    async with demo_server("127.0.0.1", 0, bots=3) as server:
        meter = server.hub.meter
        assert meter is not None
        for _ in range(200):  # the bots walk the chain to the demo's last stage
            if meter.entries.get("playing", 0) >= 3:
                break
            await asyncio.sleep(0.05)
        page = await browser.new_page(viewport={"width": 1000, "height": 700})
        await page.goto(server.http_url + "status")
        await page.wait_for_function("document.body.dataset.ready === '1'", timeout=10_000)
        await asyncio.sleep(1.2)  # one more poll, with everything settled
        shown = await page.evaluate(
            """Object.fromEntries([...document.querySelectorAll('#funnel tbody tr')].map(
                (tr) => [tr.dataset.stage, [...tr.children].map((td) => td.textContent)]))"""
        )
        live = int(await page.inner_text("#live"))
        shot = os.environ.get("AIOSOCKER_STATUS_SHOT")
        if shot:
            await page.screenshot(path=shot, full_page=True)
        await page.close()
        stages_now = list(server.hub.live_stages())
    assert live == len(stages_now) >= 3
    assert set(shown) >= {"hello", "rtc_ready", "rtc_answer", "rtc_open", "playing"}
    for stage, row in shown.items():
        assert int(row[3]) == meter.entries[stage], (stage, row)  # "entered"
    assert int(shown["playing"][1]) == stages_now.count("playing")  # "now"
    assert int(shown["hello"][3]) >= 3
