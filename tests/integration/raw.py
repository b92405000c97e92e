"""A hand-written WebSocket client for tests that send what no library would: raw
frames (any opcode, bits, mask) after a real upgrade on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

HOST = "127.0.0.1"

BINARY, TEXT, CONT, CLOSE, PING = 0x2, 0x1, 0x0, 0x8, 0x9


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One client frame; masked with a random key unless ``mask=False``."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def upgrade_request(port: int, path: str = "/") -> bytes:
    """A valid upgrade request for ``path`` on 127.0.0.1:``port``."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def upgraded(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A socket to 127.0.0.1:``port`` that has completed the WebSocket upgrade."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(upgrade_request(port))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer
