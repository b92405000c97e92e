"""Players behind a NAT and behind firewalls, on real networks (network namespaces).

The server is in the lab's "pub" namespace with its own address, like a server on the
internet; the players (a Python client, Chromium) are in "client", behind a
port-randomising NAT (``masquerade fully-random``). See ``netlab.py`` for the lab.

Which situations need TURN, proven here:

* **NAT only**: no TURN, no STUN. The player's checks reach the server's host
  candidate through the NAT; the server learns the NAT's mapping from them (a
  peer-reflexive candidate) and answers to it.
* **UDP only to the TURN server** (a strict corporate firewall): without TURN nothing
  opens (4408); with TURN over UDP it opens, through the relay.
* **No UDP at all**: without TURN, or with TURN over UDP only, nothing opens; with TURN
  over TCP it opens, through the relay.
"""

from __future__ import annotations

from typing import Any

from .conftest import Browser, Peers, event, ice_for, page_url, record, turn_config
from .netlab import RELAY_PORTS, TURN_IP, WAN_IP, Lab, Turn


def in_relay_range(address: str) -> bool:
    host, _, port = address.rpartition(":")
    return host == TURN_IP and RELAY_PORTS[0] <= int(port) <= RELAY_PORTS[1]


async def python_pings(client: Any, count: int = 20) -> list[float]:
    await client.send(cmd="ping", count=count, interval=0.01)
    rtt: list[float] = (await event(client, "rtt"))["rtt_ms"]
    return rtt


async def browser_pings(page: Any, count: int = 20) -> list[float]:
    rtt: list[float] = await page.evaluate(f"T.ping({count}, 10)")
    return rtt


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


# -- NAT only ----------------------------------------------------------------------------


async def test_python_player_behind_a_nat_opens_without_stun_or_turn(
    lab: Lab, peers: Peers
) -> None:
    server, url = await peers.server()
    client = await peers.client(url)
    here = await event(client, "open")
    there = await event(server, "open")
    assert there["remote"].startswith(f"('{WAN_IP}'"), "the WebSocket came through the NAT"
    # The player's own address (192.168.1.2) is unreachable from the internet: the server
    # talks to the NAT's mapping, which it learnt from the player's checks.
    assert here["pair"]["local"]["type"] == "host", here
    assert there["pair"]["remote"]["type"] == "prflx", there
    assert there["pair"]["remote"]["address"].startswith(f"{WAN_IP}:"), there
    rtt = await python_pings(client)
    assert len(rtt) >= 18, f"{len(rtt)} of 20 pings came back on a lossless link"
    record(
        f"NAT, Python player: connect to open {here['ms']:.0f} ms, "
        f"DataChannel round trip p50 {median(rtt):.2f} ms"
    )
    await client.send(cmd="quit")
    assert (await event(client, "closed"))["code"] == 1000


async def test_chromium_behind_a_nat_opens_without_stun_or_turn(
    lab: Lab, peers: Peers, chromium: Browser
) -> None:
    server, url = await peers.server()
    browser = await chromium.launch(lab, lab.client)
    page = await chromium.page(browser, page_url(url))
    await page.evaluate("T.start({})")
    opened = await chromium.wait_open(page)
    there = await event(server, "open")
    pair = await page.evaluate("T.selectedPair()")
    # Its own address behind an mDNS name, or the NAT's mapping it learnt from the
    # server's answers to its checks (peer-reflexive): never a relay, no STUN needed.
    assert pair["local"]["type"] in ("host", "prflx"), pair
    assert pair["remote"]["type"] == "host", pair  # the server's own address
    assert there["pair"]["remote"]["type"] == "prflx", there
    assert there["pair"]["remote"]["address"].startswith(f"{WAN_IP}:"), there
    rtt = await browser_pings(page)
    assert len(rtt) >= 18, f"{len(rtt)} of 20 pings came back\n{chromium.tail()}"
    record(
        f"NAT, Chromium: connect to open {opened:.0f} ms, "
        f"DataChannel round trip p50 {median(rtt):.2f} ms"
    )


# -- firewalls: TURN needed --------------------------------------------------------------


async def test_udp_only_to_turn_python_opens_through_the_relay_and_not_without(
    lab: Lab, lab_turn: Turn, peers: Peers
) -> None:
    lab.firewall("udp-only-turn")
    _server, url = await peers.server()

    # Without TURN: every check is blocked; the rtc stage times out.
    lost = await peers.client(url, rtc={"timeout": 3})
    closed = await event(lost, "closed")
    assert (closed["code"], closed["opened"]) == (4408, False), closed
    blocked = lab.counters()["egress"]
    assert blocked > 0, "the firewall dropped the player's checks"

    # The server hands out TURN credentials (turn=TurnSecret): the player has no TURN
    # configuration of its own.
    server, url = await peers.server(turn=turn_config(lab_turn))
    client = await peers.client(url)
    here = await event(client, "open", 30)
    there = await event(server, "open")
    assert here["pair"]["local"]["type"] == "relay", here
    assert in_relay_range(here["pair"]["local"]["address"]), here
    assert there["pair"]["remote"]["type"] == "relay", there
    assert in_relay_range(there["pair"]["remote"]["address"]), there
    assert lab.counters()["egress"] > blocked, "the player's direct checks were dropped again"
    rtt = await python_pings(client)
    assert len(rtt) >= 18
    record(
        f"UDP only to TURN, Python player via TURN/UDP: connect to open {here['ms']:.0f} ms, "
        f"round trip p50 {median(rtt):.2f} ms"
    )


async def test_udp_only_to_turn_chromium_opens_through_the_relay(
    lab: Lab, lab_turn: Turn, peers: Peers, chromium: Browser
) -> None:
    lab.firewall("udp-only-turn")
    server, url = await peers.server(turn=turn_config(lab_turn))
    browser = await chromium.launch(lab, lab.client)
    page = await chromium.page(browser, page_url(url))
    await page.evaluate("T.start({})")  # TURN from the server's ICE_SERVERS
    opened = await chromium.wait_open(page)
    there = await event(server, "open")
    pair = await page.evaluate("T.selectedPair()")
    assert pair["local"]["type"] == "relay" and pair["local"]["relayProtocol"] == "udp", pair
    assert there["pair"]["remote"]["type"] == "relay", there
    assert in_relay_range(there["pair"]["remote"]["address"]), there
    rtt = await browser_pings(page)
    assert len(rtt) >= 18
    record(
        f"UDP only to TURN, Chromium via TURN/UDP: connect to open {opened:.0f} ms, "
        f"round trip p50 {median(rtt):.2f} ms"
    )


async def test_no_udp_python_opens_through_turn_over_tcp_only(
    lab: Lab, lab_turn: Turn, peers: Peers
) -> None:
    lab.firewall("no-udp")
    server, url = await peers.server()

    # TURN over UDP cannot reach the relay either.
    lost = await peers.client(url, ice=ice_for(lab_turn, "udp"), rtc={"timeout": 3})
    closed = await event(lost, "closed")
    assert (closed["code"], closed["opened"]) == (4408, False), closed

    client = await peers.client(url, ice=ice_for(lab_turn, "tcp"))
    here = await event(client, "open", 30)
    there = await event(server, "open")
    assert here["pair"]["local"]["type"] == "relay", here
    assert there["pair"]["remote"]["type"] == "relay", there
    assert in_relay_range(there["pair"]["remote"]["address"]), there
    rtt = await python_pings(client)
    assert len(rtt) >= 18
    record(
        f"no UDP, Python player via TURN/TCP: connect to open {here['ms']:.0f} ms, "
        f"round trip p50 {median(rtt):.2f} ms"
    )


async def test_no_udp_chromium_opens_through_turn_over_tcp(
    lab: Lab, lab_turn: Turn, peers: Peers, chromium: Browser
) -> None:
    lab.firewall("no-udp")
    # Both URLs, as a server hands them out: Chromium finds the one that works.
    turn = turn_config(lab_turn)
    turn["urls"] += lab_turn.urls("tcp")
    server, url = await peers.server(turn=turn)
    browser = await chromium.launch(lab, lab.client)
    page = await chromium.page(browser, page_url(url))
    await page.evaluate("T.start({})")
    opened = await chromium.wait_open(page)
    there = await event(server, "open")
    pair = await page.evaluate("T.selectedPair()")
    assert pair["local"]["type"] == "relay" and pair["local"]["relayProtocol"] == "tcp", pair
    assert there["pair"]["remote"]["type"] == "relay", there
    rtt = await browser_pings(page)
    assert len(rtt) >= 18
    record(
        f"no UDP, Chromium via TURN/TCP: connect to open {opened:.0f} ms, "
        f"round trip p50 {median(rtt):.2f} ms"
    )
