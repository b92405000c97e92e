"""Rooms, broadcasts and parked sessions across processes, on a real redis-server.

Every test starts its own ``redis-server`` on a free loopback port (no persistence) and
stops it, also when the test fails. The cross-process tests run two and three real
server processes (``servers/room_server.py``) and real clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aiosocker.backends.redis import RedisBackend
from aiosocker.resume import MAX_MISSED, MAX_MISSED_BYTES, Parked
from aiosocker.rooms import Broadcast

from .servers.procs import Member, RedisServer, RoomServer, until, wait_count


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def backends(redis_server: RedisServer) -> AsyncIterator[list[RedisBackend]]:
    """Backends on the test's Redis, started with :func:`started`, closed at the end."""
    made: list[RedisBackend] = []
    try:
        yield made
    finally:
        for backend in made:
            await asyncio.wait_for(backend.close(), 15)


async def started(
    made: list[RedisBackend], url: str, received: list[Broadcast] | None = None, **options: float
) -> RedisBackend:
    backend = RedisBackend(url, **options)  # type: ignore[arg-type]
    made.append(backend)
    await backend.start((received if received is not None else []).append)
    assert backend.connected
    return backend


@contextlib.asynccontextmanager
async def room_servers(count: int, redis: str, logs: Path) -> AsyncIterator[list[RoomServer]]:
    servers = [RoomServer(redis, log=logs / f"server{i}.log") for i in range(count)]
    try:
        await asyncio.gather(*(server.start() for server in servers))
        yield servers
    finally:
        await asyncio.gather(*(server.stop() for server in servers))


def server_logs(folder: Path) -> str:
    return "".join(p.read_text() for p in sorted(folder.glob("server*.log")))


# -- the store ---------------------------------------------------------------------------


def record(stage: str = "playing") -> Parked:
    return Parked("7", {"name": "ada"}, {"score": 3, "items": ["a"]}, ("red", "blue"), stage)


async def test_park_then_claim_once_from_another_process(
    redis_server: RedisServer, backends: list[RedisBackend]
) -> None:
    a = await started(backends, redis_server.url)
    b = await started(backends, redis_server.url)
    await a.park("tok", record(), 10)
    for i in range(5):
        await a.missed("tok", b"missed %d" % i)
    claimed = await b.claim("tok")
    assert claimed is not None
    parked, missed = claimed
    assert (parked.id, parked.user, parked.state, parked.rooms, parked.stage) == (
        "7",
        {"name": "ada"},
        {"score": 3, "items": ["a"]},
        ("red", "blue"),
        "playing",
    )
    assert parked.expires > time.time() + 5
    assert list(missed.messages) == [b"missed %d" % i for i in range(5)]
    assert missed.size == sum(len(m) for m in missed.messages) and not missed.overflowed
    assert await a.claim("tok") is None and await b.claim("tok") is None  # once
    await a.missed("tok", b"after the claim")  # kept for nobody: dropped quietly
    assert await b.claim("tok") is None
    assert await b.claim("never parked") is None


async def test_a_token_is_claimed_once_when_two_processes_race(
    redis_server: RedisServer, backends: list[RedisBackend]
) -> None:
    made = [await started(backends, redis_server.url) for _ in range(4)]
    for round_ in range(20):
        await made[0].park(f"t{round_}", record(), 10)
        results = await asyncio.gather(*(b.claim(f"t{round_}") for b in made))
        assert sum(r is not None for r in results) == 1, results


async def test_a_parked_session_expires(
    redis_server: RedisServer, backends: list[RedisBackend]
) -> None:
    a = await started(backends, redis_server.url)
    await a.park("short", record(), 0.2)
    await a.missed("short", b"x")
    await asyncio.sleep(0.4)
    assert await a.claim("short") is None
    await a.missed("short", b"y")  # nothing parked: nothing kept
    client = aioredis.Redis(port=redis_server.port)
    try:
        assert await client.keys("aiosocker:*short*") == []
    finally:
        await client.aclose()


@pytest.mark.parametrize("overflow", ["count", "bytes"])
async def test_missed_messages_overflow_to_a_fresh_start(
    redis_server: RedisServer, backends: list[RedisBackend], overflow: str
) -> None:
    a = await started(backends, redis_server.url)
    await a.park("tok", record(), 10)
    if overflow == "count":
        for i in range(MAX_MISSED):
            await a.missed("tok", b"%d" % i)
        kept = await a.claim("tok")
        assert kept is not None and len(kept[1].messages) == MAX_MISSED  # at the bound: kept
        await a.park("tok", record(), 10)
        for i in range(MAX_MISSED + 1):
            await a.missed("tok", b"%d" % i)
    else:
        big = b"x" * (MAX_MISSED_BYTES // 2)
        await a.missed("tok", big)
        await a.missed("tok", big)
        await a.missed("tok", b"one byte too many")
    await a.missed("tok", b"later")  # past the bound, nothing more is kept
    claimed = await a.claim("tok")
    assert claimed is not None
    assert claimed[1].overflowed and not claimed[1].messages and claimed[1].size == 0


async def test_garbage_in_redis_is_refused_without_crashing(
    redis_server: RedisServer, backends: list[RedisBackend]
) -> None:
    received: list[Broadcast] = []
    a = await started(backends, redis_server.url, received)
    b = await started(backends, redis_server.url)
    client = aioredis.Redis(port=redis_server.port)
    try:
        # Records that are not records: not JSON, JSON of the wrong shape, a pickle,
        # and a key of the wrong type.
        await client.set("aiosocker:park:notjson", b"\x80\x04\x95 not json", ex=10)
        await client.set("aiosocker:park:shape", b'{"id": 1, "stage": []}', ex=10)
        await client.set("aiosocker:park:pickle", b"cos\nsystem\n(S'echo hi'\ntR.", ex=10)
        await client.rpush("aiosocker:park:wrongtype", b"a list")
        for token in ("notjson", "shape", "pickle", "wrongtype"):
            assert await a.claim(token) is None
        await a.park("ok", record(), 10)
        await client.set("aiosocker:missed:ok", b"not a list")  # missed list of the wrong type
        await a.missed("ok", b"m")  # refused by Redis, dropped, no crash
        await client.delete("aiosocker:missed:ok")
        claimed = await a.claim("ok")
        assert claimed is not None and claimed[0].id == "7"
        assert a.dropped["garbage"] >= 3

        # A member count that is not a count, and one from a process that never lived.
        await client.hset("aiosocker:room:r", mapping={"bogus": "NaN-ish", "ghost": 5})
        a.joined("r")
        assert await a.members("r") == 1

        # Messages on the channel that are not broadcasts.
        for junk in (b"", b"hello", b"AB1\n{not json\n", b"AB1\n[1,2]\nx", b"\x00" * 100):
            await client.publish(a.channel, junk)
        await b.publish(Broadcast(b"still works", "r", origin=b.origin))
        await until(lambda: [m.data for m in received] == [b"still works"], 5, "the broadcast")
        assert a.dropped["garbage"] >= 8
        assert a.connected
    finally:
        await client.aclose()


# -- member counts -----------------------------------------------------------------------


async def test_members_count_every_process_and_a_dead_ones_expire(
    redis_server: RedisServer, backends: list[RedisBackend]
) -> None:
    a = await started(backends, redis_server.url, heartbeat=0.2)
    b = await started(backends, redis_server.url, heartbeat=0.2)
    for _ in range(3):
        a.joined("r")
    b.joined("r")
    b.joined("other")
    assert await a.members("r") == 4 and await b.members("r") == 4
    a.left("r")
    assert await a.members("r") == 3
    assert await a.members("nobody") == 0

    # b dies without a word (its tasks stop, nothing is cleaned up): after three
    # heartbeats its members no longer count.
    for task in b._tasks:
        task.cancel()
    await asyncio.gather(*b._tasks, return_exceptions=True)
    b._closed = True
    backends.remove(b)
    await asyncio.sleep(0.7)
    assert await a.members("r") == 2
    assert await a.members("other") == 0

    # A clean close takes its counts out at once.
    c = await started(backends, redis_server.url, heartbeat=0.2)
    c.joined("r")
    assert await a.members("r") == 3
    await c.close()
    assert await a.members("r") == 2


# -- processes ---------------------------------------------------------------------------


@pytest.mark.parametrize("processes", [2, 3])
async def test_a_room_broadcast_reaches_every_member_once_in_order(
    redis_server: RedisServer, tmp_path: Path, processes: int
) -> None:
    per_sender = 100
    async with (
        room_servers(processes, redis_server.url, tmp_path) as servers,
        contextlib.AsyncExitStack() as stack,
    ):
        members = [
            await stack.enter_async_context(Member(s.url)) for s in servers for _ in range(2)
        ]
        outsiders = [await stack.enter_async_context(Member(s.url)) for s in servers]
        senders = [await stack.enter_async_context(Member(s.url)) for s in servers]
        for member in members:
            await member.join("r")
        for outsider in outsiders:
            await outsider.join("elsewhere")
        for sender in senders:  # every process counts every member
            await wait_count(sender, "r", len(members))

        async def say(index: int, sender: Member) -> None:
            for k in range(per_sender):
                await sender.send(f"say:r:s{index}-{k}")

        await asyncio.gather(*(say(i, s) for i, s in enumerate(senders)))
        total = per_sender * len(senders)

        def said(member: Member) -> list[str]:
            return [m.decode() for m in member.inbox if m.startswith(b"s")]

        await until(lambda: all(len(said(m)) >= total for m in members), 20, "every broadcast")
        await asyncio.sleep(0.2)  # anything extra (a duplicate) would arrive by now
        for member in members:
            got = said(member)
            assert len(got) == total == len(set(got)), "each broadcast exactly once"
            for index in range(len(senders)):
                mine = [m for m in got if m.startswith(f"s{index}-")]
                assert mine == [f"s{index}-{k}" for k in range(per_sender)], "in order"
        for outsider in outsiders:
            assert not said(outsider), "a non-member got a room broadcast"

        # Leaving and disconnecting count everywhere.
        await members[0].ask("leave:r", "left:r")
        await members[1].__aexit__()
        for sender in senders:
            await wait_count(sender, "r", len(members) - 2)


async def test_redis_restart_local_traffic_goes_on_and_cross_process_comes_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with (
        room_servers(2, redis_server.url, tmp_path) as (one, two),
        Member(one.url) as near,
        Member(two.url) as far,
        Member(one.url) as sender,
    ):
        await near.join("r")
        await far.join("r")
        await wait_count(sender, "r", 2)
        await sender.send("say:r:before")
        await until(lambda: b"before" in near.inbox and b"before" in far.inbox, 5, "before")

        redis_server.kill()
        # Redis is gone: this process's members still get its broadcasts at once.
        for k in range(20):
            await sender.send(f"say:r:during-{k}")
        await until(lambda: near.got("during-") == [f"during-{k}" for k in range(20)], 5, "local")
        assert await sender.count("r") == 1  # this process's members only, meanwhile
        assert far.got("during-") == []  # pub/sub: what was made during the outage is lost

        redis_server.start()  # same port, empty: the backends reconnect and write back
        started_at = time.monotonic()
        for k in range(400):  # bounded: 400 * 50 ms
            await sender.send(f"say:r:after-{k}")
            await asyncio.sleep(0.05)
            if far.got("after-"):
                break
        assert far.got("after-"), "cross-process broadcasts did not come back"
        recovered = time.monotonic() - started_at
        assert recovered < 15, recovered
        await wait_count(sender, "r", 2)  # counts written again after the restart
        await wait_count(far, "r", 2)
        assert not near.closed and not far.closed and not sender.closed
    logs = server_logs(tmp_path)
    assert "reachable again" in logs and "dropped meanwhile" in logs
    assert "Traceback" not in logs
