"""``aiosocker run module:setup --workers N`` and ``aiosocker demo --workers N``: real
supervisor and worker processes sharing one port (SO_REUSEPORT), on a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import aiosocker
from aiosocker import CloseCode
from aiosocker.demo.world import parse_control, parse_state, position
from aiosocker.rtc import client_stages

from .servers.procs import SERVERS, Member, RedisServer, until, wait_count

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Supervisor:
    """``python -m aiosocker ARGS`` (started as a terminal would: a process group of its
    own), its stdout read line by line, its stderr in a file."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.url = ""

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    async def line(self, pattern: str, timeout: float = 30) -> re.Match[str]:  # noqa: ASYNC109
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), deadline - time.monotonic())
            if not raw:
                break
            found = re.search(pattern, raw.decode())
            if found:
                return found
        pytest.fail(f"no line matching {pattern!r}; stderr:\n{self.stderr()[-3000:]}")

    async def ctrl_c(self) -> int:
        """SIGINT to the process group, as Ctrl-C in a terminal; the exit status."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return await asyncio.wait_for(self.proc.wait(), 30)

    async def worker_pids(self) -> set[int]:
        """The live workers' pids, from the supervisor's log."""
        started = {int(pid) for pid in re.findall(r"started \(pid (\d+)\)", self.stderr())}
        return {pid for pid in started if _alive(pid)}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@contextlib.asynccontextmanager
async def supervisor(
    *args: str, log: Path, cwd: Path = SERVERS, ready: str = r"serving (ws://\S+/)"
) -> AsyncIterator[Supervisor]:
    stderr = log.open("ab")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aiosocker", *args,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )  # fmt: skip
    finally:
        stderr.close()
    running = Supervisor(proc, log)
    try:
        running.url = (await running.line(ready)).group(1)
        yield running
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        # Workers stop with their supervisor (their lifeline pipe closes): none is left.
        await until(lambda: not any(_alive(p) for p in _workers_in(log)), 20, "workers to end")


def _workers_in(log: Path) -> set[int]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return {int(pid) for pid in re.findall(r"started \(pid (\d+)\)", text)}


async def members_on_every_worker(
    stack: contextlib.AsyncExitStack, url: str, workers: int, limit: int = 40
) -> dict[int, list[Member]]:
    """Connect clients until each of ``workers`` processes has one; by pid."""
    by_pid: dict[int, list[Member]] = {}
    for _ in range(limit):
        member = await stack.enter_async_context(Member(url))
        by_pid.setdefault(await member.pid(), []).append(member)
        if len(by_pid) == workers and len(by_pid) > 1 and sum(map(len, by_pid.values())) >= 8:
            break
    assert len(by_pid) == workers, f"{limit} clients reached {len(by_pid)} of {workers} workers"
    return by_pid


async def test_workers_share_the_port_and_serve_rooms_across_them(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "supervisor.log"
    async with (
        supervisor(
            "run", "room_server:setup", "--workers", "3", "--port", "0",
            "--redis", redis_server.url, "--log-format", "json",
            "--options", "room_server:OPTIONS",
            log=log,
        ) as running,
        contextlib.AsyncExitStack() as stack,
    ):  # fmt: skip
        with pytest.raises(aiosocker.HandshakeRejected) as refused:  # OPTIONS' path only
            await stack.enter_async_context(Member(running.url))
        assert refused.value.status == 404
        by_pid = await members_on_every_worker(stack, running.url + "rooms", 3)
        assert set(by_pid) == await running.worker_pids()
        everyone = [m for members in by_pid.values() for m in members]
        for member in everyone:
            await member.join("r")
        await wait_count(everyone[0], "r", len(everyone))
        for index, member in enumerate(everyone[:3]):
            await member.send(f"say:r:hello from {index}")
        for member in everyone:
            await until(lambda m=member: len(m.got("hello from")) == 3, 10, "the broadcasts")
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert {line["worker"] for line in lines} >= {"supervisor", "worker 0", "worker 2"}
    assert all({"time", "level", "logger", "message", "pid"} <= set(line) for line in lines)


async def test_a_killed_worker_is_restarted(redis_server: RedisServer, tmp_path: Path) -> None:
    async with (
        supervisor(
            "run", "room_server:setup", "--workers", "2", "--port", "0",
            "--redis", redis_server.url, log=tmp_path / "supervisor.log",
        ) as running,
        contextlib.AsyncExitStack() as stack,
    ):  # fmt: skip
        by_pid = await members_on_every_worker(stack, running.url, 2)
        victim, survivor = sorted(by_pid)
        os.kill(victim, signal.SIGKILL)
        await until(lambda: all(m.closed for m in by_pid[victim]), 10, "the victim's clients")
        assert not any(m.closed for m in by_pid[survivor])
        await until(
            lambda: re.search(rf"pid {victim}\) exited with -9; restarting", running.stderr()),
            10,
            "the supervisor to see the death",
        )
        # New clients reach the survivor and the new worker, and nobody else.
        deadline = time.monotonic() + 20
        seen: set[int] = set()
        while time.monotonic() < deadline and len(seen - {survivor}) == 0:
            async with Member(running.url) as member:
                seen.add(await member.pid())
        assert victim not in seen
        assert seen - {survivor}, "no new worker answered"
        assert len(await running.worker_pids()) == 2


async def test_ctrl_c_closes_every_client_with_1001(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with (
        supervisor(
            "run", "room_server:setup", "--workers", "2", "--port", "0",
            "--redis", redis_server.url, log=tmp_path / "supervisor.log",
        ) as running,
        contextlib.AsyncExitStack() as stack,
    ):  # fmt: skip
        by_pid = await members_on_every_worker(stack, running.url, 2)
        assert await running.ctrl_c() == 0
        everyone = [m for members in by_pid.values() for m in members]
        await until(lambda: all(m.closed for m in everyone), 10, "every client to be closed")
        codes = {m.conn.close_code for m in everyone if m.conn is not None}
        assert codes == {CloseCode.GOING_AWAY}
        assert "Traceback" not in running.stderr()
        assert running.proc.stdout is not None
        rest = (await running.proc.stdout.read()).decode()
        assert "stopped" in rest


def test_workers_without_redis_and_bad_targets_are_refused(tmp_path: Path) -> None:
    def aiosocker_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aiosocker", *args],
            capture_output=True, text=True, timeout=60, cwd=SERVERS,
        )  # fmt: skip

    refused = aiosocker_cli("run", "room_server:setup", "--workers", "2", "--port", "0")
    assert refused.returncode == 2
    assert "--workers > 1 needs --redis" in refused.stderr
    refused = aiosocker_cli("demo", "--workers", "2", "--port", "0")
    assert refused.returncode == 2 and "needs --redis" in refused.stderr
    for bad_args in (
        ["no_such_module:setup"],
        ["room_server:no_such_function"],
        ["no-colon"],
        ["room_server:setup", "--options", "room_server:setup"],
        ["room_server:setup", "--options", "room_server:NOT_OPTIONS"],
    ):
        bad = aiosocker_cli("run", *bad_args, "--workers", "1", "--port", "0")
        assert bad.returncode == 2, (bad_args, bad.stderr)
        assert "Traceback" not in bad.stderr


# -- the demo ----------------------------------------------------------------------------


class Player:
    """A Python player of the demo: its scene, and every player's state it was sent."""

    def __init__(self, url: str) -> None:
        self.scene: dict[str, object] = {}
        self.states: dict[int, tuple[float, float]] = {}
        self._connect = aiosocker.connect(url, self._setup, open_timeout=10)

    def _setup(self, conn: aiosocker.Connection) -> None:
        @conn.stage(timeout=10)
        async def scene(message: bytes) -> bool:
            self.scene = parse_control(message)
            await rtc.ready()
            return True

        rtc = client_stages(conn, timeout=10)

        @rtc.on_message()
        def game(message: bytes) -> None:
            state = parse_state(message)
            if state is not None:
                self.states[state[0]] = state[1:]

        @conn.stage(name="open")
        def control(message: bytes) -> bool:
            return False

        self.rtc = rtc

    async def __aenter__(self) -> Player:
        self.conn = await self._connect.__aenter__()
        await self.conn.send(b'{"type":"hello","name":"py"}')
        await until(lambda: self.conn.current == "open", 20, "the demo's stages", 0.05)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._connect.__aexit__(None, None, None), 10)


async def test_demo_players_on_two_processes_see_each_other_move(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with (
        supervisor(
            "demo", "--workers", "2", "--port", "0", "--redis", redis_server.url,
            log=tmp_path / "supervisor.log", ready=r"open (http://\S+/)",
        ) as running,
        contextlib.AsyncExitStack() as stack,
    ):  # fmt: skip
        url = running.url.replace("http://", "ws://") + "ws"
        by_origin: dict[object, Player] = {}
        for _ in range(12):
            player = await stack.enter_async_context(Player(url))
            by_origin.setdefault(player.scene["origin"], player)
            if len(by_origin) == 2:
                break
        assert len(by_origin) == 2, "the players all reached one process"
        mover, watcher = by_origin.values()
        me = mover.scene["you"]
        assert isinstance(me, int)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            mover.rtc.send(position(123.0, 456.0))
            await asyncio.sleep(0.05)
            if watcher.states.get(me) == (123.0, 456.0):
                break
        assert watcher.states.get(me) == (123.0, 456.0), "the other process's player moved"
        assert await running.ctrl_c() == 0
