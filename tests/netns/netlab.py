"""Real networks on one machine: network namespaces, a NAT router, firewalls, loss, coturn.

A :class:`Lab` is four network namespaces of its own, joined by veth pairs to a router::

    pub (a server on the internet)                          client (a home network)
    10.0.0.2  aiosocker server --wan-- router --lan-- 192.168.1.2  players
                                        |   NAT: masquerade fully-random
    turn (a TURN server)                |
    10.0.1.2  coturn ----------------turn

* **pub** holds the aiosocker server, **turn** holds coturn: two hosts, so the server
  never has the TURN server's address among its own candidates. Neither has a route
  into the home network: like the internet, they reach the players only through the
  NAT's mappings.
* **router** forwards between the three, with nftables (table ``inet lab``): a
  port-randomising NAT for the home network (``masquerade fully-random``: a new source
  port per destination, like a symmetric NAT), inbound packets only for connections the
  home network started, a firewall on what leaves the home network
  (:meth:`Lab.firewall`) and random loss on the client's link, both ways
  (:meth:`Lab.loss`, ``numgen random mod 100 < N drop``; this kernel has no netem).
* **client** holds the players (a Python client, Chromium), default route via the router.

IPv6 is off in all three, so every candidate is one of these IPv4 addresses. Traffic
never leaves the lab's namespaces: none of them has a link to the host's.

:meth:`Lab.close` kills every process left in the namespaces (by pid, from ``ip netns
pids``) and deletes them, which deletes the veths and the nft tables with them. It runs
at teardown whatever happened; :func:`sweep` removes what a killed test run left behind
(namespaces named ``aiosk-<pid>-...`` whose pid is gone).

Nothing here imports pytest: ``bench/figures/network.py`` builds the same lab.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"

IP = shutil.which("ip") or "/usr/sbin/ip"
NFT = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin") or "/usr/sbin/nft"
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
CHROMIUM = os.environ.get("SOCKER_CHROMIUM", "/usr/bin/chromium")

PREFIX = "aiosk"
_NAME = re.compile(rf"^{PREFIX}-(\d+)-\d+-(pub|turn|router|client)$")
_counter = itertools.count()

# The lab's addresses (the same in every lab: each lab is a world of its own).
SERVER_IP = "10.0.0.2"
WAN_IP = "10.0.0.1"  # the NAT's public address: every player shows up from it
TURN_IP = "10.0.1.2"
TURN_GATEWAY_IP = "10.0.1.1"
GATEWAY_IP = "192.168.1.1"
CLIENT_IP = "192.168.1.2"
TURN_PORT = 3478
RELAY_PORTS = (49152, 49407)  # coturn's relay range: 256 ports

Firewall = Literal["open", "udp-only-turn", "no-udp"]


class LabError(RuntimeError):
    """Building the lab, or a process in it, failed."""


def not_root() -> str | None:
    """``None`` when running as root (network namespaces need it), else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs `make test` as root)"
    return None


def missing_tools() -> str | None:
    """``None`` when ``ip`` and ``nft`` are installed, else which one is not."""
    for tool in (IP, NFT):
        if not Path(tool).exists():
            return f"{tool} is missing: `make system` installs iproute2 and nftables"
    return None


def can_build() -> str | None:
    """``None`` when this machine can build a lab, else why not."""
    return not_root() or missing_tools()


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: a forked child only calls it
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a child before exec: SIGKILL when the process that started it dies, so a
    killed test run leaves no peer or coturn behind (kept across ``ip netns exec``)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _run(*args: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        args, input=input, capture_output=True, text=True, timeout=20, check=False
    )
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def namespaces() -> list[str]:
    return [line.split()[0] for line in _run(IP, "netns", "list").splitlines() if line.strip()]


def _pids(ns: str) -> list[int]:
    out = _run(IP, "netns", "pids", ns, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def _kill_all(ns: str, grace: float = 2.0) -> None:
    """Every process in ``ns``, by pid: SIGTERM, then SIGKILL after ``grace`` seconds."""
    pids = _pids(ns)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.02)
            pids = _pids(ns)
        if not pids:
            return


def _delete(ns: str) -> None:
    _kill_all(ns)
    _run(IP, "netns", "del", ns, check=False)


def sweep() -> list[str]:
    """Delete labs a dead test run left behind (their creator's pid is gone)."""
    removed = []
    for ns in namespaces():
        match = _NAME.match(ns)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # its creator still runs (another test run): not ours to remove
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        _delete(ns)
        removed.append(ns)
    return removed


ROUTER_RULES = """
table inet lab {
    chain loss {
    }
    chain egress {
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        jump loss
        oifname "lan" ct state established,related accept
        oifname "lan" counter drop
        iifname "lan" jump egress
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        iifname "lan" oifname != "lan" masquerade fully-random
    }
}
"""


class Lab:
    """Four namespaces, a NAT router between them (see the module's docstring)."""

    def __init__(self) -> None:
        tag = f"{PREFIX}-{os.getpid()}-{next(_counter)}"
        self.pub = f"{tag}-pub"
        self.turn = f"{tag}-turn"
        self.router = f"{tag}-router"
        self.client = f"{tag}-client"
        self.built: list[str] = []
        self.procs: list[Proc] = []

    @property
    def all(self) -> tuple[str, str, str, str]:
        return (self.pub, self.turn, self.router, self.client)

    def build(self) -> Lab:
        try:
            for ns in self.all:
                _run(IP, "netns", "add", ns)
                self.built.append(ns)
                self.sh(ns, "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6")
                self.sh(ns, "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6")
                _run(IP, "-n", ns, "link", "set", "lo", "up")
            # Each veth end is made directly in its namespace: nothing in the host's.
            _run(IP, "link", "add", "wan", "netns", self.router, "type", "veth",
                 "peer", "name", "eth0", "netns", self.pub)  # fmt: skip
            _run(IP, "link", "add", "turn", "netns", self.router, "type", "veth",
                 "peer", "name", "eth0", "netns", self.turn)  # fmt: skip
            _run(IP, "link", "add", "lan", "netns", self.router, "type", "veth",
                 "peer", "name", "eth0", "netns", self.client)  # fmt: skip
            for ns, dev, addr in (
                (self.pub, "eth0", SERVER_IP),
                (self.turn, "eth0", TURN_IP),
                (self.router, "wan", WAN_IP),
                (self.router, "turn", TURN_GATEWAY_IP),
                (self.router, "lan", GATEWAY_IP),
                (self.client, "eth0", CLIENT_IP),
            ):
                _run(IP, "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                _run(IP, "-n", ns, "link", "set", dev, "up")
            for ns, gateway in (
                (self.pub, WAN_IP),
                (self.turn, TURN_GATEWAY_IP),
                (self.client, GATEWAY_IP),
            ):
                _run(IP, "-n", ns, "route", "add", "default", "via", gateway)
            self.sh(self.router, "echo 1 > /proc/sys/net/ipv4/ip_forward")
            _run(IP, "netns", "exec", self.router, NFT, "-f", "-", input=ROUTER_RULES)
        except BaseException:
            self.close()
            raise
        return self

    def sh(self, ns: str, command: str) -> str:
        return _run(IP, "netns", "exec", ns, "sh", "-c", command)

    def nft(self, *commands: str) -> None:
        """Apply nft commands on the router, atomically."""
        _run(IP, "netns", "exec", self.router, NFT, "-f", "-", input="\n".join(commands) + "\n")

    def firewall(self, kind: Firewall) -> None:
        """What the home network may send out: everything; UDP only to the TURN server
        (a corporate firewall); no UDP at all (TCP only: the WebSocket, TURN over TCP)."""
        rules = {
            "open": [],
            "udp-only-turn": [f"add rule inet lab egress meta l4proto udp ip daddr != {TURN_IP} "
                              "counter drop"],
            "no-udp": ["add rule inet lab egress meta l4proto udp counter drop"],
        }[kind]  # fmt: skip
        self.nft("flush chain inet lab egress", *rules)

    def loss(self, percent: int) -> None:
        """Drop ``percent`` % of the packets crossing the client's link, each way, at
        random (every protocol: the WebSocket's TCP retransmits, the unreliable channel
        does not)."""
        if not 0 <= percent <= 100:
            raise ValueError(f"percent is 0..100, not {percent}")
        rules = (
            [
                f'add rule inet lab loss iifname "lan" numgen random mod 100 < {percent} '
                "counter drop",
                f'add rule inet lab loss oifname "lan" numgen random mod 100 < {percent} '
                "counter drop",
            ]
            if percent
            else []
        )
        self.nft("flush chain inet lab loss", *rules)

    def counters(self) -> dict[str, int]:
        """Packets dropped so far: ``loss`` (both ways), ``egress`` (the firewall),
        ``inbound`` (unsolicited packets from the internet)."""
        out = _run(IP, "netns", "exec", self.router, NFT, "-j", "list", "table", "inet", "lab")
        found = {"loss": 0, "egress": 0, "inbound": 0}
        for item in json.loads(out).get("nftables", []):
            rule = item.get("rule")
            if not rule:
                continue
            packets = sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
            chain = rule["chain"]
            key = {"loss": "loss", "egress": "egress", "forward": "inbound"}.get(chain)
            if key is not None:
                found[key] += packets
        return found

    def exec_args(self, ns: str, *argv: str) -> list[str]:
        return [IP, "netns", "exec", ns, *argv]

    def close(self) -> None:
        """Stop what runs in the lab and delete it; safe to call twice."""
        for proc in self.procs:
            proc.kill()
        for ns in reversed(self.built):
            _delete(ns)
        self.built.clear()


# -- processes in the lab ----------------------------------------------------------------


class Proc:
    """A process started in a namespace, speaking JSON lines: events on stdout, commands
    on stdin. Its stderr goes to ``log``."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []

    async def start(self) -> Proc:
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=1 << 22,
                preexec_fn=_die_with_parent,
            )
        return self

    async def event(self, kind: str, timeout: float = 20) -> dict[str, Any]:  # noqa: ASYNC109
        """The next event of ``kind`` (earlier ones of other kinds are kept in
        :attr:`events`); a :class:`LabError` with the log's tail if none comes."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                line = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except TimeoutError:
                raise LabError(
                    f"{self.name}: no {kind!r} event within {timeout} s\n{self.tail()}"
                ) from None
            if not line:
                code = await asyncio.wait_for(self.proc.wait(), 5)
                raise LabError(f"{self.name} exited ({code}) before {kind!r}\n{self.tail()}")
            event = json.loads(line)
            self.events.append(event)
            if event.get("event") == "error":
                raise LabError(f"{self.name}: {event.get('error')}\n{self.tail()}")
            if event.get("event") == kind:
                return event

    async def send(self, **command: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()

    def tail(self, size: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.log.name} ---\n{text[-size:]}"

    def kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def stop(self, timeout: float = 5) -> int | None:  # noqa: ASYNC109
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        return proc.returncode


def python_peer(
    lab: Lab | None, ns: str | None, script: str, config: dict[str, Any], log: Path
) -> Proc:
    """``peers/<script>.py`` with its JSON ``config``, in namespace ``ns`` (or here)."""
    argv = [sys.executable, str(PEERS / f"{script}.py"), json.dumps(config)]
    if lab is not None and ns is not None:
        argv = lab.exec_args(ns, *argv)
    proc = Proc(f"{script} in {ns or 'the host'}", argv, log)
    if lab is not None:
        lab.procs.append(proc)
    return proc


# -- coturn ------------------------------------------------------------------------------


@dataclass
class Turn:
    """A real ``turnserver`` (coturn) with ``use-auth-secret``: clients need short-lived
    credentials minted from :attr:`secret` (``aiosocker.rtc.turn_credentials``)."""

    ip: str
    port: int
    workdir: Path
    lab: Lab | None = None
    secret: str = "lab-shared-secret"
    realm: str = "aiosocker.test"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "turnserver.log"

    def urls(self, transport: Literal["udp", "tcp"] = "udp") -> list[str]:
        return [f"turn:{self.ip}:{self.port}?transport={transport}"]

    def args(self) -> list[str]:
        args = [
            TURNSERVER,
            "-n",  # no configuration file: everything is here
            f"--listening-ip={self.ip}",
            f"--relay-ip={self.ip}",
            f"--listening-port={self.port}",
            f"--min-port={RELAY_PORTS[0]}",
            f"--max-port={RELAY_PORTS[1]}",
            "--use-auth-secret",
            f"--static-auth-secret={self.secret}",
            f"--realm={self.realm}",
            "--fingerprint",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--no-multicast-peers",
            "--relay-threads=1",
            f"--log-file={self.log_path}",
            "--simple-log",
            "--verbose",
            f"--pidfile={self.workdir / 'turnserver.pid'}",
            f"--db={self.workdir / 'turndb'}",
        ]
        if self.ip.startswith("127."):
            args.append("--allow-loopback-peers")  # both relays are on loopback
        return args

    def start(self, timeout: float = 10) -> Turn:
        if not Path(TURNSERVER).exists():
            raise LabError("turnserver is missing: `make system` installs coturn")
        argv = self.args()
        if self.lab is not None:
            argv = self.lab.exec_args(self.lab.turn, *argv)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "turnserver.out").open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        ns = self.lab.turn if self.lab is not None else None
        deadline = time.monotonic() + timeout
        while not self._listening(ns):
            if self.proc.poll() is not None:
                raise LabError(f"turnserver exited with {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise LabError(f"turnserver did not listen within {timeout} s: {self.tail()}")
            time.sleep(0.05)
        return self

    def _listening(self, ns: str | None) -> bool:
        """A TCP and a UDP socket bound to our address and port (``ss``, in ``ns``)."""
        argv = ["ss", "-Hlntu", "sport", "=", f":{self.port}"]
        if ns is not None:
            argv = [IP, "netns", "exec", ns, *argv]
        out = _run(*argv, check=False)
        kinds = {line.split()[0] for line in out.splitlines() if f"{self.ip}:{self.port}" in line}
        return {"tcp", "udp"} <= kinds

    def tail(self, size: int = 3000) -> str:
        parts = []
        for path in (self.workdir / "turnserver.out", self.log_path):
            if path.exists():
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-size:]}")
        return "\n".join(parts)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.proc = None


# -- Chromium in a namespace -------------------------------------------------------------


def chromium_in(lab: Lab, ns: str, folder: Path) -> Path:
    """An executable that runs Chromium inside ``ns``, for Playwright's
    ``launch(executable_path=...)``: Playwright talks to it over inherited pipes, which
    ``ip netns exec`` keeps, so the driver stays here and the browser lives in the lab."""
    script = folder / f"chromium-in-{ns}"
    script.write_text(f'#!/bin/sh\nexec {IP} netns exec {ns} {CHROMIUM} "$@"\n')
    script.chmod(0o755)
    return script
