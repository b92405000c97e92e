"""A conformance table, in the spirit of the Autobahn testsuite's cases: framing,
fragmentation, close handling, UTF-8 and limits, each sent as raw bytes by a
hand-written client to every serving path (the websockets and picows listeners, and the
ASGI app under uvicorn). Every path must close with the same code, put that code on the
wire, and report it to ``on_close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

import aiosocker

from .asgi_helpers import running
from .conftest import HOST, eventually
from .raw import BINARY, CLOSE, CONT, PING, TEXT, frame, upgraded

pytestmark = pytest.mark.timeout(90)

MAX_SIZE = 4096
PATHS = ("websockets", "picows", "asgi")


def close(code: int, reason: bytes = b"") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason)


@dataclass(frozen=True)
class Case:
    name: str
    frames: tuple[bytes, ...]
    code: int  # the close code on the wire, and the one on_close reports


CASES = (
    Case("normal close", (close(1000, b"bye"),), 1000),
    Case("application close code", (close(4000, b"kicked"),), 4000),
    Case("reserved bit set", (frame(BINARY, b"x", rsv=0x40),), 1002),
    Case("unmasked client frame", (frame(BINARY, b"x", mask=False),), 1002),
    Case("unknown opcode", (frame(0x3, b"x"),), 1002),
    Case("continuation without a start", (frame(CONT, b"x"),), 1002),
    Case(
        "new message inside a fragmented one",
        (frame(BINARY, b"a", fin=False), frame(BINARY, b"b")),
        1002,
    ),
    Case("fragmented control frame", (frame(PING, b"x", fin=False),), 1002),
    Case("control frame over 125 bytes", (frame(PING, b"x" * 126),), 1002),
    Case("close code 5000", (close(5000),), 1002),
    Case("close code 1005 sent on the wire", (close(1005),), 1002),
    Case("close frame of one byte", (frame(CLOSE, b"x"),), 1002),
    Case("message over max_size", (frame(BINARY, b"x" * (MAX_SIZE + 1)),), 1009),
    Case(
        "fragments over max_size",
        (frame(BINARY, b"x" * 3000, fin=False), frame(CONT, b"x" * 3000)),
        1009,
    ),
    Case("text frame", (frame(TEXT, b"hello"),), 1003),
    Case("text frame with invalid UTF-8", (frame(TEXT, b"\xff\xfe"),), 1007),
    Case(
        "fragmented text with invalid UTF-8",
        (frame(TEXT, b"\xce", fin=False), frame(CONT, b"\xff")),
        1007,
    ),
)


def handler(message: bytes) -> bool:
    return False


@contextlib.asynccontextmanager
async def serving(path: str, closes: list[tuple[int, str]]) -> AsyncIterator[int]:
    def on_close(conn: aiosocker.Connection, code: int, reason: str) -> None:
        closes.append((code, reason))

    def setup(conn: aiosocker.Connection) -> None:
        conn.add(handler, name="lobby")

    options: dict[str, Any] = {"max_size": MAX_SIZE, "on_close": on_close}
    if path == "asgi":
        app = aiosocker.ASGIApp(setup, **options)
        async with running(app, sock=app, ws_max_size=MAX_SIZE) as server:
            yield server.port
        return
    async with aiosocker.serve(setup, HOST, 0, transport=path, **options) as srv:
        yield srv.port


async def attack(port: int, frames: tuple[bytes, ...]) -> int | None:
    """Upgrade, send ``frames``, and return the close code the server sent (``None``
    if it hung up without a close frame)."""
    reader, writer = await upgraded(port)
    try:
        writer.write(b"".join(frames))
        while True:
            first = await asyncio.wait_for(reader.readexactly(2), 5)
            size = first[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
            payload = await reader.readexactly(size)
            if first[0] & 0x0F == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                # Answer the close like a well-behaved client, then hang up.
                with contextlib.suppress(ConnectionError):
                    writer.write(frame(CLOSE, payload[:2]))
                return code
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    finally:
        writer.close()


@pytest.mark.parametrize("path", PATHS)
async def test_every_serving_path_closes_alike(path: str) -> None:
    closes: list[tuple[int, str]] = []
    results: dict[str, tuple[int | None, int]] = {}
    async with serving(path, closes) as port:
        for index, case in enumerate(CASES):
            wire = await attack(port, case.frames)
            heard = index + 1
            await eventually(lambda n=heard: len(closes) >= n, timeout=5, what=case.name)
            results[case.name] = (wire, closes[index][0])
    wrong = {
        name: got
        for (name, got), case in zip(results.items(), CASES, strict=True)
        if got != (case.code, case.code)
    }
    assert not wrong, f"{path}: (wire, on_close) differ from the table: {wrong}"
