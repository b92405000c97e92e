"""Random packet loss on the player's link: what each pipe does with it.

The lab drops N % of the packets crossing the client's link, each way, at random
(``numgen random mod 100 < N drop`` on the router: the WebSocket's TCP, the
DataChannels' SCTP over DTLS over UDP, everything). Once the channels are open, both
sides send, every 1/60 s for 5 s, one game update on the unordered, never retransmitted
``game`` channel, one message on the ordered, reliable ``chat`` channel and one on the
WebSocket. Then:

* the game channel delivers about (100 - N) % of the updates, each as fast as without
  loss (nothing waits for a retransmission), and a player keeping only the newest one
  (latest wins) holds state a few ticks old at worst;
* the chat channel and the WebSocket deliver every message, in order, later.
"""

from __future__ import annotations

import pytest

from .conftest import Peers, event, record
from .netlab import Lab

SECONDS = 5
HZ = 60


@pytest.mark.parametrize("loss", [5, 20])
async def test_loss_on_the_players_link(lab: Lab, peers: Peers, loss: int) -> None:
    _server, url = await peers.server()
    client = await peers.client(url)
    await event(client, "open")
    lab.loss(loss)
    await client.send(cmd="stream", seconds=SECONDS, hz=HZ)
    result = await event(client, "result", 60)
    dropped = lab.counters()["loss"]
    assert dropped > 0, "the loss rule dropped nothing"

    lines = []
    for direction, sender, receiver in (
        ("up", result["client"], result["server"]),
        ("down", result["server"], result["client"]),
    ):
        sent = sender["sent"]
        assert sent["game"] == SECONDS * HZ and sent["game_refused"] == 0, sender
        game = receiver["game"]
        share = 100 * game["received"] / sent["game"]
        # Binomial: 300 updates, 1.3 (5 %) and 2.3 (20 %) points of standard deviation.
        assert 100 - loss - 12 <= share < 100, f"{direction}: {share:.1f} % delivered"
        latency, stale = game["latency_ms"], game["staleness_ms"]
        # Times are reported, not asserted (shared, noisy machines): `make bench`'s
        # network group measures them. What must hold: updates arrived, each counted.
        assert latency["n"] == game["received"], f"{direction}: {latency}"
        for pipe in ("chat", "ws"):
            got = receiver[pipe]
            assert got["received"] == sent[pipe] and got["in_order"], f"{direction} {pipe}: {got}"
        lines.append(
            f"{loss} % loss each way, {direction}: game {share:.1f} % delivered "
            f"(latency p50 {latency['p50']} p99 {latency['p99']} ms; newest state's age "
            f"p50 {stale['p50']} p99 {stale['p99']} max {stale['max']} ms); "
            f"chat and WebSocket 100 % in order (latency p50/p99 "
            f"{receiver['chat']['latency_ms']['p50']}/{receiver['chat']['latency_ms']['p99']} "
            f"and {receiver['ws']['latency_ms']['p50']}/{receiver['ws']['latency_ms']['p99']} ms)"
        )
    for line in lines:
        record(line)
    await client.send(cmd="quit")
    assert (await event(client, "closed", 30))["code"] == 1000
