"""Real-network figures: opening behind a NAT and through a TURN relay, the channel's
round trip on each path, and what the unreliable channel delivers under random loss.

They run in the network lab of the real-network tests (``tests/netns/netlab.py``:
network namespaces for a server, a TURN server (coturn), a NAT router with nftables and
a home network behind it; see docs/rtc.md, "Which networks need TURN"), with the same
peers (``tests/netns/peers``): the aiosocker server in the lab's "pub" namespace, Python
players behind the NAT. Building the lab needs root; without it, or without nftables or
coturn, the group is ``n/a``.

* ``rtc_open_ms_nat``, ``dc_rtt_ms_host``: a player behind the NAT, no STUN or TURN: a
  new client per round, connect to channels open; the median of 50 pings on the game
  channel (the pair is the server's host candidate and the NAT's mapping).
* ``rtc_open_ms_relay``, ``dc_rtt_ms_relay``: the same, relay only on both sides
  (``ice_transport_policy="relay"``, ``turn=TurnSecret(...)``): every packet through
  coturn. NAT and relay rounds are interleaved.
* ``dc_delivered_pct_loss5``, ``dc_delivered_pct_loss20``: 5 % and 20 % of the packets
  on the player's link dropped each way (nftables ``numgen random``); both sides send a
  game update 60 times a second; the share delivered, both ways together. The details
  carry each direction, the updates' latency, the newest state's age, and that the
  reliable channel and the WebSocket delivered everything in order.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

from tests.netns import netlab

from ..runner import Config, Results, Unavailable, interleave, log

PINGS = 50
HZ = 60


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class _Lab:
    """The lab, its coturn and its two servers (direct and relay only), on one loop."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.loop = asyncio.new_event_loop()
        self.lab = netlab.Lab()
        self.turn: netlab.Turn | None = None
        self.urls: dict[str, str] = {}
        self.servers: list[netlab.Proc] = []
        self.count = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def start(self) -> None:
        self.lab.build()
        self.turn = netlab.Turn(netlab.TURN_IP, netlab.TURN_PORT, self.folder / "turn", self.lab)
        self.turn.start()
        turn = {"urls": self.turn.urls("udp"), "secret": self.turn.secret, "ttl": 600}
        for name, config in (
            ("nat", {}),
            ("relay", {"relay": True, "turn": turn}),
        ):
            self.urls[name] = self.run(self._server(name, config))

    async def _server(self, name: str, config: dict[str, Any]) -> str:
        proc = netlab.python_peer(
            self.lab,
            self.lab.pub,
            "server",
            {"host": netlab.SERVER_IP, **config},
            self.folder / f"server-{name}.log",
        )
        self.servers.append(proc)
        await proc.start()
        return str((await proc.event("ready"))["url"])

    async def client(self, name: str, **config: Any) -> netlab.Proc:
        self.count += 1
        proc = netlab.python_peer(
            self.lab,
            self.lab.client,
            "client",
            {"url": self.urls[name], **config},
            self.folder / f"client{self.count}.log",
        )
        return await proc.start()

    async def open_and_ping(self, name: str) -> dict[str, Any]:
        """One player: connect to open (ms), then the median of its pings (ms)."""
        client = await self.client(name, relay=name == "relay")
        try:
            opened = await client.event("open", 30)
            local = opened["pair"]["local"]["type"]
            if (local == "relay") != (name == "relay"):
                raise RuntimeError(f"{name}: ICE selected a {local} candidate: {opened}")
            await client.send(cmd="ping", count=PINGS, interval=0.01)
            rtt = (await client.event("rtt", 30))["rtt_ms"]
            if len(rtt) < PINGS * 0.9:
                raise RuntimeError(f"{name}: {len(rtt)} of {PINGS} pings came back")
            await client.send(cmd="quit")
            await client.event("closed", 15)
            return {"open_ms": float(opened["ms"]), "rtt_ms": _median(rtt)}
        finally:
            await client.stop()

    async def lossy(self, percent: int, seconds: float) -> dict[str, Any]:
        client = await self.client("nat")
        try:
            await client.event("open", 30)
            self.lab.loss(percent)
            await client.send(cmd="stream", seconds=seconds, hz=HZ)
            result = await client.event("result", seconds + 60)
            self.lab.loss(0)
            await client.send(cmd="quit")
            await client.event("closed", 30)
            return dict(result)
        finally:
            self.lab.loss(0)
            await client.stop()

    async def _stop_servers(self) -> None:
        # gather() inside the coroutine: made outside, its future would belong to
        # another event loop than self.loop.
        await asyncio.gather(*(p.stop() for p in self.servers), return_exceptions=True)

    def close(self) -> None:
        try:
            self.run(self._stop_servers())
        finally:
            if self.turn is not None:
                self.turn.stop()
            self.lab.close()
            self.loop.close()


def run(cfg: Config, results: Results) -> None:
    reason = netlab.can_build()
    if reason is None and not Path(netlab.TURNSERVER).exists():
        reason = "turnserver is missing: `make system` installs coturn"
    if reason is not None:
        raise Unavailable(reason)
    with tempfile.TemporaryDirectory(prefix="aiosocker-network-") as folder:
        lab = _Lab(Path(folder))
        try:
            lab.start()
            _opens(cfg, results, lab)
            _loss(cfg, results, lab)
        except netlab.LabError as exc:
            raise RuntimeError(str(exc)) from None
        finally:
            lab.close()


def _opens(cfg: Config, results: Results, lab: _Lab) -> None:
    rounds = cfg.pick(7, 2)
    done = interleave(
        {n: (lambda _, n=n: lab.run(lab.open_and_ping(n))) for n in ("nat", "relay")},
        rounds,
        budget_s=cfg.pick(120, 30),
    )
    for name, open_key, rtt_key in (
        ("nat", "rtc_open_ms_nat", "dc_rtt_ms_host"),
        ("relay", "rtc_open_ms_relay", "dc_rtt_ms_relay"),
    ):
        samples = done.samples[name]
        if name in done.errors or not samples:
            why = done.errors.get(name) or done.unavailable.get(name) or "no samples"
            results.error(open_key, why)
            results.error(rtt_key, why)
            continue
        path = (
            "relay to relay through coturn, both sides relay only"
            if name == "relay"
            else "behind a port-randomising NAT, no STUN or TURN"
        )
        results.put_samples(open_key, [s["open_ms"] for s in samples], path=path, client="Python")
        results.put_samples(
            rtt_key, [s["rtt_ms"] for s in samples], path=path, pings_per_round=PINGS
        )
        log(f"{name}: open {[round(s['open_ms']) for s in samples]} ms")


def _loss(cfg: Config, results: Results, lab: _Lab) -> None:
    seconds = cfg.pick(10.0, 4.0)
    for percent in (5, 20):
        key = f"dc_delivered_pct_loss{percent}"
        result = lab.run(lab.lossy(percent, seconds))
        up, down = result["server"], result["client"]  # what each side received
        sent = result["client"]["sent"]["game"] + result["server"]["sent"]["game"]
        got = up["game"]["received"] + down["game"]["received"]
        complete = all(
            side[pipe]["in_order"] and side[pipe]["received"] == result[other]["sent"][pipe]
            for side, other in ((up, "client"), (down, "server"))
            for pipe in ("chat", "ws")
        )
        results.put(
            key,
            100 * got / sent,
            loss_each_way_pct=percent,
            seconds=seconds,
            hz=HZ,
            up_pct=round(100 * up["game"]["received"] / result["client"]["sent"]["game"], 1),
            down_pct=round(100 * down["game"]["received"] / result["server"]["sent"]["game"], 1),
            latency_ms=down["game"]["latency_ms"],
            newest_state_age_ms=down["game"]["staleness_ms"],
            reliable_and_websocket_complete_in_order=complete,
            chat_latency_ms=down["chat"]["latency_ms"],
            ws_latency_ms=down["ws"]["latency_ms"],
        )
        log(f"loss {percent} %: {100 * got / sent:.1f} % delivered; complete: {complete}")
