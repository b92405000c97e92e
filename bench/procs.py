"""Server subprocesses, and what ``/proc`` says about them (CPU time, memory).

The server under test always runs in its own process (``python -m bench.servers``), so its
CPU time and memory are its own. It prints one line when listening (``PORT <n>``, or
``NA <reason>`` when that server cannot exist yet, or ``ERR <error>``) and exits when its
stdin closes, so it cannot outlive the bench.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from types import TracebackType

from .runner import ROOT, Unavailable

CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile(want: int) -> int:
    """Raise this process's open-file limit towards ``want`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from ``/proc/<pid>/stat`` (resolution 1/CLK_TCK)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # Fields after "(comm)": state is field 3, utime 14, stime 15 (1-based).
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run_delay(pid: int | str) -> float:
    """Seconds ``pid``'s main thread has waited, runnable, for a CPU: other work on the
    machine (``/proc/<pid>/schedstat``'s second field; ``pid`` may be ``"self"``); 0
    where the kernel does not say."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` from ``/proc/<pid>/status`` (VmRSS, KiB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def settled_rss_kib(pid: int, *, interval: float = 0.1, limit_s: float = 2.0) -> int:
    """VmRSS once two readings ``interval`` apart agree (or after ``limit_s``)."""
    last = rss_kib(pid)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = rss_kib(pid)
        if now == last:
            return now
        last = now
    return last


def udp_drops(pid: int) -> int:
    """Datagrams the kernel dropped on the UDP sockets ``pid`` holds now (the ``drops``
    column of ``/proc/net/udp{,6}``): a receiver that did not drain its socket in time.
    0 where ``/proc`` does not say."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if len(fields) > 12 and fields[9] in inodes:
                    total += int(fields[-1])
    return total


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """Pin this (bench/client) process to ``cpu`` for the block; ``None`` leaves it free."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class ServerProcess:
    """``python -m bench.servers --kind KIND --mode MODE`` and a line reader on its stdout."""

    def __init__(
        self,
        kind: str,
        mode: str,
        *,
        cpu: int | None = None,
        nofile: int | None = None,
        start_timeout: float = 30.0,
        lifetime: float = 900.0,
    ) -> None:
        self.kind = kind
        self.mode = mode
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in _release)
        args = [sys.executable, "-m", "bench.servers", "--kind", kind, "--mode", mode]
        args += ["--lifetime", str(lifetime)]
        if nofile:
            args += ["--nofile", str(nofile)]
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.pid = self.proc.pid
        self._buf = b""
        self.port = 0
        try:
            if cpu is not None:
                os.sched_setaffinity(self.pid, {cpu})
            line = self.readline(start_timeout)
            word, _, rest = line.partition(" ")
            if word == "PORT":
                self.port = int(rest)
            elif word == "NA":
                raise Unavailable(rest)
            else:
                raise RuntimeError(f"{kind} server: {line}")
        except BaseException:
            self.kill()
            raise

    def readline(self, timeout: float) -> str:
        """The next line the server printed, waiting at most ``timeout`` seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.kind} server said nothing for {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                self.proc.wait(timeout=5)
                raise RuntimeError(
                    f"{self.kind} server exited ({self.proc.returncode}): {self.stderr_tail()}"
                )
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode().strip()

    def expect(self, word: str, timeout: float) -> list[str]:
        """Read a line starting with ``word``; return the rest split on spaces."""
        line = self.readline(timeout)
        head, *rest = line.split()
        if head != word:
            raise RuntimeError(f"{self.kind} server: expected {word}, got {line!r}")
        return rest

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def stderr_tail(self, limit: int = 2000) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        return text[-limit:].strip()

    def close(self) -> None:
        """Ask the server to exit (close its stdin); kill it if it does not within 3 s."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.kill()
        self._release()

    def kill(self) -> None:
        """Stop the server now (SIGKILL): for figures that need no clean shutdown."""
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self._release()

    def _release(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
