"""WebSocket clients that are not ours (``websocket-client``, synchronous, in a thread;
a bare ``websockets`` client) talk to a socker server: socker speaks plain RFC 6455, on
both server transports."""

from __future__ import annotations

import asyncio
import struct

import websocket  # the websocket-client package
from websockets.asyncio.client import connect as ws_connect

import aiosocker

from .conftest import Recorder, StartServer
from .test_connections import SCENE, go_readme_server


def decode_close(payload: bytes) -> tuple[int, str]:
    (code,) = struct.unpack("!H", payload[:2])
    return code, payload[2:].decode()


async def test_websocket_client_walks_the_go_readme_exchange(
    start_server: StartServer, recorder: Recorder
) -> None:
    server = await start_server(go_readme_server, **recorder.hooks())

    def talk(url: str) -> list[bytes]:
        # websocket-client sends an Origin naming the server's own host: allowed.
        ws = websocket.create_connection(url, timeout=2)
        try:
            ws.send_binary(b"hello")
            scene = ws.recv()
            ws.send_binary(b"ready")
            offer = ws.recv()
            ws.send_binary(b"answer:v=0")
            ws.send_binary(b"state:1")
            ack = ws.recv()
            return [scene, offer, ack]
        finally:
            ws.close(status=websocket.STATUS_NORMAL, reason=b"bye")

    assert await asyncio.to_thread(talk, server.url) == [SCENE, b"offer:v=0", b"ack:state:1"]
    await recorder.wait_closed()
    (conn,) = recorder.opened
    assert conn.current == "playing"
    assert recorder.codes() == [(1000, "bye")]


async def test_websocket_client_text_frame_gets_1003(
    start_server: StartServer, recorder: Recorder
) -> None:
    server = await start_server(go_readme_server, **recorder.hooks())

    def send_text(url: str) -> tuple[int, tuple[int, str]]:
        ws = websocket.create_connection(url, timeout=2)
        try:
            ws.send("a text frame")
            opcode, payload = ws.recv_data(control_frame=True)  # it answers the close
            return opcode, decode_close(payload)
        finally:
            ws.shutdown()  # close() would do nothing once the close frames crossed

    opcode, (code, reason) = await asyncio.to_thread(send_text, server.url)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert code == aiosocker.CloseCode.UNSUPPORTED_DATA
    assert "binary" in reason
    await recorder.wait_closed()
    assert recorder.codes()[0][0] == 1003


async def test_websocket_client_from_another_origin_gets_403(start_server: StartServer) -> None:
    server = await start_server(go_readme_server)

    def refused(url: str) -> int:
        try:
            websocket.create_connection(url, timeout=2, origin="https://evil.example")
        except websocket.WebSocketBadStatusException as exc:
            return exc.status_code
        raise AssertionError("the handshake should have been refused")

    assert await asyncio.to_thread(refused, server.url) == 403


async def test_bare_websockets_client_echo_of_large_and_empty_messages(
    start_server: StartServer,
) -> None:
    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def echo(message: bytes) -> bool:
            await conn.send(message[::-1])
            return False

    server = await start_server(setup)
    async with ws_connect(server.url, compression=None) as ws:
        for word in (b"abc", b"x" * 70000, b""):  # 7-, 64-bit and no length
            await ws.send(word)
            assert await asyncio.wait_for(ws.recv(), 2) == word[::-1]
        await asyncio.wait_for(await ws.ping(), 2)  # the server answers a ping
