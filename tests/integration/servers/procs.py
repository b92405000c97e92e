"""Real processes for the multi-process tests: redis-server, room servers, nginx, and a
client that records what it gets.

Each process is started on a free loopback port by a fixture of the test module and
stopped by it, also when the test fails. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import aiosocker

HOST = "127.0.0.1"
SERVERS = Path(__file__).resolve().parent
ROOM_SERVER = SERVERS / "room_server.py"


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def need(program: str) -> str:
    """The path of ``program``, or a failure that says how to get it."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{program} is not installed: `make system` installs it (Debian package)")
    return path


async def until(
    condition: Callable[[], object],
    timeout: float,  # noqa: ASYNC109 (a polling deadline, not a cancel scope)
    what: str,
    step: float = 0.01,
) -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


# -- redis-server ------------------------------------------------------------------------


class RedisServer:
    """``redis-server`` on a free loopback port, no persistence (``--save ""``,
    ``--appendonly no``): a restart loses everything, like a crashed cache."""

    def __init__(self, workdir: Path) -> None:
        self.program = need("redis-server")
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.program,
                "--port", str(self.port),
                "--bind", HOST,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--protected-mode", "yes",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 10
        while not self.ping():
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited with {self.proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not answer within 10 s: {self.log()}")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Stop it abruptly (SIGKILL): its clients see their connections drop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


# -- room servers ------------------------------------------------------------------------


class RoomServer:
    """``room_server.py`` in a process of its own (see that file)."""

    def __init__(
        self,
        redis: str | None,
        port: int = 0,
        log: Path | None = None,
        resume: float | None = None,
    ) -> None:
        self.redis = redis
        self.resume = resume
        self.requested = port
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.pid = 0

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/"

    async def start(self) -> RoomServer:
        args = [str(ROOM_SERVER), "--port", str(self.requested)]
        if self.redis is not None:
            args += ["--redis", self.redis]
        if self.resume is not None:
            args += ["--resume", str(self.resume)]
        stderr = self.log.open("ab") if self.log is not None else None
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        finally:
            if stderr is not None:
                stderr.close()
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 20)).decode()
        assert line.startswith("ready "), f"room server did not start: {line!r}"
        _, port, pid = line.split()
        self.port, self.pid = int(port), int(pid)
        return self

    def terminate(self) -> None:
        """Stop it the graceful way (SIGTERM): its clients get 1001 and may resume."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill it abruptly (SIGKILL): no close frame, its clients see 1006."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        self.proc = None


# -- a client that records ---------------------------------------------------------------


class Member:
    """A client connection that records every message in :attr:`inbox`."""

    def __init__(self, url: str, resume_token: str | None = None) -> None:
        self.url = url
        self.inbox: list[bytes] = []
        self._connect = aiosocker.connect(
            url, self._setup, open_timeout=5, resume_token=resume_token
        )
        self.conn: aiosocker.Connection | None = None

    def _setup(self, conn: aiosocker.Connection) -> None:
        @conn.stage()
        def inbox(message: bytes) -> bool:
            self.inbox.append(message)
            return False

    async def __aenter__(self) -> Member:
        self.conn = await self._connect.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connect.__aexit__(None, None, None), 10)

    @property
    def closed(self) -> bool:
        return self.conn is None or self.conn.closed

    async def send(self, text: str) -> None:
        assert self.conn is not None
        await self.conn.send(text.encode())

    def got(self, prefix: str) -> list[str]:
        """Messages received that start with ``prefix``."""
        return [m.decode() for m in self.inbox if m.startswith(prefix.encode())]

    async def ask(self, command: str, prefix: str, timeout: float = 5) -> str:  # noqa: ASYNC109
        """Send ``command``; the next reply starting with ``prefix``."""
        before = len(self.got(prefix))
        await self.send(command)
        await until(lambda: len(self.got(prefix)) > before, timeout, f"a reply to {command}")
        return self.got(prefix)[before]

    async def pid(self) -> int:
        """The pid of the server process this client reached."""
        return int((await self.ask("whoami", "pid:")).split(":")[1])

    async def join(self, room: str) -> None:
        await self.ask(f"join:{room}", f"joined:{room}")

    async def count(self, room: str) -> int:
        return int((await self.ask(f"count:{room}", f"count:{room}:")).rsplit(":", 1)[1])


async def wait_count(member: Member, room: str, expected: int, timeout: float = 10) -> None:  # noqa: ASYNC109
    """Ask ``member``'s server for ``room``'s count until it is ``expected``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await member.count(room)
        if last == expected:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"members({room!r}) stayed {last}, expected {expected}, for {timeout} s")


# -- nginx -------------------------------------------------------------------------------

NGINX_CONF = """\
# Generated by tests/integration/servers/procs.py: the recipe of docs/deploy.md on loopback.
{user}worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;

events {{
    worker_connections 256;
}}

http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    # Upgrade: websocket -> Connection: upgrade; anything else -> Connection: close.
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    upstream aiosocker {{
{servers}
    }}

    server {{
        listen {host}:{port};

        location / {{
            proxy_pass http://aiosocker;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            proxy_send_timeout 60s;
            proxy_buffering off;
        }}
    }}
}}
"""


class Nginx:
    """A real nginx on a free loopback port in front of ``upstreams`` (loopback ports),
    with its configuration, pid file, logs and temp files in ``workdir``."""

    def __init__(self, workdir: Path, upstreams: list[int]) -> None:
        self.program = need("nginx")
        self.workdir = workdir
        self.port = free_port()
        self.conf = workdir / "nginx.conf"
        servers = "\n".join(
            f"        server {HOST}:{port} max_fails=1 fail_timeout=10s;" for port in upstreams
        )
        self.conf.write_text(
            NGINX_CONF.format(
                user="user root;\n" if os.geteuid() == 0 else "",
                dir=workdir,
                servers=servers,
                host=HOST,
                port=self.port,
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/"

    def start(self) -> None:
        check = subprocess.run(
            [self.program, "-t", "-p", str(self.workdir), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, f"nginx -t refused the configuration:\n{check.stderr}"
        self.proc = subprocess.Popen(
            [self.program, "-p", str(self.workdir), "-c", str(self.conf), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "stderr.log").open("ab"),
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                return
            if self.proc.poll() is not None:
                pytest.fail(f"nginx exited with {self.proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"nginx did not listen within 10 s: {self.log()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
