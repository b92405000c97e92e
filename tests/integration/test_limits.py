"""Rate and fairness: per-connection rate limits (per stage too), per-IP caps, and the
byte budget's effect on write(), on real servers on 127.0.0.1 (both transports)."""

from __future__ import annotations

import asyncio

import pytest

import aiosocker
from aiosocker.limits import Rate

from .conftest import Recorder, StartServer, eventually
from .raw import BINARY, frame, upgraded


async def test_a_flood_past_the_rate_closes_4429_and_others_keep_going(
    start_server: StartServer, recorder: Recorder
) -> None:
    echoed: list[bytes] = []

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        def echo(message: bytes) -> bool:
            conn.write(message)
            return False

    server = await start_server(setup, rate=Rate(messages=50, burst=1), **recorder.hooks())
    async with aiosocker.connect(server.url) as flooder, aiosocker.connect(server.url) as calm:

        @calm.stage()
        def heard(message: bytes) -> bool:
            echoed.append(message)
            return False

        @flooder.stage()
        def ignore(message: bytes) -> bool:
            return False

        for _ in range(500):  # well past 50 messages in one second
            flooder.write(b"x")
        await asyncio.wait_for(flooder.wait_closed(), 5)
        assert flooder.close_code == 4429
        assert "over its rate limit" in flooder.close_reason
        for i in range(5):
            await calm.send(b"%d" % i)
            await asyncio.sleep(0.05)
        await eventually(lambda: len(echoed) == 5, what="the calm client's echoes")
        assert echoed == [b"0", b"1", b"2", b"3", b"4"] and not calm.closed
    await recorder.wait_closed(2)
    assert 4429 in [code for code, _ in recorder.codes()]
    assert any(isinstance(exc, aiosocker.RateExceededError) for _, exc in recorder.errors)


async def test_a_stage_rate_overrides_the_connection_rate(start_server: StartServer) -> None:
    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage(rate=Rate(bytes=1000, burst=1))
        def hello(message: bytes) -> bool:
            return message == b"hello"

        @conn.stage()  # no rate of its own, none on the connection: unlimited
        def playing(message: bytes) -> bool:
            return False

    server = await start_server(setup)
    async with aiosocker.connect(server.url) as client:
        await client.send(b"hello")
        for _ in range(200):
            await client.send(b"y" * 100)  # 20 kB, far past 1 kB/s: fine in 'playing'
        await asyncio.sleep(0.1)
        assert not client.closed
    async with aiosocker.connect(server.url) as client:
        await client.send(b"z" * 2000)  # over 1 kB/s in 'hello'
        await asyncio.wait_for(client.wait_closed(), 5)
        assert (client.close_code, client.close_reason) == (
            4429,
            "stage 'hello': over its rate limit",
        )


async def test_max_per_ip_answers_503_past_it(start_server: StartServer) -> None:
    server = await start_server(lambda conn: conn.add(lambda m: False, name="s"), max_per_ip=2)
    async with aiosocker.connect(server.url), aiosocker.connect(server.url):
        with pytest.raises(aiosocker.HandshakeRejected) as caught:
            async with aiosocker.connect(server.url):
                pass
        assert caught.value.status == 503
        assert caught.value.reason == "too many connections from 127.0.0.1"
    await eventually(lambda: not server.connections, what="both closed")
    async with aiosocker.connect(server.url):  # the places are free again
        pass


async def test_new_per_ip_answers_429_past_it(start_server: StartServer) -> None:
    server = await start_server(lambda conn: conn.add(lambda m: False, name="s"), new_per_ip=2)
    statuses = []
    for _ in range(6):
        try:
            async with aiosocker.connect(server.url):
                statuses.append(101)
        except aiosocker.HandshakeRejected as exc:
            statuses.append(exc.status)
    assert statuses[:2] == [101, 101]
    assert 429 in statuses[2:]


async def test_write_past_max_memory_raises_queue_full(start_server: StartServer) -> None:
    raised: list[BaseException] = []

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        def burst(message: bytes) -> bool:
            try:
                # The socket's buffers take megabytes first (a peer that keeps up never
                # fills the budget); then 64 kB of queue, then QueueFullError.
                for _ in range(10_000):
                    conn.write(b"m" * 10_000)
            except aiosocker.QueueFullError as exc:
                raised.append(exc)
            return False

    server = await start_server(setup, max_memory=64_000, max_size=1000)
    async with aiosocker.connect(server.url) as client:
        await client.send(b"go")
        await eventually(lambda: raised, what="QueueFullError")
    assert "max_memory=64000" in str(raised[0])


async def test_max_memory_must_hold_one_message() -> None:
    with pytest.raises(ValueError, match="max_memory"):
        aiosocker.serve(lambda conn: None, max_memory=100, max_size=1000)


async def test_close_timeout_bounds_closing_a_peer_that_never_reads(
    start_server: StartServer, recorder: Recorder
) -> None:
    import contextlib

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def flood_then_close(message: bytes) -> bool:
            try:
                for _ in range(500):
                    conn.write(b"z" * 60_000)  # 30 MB: more than the socket buffers take
            except aiosocker.QueueFullError:
                pass
            await conn.close(4000, "bye")
            return False

    server = await start_server(setup, close_timeout=0.5, ping_interval=None, **recorder.hooks())
    _, writer = await upgraded(server.port)
    writer.write(frame(BINARY, b"g"))

    async def keep_sending() -> None:
        big = frame(BINARY, b"k" * 60_000)
        with contextlib.suppress(ConnectionError):
            for _ in range(2000):  # bounded: at most 120 MB, stops when the server hangs up
                writer.write(big)
                await writer.drain()

    sender = asyncio.create_task(keep_sending())
    try:
        # Never read again: without the bound, the server waits for room to send its
        # close frame until the peer leaves (no keepalive here).
        await recorder.wait_closed(timeout=5)
    finally:
        writer.transport.abort()
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    assert recorder.codes()[0][0] in (4000, 1006)
