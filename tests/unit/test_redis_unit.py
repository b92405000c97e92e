"""RedisBackend without a Redis (no socket is opened): what it does with what arrives on
the channel, and what it answers while Redis is unreachable. tests/integration/
test_redis.py runs it against a real redis-server."""

from __future__ import annotations

import logging

import pytest

from aiosocker.backends.redis import RedisBackend, RedisUnavailable, _Outage
from aiosocker.resume import Parked
from aiosocker.rooms import Broadcast

URL = "redis://127.0.0.1:1/0"  # never connected to in these tests


def test_options_are_checked() -> None:
    for bad in ({"heartbeat": 0}, {"backoff": -1}, {"connect_timeout": 0}, {"max_pending": 0}):
        with pytest.raises(ValueError):
            RedisBackend(URL, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RedisBackend("http://not-redis/")


def test_prefix_and_heartbeat_can_come_in_the_url() -> None:
    backend = RedisBackend("redis://127.0.0.1:1/2?prefix=game1&heartbeat=0.5&protocol=2")
    assert backend.prefix == "game1" and backend._heartbeat == 0.5 and backend._ttl_ms == 1500
    assert backend.url == "redis://127.0.0.1:1/2?protocol=2"  # the rest is redis-py's
    assert RedisBackend(URL + "?prefix=x", prefix="y").prefix == "y"  # an argument wins
    for bad in ("?heartbeat=soon", "?heartbeat=0", "?prefix=a*b", "?prefix="):
        with pytest.raises(ValueError):
            RedisBackend(URL + bad)


def test_each_process_has_its_own_origin_and_keys_under_the_prefix() -> None:
    a, b = RedisBackend(URL), RedisBackend(URL, prefix="game1")
    assert a.origin != b.origin and len(a.origin) == 32
    assert a.channel == "aiosocker:bcast" and b.channel == "game1:bcast"
    assert b._session_keys("t") == ["game1:park:t", "game1:missed:t", "game1:missedmeta:t"]


def test_received_delivers_others_broadcasts_and_refuses_garbage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = RedisBackend(URL)
    got: list[Broadcast] = []
    backend._deliver = got.append
    other = Broadcast(b"payload", "r", frozenset({"playing"}), None, "someone-else")
    backend._received(other.encode())
    backend._received(Broadcast(b"mine", "r", origin=backend.origin).encode())  # own: skipped
    backend._received("not bytes")
    with caplog.at_level(logging.WARNING, "aiosocker.redis"):
        for junk in (b"", b"AB1\n", b"AB1\n{}\n", b"AB1\nnull\n", b"\xff" * 10):
            backend._received(junk)
    assert got == [other]
    assert backend.dropped["garbage"] == 5
    assert len(caplog.records) == 3  # logged at 1, 2, 4...: garbage cannot flood the log


def test_a_deliver_that_raises_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    backend = RedisBackend(URL)

    def deliver(message: Broadcast) -> None:
        raise RuntimeError("boom")

    backend._deliver = deliver
    with caplog.at_level(logging.ERROR, "aiosocker.redis"):
        backend._received(Broadcast(b"x", origin="other").encode())
    assert "delivering a broadcast failed" in caplog.text


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    backend = RedisBackend(URL, backoff=2.0)
    for failures in range(1, 40):
        delay = backend._delay(failures)
        ceiling = min(2.0, 0.05 * 2**failures)
        assert ceiling / 2 <= delay <= ceiling


async def test_while_redis_is_unreachable_nothing_waits_and_drops_are_counted() -> None:
    backend = RedisBackend(URL)
    backend._tasks = [None]  # type: ignore[list-item]  # started, and the writer found
    backend._outage = _Outage()  # Redis unreachable
    await backend.publish(Broadcast(b"x", "r", origin=backend.origin))
    assert backend.dropped["publish"] == 1 and backend._outage.publish == 1
    backend.joined("r")
    backend.joined("r")
    backend.left("r")
    assert await backend.members("r") == 1  # this process's members only
    with pytest.raises(RedisUnavailable):  # the hub keeps no session: a fresh start later
        await backend.park("t", Parked("1", None, {}, (), "s"), 5)
    with pytest.raises(RedisUnavailable):  # the hub starts the client fresh
        await backend.claim("t")
    await backend.missed("t", b"m")  # lost, counted (the hub would log each one)
    assert backend.dropped["store"] == 3 and backend._outage.store == 3
    with pytest.raises(TypeError):  # not JSON data: the caller's mistake, as MemoryStore
        await backend.park("t", Parked("1", object(), {}, (), "s"), 5)
    backend._tasks = []
    await backend.close()
    await backend.close()  # twice is fine


def test_joined_and_left_only_mark_the_rooms_for_the_writer() -> None:
    backend = RedisBackend(URL)
    backend.joined("a")
    backend.joined("a")
    backend.left("a")
    backend.left("b")  # never joined: stays at zero
    assert backend._local == {"a": 1}
    assert backend._dirty == {"a", "b"}
