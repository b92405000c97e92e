"""Session resume in one process, on real servers on 127.0.0.1 (both transports): a
client whose connection drops comes back with its token and gets its id, user, state,
rooms, stage and the broadcasts it missed; tokens work once and expire."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import aiosocker

from .conftest import StartServer, collector, eventually


def game_setup(conn: aiosocker.Connection) -> None:
    @conn.stage()
    def hello(message: bytes) -> bool:
        conn.state["name"] = message.decode()
        conn.join("match")
        conn.write(b"welcome")
        return True

    @conn.stage()
    def playing(message: bytes) -> bool:
        conn.state["moves"] = conn.state.get("moves", 0) + 1
        conn.write(b"moved %d" % conn.state["moves"])
        return False


async def drop(conn: aiosocker.Connection) -> None:
    """Cut the TCP connection with no close frame, as a lost network does."""
    transport: Any = conn._transport
    transport.ws.transport.abort()
    await asyncio.wait_for(conn.wait_closed(), 5)
    assert conn.close_code == 1006 and conn.may_resume


async def test_a_dropped_client_resumes_where_it_was(start_server: StartServer) -> None:
    opened: list[aiosocker.Connection] = []
    server = await start_server(game_setup, resume=5, on_open=opened.append)
    got: list[bytes] = []
    async with aiosocker.connect(server.url) as first:
        first.add(collector(got), name="inbox")
        await first.send(b"ann")
        await first.send(b"move")
        await eventually(lambda: got == [b"welcome", b"moved 1"], what="the game")
        token = first.resume_token
        assert token and not first.resumed
        server_side = opened[0]
        await drop(first)
        await eventually(lambda: not server.connections, what="the server to see it")
    assert await server.members("match") == 1  # parked: still a member
    assert await server.broadcast(b"while away", room="match") == 1

    got.clear()
    async with aiosocker.connect(server.url, resume_token=token) as second:
        second.add(collector(got), name="inbox")
        await eventually(lambda: got == [b"while away"], what="the missed broadcast")
        assert second.resumed and second.resume_token not in (None, token)
        await second.send(b"move")
        await eventually(lambda: got[-1:] == [b"moved 2"], what="the state kept")
        resumed = opened[1]
        assert resumed.resumed and resumed.id == server_side.id
        assert resumed.state == {"name": "ann", "moves": 2} and resumed.current == "playing"
        assert resumed.rooms == frozenset({"match"}) and await server.members("match") == 1

    # A token works once.
    async with aiosocker.connect(server.url, resume_token=token) as third:
        third.add(collector([]), name="inbox")
        await eventually(lambda: third.resume_token is not None, what="the RESUME frame")
        assert not third.resumed
        assert opened[2].id != server_side.id and opened[2].current == "hello"


async def test_a_client_back_before_its_old_connection_dropped_takes_it_over(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The client reconnects with its token while the server still holds its old
    connection (a dead socket nobody has noticed yet: no keepalive here). The server
    drops the old one at once, parks it and hands the session to the new one."""
    opened: list[aiosocker.Connection] = []
    server = await start_server(game_setup, resume=5, on_open=opened.append, ping_interval=None)
    got: list[bytes] = []
    async with aiosocker.connect(server.url) as first:
        first.add(collector(got), name="inbox")
        await first.send(b"ann")
        await first.send(b"move")
        await eventually(lambda: got == [b"welcome", b"moved 1"], what="the game")
        token = first.resume_token
        assert token
        again: list[bytes] = []
        with caplog.at_level(logging.INFO, logger="aiosocker"):
            async with aiosocker.connect(server.url, resume_token=token) as second:
                second.add(collector(again), name="inbox")
                await second.send(b"move")
                await eventually(lambda: again == [b"moved 2"], what="the resumed game")
                assert second.resumed
                await asyncio.wait_for(first.wait_closed(), 5)  # dropped by the server
                assert first.close_code == 1006
                (conn,) = server.connections.values()
                assert conn.id == opened[0].id and conn.state == {"name": "ann", "moves": 2}
                assert conn.resumed and opened[0].closed
                assert await server.members("match") == 1
        assert any("came back" in r.getMessage() for r in caplog.records)
    await eventually(lambda: not server.connections, what="the server to empty")


async def test_a_resumed_session_gives_its_per_ip_place_back(start_server: StartServer) -> None:
    """A resume changes the connection's id to the session's: the per-IP place it holds
    is still released when it ends (else max_per_ip=1 would refuse the next one)."""
    server = await start_server(game_setup, resume=5, max_per_ip=1)
    async with aiosocker.connect(server.url) as first:
        got: list[bytes] = []
        first.add(collector(got), name="inbox")
        await first.send(b"ann")
        await eventually(lambda: got == [b"welcome"], what="the hello")
        token = first.resume_token
        await drop(first)
        await eventually(lambda: not server.connections, what="the server to see it")
    async with aiosocker.connect(server.url, resume_token=token) as second:
        second.add(collector([]), name="inbox")
        await eventually(lambda: second.resumed, what="the resume")
    await eventually(lambda: not server.connections, what="the resumed one to end")
    async with aiosocker.connect(server.url) as third:  # refused (503) if the place leaked
        assert not third.resumed


async def test_an_expired_token_starts_fresh(start_server: StartServer) -> None:
    server = await start_server(game_setup, resume=0.2)
    async with aiosocker.connect(server.url) as first:
        first.add(collector([]), name="inbox")
        await first.send(b"bob")
        await eventually(lambda: first.resume_token is not None)
        token = first.resume_token
        await drop(first)
    await eventually(lambda: not server.rooms, timeout=3, what="the grace period to end")
    assert await server.members("match") == 0
    async with aiosocker.connect(server.url, resume_token=token) as again:
        again.add(collector([]), name="inbox")
        await eventually(lambda: again.resume_token is not None)
        assert not again.resumed


async def test_a_final_close_does_not_park(start_server: StartServer) -> None:
    server = await start_server(game_setup, resume=5)
    async with aiosocker.connect(server.url) as client:
        client.add(collector([]), name="inbox")
        await client.send(b"cy")
        await eventually(lambda: client.resume_token is not None)
    # A clean 1000 from the client: it said goodbye, nothing waits for it.
    assert not client.may_resume
    await eventually(lambda: not server.connections)
    assert await server.members("match") == 0


async def test_the_reconnecting_client_resumes_by_itself(start_server: StartServer) -> None:
    server = await start_server(game_setup, resume=5)
    sessions: list[tuple[bool, str]] = []
    seen: list[aiosocker.Connection] = []
    reconnecting = aiosocker.connect(server.url, backoff=aiosocker.Backoff(initial=0.05))
    async with asyncio.timeout(10):
        async for conn in reconnecting:
            conn.add(collector([]), name="inbox")
            seen.append(conn)
            if len(seen) == 1:
                await conn.send(b"dee")
                await eventually(lambda c=conn: server.connections and c.resume_token)
                await drop(conn)
                continue
            await eventually(lambda c=conn: c.resume_token is not None)
            sessions.append((conn.resumed, next(iter(server.connections.values())).state["name"]))
            break
    assert sessions == [(True, "dee")]


@pytest.mark.parametrize("bad", [{"resume": 0}, {"resume": -1}])
async def test_resume_must_be_positive(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="resume"):
        aiosocker.serve(game_setup, **bad)  # type: ignore[arg-type]


async def test_a_session_past_the_rtc_stages_opens_a_new_peer_first(
    start_server: StartServer,
) -> None:
    from aiosocker.rtc import client_stages, server_stages

    opened: list[aiosocker.Connection] = []

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def hello(message: bytes) -> bool:
            conn.state["name"] = message.decode()
            await conn.send(b"scene")
            return True

        rtc = server_stages(conn)
        rtc.on_message("game")(lambda message: rtc.send(b"echo " + message, "game"))

        @conn.stage()
        def playing(message: bytes) -> bool:
            conn.write(b"ack " + message)
            return False

    server = await start_server(setup, resume=5, on_open=opened.append)

    async def client_setup(conn: aiosocker.Connection, heard: list[bytes]) -> Any:
        @conn.stage()
        async def scene(message: bytes) -> bool:
            await rtc.ready()
            return True

        rtc = client_stages(conn)
        rtc.on_message("game")(heard.append)
        conn.add(collector(heard), name="play")

        @conn.on_resume
        async def back(conn: aiosocker.Connection, resumed: bool) -> None:
            if resumed:  # the server is at rtc_ready again: ask for a new offer
                conn.jump("rtc_offer")
                await rtc.ready()

        return rtc

    heard: list[bytes] = []
    async with aiosocker.connect(server.url) as first:
        rtc = await client_setup(first, heard)
        await first.send(b"eve")
        await asyncio.wait_for(rtc._all_open.wait(), 10)
        await eventually(lambda: opened[0].current == "playing", what="the server's side")
        token = first.resume_token
        await drop(first)
    await eventually(lambda: not server.connections)

    heard2: list[bytes] = []
    async with aiosocker.connect(server.url, resume_token=token) as second:
        rtc2 = await client_setup(second, heard2)
        await asyncio.wait_for(rtc2._all_open.wait(), 10)
        await eventually(lambda: len(opened) == 2 and opened[1].current == "playing")
        assert opened[1].resumed and opened[1].state == {"name": "eve"}
        await second.send(b"move")
        await eventually(lambda: b"ack move" in heard2, what="the WebSocket reply")
        rtc2.send(b"ping", "game")
        await eventually(lambda: b"echo ping" in heard2, timeout=5, what="the new channel")
