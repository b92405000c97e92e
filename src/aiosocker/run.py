"""``aiosocker run module:setup --workers N --port P``: N server processes on one port.

The command runs a small supervisor (this module's :func:`supervise`) that starts
``workers`` processes. Each one serves the same ``setup`` with
``aiosocker.serve(setup, host, port, redis=URL)`` and binds the same port with
``SO_REUSEPORT``, so the kernel spreads new connections over them (Linux; one user's
processes only). The mechanism is the environment variable :data:`REUSE_PORT_ENV`
(``AIOSOCKER_REUSE_PORT=1``): the listeners of both transports bind with
``reuse_port=True`` when it is set, which also lets a supervisor of your own (systemd,
a container runtime) run several ``serve()`` processes on one port.

The supervisor

* refuses ``--workers`` > 1 without ``--redis``: rooms, broadcasts and resume sessions
  must be shared by the workers, or a broadcast would reach a part of a room only;
* restarts a worker that dies (after a pause that grows while it keeps dying at once;
  it gives up, and stops everything, when one dies at start ten times in a row or says
  its target cannot be loaded);
* on Ctrl-C or SIGTERM asks every worker to stop (SIGTERM): each closes its connections
  with 1001 (going away), waits for their close hooks and exits; a worker still there
  after ``stop_timeout`` seconds is killed. Workers also stop by themselves when the
  supervisor vanishes (a pipe they hold closes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any, Literal

from .server import Server, serve

__all__ = [
    "REUSE_PORT_ENV",
    "TargetError",
    "WorkerOptions",
    "current_server",
    "load",
    "main",
    "run",
    "serve_target",
    "supervise",
]

logger = logging.getLogger("aiosocker.run")

REUSE_PORT_ENV = "AIOSOCKER_REUSE_PORT"
"""Set to ``1``, the listeners bind with ``SO_REUSEPORT`` (what the workers share)."""

LogFormat = Literal["text", "json"]

BAD_TARGET = 2
"""A worker's exit status when its target cannot be loaded (the supervisor gives up)."""

_QUICK_DEATH = 1.0  # seconds: a worker dying sooner than this after its start died at start
_MAX_QUICK_DEATHS = 10


class TargetError(ValueError):
    """A ``module:attribute`` that cannot be loaded."""


@dataclass(frozen=True)
class WorkerOptions:
    """What a worker process is told by the supervisor."""

    entry: str
    """``module:function``: called with these options, returns the async context
    manager that serves (``aiosocker.run:serve_target`` serves :attr:`target`)."""
    target: str | None
    """``module:setup`` for :func:`serve_target`."""
    host: str
    port: int
    redis: str | None
    index: int = 0
    """This worker's number, 0 to ``workers - 1`` (a restarted worker keeps it)."""
    workers: int = 1
    log_format: LogFormat = "text"
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else the entry needs (JSON data)."""


def load(target: str) -> Any:
    """The object ``module:attribute`` names (``attribute`` may be dotted); the current
    directory is importable, as with ``python -m``."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise TargetError(f"expected module:attribute, got {target!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetError(f"cannot import {module_name!r}: {exc}") from exc
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise TargetError(f"{module_name!r} has no attribute {attribute!r}") from None
    return found


def serve_target(options: WorkerOptions) -> AbstractAsyncContextManager[Server]:
    """The default worker entry: ``serve(setup, host, port, redis=..., **OPTIONS)`` for
    the ``module:setup`` in ``options.target``, with the ``serve()`` options of the dict
    ``--options module:NAME`` names, if given (``origins``, ``allowed_hosts``,
    ``resume``...)."""
    if options.target is None:
        raise TargetError("no target to serve")
    setup = load(options.target)
    if not callable(setup):
        raise TargetError(f"{options.target} is not a function taking the connection")
    more: dict[str, Any] = {"transport": options.extra.get("transport", "websockets")}
    named = options.extra.get("options")
    if named is not None:
        found = load(named)
        if not isinstance(found, dict):
            raise TargetError(f"{named} is not a dict of serve() options")
        more.update(found)
    where = f"{named}: " if named is not None else ""
    for fixed in ("host", "port", "redis"):
        if fixed in more:
            raise TargetError(f"{where}{fixed} is given on the command line, not in options")
    try:
        return serve(setup, options.host, options.port, redis=options.redis, **more)
    except (TypeError, ValueError) as exc:
        raise TargetError(f"{where}{exc}") from None


_current: Server | None = None


def current_server() -> Server:
    """The :class:`~aiosocker.Server` this worker process runs, for a ``module:setup``
    served by ``aiosocker run`` (which has no other handle on it): its
    ``broadcast()``, ``members()``, ``connections``. RuntimeError elsewhere."""
    if _current is None:
        raise RuntimeError("current_server() is for code run by 'aiosocker run' workers")
    return _current


# -- logging ---------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, worker, pid, and for a
    line about a connection its ``conn_id``, ``stage`` and ``remote``."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object per line, with the connection's fields when it has them."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "worker": self.worker,
            "pid": record.process,
        }
        for name in ("conn_id", "stage", "remote"):  # Connection.log_context()
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(log_format: LogFormat, worker: str, *, verbose: bool = True) -> None:
    """Log to stderr as text or JSON lines: the supervisor's INFO, and the other
    ``aiosocker`` loggers' INFO too if ``verbose`` (else their warnings)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s [{worker}] %(name)s %(levelname)s %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("aiosocker").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("aiosocker.run").setLevel(logging.INFO)


# -- the worker ------------------------------------------------------------------------


async def _until_stopped(lifeline: int | None) -> str:
    """Wait for SIGINT, SIGTERM or the supervisor's end; returns which."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[str] = loop.create_future()

    def stop_with(why: str) -> None:
        if not stop.done():
            stop.set_result(why)

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop_with, sig.name)
    if lifeline is not None:

        def lifeline_readable() -> None:
            with contextlib.suppress(OSError):
                if os.read(lifeline, 1):
                    return
            loop.remove_reader(lifeline)
            stop_with("the supervisor is gone")

        loop.add_reader(lifeline, lifeline_readable)
    try:
        return await stop
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if lifeline is not None:
            loop.remove_reader(lifeline)


async def _work(options: WorkerOptions, ready: int | None, lifeline: int | None) -> None:
    entry = load(options.entry)
    serving: AbstractAsyncContextManager[Server] = entry(options)
    global _current
    async with serving as server:
        _current = server
        logger.info("worker %d (pid %d) serving %s", options.index, os.getpid(), server.url)
        if ready is not None:
            os.write(ready, b"%d\n" % os.getpid())
            os.close(ready)
        why = await _until_stopped(lifeline)
        logger.info("worker %d stopping (%s): 1001 to every client", options.index, why)


def worker_main(spec: str, ready: int | None = None, lifeline: int | None = None) -> int:
    """A worker process: serve until stopped; returns the exit status."""
    options = WorkerOptions(**json.loads(spec))
    configure_logging(
        options.log_format, f"worker {options.index}", verbose=options.extra.get("verbose", True)
    )
    try:
        asyncio.run(_work(options, ready, lifeline))
    except TargetError as exc:
        logger.error("%s", exc)
        return BAD_TARGET
    return 0


# The worker's command: this module imported as aiosocker.run (not run as __main__, which
# would make it a second copy of the module, with its own current_server()).
_WORKER = "import sys; from aiosocker.run import main; sys.exit(main())"
WORKER_ENV = "AIOSOCKER_WORKER"
"""The environment variable that carries a worker's options (JSON) from the supervisor."""


def _say(line: str) -> None:
    print(line, flush=True)


# -- the supervisor --------------------------------------------------------------------


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    ready: int  # read end of the pipe the worker writes its pid to once serving
    started: float = field(default_factory=time.monotonic)
    serving: bool = False


def _reserve(host: str, port: int) -> socket.socket:
    """Bind (without listening) ``host:port`` with SO_REUSEPORT: checks the port is free
    for the workers, picks one for port 0 and keeps it for them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class _Supervisor:
    def __init__(
        self,
        options: WorkerOptions,
        workers: int,
        stop_timeout: float,
        ready: Callable[[int], object],
        seconds: float | None,
    ) -> None:
        self.options = options
        self.count = workers
        self.stop_timeout = stop_timeout
        self.ready = ready
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.workers: dict[int, _Worker] = {}
        self.quick_deaths: dict[int, int] = {}
        self.restart_at: dict[int, float] = {}
        self.stopping: str | None = None
        self.announced = False
        self.lifeline_read, self.lifeline_write = os.pipe()

    def spawn(self, index: int) -> None:
        ready_read, ready_write = os.pipe()
        spec = json.dumps({**asdict(self.options), "index": index, "workers": self.count})
        command = [
            sys.executable,
            "-c",
            _WORKER,
            "--ready-fd",
            str(ready_write),
            "--lifeline-fd",
            str(self.lifeline_read),
        ]
        # The spec holds the Redis URL, maybe with its password: in the environment, which
        # only this user can read, not on the command line, which every user can.
        env = {**os.environ, REUSE_PORT_ENV: "1", WORKER_ENV: spec}
        try:
            # A process group of its own: Ctrl-C in a terminal reaches the supervisor only,
            # which stops the workers itself (and does not mistake them for dead ones).
            proc = subprocess.Popen(
                command,
                env=env,
                pass_fds=(ready_write, self.lifeline_read),
                stdin=subprocess.DEVNULL,
                process_group=0,
            )
        finally:
            os.close(ready_write)
        self.workers[index] = _Worker(index, proc, ready_read)
        logger.info("worker %d started (pid %d)", index, proc.pid)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping is not None:  # a second Ctrl-C: no more waiting
            for worker in self.workers.values():
                with contextlib.suppress(OSError):
                    worker.proc.kill()
            return
        self.stopping = signal.Signals(signum).name

    def poll_ready(self, timeout: float) -> None:
        """Wait up to ``timeout`` for workers to say they serve (the loop's pause)."""
        pipes = {w.ready: w for w in self.workers.values() if not w.serving and w.ready >= 0}
        if not pipes:
            time.sleep(timeout)
            return
        try:
            readable, _, _ = select.select(list(pipes), [], [], timeout)
        except InterruptedError:  # a signal: the loop looks at it
            return
        for fd in readable:
            worker = pipes[fd]
            data = os.read(fd, 64)
            os.close(fd)
            worker.ready = -1
            if data:
                worker.serving = True
                self.quick_deaths[worker.index] = 0
        if not self.announced and all(w.serving for w in self.workers.values()):
            self.announced = True
            self.ready(self.options.port)

    def reap(self) -> int | None:
        """Restart dead workers; an exit status if the supervisor must give up."""
        now = time.monotonic()
        for index, worker in list(self.workers.items()):
            code = worker.proc.poll()
            if code is None:
                continue
            if worker.ready >= 0:
                os.close(worker.ready)
            del self.workers[index]
            if code == BAD_TARGET:
                logger.error("worker %d cannot load its target: stopping", index)
                return BAD_TARGET
            quick = now - worker.started < _QUICK_DEATH or not worker.serving
            deaths = self.quick_deaths[index] = self.quick_deaths.get(index, 0) + 1 if quick else 0
            if deaths >= _MAX_QUICK_DEATHS:
                logger.error("worker %d died at start %d times in a row: stopping", index, deaths)
                return 1
            delay = min(0.1 * 2**deaths, 5.0) if deaths else 0.0
            logger.warning(
                "worker %d (pid %d) exited with %s; restarting it%s",
                index,
                worker.proc.pid,
                code,
                f" in {delay:.1f} s" if delay else "",
            )
            self.restart_at[index] = now + delay
        for index, when in list(self.restart_at.items()):
            if now >= when:
                del self.restart_at[index]
                self.spawn(index)
        return None

    def stop(self) -> None:
        """SIGTERM every worker (each closes with 1001), wait, then kill the rest."""
        for worker in self.workers.values():
            with contextlib.suppress(OSError):
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for worker in self.workers.values():
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("worker %d did not stop in time: killed", worker.index)
                worker.proc.kill()
                worker.proc.wait()
            if worker.ready >= 0:
                os.close(worker.ready)
        os.close(self.lifeline_write)
        os.close(self.lifeline_read)

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        status = 0
        try:
            for index in range(self.count):
                self.spawn(index)
            while self.stopping is None:
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    self.stopping = "time is up"
                    break
                self.poll_ready(0.1)
                given_up = self.reap()
                if given_up is not None:
                    status = given_up
                    break
            if self.stopping is not None:
                logger.info("%s: stopping %d worker(s)", self.stopping, len(self.workers))
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status


def supervise(
    options: WorkerOptions,
    *,
    workers: int,
    stop_timeout: float = 20.0,
    ready: Callable[[int], object] = lambda port: None,
    seconds: float | None = None,
) -> int:
    """Run ``workers`` processes serving ``options`` on one port until SIGINT/SIGTERM
    (or for ``seconds``); returns the exit status. ``options.port`` 0 picks a free port
    for all of them; ``ready(port)`` is called once every worker serves."""
    if workers < 1:
        raise ValueError(f"workers must be 1 or more, got {workers}")
    if workers > 1 and options.redis is None:
        raise ValueError(
            "--workers > 1 needs --redis URL: rooms, broadcasts and resume sessions must be "
            "shared by the workers (e.g. --redis redis://127.0.0.1:6379/0)"
        )
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("--workers needs SO_REUSEPORT (Linux, BSD, macOS)")
    reserved = _reserve(options.host, options.port)
    try:
        port = reserved.getsockname()[1]
        options = WorkerOptions(**{**asdict(options), "port": port})
        return _Supervisor(options, workers, stop_timeout, ready, seconds).run()
    finally:
        reserved.close()


def run(
    target: str,
    *,
    workers: int = 1,
    host: str = "127.0.0.1",
    port: int = 8765,
    redis: str | None = None,
    log_format: LogFormat = "text",
    transport: str = "websockets",
    options: str | None = None,
    announce: Callable[[str], object] | None = None,
) -> int:
    """``aiosocker run``: serve ``module:setup`` with ``workers`` processes on one port
    (``options``: ``module:NAME`` of a dict of more ``serve()`` options)."""
    configure_logging(log_format, "supervisor")
    worker = WorkerOptions(
        entry="aiosocker.run:serve_target",
        target=target,
        host=host,
        port=port,
        redis=redis,
        log_format=log_format,
        extra={"transport": transport, "options": options},
    )

    say = announce or _say

    def ready(bound: int) -> None:
        authority = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        say(f"aiosocker run: {workers} worker(s) serving ws://{authority}/ (Ctrl-C stops)")

    status = supervise(worker, workers=workers, ready=ready)
    say("aiosocker run: stopped")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """A worker's command line (what the supervisor starts)."""
    parser = argparse.ArgumentParser(prog="aiosocker-worker")
    parser.add_argument("--ready-fd", type=int, default=None)
    parser.add_argument("--lifeline-fd", type=int, default=None)
    args = parser.parse_args(argv)
    spec = os.environ.get(WORKER_ENV)
    if spec is None:
        parser.error(f"{WORKER_ENV} must hold the worker's options (JSON)")
    return worker_main(spec, args.ready_fd, args.lifeline_fd)
