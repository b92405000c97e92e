"""WebRTC DataChannels over the stages, with real aiortc peers on both sides (loopback).

Every test runs a real socker server on 127.0.0.1 (port 0) and a real client: socker's
own (``aiosocker.connect`` + ``client_stages``) or a bare ``websockets`` client that speaks
the signaling envelope by hand. ICE uses the host's non-loopback address (aioice never
offers 127.0.0.1); without one these tests fail with a message that says so (see
``docs/rtc.md``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

import aiosocker
from aiosocker import CloseCode
from aiosocker.rtc import Answer, Candidate, ChannelSpec, Ready, encode
from aiosocker.rtc.peer import IceServer, close_peer, new_peer, strip_mdns_candidates
from aiosocker.rtc.session import (
    ClientSession,
    RtcSession,
    ServerSession,
    client_stages,
    server_stages,
)

from .conftest import leftover_tasks
from .rtc_helpers import (
    WAIT,
    RawClient,
    ServerSide,
    dc_of,
    eventually,
    interface_fixture,  # noqa: F401 (the ``interface`` fixture)
    names,
    open_peer_connections,
    rtc_app,
    rtc_client,
    serve_fixture,  # noqa: F401 (the ``serve`` fixture)
    settle,
)

needs_interface = pytest.mark.usefixtures("interface")

SERVER_STAGES = ["hello", "rtc_ready", "rtc_answer", "rtc_open", "control"]
CLIENT_STAGES = ["scene", "rtc_offer", "rtc_open", "control"]


def config_of(pc: RTCPeerConnection) -> Any:
    # aiortc has no getConfiguration(); the configuration is a private attribute.
    return pc._RTCPeerConnection__configuration  # type: ignore[attr-defined]


# -- full flow ------------------------------------------------------------------------------


@needs_interface
async def test_full_flow_stage_history_hooks_and_channels(serve: Any) -> None:
    setup, srv = rtc_app()
    server = await serve(setup)
    async with rtc_client(server.url) as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        session = srv.session
        assert names(srv.conns[0]) == SERVER_STAGES
        assert names(cli.conn) == CLIENT_STAGES
        assert session.opened == 1 and cli.session.opened == 1
        assert srv.open_calls == [session] and cli.open_calls == [cli.session]
        assert session.is_open and cli.session.is_open
        # No ICE server unless configured: aiortc's default would ask a public STUN one.
        assert config_of(session.pc).iceServers == [] == config_of(cli.session.pc).iceServers
        assert list(session.channels) == ["game"] == list(cli.session.channels)
        spec = session.channel().spec
        assert (spec.ordered, spec.max_retransmits, spec.reliable) == (False, 0, False)
        # The control stage stays on the WebSocket, next to the channels.
        await cli.conn.send(b"control")
        await eventually(lambda: srv.control == [b"control"], what="control message")
        assert srv.close_calls == [] and cli.close_calls == []
        # A loopback client names this host's addresses: nothing to drop.
        assert session.dropped_candidates == 0 == cli.session.dropped_candidates


# -- one session class per side ----------------------------------------------------------


def rtc_stages_of(conn: aiosocker.Connection, session: RtcSession) -> list[tuple[str, Any]]:
    """``(name, handler)`` of the chain's stages that ``session`` added, in order."""
    return [
        (stage.name, stage.handler)
        for stage in conn.stages
        if getattr(stage.handler, "__self__", None) is session
    ]


async def test_each_side_gets_its_own_session_class_with_its_stages_as_data(
    serve: Any,
) -> None:
    """server_stages() makes a ServerSession, client_stages() a ClientSession; each adds
    exactly the stages its class declares, in order, as methods bound to the session
    (no dispatch on a role string), between the app's stages."""
    made: list[tuple[aiosocker.Connection, ServerSession]] = []

    def setup(conn: aiosocker.Connection) -> None:
        conn.add(lambda message: True, name="hello")
        made.append((conn, server_stages(conn)))
        conn.add(lambda message: False, name="control")

    server = await serve(setup)
    async with aiosocker.connect(server.url) as conn:
        conn.add(lambda message: True, name="scene")
        client = client_stages(conn)
        conn.add(lambda message: False, name="control")
        await eventually(lambda: made, what="the server's setup")
        server_conn, srv = made[0]

        assert type(srv) is ServerSession and type(client) is ClientSession
        assert isinstance(srv, RtcSession) and isinstance(client, RtcSession)
        assert server_conn.stages.names == tuple(SERVER_STAGES)
        assert conn.stages.names == tuple(CLIENT_STAGES)
        for session, expected in (
            (srv, ["rtc_ready", "rtc_answer", "rtc_open"]),
            (client, ["rtc_offer", "rtc_open"]),
        ):
            on_chain = rtc_stages_of(server_conn if session is srv else conn, session)
            assert [name for name, _ in on_chain] == expected
            declared = type(session).STAGES
            assert [name for name, _ in declared] == expected
            assert [handler.__func__ for _, handler in on_chain] == [f for _, f in declared]
        # rtc_open is shared: the base's, with a per-side step (the server sends OPEN).
        assert ServerSession.STAGES[-1][1] is RtcSession._rtc_open
        assert ClientSession.STAGES[-1][1] is RtcSession._rtc_open

        # No role left to branch on, and no per-role method names on any class.
        for cls in (RtcSession, ServerSession, ClientSession):
            assert not hasattr(cls, "role")
            assert not [n for n in dir(cls) if n.startswith(("_server_", "_client_"))]
        with pytest.raises(TypeError, match="abstract"):
            RtcSession(conn)  # type: ignore[abstract]

        # What differs by side still does, with the same errors.
        with pytest.raises(RuntimeError, match="ready\\(\\) is the client's call"):
            await srv.ready()
        with pytest.raises(LookupError, match="no channel 'chat'; the channels are"):
            srv.send(b"x", "chat")
        assert client.send(b"x", "chat") is False  # the client learns labels from the offer


# -- 1,000 messages each way, paced per tick ------------------------------------------------

MESSAGES = 1000
TICK = 0.016  # a 60 Hz game loop


async def send_paced(session: RtcSession, prefix: bytes, per_tick: int) -> None:
    """Send MESSAGES messages as a game does: ``per_tick`` of them per ~16 ms frame."""
    for i in range(MESSAGES):
        assert session.send(b"%s:%04d" % (prefix, i)), f"message {i} was dropped"
        if i % per_tick == per_tick - 1:
            await asyncio.sleep(TICK)


@needs_interface
@pytest.mark.parametrize(
    ("batch", "per_tick"),
    [
        (True, 20),
        # Unbatched, every message is its own UDP packet: at 20 per tick (1,250 packets/s
        # each way, both peers in this one process) a CPU-starved host drops packets and
        # an unreliable channel loses the messages for good (seen in ~30% of runs next to
        # two busy processes). That is what batching is for; here, send gently.
        (False, 5),
    ],
    ids=["batched", "unbatched"],
)
async def test_thousand_messages_each_way_paced(serve: Any, batch: bool, per_tick: int) -> None:
    setup, srv = rtc_app(batch=batch)
    server = await serve(setup)
    async with rtc_client(server.url, batch=batch) as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        await asyncio.wait_for(
            asyncio.gather(
                send_paced(srv.session, b"s2c", per_tick),
                send_paced(cli.session, b"c2s", per_tick),
            ),
            2 * MESSAGES / per_tick * TICK + WAIT,
        )
        await settle(lambda: len(srv.got["game"]) >= MESSAGES <= len(cli.got["game"]))
        for got, prefix in ((srv.got["game"], b"c2s"), (cli.got["game"], b"s2c")):
            # Unordered channel: frames may overtake each other; each message arrives once.
            assert len(got) == MESSAGES
            assert sorted(got) == [b"%s:%04d" % (prefix, i) for i in range(MESSAGES)]

        for sender, receiver in (
            (srv.session.channel(), cli.session.channel()),
            (cli.session.channel(), srv.session.channel()),
        ):
            assert sender.sent == MESSAGES and receiver.received == MESSAGES
            assert sender.dropped == 0
            # Every DataChannel frame sent arrived (loopback), whatever it held.
            assert receiver.frames_received == sender.frames_sent
            if batch:
                # About one frame per tick, never one per message.
                assert sender.frames_sent <= MESSAGES // 10, sender.frames_sent
            else:
                assert sender.frames_sent == MESSAGES
        assert srv.close_calls == [] and cli.close_calls == []


# -- named channels and their W3C options -------------------------------------------------

CHANNELS = (
    ChannelSpec("game"),
    ChannelSpec("chat", ordered=True, max_retransmits=None),
    ChannelSpec("state", max_packet_lifetime=250, protocol="state/1"),
    ChannelSpec("sync", ordered=True, max_retransmits=None, negotiated=True, id=42),
)


@needs_interface
async def test_named_channels_pass_options_and_deliver_on_their_handlers(serve: Any) -> None:
    setup, srv = rtc_app(channels=CHANNELS)
    server = await serve(setup)
    labels = [spec.label for spec in CHANNELS]
    async with rtc_client(server.url, labels=labels) as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        assert names(cli.conn) == CLIENT_STAGES
        assert list(cli.session.channels) and set(cli.session.channels) == set(labels)
        assert cli.session.specs == CHANNELS  # the offer told the client every option
        for spec in CHANNELS:
            for side in (srv.session, cli.session):
                dc = dc_of(side.channel(spec.label))
                assert dc.label == spec.label
                assert dc.ordered is spec.ordered
                assert dc.maxRetransmits == spec.max_retransmits
                assert dc.maxPacketLifeTime == spec.max_packet_lifetime
                assert dc.protocol == spec.protocol
                assert dc.negotiated is spec.negotiated
                if spec.negotiated:
                    assert dc.id == spec.id
        ids = {dc_of(cli.session.channel(label)).id for label in labels}
        assert len(ids) == len(labels)

        for label in labels:
            for i in range(5):
                assert srv.session.send(b"s:%s:%d" % (label.encode(), i), label)
                assert cli.session.send(b"c:%s:%d" % (label.encode(), i), label)
        await eventually(
            lambda: all(len(srv.got[lb]) == 5 and len(cli.got[lb]) == 5 for lb in labels),
            what="5 messages on every channel, each way",
        )
        for label in labels:
            want = [b"%s:%d" % (label.encode(), i) for i in range(5)]
            assert sorted(m.removeprefix(b"c:") for m in srv.got[label]) == want
            assert sorted(m.removeprefix(b"s:") for m in cli.got[label]) == want
        # The ordered channels kept order.
        for label in ("chat", "sync"):
            assert srv.got[label] == [b"c:%s:%d" % (label.encode(), i) for i in range(5)]
            assert cli.got[label] == [b"s:%s:%d" % (label.encode(), i) for i in range(5)]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: [ChannelSpec("game", max_retransmits=1, max_packet_lifetime=100)],
            "sets both max_retransmits (1) and max_packet_lifetime (100)",
        ),
        (lambda: [ChannelSpec("sync", negotiated=True)], "is negotiated but has no id"),
        (lambda: [ChannelSpec("game"), ChannelSpec("game")], "duplicate channel label 'game'"),
        (
            lambda: [
                ChannelSpec("a", negotiated=True, id=3),
                ChannelSpec("b", negotiated=True, id=3),
            ],
            "both use id 3",
        ),
        (lambda: [ChannelSpec("game", id=3)], "has id=3 but negotiated=False"),
    ],
    ids=["retransmits+lifetime", "negotiated-no-id", "duplicate-label", "duplicate-id", "id"],
)
async def test_bad_channel_options_rejected_before_anything_is_sent(
    serve: Any, make: Callable[[], list[ChannelSpec]], message: str
) -> None:
    errors: list[Exception] = []

    async def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def hello(message: bytes) -> bool:
            await conn.send(b"scene")
            return True

        try:
            server_stages(conn, channels=make())
        except ValueError as exc:
            errors.append(exc)
            raise
        pytest.fail("server_stages accepted bad channels")  # pragma: no cover

    server = await serve(setup)
    raw = await RawClient.connect(server.url)  # setup runs (and fails) on connect
    frames = await raw.frames_until_closed()
    assert len(errors) == 1 and message in str(errors[0])
    assert frames == []  # no scene, no OFFER: setup failed first
    assert raw.ws.close_code == CloseCode.INTERNAL_ERROR
    assert raw.ws.close_reason == "setup raised ValueError"
    await eventually(lambda: not server.connections, what="server forgets the client")


# -- the drop policy and closing channels -------------------------------------------------


@needs_interface
async def test_unreliable_channel_drops_while_backed_up_reliable_one_queues(serve: Any) -> None:
    setup, srv = rtc_app(channels=TWO_CHANNELS)
    server = await serve(setup)
    async with rtc_client(server.url, labels=("game", "chat")) as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        game, chat = srv.session.channel("game"), srv.session.channel("chat")
        assert game.max_buffered == chat.max_buffered == 256 * 1024  # the default
        game.max_buffered = chat.max_buffered = 0  # any backlog counts as backed up
        big = b"x" * 12_000  # more than SCTP's first congestion window: it waits
        assert game.send(big) and chat.send(big)
        await asyncio.sleep(0)  # the batch is flushed once per loop iteration
        assert game.buffered_amount > 0 and chat.buffered_amount > 0
        assert not game.send(b"stale")  # dropped: a newer update will follow
        assert (game.sent, game.dropped) == (1, 1)
        assert chat.send(b"kept")  # reliable channels never drop: they queue
        await eventually(lambda: game.buffered_amount == 0, what="backlog drained")
        assert game.send(b"fresh")
        await eventually(
            lambda: len(cli.got["game"]) == 2 and len(cli.got["chat"]) == 2,
            what="what was not dropped",
        )
        assert sorted(cli.got["game"]) == [b"fresh", big]
        assert cli.got["chat"] == [big, b"kept"]


@needs_interface
@pytest.mark.parametrize("batch", [True, False], ids=["batched", "unbatched"])
async def test_a_closing_channel_refuses_sends(serve: Any, batch: bool) -> None:
    setup, srv = rtc_app(batch=batch)
    server = await serve(setup)
    async with rtc_client(server.url, batch=batch) as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        channel = srv.session.channel()
        channel.close()  # "closing" until the far side confirms
        assert not channel.is_open
        assert channel.send(b"late") is False and channel.dropped == 1
        await asyncio.wait_for(channel.wait_closed(), WAIT)
        assert srv.session.send(b"later") is False
        await eventually(lambda: len(cli.close_calls) == 1, what="client hears on_close")
        assert cli.got["game"] == []


# -- renegotiation ------------------------------------------------------------------------


async def exchange(srv: ServerSide, cli: Any, label: str, tag: bytes, count: int = 5) -> None:
    """Send ``count`` messages each way on ``label``; wait until all arrived."""
    before_srv, before_cli = len(srv.got[label]), len(cli.got[label])
    for i in range(count):
        assert srv.session.send(b"s:%s:%d" % (tag, i), label)
        assert cli.session.send(b"c:%s:%d" % (tag, i), label)
    await eventually(
        lambda: (
            len(srv.got[label]) == before_srv + count and len(cli.got[label]) == before_cli + count
        ),
        what=f"{count} messages each way on {label!r} ({tag!r})",
    )
    want = [b"%s:%d" % (tag, i) for i in range(count)]
    assert sorted(m.removeprefix(b"c:") for m in srv.got[label][before_srv:]) == want
    assert sorted(m.removeprefix(b"s:") for m in cli.got[label][before_cli:]) == want


TWO_CHANNELS = (ChannelSpec("game"), ChannelSpec("chat", ordered=True, max_retransmits=None))


@needs_interface
async def test_client_renegotiates_after_the_server_closes_a_channel(serve: Any) -> None:
    setup, srv = rtc_app(channels=TWO_CHANNELS)
    server = await serve(setup)
    labels = ("game", "chat")

    async def renegotiate(session: RtcSession) -> None:
        await session.renegotiate()

    async with rtc_client(server.url, labels=labels, on_close=renegotiate) as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        await exchange(srv, cli, "game", b"before")
        first_pc = srv.session.pc

        srv.session.channel("chat").close()
        await cli.wait_opened(2)
        await eventually(lambda: srv.session.opened == 2, what="server open again")
        assert len(cli.close_calls) == 1  # one channel died: the client heard it once
        assert srv.session.pc is not first_pc and first_pc is not None
        assert first_pc.connectionState == "closed"
        assert names(cli.conn) == [*CLIENT_STAGES, "rtc_offer", "rtc_open", "control"]
        assert names(srv.conns[0]) == [
            *SERVER_STAGES,
            "rtc_ready",
            "rtc_answer",
            "rtc_open",
            "control",
        ]
        assert len(srv.open_calls) == 2 and len(cli.open_calls) == 2
        for label in labels:
            await exchange(srv, cli, label, b"after")


@needs_interface
async def test_server_renegotiates_after_the_client_closes_its_peer(serve: Any) -> None:
    async def renegotiate(session: RtcSession) -> None:
        await session.renegotiate()

    setup, srv = rtc_app(channels=TWO_CHANNELS, on_close=renegotiate)
    server = await serve(setup)
    async with rtc_client(server.url, labels=("game", "chat")) as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        pc = cli.session.pc
        assert pc is not None
        await close_peer(pc)  # it dies (no BYE, as in a failure); the WebSocket stays
        assert not cli.conn.closed
        await cli.wait_opened(2)
        await eventually(lambda: srv.session.opened == 2, what="server open again")
        assert len(srv.close_calls) >= 1
        for label in ("game", "chat"):
            await exchange(srv, cli, label, b"after")


@needs_interface
async def test_server_initiated_renegotiation(serve: Any) -> None:
    setup, srv = rtc_app()
    server = await serve(setup)
    async with rtc_client(server.url) as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        await exchange(srv, cli, "game", b"before")
        await srv.session.renegotiate()
        await cli.wait_opened(2)
        await eventually(lambda: srv.session.opened == 2, what="server open again")
        await exchange(srv, cli, "game", b"after")
        # And once more, to show it is repeatable.
        await srv.session.renegotiate()
        await cli.wait_opened(3)
        await eventually(lambda: srv.session.opened == 3, what="server open a third time")
        await exchange(srv, cli, "game", b"again")
        # Renegotiation on purpose: neither side hears on_close for the old channels.
        assert srv.close_calls == [] and cli.close_calls == []
        assert names(cli.conn)[len(CLIENT_STAGES) :] == ["rtc_offer", "rtc_open", "control"] * 2


@needs_interface
async def test_both_sides_renegotiate_when_they_hear_on_close(serve: Any) -> None:
    """The natural app code on both sides: the two renegotiations cross and merge."""

    async def renegotiate(session: RtcSession) -> None:
        await session.renegotiate()

    setup, srv = rtc_app(channels=TWO_CHANNELS, on_close=renegotiate)
    server = await serve(setup)
    async with rtc_client(server.url, labels=("game", "chat"), on_close=renegotiate) as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        srv.session.channel("chat").close()
        await cli.wait_opened(2)
        await eventually(lambda: srv.session.opened == 2, what="server open again")
        await asyncio.sleep(0.2)  # no third negotiation follows
        assert srv.session.opened == 2 and cli.session.opened == 2
        assert len(srv.close_calls) == 1 and len(cli.close_calls) <= 1
        assert not cli.conn.closed
        for label in ("game", "chat"):
            await exchange(srv, cli, label, b"after")


@needs_interface
async def test_renegotiate_does_nothing_until_the_handshake_is_done(serve: Any) -> None:
    """Called early (or twice) on either side, renegotiate() sends nothing: a second
    READY or a RENEGOTIATE mid-handshake would be out-of-order signaling (4400)."""
    sessions: list[RtcSession] = []

    async def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def hello(message: bytes) -> bool:
            await sessions[0].renegotiate()  # before the rtc stages: nothing to redo
            await conn.send(b"scene")
            return True

        sessions.append(server_stages(conn))

        @conn.stage()
        def control(message: bytes) -> bool:
            return False

    server = await serve(setup)
    async with aiosocker.connect(server.url) as conn:

        @conn.stage()
        async def scene(message: bytes) -> bool:
            await rtc.ready()
            await rtc.renegotiate()  # the offer is coming already
            await rtc.renegotiate()
            return True

        rtc = client_stages(conn)

        @conn.stage()
        def control(message: bytes) -> bool:
            return False

        await conn.send(b"hello")
        await eventually(lambda: rtc.opened == 1, what="client open")
        await eventually(lambda: sessions[0].opened == 1, what="server open")
        assert names(conn) == CLIENT_STAGES
        assert not conn.closed


# -- app messages during the handshake ------------------------------------------------------


@needs_interface
async def test_app_messages_mid_handshake_reach_the_final_stage_in_order(serve: Any) -> None:
    server_control: list[bytes] = []
    client_control: list[bytes] = []

    def server_setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def hello(message: bytes) -> bool:
            await conn.send(b"scene")
            await conn.send(b"news-1")  # reaches the client in rtc_offer: deferred
            return True

        server_stages(conn)

        @conn.stage()
        async def control(message: bytes) -> bool:
            server_control.append(message)
            await conn.send(b"echo " + message)
            return False

    server = await serve(server_setup)
    async with aiosocker.connect(server.url) as conn:

        @conn.stage()
        async def scene(message: bytes) -> bool:
            await conn.send(b"early-1")  # reaches the server in rtc_ready: deferred
            await conn.send(b"early-2")
            await rtc.ready()
            return True

        rtc = client_stages(conn)
        conn.add(lambda m: client_control.append(m) is None and False, name="control")
        await conn.send(b"hello")
        await eventually(lambda: rtc.opened == 1, what="client open")
        await conn.send(b"late")
        await eventually(lambda: len(client_control) == 4, what="the echoes")
    assert server_control == [b"early-1", b"early-2", b"late"]
    assert client_control == [b"news-1", b"echo early-1", b"echo early-2", b"echo late"]


# -- bad input ------------------------------------------------------------------------------


async def answer_before_ready(raw: RawClient) -> None:
    await raw.hello()
    await raw.ws.send(encode(Answer("v=0\r\n")))


async def bad_sdp_in_answer(raw: RawClient) -> None:
    await raw.hello()
    await raw.ready()
    await raw.receive_offer()
    await raw.ws.send(encode(Answer("v=0 garbage")))


async def signaling_before_rtc_stages(raw: RawClient) -> None:
    await raw.ws.send(encode(Ready()))


async def truncated_signaling(raw: RawClient) -> None:
    await raw.hello()
    await raw.ws.send(encode(Ready())[:3])


async def unknown_version(raw: RawClient) -> None:
    await raw.hello()
    await raw.ws.send(b"\xffS\x09\x01")


@needs_interface
@pytest.mark.parametrize(
    ("misbehave", "expected"),
    [
        (answer_before_ready, r"^stage 'rtc_ready': expected READY .*, got ANSWER$"),
        (bad_sdp_in_answer, r"^stage 'rtc_answer': bad answer SDP: no m= section$"),
        (signaling_before_rtc_stages, r"^stage 'hello': READY before the rtc stages$"),
        (truncated_signaling, r"^stage 'rtc_ready': truncated signaling frame"),
        (unknown_version, r"^stage 'rtc_ready': unsupported signaling version 9"),
    ],
    ids=["answer-before-ready", "bad-sdp", "before-rtc-stages", "truncated", "version"],
)
async def test_bad_signaling_closes_4400_and_the_server_serves_on(
    serve: Any, misbehave: Callable[[RawClient], Any], expected: str
) -> None:
    setup, srv = rtc_app()
    server = await serve(setup)
    raw = await RawClient.connect(server.url)
    await misbehave(raw)
    code, reason = await raw.expect_close()
    assert code == CloseCode.BAD_SIGNALING
    assert re.search(expected, reason), reason
    await eventually(lambda: not server.connections, what="server forgets the client")
    assert srv.sessions[0].pc is None and srv.sessions[0].opened == 0
    assert srv.conns[0].close_code == CloseCode.BAD_SIGNALING
    # The server keeps serving: a second client completes the whole flow.
    async with rtc_client(server.url) as cli:
        await eventually(lambda: srv.session.opened == 1, what="second client open")
        await exchange(srv, cli, "game", b"second")
        assert names(srv.conns[1]) == SERVER_STAGES


@needs_interface
async def test_trickled_candidates_are_taken_without_blocking(serve: Any) -> None:
    """CANDIDATE is optional (aiortc never sends it; browsers may): the server adds the
    candidates in the background, drops mDNS ones and ignores the end of candidates."""
    setup, srv = rtc_app()
    server = await serve(setup)
    raw = await RawClient.connect(server.url)
    try:
        await after_offer(raw)
        candidates = await raw.answer(trickle=True)
        assert candidates, "the client gathered no candidate"
        mdns = "candidate:1 1 udp 2122260223 0a1b2c3d-1111-2222-3333-444455556666.local 9 typ host"
        started = asyncio.get_running_loop().time()
        for line in [mdns, *candidates]:
            await raw.ws.send(encode(Candidate(line, "0", 0)))
        await raw.ws.send(encode(Candidate("")))  # end of candidates
        await raw.confirm_open()
        # aiortc would wait ~2 s per .local candidate it tried to resolve inline.
        assert asyncio.get_running_loop().time() - started < 1.8
        pc = srv.session.pc
        assert pc is not None and srv.session.opened == 1
        # aioice keeps the trickled candidates of address families it has itself.
        remote = {(c.ip, c.port) for c in pc.sctp.transport.transport.getRemoteCandidates()}
        trickled = {(line.split()[4], int(line.split()[5])) for line in candidates}
        assert remote and remote <= trickled
    finally:
        await raw.aclose()


@needs_interface
@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("before-answer", "^stage 'rtc_answer': CANDIDATE before the ANSWER$"),
        ("malformed", r"^stage 'rtc_open': bad CANDIDATE 'candidate:garbage'"),
    ],
)
async def test_bad_candidates_close_4400(serve: Any, when: str, expected: str) -> None:
    setup, _ = rtc_app()
    server = await serve(setup)
    raw = await RawClient.connect(server.url)
    try:
        await after_offer(raw)
        if when == "malformed":
            await raw.answer()
            await raw.ws.send(encode(Candidate("candidate:garbage", "0")))
        else:
            await raw.ws.send(encode(Candidate("candidate:1 1 udp 1 10.0.0.1 9 typ host", "0")))
        code, reason = await raw.expect_close()
        assert code == CloseCode.BAD_SIGNALING
        assert re.search(expected, reason), reason
    finally:
        await raw.close_pc()


# -- timeouts -------------------------------------------------------------------------------


async def never_ready(raw: RawClient) -> None:
    await raw.hello()


async def never_answers(raw: RawClient) -> None:
    await raw.hello()
    await raw.ready()
    await raw.receive_offer()


async def never_confirms(raw: RawClient) -> None:
    await never_answers(raw)
    await raw.answer()


@needs_interface
@pytest.mark.parametrize(
    ("stall", "stage"),
    [(never_ready, "rtc_ready"), (never_answers, "rtc_answer"), (never_confirms, "rtc_open")],
    ids=["never-ready", "never-answers", "never-confirms-open"],
)
async def test_rtc_stage_timeout_closes_4408_naming_the_stage(
    serve: Any, stall: Callable[[RawClient], Any], stage: str
) -> None:
    setup, srv = rtc_app(timeout=0.5)
    server = await serve(setup)
    raw = await RawClient.connect(server.url)
    try:
        started = asyncio.get_running_loop().time()
        await stall(raw)
        code, reason = await raw.expect_close()
        elapsed = asyncio.get_running_loop().time() - started
        assert code == CloseCode.STAGE_TIMEOUT
        assert reason == f"stage {stage!r} timed out after 0.5 s"
        assert elapsed > 0.4  # never early; expect_close bounds the wait
        await eventually(lambda: not server.connections, what="server forgets the client")
        assert srv.sessions[0].pc is None
        assert all(pc.connectionState == "closed" for pc in srv.pcs)
    finally:
        await raw.close_pc()


@needs_interface
async def test_client_rtc_stage_timeout_when_the_server_never_offers(serve: Any) -> None:
    async def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def hello(message: bytes) -> bool:
            await conn.send(b"scene")
            return True

        @conn.stage()
        def silent(message: bytes) -> bool:  # takes READY and never offers
            return False

    server = await serve(setup)
    async with rtc_client(server.url, stage_timeout=0.5, wait_open=False) as cli:
        await asyncio.wait_for(cli.conn.wait_closed(), WAIT)
        assert cli.conn.close_code == CloseCode.STAGE_TIMEOUT
        assert cli.conn.close_reason == "stage 'rtc_offer' timed out after 0.5 s"
        assert cli.session.pc is None


# -- clients that vanish mid-handshake ------------------------------------------------------


async def after_connect(raw: RawClient) -> None:
    pass


async def after_ready(raw: RawClient) -> None:
    await raw.hello()
    await raw.ready()


async def after_offer(raw: RawClient) -> None:
    await after_ready(raw)
    await raw.receive_offer()


async def after_answer(raw: RawClient) -> None:
    await after_offer(raw)
    await raw.answer()


async def after_open(raw: RawClient) -> None:
    await after_answer(raw)
    await raw.confirm_open()


@needs_interface
@pytest.mark.parametrize(
    "step",
    [after_connect, after_ready, after_offer, after_answer, after_open],
    ids=lambda step: step.__name__.replace("_", "-"),
)
async def test_client_vanishing_mid_handshake_leaves_nothing_behind(
    serve: Any, step: Callable[[RawClient], Any]
) -> None:
    setup, srv = rtc_app()
    server = await serve(setup)
    before = set(asyncio.all_tasks())
    raw = await RawClient.connect(server.url)
    await step(raw)
    raw.vanish()  # no closing handshake: the TCP connection just goes away
    try:
        await eventually(lambda: not server.connections, what="server forgets the client")
        conn = srv.conns[0]
        assert conn.closed and conn.close_code == 1006  # ended without a close frame
        session = srv.sessions[0]
        assert session.pc is None and session.channels == {}
        if step in (after_offer, after_answer, after_open):
            assert len(srv.pcs) == 1  # the offer was made: a peer connection existed
        for pc in srv.pcs:
            assert pc.connectionState == "closed" and pc.signalingState == "closed"
        assert session.opened == (1 if step is after_open else 0)
    finally:
        await raw.close_pc()
    assert not open_peer_connections(), "a peer connection was left open"
    leaked = await leftover_tasks(before)
    assert not leaked, f"tasks left running: {leaked}"
    # And the server keeps serving the full flow.
    async with rtc_client(server.url) as cli:
        await eventually(lambda: srv.session.opened == 1, what="next client open")
        await exchange(srv, cli, "game", b"next")
        assert names(srv.conns[1]) == SERVER_STAGES


# -- the aiortc seam: ICE servers and mDNS candidates (no network) -------------------------


async def test_new_peer_has_no_ice_servers_by_default() -> None:
    pc = new_peer()
    try:
        assert config_of(pc).iceServers == []
    finally:
        await pc.close()


async def test_new_peer_passes_ice_servers_through() -> None:
    pc = new_peer(
        [
            IceServer("stun:stun.example.org:3478"),
            IceServer(
                ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
                username="player-1",
                credential="s3cret",
            ),
            IceServer(("turn:10.0.0.2:3478",), username="u", credential="p"),
        ]
    )
    try:
        servers = [(s.urls, s.username, s.credential) for s in config_of(pc).iceServers]
        assert servers == [
            ("stun:stun.example.org:3478", None, None),
            (
                ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
                "player-1",
                "s3cret",
            ),
            (["turn:10.0.0.2:3478"], "u", "p"),
        ]
    finally:
        await pc.close()


@needs_interface
async def test_close_peer_mid_ice_leaves_no_consent_task() -> None:
    """aioice 0.13 race: a connection closed just as its checks complete starts consent
    checks after close() that never end. close_peer() (used by every session) stops them.
    Plain pc.close() at these delays leaked tasks in about half the runs."""
    for step in range(12):
        before = set(asyncio.all_tasks())
        offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        offerer.createDataChannel("game")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        await asyncio.sleep(step * 0.002)  # somewhere while ICE completes
        await close_peer(offerer)
        await close_peer(answerer)
        leaked = await leftover_tasks(before, timeout=0.2)
        assert not leaked, f"after {step * 2} ms: {leaked}"


# An answer as Chromium sends it with its default mDNS behaviour (host addresses hidden
# behind random .local names), plus the kinds of candidate lines that must stay.
CHROME_ANSWER = (
    "v=0\r\n"
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0\r\n"
    "a=extmap-allow-mixed\r\n"
    "a=msid-semantic: WMS\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=candidate:1467250027 1 udp 2122260223 3c4a2b9e-5f7d-4c1e-9a3b-6e2f1d0c8b7a.local"
    " 54321 typ host generation 0 network-id 1\r\n"
    "a=candidate:2999745851 1 udp 2122194687 8d1f0e2a-7b6c-4d5e-a1f2-3b4c5d6e7f80.local"
    " 61982 typ host generation 0 network-id 2 network-cost 10\r\n"
    "a=candidate:1876313031 1 tcp 1518280447 3c4a2b9e-5f7d-4c1e-9a3b-6e2f1d0c8b7a.local"
    " 9 typ host tcptype active generation 0 network-id 1\r\n"
    "a=candidate:842163049 1 udp 1686052607 203.0.113.7 54321 typ srflx raddr 0.0.0.0"
    " rport 0 generation 0 network-id 1\r\n"
    "a=candidate:3 1 udp 41885439 198.51.100.9 3478 typ relay raddr 203.0.113.7"
    " rport 54321 generation 0\r\n"
    "a=candidate:4 1 udp 2122262783 fd00::1 50000 typ host generation 0\r\n"
    "a=candidate:5 1 udp 2122260223 10.254.0.1 50001 typ host generation 0\r\n"
    "a=candidate:6 1 udp 2122260223 host.localdomain 50002 typ host generation 0\r\n"
    "a=end-of-candidates\r\n"
    "a=ice-ufrag:Xy1z\r\n"
    "a=ice-pwd:3nS0tW7e8q9r0t1y2u3i4o5p\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:"
    "67:89:AB:CD:EF:01:23:45:67:89\r\n"
    "a=setup:active\r\n"
    "a=mid:0\r\n"
    "a=sctp-port:5000\r\n"
    "a=max-message-size:262144\r\n"
)


def test_strip_mdns_candidates_drops_local_host_candidates_only() -> None:
    stripped = strip_mdns_candidates(CHROME_ANSWER)
    removed = [line for line in CHROME_ANSWER.split("\r\n") if line not in stripped]
    assert len(removed) == 3
    assert all(".local " in line and "typ host" in line for line in removed)
    assert ".local " not in stripped
    # Everything else stays, byte for byte and in order (CRLF line ends included).
    kept = [line for line in CHROME_ANSWER.splitlines(keepends=True) if ".local " not in line]
    assert stripped == "".join(kept)
    for survivor in ("203.0.113.7 54321 typ srflx", "typ relay", "fd00::1", "10.254.0.1"):
        assert survivor in stripped
    assert "host.localdomain" in stripped  # not an mDNS name
    assert "a=end-of-candidates\r\n" in stripped and stripped.endswith(
        "max-message-size:262144\r\n"
    )


def test_strip_mdns_candidates_is_idempotent_and_leaves_plain_sdp_alone() -> None:
    once = strip_mdns_candidates(CHROME_ANSWER)
    assert strip_mdns_candidates(once) == once
    plain = CHROME_ANSWER.replace(".local ", ".example ")
    assert strip_mdns_candidates(plain) == plain
    lf_only = CHROME_ANSWER.replace("\r\n", "\n")
    assert strip_mdns_candidates(lf_only) == once.replace("\r\n", "\n")
    assert strip_mdns_candidates("") == ""


@needs_interface
async def test_frame_size_and_drop_mark_are_options_of_the_stages(serve: Any) -> None:
    got: list[bytes] = []
    sessions: list[RtcSession] = []

    def server_setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def hello(message: bytes) -> bool:
            await conn.send(b"scene")
            return True

        rtc = server_stages(conn, max_frame=1024, max_buffered=4096)
        sessions.append(rtc)
        rtc.on_message()(got.append)
        conn.add(lambda m: False, name="control")

    server = await serve(server_setup)
    async with aiosocker.connect(server.url) as conn:

        @conn.stage()
        async def scene(message: bytes) -> bool:
            await rtc.ready()
            return True

        rtc = client_stages(conn, max_frame=1024, max_buffered=4096)
        conn.add(lambda m: False, name="control")
        await conn.send(b"hello")
        await eventually(lambda: rtc.opened == 1, what="client open")
        channel = rtc.channel()
        assert (channel.max_buffered, channel.dc.label) == (4096, "game")
        for i in range(100):
            assert channel.send(b"%03d" % i + bytes(97))  # 100 B each, in one iteration
        await eventually(lambda: len(got) == 100, what="all 100 messages")
        # 100 x 101 B (length prefix included) cannot fit in one 1 KiB frame.
        assert channel.frames_sent >= 10
        assert sessions[0].channel().max_buffered == 4096
    assert [m[:3] for m in got] == [b"%03d" % i for i in range(100)]


@needs_interface
async def test_close_says_bye_and_nobody_renegotiates(serve: Any) -> None:
    lost: list[RtcSession] = []
    setup, srv = rtc_app(on_close=lost.append)
    server = await serve(setup)
    async with rtc_client(server.url, on_close=lost.append) as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        await cli.session.close("done with WebRTC")
        assert cli.session.pc is None
        await eventually(lambda: srv.session.pc is None, what="the server closing its side")
        await asyncio.sleep(0.2)  # a loss taken for a failure would run on_close by now
        assert lost == []
        assert not cli.conn.closed  # the WebSocket stays
        assert srv.session.opened == 1


async def test_preload_imports_and_warms_aiortc_and_leaves_nothing_running() -> None:
    import sys

    from aiosocker.rtc import peer, preload

    before = set(asyncio.all_tasks())
    await preload()
    assert "aiortc" in sys.modules and peer._warm
    await preload()  # again: nothing more to do
    assert not await leftover_tasks(before)
