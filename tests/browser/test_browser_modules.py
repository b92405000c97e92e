"""The client's modules in Chromium: each is usable alone, and the entry shares them.

``/aiosocker.js`` only re-exports the modules served at ``/aiosocker/<name>.js``; a page
may import one of them directly (say the envelope codec, without the connection or
WebRTC code) and gets the same bytes as the Python side.
"""

from __future__ import annotations

from typing import Any

import pytest

import aiosocker
from aiosocker import Route
from aiosocker.rtc import Ready, envelope

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODULE_PAGE = """<!doctype html>
<meta charset="utf-8"><link rel="icon" href="data:,">
<script type="module">
import { encode, decode, envelope } from "/aiosocker/envelope.js";

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
window.envelopeModule = { encode, envelope };
window.ready = hex(encode({ type: "READY" }));
window.decoded = decode(encode({ type: "READY" })).type;
window.pageReady = true;
</script>
"""

# The public names of /aiosocker.js (docs/browser.md, aiosocker.d.ts).
PUBLIC = [
    "BatchError",
    "Channel",
    "CloseCode",
    "Connection",
    "ConnectionClosedError",
    "OutOfStagesError",
    "QueueFullError",
    "RtcSession",
    "SignalingError",
    "SockerError",
    "StageTimeoutError",
    "batch",
    "connect",
    "envelope",
    "reconnecting",
    "rtc",
]


def stay(conn: aiosocker.Connection) -> None:
    conn.add(lambda message: False, name="lobby")


async def test_envelope_module_alone_encodes_ready_as_python_does(
    launch: Any, start_server: Any
) -> None:
    server = await start_server(stay, routes={"/modules": Route.html(MODULE_PAGE)})
    browser = await launch("mdns")
    context = await browser.new_context()
    try:
        page = await context.new_page()
        requested: list[str] = []
        errors: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(server.http_url + "modules", timeout=5000)
        await page.wait_for_function("window.pageReady === true", timeout=5000)
        assert not errors

        # Byte for byte as Python's codec, and it decodes its own frame.
        assert await page.evaluate("window.ready") == envelope.encode(Ready()).hex()
        assert await page.evaluate("window.decoded") == "READY"

        # Only the envelope module and what it imports were loaded: no entry, no
        # connection, no WebRTC code.
        scripts = sorted(
            url.removeprefix(server.http_url) for url in requested if url.endswith(".js")
        )
        assert scripts == ["aiosocker/bytes.js", "aiosocker/envelope.js", "aiosocker/errors.js"]

        # The entry re-exports the same public names as ever, from the same module
        # instances (a page importing both gets one copy of each module).
        names, same = await page.evaluate(
            """async () => {
                const aiosocker = await import("/aiosocker.js");
                return [Object.keys(aiosocker).sort(),
                        aiosocker.envelope === window.envelopeModule.envelope];
            }"""
        )
        assert names == PUBLIC
        assert same is True
    finally:
        await context.close()
