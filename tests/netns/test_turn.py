"""TURN with a real relay: coturn (``turnserver``) with ``use-auth-secret``.

* **Relay only**, on loopback and behind the lab's NAT: the server and the player (the
  Python client, Chromium) run with ``ice_transport_policy="relay"`` /
  ``iceTransportPolicy: "relay"``: they gather relay candidates only, ICE selects a
  relay-to-relay pair on both ends, and game data flows through coturn.
* **Short-lived credentials**: the server has ``turn=TurnSecret(urls, secret)`` and the
  players no TURN configuration of their own: each handshake mints TURN REST
  credentials for that player and sends them in ICE_SERVERS before the OFFER. The
  secret never reaches a client; coturn refuses expired credentials and ones made with
  another secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

import aiosocker
from aiosocker.rtc import (
    IceServers,
    Offer,
    Ready,
    TurnSecret,
    decode,
    encode,
    server_stages,
)
from aiosocker.rtc.turn import turn_credentials

from .conftest import Browser, Peers, event, page_url, record, turn_config
from .netlab import RELAY_PORTS, TURN_IP, Lab, LabError, Turn
from .test_nat import browser_pings, median, python_pings

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def loopback_turn(tmp_path: Path) -> Iterator[Turn]:
    """coturn on 127.0.0.1 (``allow-loopback-peers``: both relays are on loopback)."""
    turn = Turn(LOOPBACK, free_port(), tmp_path / "turn")
    try:
        turn.start()
    except LabError as exc:
        pytest.fail(str(exc))
    try:
        yield turn
    finally:
        turn.stop()


def relayed(pair: dict[str, Any], relay_ip: str) -> bool:
    """A relay-to-relay pair, both on ``relay_ip``, in coturn's relay port range."""
    for end in (pair["local"], pair["remote"]):
        host, _, port = end["address"].rpartition(":")
        if end["type"] != "relay" or host != relay_ip:
            return False
        if not RELAY_PORTS[0] <= int(port) <= RELAY_PORTS[1]:
            return False
    return True


# -- relay only --------------------------------------------------------------------------


async def test_relay_only_on_loopback_python(loopback_turn: Turn, host_peers: Peers) -> None:
    server, url = await host_peers.server(relay=True, turn=turn_config(loopback_turn))
    client = await host_peers.client(url, relay=True)  # no TURN of its own: the server's
    here = await event(client, "open", 30)
    there = await event(server, "open")
    for side in (here, there):
        assert side["pair"]["gathered"] == ["relay"], side
        assert relayed(side["pair"], LOOPBACK), side
    rtt = await python_pings(client)
    assert len(rtt) >= 18
    log = loopback_turn.log()
    assert "ALLOCATE" in log and "success" in log, loopback_turn.tail()
    record(
        f"relay only on loopback, Python player: connect to open {here['ms']:.0f} ms, "
        f"round trip through coturn p50 {median(rtt):.2f} ms"
    )


async def test_relay_only_on_loopback_chromium(
    loopback_turn: Turn, host_peers: Peers, chromium: Browser
) -> None:
    server, url = await host_peers.server(relay=True, turn=turn_config(loopback_turn))
    browser = await chromium.launch()
    page = await chromium.page(browser, page_url(url))
    await page.evaluate("T.start({iceTransportPolicy: 'relay'})")  # no iceServers of its own
    opened = await chromium.wait_open(page)
    there = await event(server, "open")
    offered = await page.evaluate("window.rtc.offeredIceServers")
    assert [s["urls"] for s in offered] == [loopback_turn.urls("udp")], offered
    assert offered[0]["credential"] != loopback_turn.secret
    pair = await page.evaluate("T.selectedPair()")
    assert pair["gathered"] == ["relay"], pair
    assert pair["local"]["type"] == "relay" and pair["remote"]["type"] == "relay", pair
    assert pair["local"]["relayProtocol"] == "udp", pair
    assert relayed(there["pair"], LOOPBACK), there
    rtt = await browser_pings(page)
    assert len(rtt) >= 18, chromium.tail()
    record(
        f"relay only on loopback, Chromium: connect to open {opened:.0f} ms, "
        f"round trip through coturn p50 {median(rtt):.2f} ms"
    )


async def test_relay_only_behind_a_nat_python_and_chromium(
    lab: Lab, lab_turn: Turn, peers: Peers, chromium: Browser
) -> None:
    server, url = await peers.server(relay=True, turn=turn_config(lab_turn))
    client = await peers.client(url, relay=True)
    here = await event(client, "open", 30)
    there = await event(server, "open")
    assert here["pair"]["gathered"] == ["relay"], here
    assert relayed(here["pair"], TURN_IP), here
    assert relayed(there["pair"], TURN_IP), there
    rtt = await python_pings(client)
    assert len(rtt) >= 18

    browser = await chromium.launch(lab, lab.client)
    page = await chromium.page(browser, page_url(url))
    await page.evaluate("T.start({iceTransportPolicy: 'relay'})")
    opened = await chromium.wait_open(page)
    there = await event(server, "open")
    pair = await page.evaluate("T.selectedPair()")
    assert pair["gathered"] == ["relay"], pair
    assert pair["local"]["type"] == "relay" and pair["remote"]["type"] == "relay", pair
    assert relayed(there["pair"], TURN_IP), there
    browser_rtt = await browser_pings(page)
    assert len(browser_rtt) >= 18, chromium.tail()
    record(
        f"relay only behind the NAT: Python player open {here['ms']:.0f} ms, round trip "
        f"p50 {median(rtt):.2f} ms; Chromium open {opened:.0f} ms, round trip p50 "
        f"{median(browser_rtt):.2f} ms"
    )


# -- short-lived credentials -------------------------------------------------------------


async def test_turn_secret_mints_credentials_per_connection_and_never_sends_the_secret() -> None:
    secret = "the-shared-secret-stays-here"
    urls = ("turn:turn.test:3478?transport=udp", "turn:turn.test:3478?transport=tcp")
    turn = TurnSecret(urls, secret, ttl=120)

    ids: list[str] = []

    def setup(conn: aiosocker.Connection) -> None:
        ids.append(conn.id)

        @conn.stage()
        async def hello(message: bytes) -> bool:
            return True

        server_stages(conn, turn=turn)

    received: list[list[bytes]] = []
    windows: list[tuple[float, float]] = []  # the clock before and after each minting
    async with aiosocker.serve(setup, LOOPBACK, 0) as server:
        for _ in range(2):
            async with websockets.connect(server.url) as ws:
                before = time.time()
                await ws.send(b"hello")
                await ws.send(encode(Ready()))
                frames = [await asyncio.wait_for(ws.recv(), 10) for _ in range(2)]
                windows.append((before, time.time()))
                received.append(frames)  # type: ignore[arg-type]
            await asyncio.sleep(1.1)  # the next one expires a second later
    everything = b"".join(f for frames in received for f in frames)
    assert secret.encode() not in everything
    minted = []
    for frames, (before, after) in zip(received, windows, strict=True):
        ice, offer = (decode(f) for f in frames)
        assert isinstance(ice, IceServers) and isinstance(offer, Offer), (ice, offer)
        (given,) = ice.servers
        assert given.url_list == urls
        expiry, _, user = (given.username or "").partition(":")
        assert int(before + 120) <= int(expiry) <= int(after + 120)  # ttl=120 from minting
        assert given.credential == turn_credentials(secret, user, 0, int(expiry))[1]
        minted.append(given)
    assert [m.username.split(":")[1] for m in minted if m.username] == ids  # each its own
    assert minted[0].username.split(":")[0] != minted[1].username.split(":")[0]  # type: ignore[union-attr]


def test_turn_secret_checks_its_fields_and_hides_the_secret() -> None:
    with pytest.raises(ValueError, match="turn: or turns: URLs"):
        TurnSecret("stun:h", "s")
    with pytest.raises(ValueError, match="needs the secret"):
        TurnSecret("turn:h", "")
    with pytest.raises(ValueError, match="ttl must be a number of seconds > 0"):
        TurnSecret("turn:h", "s", ttl=0)
    assert "s3cret" not in repr(TurnSecret("turn:h", "s3cret"))
    minted = TurnSecret("turn:h", b"key", ttl=60).mint("ada", now=1_700_000_000)
    # coturn's example (turnserver.conf, use-auth-secret): base64(HMAC-SHA1(key, name)).
    assert minted.username == "1700000060:ada"
    assert minted.credential == turn_credentials("key", "ada", 60, 1_700_000_000)[1]


async def test_coturn_refuses_expired_credentials_and_other_secrets(loopback_turn: Turn) -> None:
    from aioice import turn as aioice_turn

    async def allocate(username: str, password: str) -> tuple[str, int]:
        transport, _ = await asyncio.wait_for(
            aioice_turn.create_turn_endpoint(
                asyncio.DatagramProtocol,
                (LOOPBACK, loopback_turn.port),
                username,
                password,
            ),
            10,
        )
        try:
            relayed: tuple[str, int] = transport.get_extra_info("sockname")
            return relayed
        finally:
            transport.close()

    fresh = turn_credentials(loopback_turn.secret, "ada", 60)
    assert (await allocate(*fresh))[0] == LOOPBACK
    expired = turn_credentials(loopback_turn.secret, "ada", -1)
    forged = turn_credentials("another secret", "ada", 60)
    for username, password in (expired, forged):
        with pytest.raises(Exception, match="401") as refused:
            await allocate(username, password)
        assert "Unauthorized" in str(refused.value) or "401" in str(refused.value)
