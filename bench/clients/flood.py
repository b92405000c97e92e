"""The flood figure's clients, in the bench process (:mod:`bench.figures.limits`).

:func:`echo_window`: five clients say hello (the chain's first stage), then each sends a
16 B echo request at 100 Hz, spread evenly, for the window, on plain non-blocking
sockets with one ``epoll``. A request's latency is the reply's arrival (the kernel's
receive timestamp, ``SO_TIMESTAMPNS``) minus the wall clock read right before its
``send()``; requests still unanswered at the end, and those the socket refused
(``EAGAIN``: the server stopped reading), count with ``end - sent`` (a lower bound), so
a stalled server shows in the tail instead of vanishing from it.

:class:`Flooder`: optionally, a sixth client in a thread starts partway into the window
and, never saying hello, sends tiny frames (1 B payload) as fast as the socket takes
them, pre-built, until it has sent them all or the server cuts it off; then it reads
what the server said (the close code, if any).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from array import array
from typing import Any

from ..rooms_common import HELLO
from ..runner import percentile
from .rooms import SO_TIMESTAMPNS, split_frames
from .ws import CHUNK_BYTES, connect, frame

_TIMESPEC = struct.Struct("@qq")
_SEQ = struct.Struct(">I")
CLIENTS = 5
HZ = 100
REQUEST_BYTES = 16


class Flooder(threading.Thread):
    """A client that floods ``frames`` tiny frames in the chain's first stage."""

    def __init__(self, port: int, frames: int, delay: float, timeout: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.frames = frames
        self.delay = delay
        self.timeout = timeout
        self.result: dict[str, Any] = {}
        self._data = frame(b"x") * frames
        self.started_at = 0.0

    def run(self) -> None:
        time.sleep(self.delay)
        sent = 0
        error = ""
        try:
            sock = connect(self.port, timeout=self.timeout)
        except OSError as exc:
            self.result = {"error": f"connect: {exc!r}"}
            return
        self.started_at = time.perf_counter()
        try:
            view = memoryview(self._data)
            while sent < len(view):
                sent += sock.send(view[sent : sent + CHUNK_BYTES])
        except OSError as exc:
            error = type(exc).__name__
        took = time.perf_counter() - self.started_at
        code = None
        try:
            sock.settimeout(2.0)
            buf = b""
            deadline = time.monotonic() + 2.0
            while code is None and time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                frames, buf = split_frames(buf + chunk)
                for op, payload in frames:
                    if op == 0x8 and len(payload) >= 2:
                        code = int.from_bytes(payload[:2], "big")
        except OSError:
            pass
        finally:
            sock.close()
        one = len(frame(b"x"))
        self.result = {
            "frames_sent": sent // one,
            "frames": self.frames,
            "send_s": round(took, 3),
            "send_error": error,
            "close_code": code,
        }


def echo_window(
    port: int,
    seconds: float,
    *,
    flood_frames: int = 0,
    flood_at: float = 0.5,
    clients: int = CLIENTS,
    hz: float = HZ,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Echo latencies of ``clients`` for ``seconds`` (with a flood from ``flood_at`` s
    on, if ``flood_frames``): their p50/p99 in ms and the flooder's report."""
    socks = [connect(port, timeout=timeout) for _ in range(clients)]
    flooder = Flooder(port, flood_frames, flood_at) if flood_frames else None
    try:
        hello = frame(HELLO)
        for sock in socks:
            sock.sendall(hello)
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        per_client = int(seconds * hz) + 1
        requests = [
            [frame(_SEQ.pack(seq) + bytes(REQUEST_BYTES - 4)) for seq in range(per_client)]
            for _ in range(clients)
        ]
        sent_at = [array("d", bytes(8 * per_client)) for _ in range(clients)]
        answered = [array("d", bytes(8 * per_client)) for _ in range(clients)]
        bufs = [b""] * clients
        poller = select.epoll()
        slot = {}
        for i, sock in enumerate(socks):
            poller.register(sock.fileno(), select.EPOLLIN)
            slot[sock.fileno()] = i
        space = socket.CMSG_SPACE(_TIMESPEC.size)
        rate = clients * hz
        total = clients * per_client
        if flooder is not None:
            flooder.start()
        t0 = time.perf_counter() + 0.02
        end = t0 + seconds
        drain_end = end + 1.0
        k = 0
        replies = sent = 0
        blocked = 0
        while True:
            now = time.perf_counter()
            if now >= drain_end or (now >= end and replies >= sent):
                break
            due = min(total, int((now - t0) * rate) + 1) if now >= t0 else 0
            while k < due:
                seq, i = divmod(k, clients)
                k += 1
                t = time.time()
                sent_at[i][seq] = t  # a send the socket refused counts too: never answered
                try:
                    socks[i].send(requests[i][seq])
                except BlockingIOError:
                    blocked += 1
                    continue
                sent += 1
            wait = max(0.0, min(0.002, t0 + k / rate - time.perf_counter()))
            for fd, _ in poller.poll(wait):
                i = slot[fd]
                try:
                    chunk, ancillary, _flags, _addr = socks[i].recvmsg(65536, space)
                except BlockingIOError:
                    continue
                if not chunk:
                    poller.unregister(fd)
                    continue
                if ancillary:
                    sec, nsec = _TIMESPEC.unpack_from(ancillary[0][2])
                    arrived = sec + nsec * 1e-9
                else:
                    arrived = time.time()
                frames, bufs[i] = split_frames(bufs[i] + chunk)
                for op, payload in frames:
                    if op != 0x2 or len(payload) != REQUEST_BYTES:
                        continue
                    (seq,) = _SEQ.unpack_from(payload)
                    if seq < per_client and not answered[i][seq]:
                        answered[i][seq] = arrived
                        replies += 1
        finished = time.time()
        poller.close()
    finally:
        for sock in socks:
            sock.close()
        if flooder is not None:
            flooder.join(timeout=35)
    lat: list[float] = []
    unanswered = 0
    for i in range(clients):
        for seq in range(per_client):
            t = sent_at[i][seq]
            if not t:
                continue
            if answered[i][seq]:
                lat.append((answered[i][seq] - t) * 1e3)
            else:
                lat.append((finished - t) * 1e3)
                unanswered += 1
    return {
        "p50_ms": percentile(lat, 0.50),
        "p99_ms": percentile(lat, 0.99),
        "max_ms": max(lat) if lat else float("nan"),
        "requests": len(lat),
        "unanswered": unanswered,
        "blocked_sends": blocked,
        "flood": flooder.result if flooder is not None else None,
    }
