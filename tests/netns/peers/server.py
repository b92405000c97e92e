"""The lab's aiosocker server: ``python server.py CONFIG_JSON``, run in the lab's "pub"
namespace (or on the host).

CONFIG: ``host``, ``port`` (0: any), ``ice`` (a list of ``{"urls", "username",
"credential"}``), ``relay`` (relay candidates only), ``turn`` (``{"urls", "secret",
"ttl"}``: mint per-connection TURN credentials), ``rtc`` (more ``server_stages``
options), ``page`` (an HTML file served at ``/page``).

Events on stdout: ``ready`` (port), ``open`` (each connection's channels open, with the
candidate pair ICE selected), ``closed``. Each connection's chain: ``hello`` (answers
"scene"), the rtc stages, ``control`` (the stream's WebSocket messages and the client's
commands: ``reset SECONDS`` (answers ``R{}``), ``stream SECONDS HZ``,
``report CHAT WS`` (once that many reliable messages came), ``pair``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiortc  # noqa: F401 (imported now, not at the first handshake: opens are timed warm)
from common import CHANNELS, Streams, emit, now_ms, selected_pair

import aiosocker
from aiosocker import Route
from aiosocker.rtc import IceServer, RtcSession, server_stages


def ice_servers(config: list[dict[str, Any]]) -> list[IceServer]:
    return [IceServer(s["urls"], s.get("username"), s.get("credential")) for s in config]


def rtc_options(config: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"ice_servers": ice_servers(config.get("ice", [])), "timeout": 15}
    if config.get("relay"):
        options["ice_transport_policy"] = "relay"
    if config.get("turn"):
        from aiosocker.rtc import TurnSecret

        options["turn"] = TurnSecret(**config["turn"])
    options.update(config.get("rtc", {}))
    return options


async def main(config: dict[str, Any]) -> None:
    options = rtc_options(config)

    async def setup(conn: aiosocker.Connection) -> None:
        started = now_ms()

        @conn.stage(timeout=15)
        async def hello(message: bytes) -> bool:
            await conn.send(b"scene")
            return True

        rtc = server_stages(conn, channels=CHANNELS, **options)
        streams = Streams(rtc, conn.send)
        rtc.on_message("game")(streams.on_game)
        rtc.on_message("chat")(streams.on_chat)

        @rtc.on_open
        def opened(session: RtcSession) -> None:
            emit(
                "open",
                conn=conn.id,
                ms=round(now_ms() - started, 1),
                remote=str(conn.remote_address),
                pair=selected_pair(session),
            )

        @conn.stage()
        async def control(message: bytes) -> bool:
            if message[:1] == b"W":
                streams.on_ws(message)
                return False
            command, *args = message.decode().split()
            if command == "reset":
                streams.reset(float(args[0]))
                await conn.send(b"R{}")
            elif command == "stream":
                conn.state["stream"] = asyncio.ensure_future(
                    streams.stream(float(args[0]), float(args[1]))
                )
            elif command == "report":  # report CHAT_SENT WS_SENT: the client's counts
                task = conn.state.get("stream")
                if task is not None:
                    await task
                await streams.drain(int(args[0]), int(args[1]))
                await conn.send(b"R" + json.dumps(streams.report()).encode())
            elif command == "pair":
                await conn.send(b"R" + json.dumps(selected_pair(rtc)).encode())
            return False

        @conn.on_close
        def closed(conn: aiosocker.Connection, code: int, reason: str) -> None:
            task = conn.state.get("stream")
            if task is not None:
                task.cancel()
            emit("closed", conn=conn.id, code=code, reason=reason)

    page = Path(config["page"]).read_text() if config.get("page") else None  # noqa: ASYNC240
    routes = {"/page": Route.html(page)} if page is not None else {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with aiosocker.serve(
        setup, config.get("host", "127.0.0.1"), config.get("port", 0), routes=routes
    ) as server:
        emit("ready", port=server.port, url=server.url)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        stdin_closed = asyncio.ensure_future(reader.read())
        await asyncio.wait([stdin_closed, asyncio.ensure_future(stop.wait())],
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip


if __name__ == "__main__":
    try:
        asyncio.run(main(json.loads(sys.argv[1])))
    except Exception as exc:
        emit("error", error=f"{type(exc).__name__}: {exc}")
        raise
