"""`aiosocker demo` / `python -m aiosocker demo` as a user runs it: a real process."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from aiosocker import CloseCode


async def start_demo(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiosocker", "demo", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    found = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
    assert found, line
    return proc, found.group(1)


async def test_demo_serves_the_page_and_ctrl_c_closes_clients_with_1001() -> None:
    proc, url = await start_demo("--bots", "1")
    assert proc.stdout is not None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(url.split(":")[2][:-1]))
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        page = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert page.startswith(b"HTTP/1.1 200")
        assert b'import * as aiosocker from "/aiosocker.js"' in page
        async with ws_connect(url.replace("http", "ws") + "ws") as ws:
            proc.send_signal(signal.SIGINT)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == CloseCode.GOING_AWAY
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        rest = (await proc.stdout.read()).decode()
        assert "shutting down (code 1001 to every client)" in rest
        assert "Traceback" not in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_cli_rejects_bad_arguments() -> None:
    for args in (["demo", "--bots", "-1"], ["nothing"], []):
        done = subprocess.run(
            [sys.executable, "-m", "aiosocker", *args], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 2
        assert "usage: aiosocker" in done.stderr
