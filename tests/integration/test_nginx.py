"""docs/deploy.md's nginx recipe, tested: a real nginx on loopback in front of two server
processes that share rooms through a real Redis.

nginx runs from a configuration generated into the test's temporary folder
(``servers/procs.py``: the upstream, the WebSocket upgrade headers and timeouts of the
recipe), as ``nginx -p DIR -c CONF -g 'daemon off;'``, with its logs in that folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .servers.procs import Member, Nginx, RedisServer, RoomServer, until, wait_count

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def backends(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[list[RoomServer]]:
    """Two server processes on Redis (a heartbeat each second: a dead process's members
    stop counting after 3 s)."""
    url = redis_server.url + "?heartbeat=1"
    servers = [RoomServer(url, log=tmp_path / f"server{i}.log", resume=10) for i in range(2)]
    try:
        await asyncio.gather(*(server.start() for server in servers))
        yield servers
    finally:
        await asyncio.gather(*(server.stop() for server in servers))


@pytest.fixture
def nginx(backends: list[RoomServer], tmp_path: Path) -> Iterator[Nginx]:
    folder = tmp_path / "nginx"
    folder.mkdir()
    proxy = Nginx(folder, [server.port for server in backends])
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


async def through_nginx(
    stack: contextlib.AsyncExitStack, nginx: Nginx, want_pid: int | None = None
) -> tuple[Member, int]:
    """A client connected through nginx (to the process ``want_pid``, if given: nginx
    goes round the upstreams, so a few connections reach each)."""
    for _ in range(10):
        member = await stack.enter_async_context(Member(nginx.url))
        pid = await member.pid()
        if want_pid is None or pid == want_pid:
            return member, pid
        await member.__aexit__()
    pytest.fail(f"no connection through nginx reached process {want_pid}; {nginx.log()}")


async def reconnect(
    stack: contextlib.AsyncExitStack,
    nginx: Nginx,
    dropped: Member,
    timeout: float = 15,  # noqa: ASYNC109 (a polling deadline, not a cancel scope)
) -> tuple[Member, int]:
    """What a client does when its connection drops: connect again, through nginx,
    with backoff, until it is in. (One place, so that a resume can be asserted here.)"""
    assert dropped.closed and dropped.conn is not None
    token = dropped.conn.resume_token if dropped.conn.may_resume else None
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            member = await stack.enter_async_context(Member(nginx.url, token))
            return member, await member.pid()
        except Exception:
            if time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def test_nginx_in_front_of_two_processes_rooms_and_failover(
    nginx: Nginx, backends: list[RoomServer]
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        a, pid_a = await through_nginx(stack, nginx)
        other = next(server.pid for server in backends if server.pid != pid_a)
        b, pid_b = await through_nginx(stack, nginx, other)
        assert {pid_a, pid_b} == {server.pid for server in backends}

        # A room broadcast made by one process reaches a member on the other.
        await a.join("match")
        await b.join("match")
        await wait_count(a, "match", 2)
        await a.send("say:match:from a's process")
        await b.send("say:match:from b's process")
        for member in (a, b):
            await wait_until_got(member, ["from a's process", "from b's process"])

        # The process serving a dies: a reconnects through nginx and lands on the other.
        victim = next(server for server in backends if server.pid == pid_a)
        victim.kill()
        await wait_closed(a)
        assert a.conn is not None and a.conn.close_code == 1006  # no close frame: it died
        again, pid = await reconnect(stack, nginx, a)
        assert pid == pid_b
        await again.join("match")
        await wait_count(b, "match", 2)  # the dead process's member no longer counts
        await b.send("say:match:after the failover")
        await wait_until_got(again, ["after the failover"])
        assert not b.closed, "the other process's client was not touched"
    assert "[emerg]" not in nginx.log() and "[alert]" not in nginx.log()


async def wait_until_got(member: Member, texts: list[str]) -> None:
    try:
        await until(lambda: all(text.encode() in member.inbox for text in texts), 10, f"{texts}")
    except pytest.fail.Exception as exc:
        pytest.fail(f"{exc} (last received: {member.inbox[-10:]})")


async def wait_closed(member: Member) -> None:
    await until(lambda: member.closed, 10, "the connection to drop")


async def server_id(member: Member) -> str:
    """The id the server gave ``member``'s connection (the client's own id is local)."""
    return (await member.ask("id", "id:")).removeprefix("id:")


async def test_a_client_resumes_through_nginx_on_the_other_process(
    nginx: Nginx, backends: list[RoomServer]
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        a, pid_a = await through_nginx(stack, nginx)
        other = next(server.pid for server in backends if server.pid != pid_a)
        b, _ = await through_nginx(stack, nginx, other)
        await a.join("match")
        await b.join("match")
        await wait_count(b, "match", 2)
        assert a.conn is not None and a.conn.resume_token
        first_id = await server_id(a)

        # a's process goes away the graceful way (a deploy): 1001, the session parks in
        # Redis, and what is broadcast to the room meanwhile is kept for it.
        next(server for server in backends if server.pid == pid_a).terminate()
        await wait_closed(a)
        assert a.conn.close_code == 1001 and a.conn.may_resume
        await b.send("say:match:while a was away")
        again, pid = await reconnect(stack, nginx, a)
        assert pid == other
        assert again.conn is not None and again.conn.resumed
        await wait_until_got(again, ["while a was away"])  # missed, delivered on resume
        await wait_count(b, "match", 2)  # back in its room, on the other process
        await b.send("say:match:welcome back")
        await wait_until_got(again, ["welcome back"])
        assert await server_id(again) == first_id  # the server restored the session's id
