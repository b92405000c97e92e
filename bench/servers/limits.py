"""Kinds of the flood figure (:mod:`bench.figures.limits`): ``flood-socker`` and
``flood-socker-picows``, ``aiosocker.serve`` on the websockets / picows transport.

The chain is ``hello`` (stays until the message is ``b"hello"``, ignoring anything else,
as the first stage of a game does) then ``echo`` (``await conn.send(message)``). Mode
``limited`` serves with ``rate=aiosocker.Rate(messages=200)`` (1 s of burst: past it a
connection closes with 4429); mode ``unlimited`` without a rate.
"""

from __future__ import annotations

from typing import Any

from ..rooms_common import FLOOD_RATE_MESSAGES, HELLO
from ..runner import Unavailable
from .base import HOST, Life, Ready


def flood_setup(conn: Any) -> None:
    def hello(message: bytes) -> bool:
        return message == HELLO

    async def echo(message: bytes) -> bool:
        await conn.send(message)
        return False

    conn.add(hello, name="hello")
    conn.add(echo, name="echo")


async def _flood(mode: str, ready: Ready, life: Life, transport: str | None) -> None:
    import aiosocker

    options: dict[str, Any] = {}
    if mode == "limited":
        options["rate"] = aiosocker.Rate(messages=FLOOD_RATE_MESSAGES)
    if transport is not None:
        options["transport"] = transport
    try:
        server = aiosocker.serve(flood_setup, HOST, 0, **options)
        await server.start()
    except (ValueError, NotImplementedError, ImportError) as exc:
        if transport is None:
            raise
        raise Unavailable(f"aiosocker.serve(transport={transport!r}): {exc}") from exc
    try:
        ready(server.port)
        await life.wait()
    finally:
        await server.close()


async def flood_socker(mode: str, ready: Ready, life: Life) -> None:
    await _flood(mode, ready, life, None)


async def flood_socker_picows(mode: str, ready: Ready, life: Life) -> None:
    await _flood(mode, ready, life, "picows")
