"""The lab's Python player: ``python client.py CONFIG_JSON``, run in the lab's "client"
namespace (behind the NAT) or on the host.

CONFIG: ``url``, ``ice`` (``{"urls", "username", "credential"}`` list), ``relay``
(relay candidates only), ``rtc`` (more ``client_stages`` options).

Connects (``aiosocker.connect`` + ``aiosocker.rtc.client_stages``), emits ``open`` (ms
from connect to open, the selected candidate pair), then takes commands on stdin, one
JSON object a line:

* ``{"cmd": "stream", "seconds": S, "hz": H}``: both sides send a game update, a chat
  message and a WebSocket message every tick for S seconds; then emits ``result`` with
  what each side sent and received (``client``: received here, ``server``: there).
* ``{"cmd": "ping", "count": N, "interval": S}``: N pings on the game channel; emits
  ``rtt``.
* ``{"cmd": "quit"}``: closes the connection (1000) and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiortc  # noqa: F401 (imported now, not at the first handshake: opens are timed warm)
from common import Streams, emit, now_ms, selected_pair

import aiosocker
from aiosocker.rtc import IceServer, RtcSession, client_stages


async def main(config: dict[str, Any]) -> None:
    options: dict[str, Any] = {
        "ice_servers": [
            IceServer(s["urls"], s.get("username"), s.get("credential"))
            for s in config.get("ice", [])
        ],
        "timeout": 15,
    }
    if config.get("relay"):
        options["ice_transport_policy"] = "relay"
    options.update(config.get("rtc", {}))
    opened = asyncio.Event()
    reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = now_ms()
    async with aiosocker.connect(config["url"]) as conn:

        @conn.stage(timeout=15)
        async def scene(message: bytes) -> bool:
            await rtc.ready()
            return True

        rtc = client_stages(conn, **options)
        streams = Streams(rtc, conn.send)
        rtc.on_message("game")(streams.on_game)
        rtc.on_message("chat")(streams.on_chat)

        @rtc.on_open
        def on_open(session: RtcSession) -> None:
            emit("open", ms=round(now_ms() - started, 1), pair=selected_pair(session))
            opened.set()

        @conn.stage()
        def control(message: bytes) -> bool:
            if message[:1] == b"W":
                streams.on_ws(message)
            elif message[:1] == b"R":
                reports.put_nowait(json.loads(message[1:]))
            return False

        await conn.send(b"hello")
        closed = asyncio.ensure_future(conn.wait_closed())
        opening = asyncio.ensure_future(opened.wait())
        await asyncio.wait([closed, opening], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if not opened.is_set():  # e.g. 4408: an rtc stage timed out, nothing connected
            opening.cancel()
            await conn.wait_closed()
            emit("closed", code=conn.close_code, reason=conn.close_reason, opened=False)
            return
        closed.cancel()

        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            command = json.loads(line)
            cmd = command["cmd"]
            if cmd == "stream":
                seconds, hz = command["seconds"], command["hz"]
                streams.reset(seconds)
                await conn.send(f"reset {seconds}".encode())
                await asyncio.wait_for(reports.get(), 30)  # the server counts from zero too
                await conn.send(f"stream {seconds} {hz}".encode())
                await streams.stream(seconds, hz)
                await asyncio.sleep(command.get("grace", 1.0))  # the last game updates
                sent = streams.sent
                await conn.send(f"report {sent['chat']} {sent['ws']}".encode())
                server = await asyncio.wait_for(reports.get(), 30)
                await streams.drain(server["sent"]["chat"], server["sent"]["ws"])
                emit("result", client=streams.report(), server=server)
            elif cmd == "ping":
                streams.rtt.clear()
                await streams.ping(command["count"], command["interval"])
                emit("rtt", rtt_ms=list(streams.rtt), sent=command["count"])
            elif cmd == "pair":
                await conn.send(b"pair")
                server = await asyncio.wait_for(reports.get(), 10)
                emit("pair", client=selected_pair(rtc), server=server)
            elif cmd == "quit":
                break
    emit("closed", code=conn.close_code, reason=conn.close_reason, opened=True)


if __name__ == "__main__":
    try:
        asyncio.run(main(json.loads(sys.argv[1])))
    except Exception as exc:
        emit("error", error=f"{type(exc).__name__}: {exc}")
        raise
