"""Rooms and broadcast in one process, on real servers on 127.0.0.1 (both transports)."""

from __future__ import annotations

import asyncio

import pytest

import aiosocker

from .conftest import StartServer, collector, eventually


def lobby_setup(conn: aiosocker.Connection) -> None:
    """``join:ROOM`` / ``leave:ROOM`` messages move the connection between rooms."""

    @conn.stage()
    def lobby(message: bytes) -> bool:
        verb, _, room = message.decode().partition(":")
        if verb == "join":
            conn.join(room)
        elif verb == "leave":
            conn.leave(room)
        conn.write(b"ok")
        return False


async def test_rooms_broadcast_to_members_only(start_server: StartServer) -> None:
    server = await start_server(lobby_setup)
    inboxes: list[list[bytes]] = [[], [], []]
    async with (
        aiosocker.connect(server.url) as a,
        aiosocker.connect(server.url) as b,
        aiosocker.connect(server.url) as c,
    ):
        for conn, inbox in zip((a, b, c), inboxes, strict=True):
            conn.add(collector(inbox), name="inbox")
        await a.send(b"join:red")
        await b.send(b"join:red")
        await c.send(b"join:blue")
        await eventually(lambda: all(b"ok" in inbox for inbox in inboxes), what="joins")
        assert {room: len(m) for room, m in server.rooms.items()} == {"red": 2, "blue": 1}
        assert await server.members("red") == 2 and await server.members("green") == 0
        members = server.rooms["red"]
        conn_a = next(conn for conn in members if "red" in conn.rooms)
        assert conn_a.rooms == frozenset({"red"})

        for inbox in inboxes:
            inbox.clear()
        assert await server.broadcast(b"to red", room="red") == 2
        assert await server.broadcast(b"to all") == 3
        assert await server.broadcast(b"red but one", room="red", exclude=conn_a) == 1
        await eventually(lambda: len(inboxes[2]) == 1 and len(inboxes[0]) + len(inboxes[1]) == 5)
        assert inboxes[2] == [b"to all"]
        assert sorted(inboxes[0] + inboxes[1]) == sorted(
            [b"to red", b"to red", b"to all", b"to all", b"red but one"]
        )

        await b.send(b"leave:red")
        await eventually(lambda: server.rooms.get("red") and len(server.rooms["red"]) == 1)
    await eventually(lambda: not server.rooms, what="everyone left every room on close")


async def test_broadcast_order_holds_per_room(start_server: StartServer) -> None:
    server = await start_server(lobby_setup)
    got: list[bytes] = []
    async with aiosocker.connect(server.url) as member:
        member.add(collector(got), name="inbox")
        await member.send(b"join:r")
        await eventually(lambda: got == [b"ok"])
        for i in range(200):
            await server.broadcast(b"%d" % i, room="r")
        await eventually(lambda: len(got) == 201, what="every broadcast")
    assert got[1:] == [b"%d" % i for i in range(200)]


async def test_a_slow_member_is_skipped_and_counted(start_server: StartServer) -> None:
    server = await start_server(lobby_setup, max_queue=2)
    async with aiosocker.connect(server.url) as member:
        member.add(lambda m: False, name="inbox")
        await member.send(b"join:r")
        await eventually(lambda: server.rooms.get("r"), what="the join")
        results = [await server.broadcast(b"x" * 100_000, room="r") for _ in range(50)]
    assert 0 in results  # some were skipped, not waited for
    assert server.hub.skipped["queue_full"] == results.count(0)


async def test_rooms_are_a_servers(start_server: StartServer) -> None:
    server = await start_server(lobby_setup)
    async with aiosocker.connect(server.url) as conn:
        with pytest.raises(RuntimeError, match="rooms belong to a server"):
            conn.join("r")
        assert conn.rooms == frozenset()
    with pytest.raises(TypeError):
        await server.broadcast(b"x", room=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await server.members("")


async def test_a_connection_that_ended_cannot_join(start_server: StartServer) -> None:
    ended: list[aiosocker.Connection] = []
    server = await start_server(lobby_setup, on_close=lambda c, code, r: ended.append(c))
    async with aiosocker.connect(server.url):
        pass
    await eventually(lambda: ended, what="the end")
    with pytest.raises(RuntimeError, match="has ended"):
        ended[0].join("r")
    await asyncio.sleep(0)


async def test_broadcast_on_a_datachannel_skips_members_without_it(
    start_server: StartServer,
) -> None:
    from aiosocker.rtc import client_stages, server_stages

    def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        def hello(message: bytes) -> bool:
            conn.join("match")
            return message == b"rtc"  # b"plain": stays here, without a channel

        server_stages(conn)

        @conn.stage()
        def playing(message: bytes) -> bool:
            return False

    server = await start_server(setup)
    heard: list[bytes] = []
    opened = asyncio.Event()
    async with aiosocker.connect(server.url) as rtc_client, aiosocker.connect(server.url) as plain:
        rtc = client_stages(rtc_client)
        rtc.on_message("game")(heard.append)
        rtc.on_open(lambda session: opened.set())
        rtc_client.add(lambda m: False, name="after")
        plain.add(lambda m: False, name="inbox")
        await plain.send(b"plain")
        await rtc_client.send(b"rtc")
        await rtc.ready()
        await asyncio.wait_for(opened.wait(), 10)
        await eventually(lambda: server.rooms.get("match") and len(server.rooms["match"]) == 2)
        before = server.hub.skipped["no_channel"]
        sent = await server.broadcast(b"state", room="match", channel="game")
        assert sent == 1 and server.hub.skipped["no_channel"] == before + 1
        await eventually(lambda: heard, timeout=5, what="the datagram")
    assert heard[0] == b"state"
