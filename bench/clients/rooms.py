"""Clients of the Redis figures, run in the bench process (:mod:`bench.figures.rooms`).

* Latency members (:func:`member`, :func:`read_probes`): plain blocking sockets (the
  cheap client of :mod:`bench.clients.ws`) that walk the ``redis-socker`` chain's
  ``hello`` and then read the stamped broadcasts; a probe's latency is its arrival (the
  kernel's receive timestamp, ``SO_TIMESTAMPNS``, on the wall clock every process
  shares) minus the stamp the sending server took right before ``server.broadcast()``.
* Resume (:func:`first_session`, :func:`drop`, :func:`resume`): the first session is a
  raw socket that reads the RESUME frame (its token), walks to ``playing`` and moves
  once; :func:`drop` cuts it with a TCP reset (``SO_LINGER`` 0: no close frame, as a
  lost network does); :func:`resume` reconnects with ``aiosocker.connect(url,
  resume_token=...)`` to the *other* process, and times the drop until the reply of the
  resumed stage (``moved 2``: the stage and ``conn.state`` came back).
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import time
from typing import Any

from ..rooms_common import unstamp
from .ws import connect, frame, read_upgrade_response, upgrade_request

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")


def split_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete server frames at the start of ``buf`` (opcode, payload), and the rest."""
    frames = []
    pos, size = 0, len(buf)
    while size - pos >= 2:
        length, head = buf[pos + 1] & 0x7F, 2
        if length == 126:
            if size - pos < 4:
                break
            length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            if size - pos < 10:
                break
            length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
        if size - pos < head + length:
            break
        frames.append((buf[pos] & 0x0F, buf[pos + head : pos + head + length]))
        pos += head + length
    return frames, buf[pos:]


def read_message(sock: socket.socket, buf: bytes, timeout: float) -> tuple[bytes, bytes]:
    """The next binary message (blocking, at most ``timeout``), and what follows it."""
    deadline = time.monotonic() + timeout
    while True:
        frames, rest = split_frames(buf)
        for i, (op, payload) in enumerate(frames):
            if op == 0x2:
                tail = b"".join(_raw(o, p) for o, p in frames[i + 1 :])
                return payload, tail + rest
            if op == 0x8:
                raise ConnectionError(f"server closed: {payload[:2].hex()} {payload[2:]!r}")
        buf = rest  # control frames (pings) are dropped
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no message from the server")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk


def _raw(op: int, payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x80 | op])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


# -- broadcast latency -----------------------------------------------------------------


def member(port: int, name: str, timeout: float = 10.0) -> socket.socket:
    """A member of room ``match``: connected, ``hello:NAME`` answered with ``welcome``."""
    sock = connect(port, timeout=timeout)
    try:
        sock.sendall(frame(b"hello:" + name.encode()))
        reply, rest = read_message(sock, b"", timeout)
        if reply != b"welcome" or rest:
            raise ConnectionError(f"expected b'welcome', got {reply!r} (+{len(rest)} B)")
    except BaseException:
        sock.close()
        raise
    return sock


def read_probes(socks: list[socket.socket], count: int, timeout: float) -> list[dict[str, Any]]:
    """Read ``count`` stamped broadcasts on each socket (or until ``timeout``): per
    socket, the latencies in ms, and whether they came once each and in order."""
    poller = select.epoll()
    slot = {}
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        poller.register(sock.fileno(), select.EPOLLIN)
        slot[sock.fileno()] = i
    bufs = [b""] * len(socks)
    seqs: list[list[int]] = [[] for _ in socks]
    lat: list[list[float]] = [[] for _ in socks]
    space = socket.CMSG_SPACE(_TIMESPEC.size)
    deadline = time.monotonic() + timeout
    try:
        while any(len(s) < count for s in seqs) and time.monotonic() < deadline:
            for fd, _ in poller.poll(0.05):
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
                    if op != 0x2:
                        continue
                    seq, sent = unstamp(payload)
                    seqs[i].append(seq)
                    lat[i].append((arrived - sent) * 1e3)
    finally:
        poller.close()
        for sock in socks:
            sock.setblocking(True)
    return [
        {
            "latency_ms": lat[i],
            "received": len(seqs[i]),
            "in_order_once": seqs[i] == list(range(len(seqs[i]))),
        }
        for i in range(len(socks))
    ]


# -- resume ----------------------------------------------------------------------------


def first_session(port: int, name: str, timeout: float = 10.0) -> tuple[socket.socket, str]:
    """A raw session on a ``resume`` server, at stage ``playing`` after one move: its
    socket, and the token from its RESUME frame."""
    from aiosocker.rtc.envelope import Resume, decode

    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(upgrade_request(port))
        first, rest = read_message(sock, read_upgrade_response(sock), timeout)
        message = decode(first)
        if not isinstance(message, Resume):
            raise ConnectionError(f"expected a RESUME frame first, got {message!r}")
        sock.sendall(frame(b"hello:" + name.encode()))
        reply, rest = read_message(sock, rest, timeout)
        sock.sendall(frame(b"move"))
        moved, rest = read_message(sock, rest, timeout)
        if (reply, moved) != (b"welcome", b"moved 1"):
            raise ConnectionError(f"unexpected replies {reply!r}, {moved!r}")
    except BaseException:
        sock.close()
        raise
    return sock, message.token


def drop(sock: socket.socket) -> float:
    """Cut the connection with a TCP reset, no close frame; ``perf_counter()`` of the cut."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    at = time.perf_counter()
    sock.close()
    return at


async def resume(
    url: str, token: str, dropped_at: float, *, tries: int = 50, pause: float = 0.002
) -> dict[str, Any]:
    """Reconnect with ``token`` until the session resumes (a claim that runs before the
    other process has parked the session starts fresh; the token stays good, so it
    reconnects after ``pause``), then ``move``: the drop until ``moved 2`` arrives."""
    for attempt in range(1, tries + 1):
        got = await _resume_attempt(url, token)
        if got is None:
            await asyncio.sleep(pause)
            continue
        connected, resume_frame, done = got
        return {
            "ms": (done - dropped_at) * 1e3,
            "connect_ms": (connected - dropped_at) * 1e3,
            "resume_frame_ms": (resume_frame - dropped_at) * 1e3,
            "attempts": attempt,
        }
    raise RuntimeError(f"the session did not resume in {tries} attempts")


async def _resume_attempt(url: str, token: str) -> tuple[float, float, float] | None:
    """One reconnect: ``None`` if it started fresh, else when it connected, when its
    RESUME frame came, and when the resumed stage's reply came (``perf_counter()``)."""
    import aiosocker

    resumed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    def setup(conn: aiosocker.Connection) -> None:
        def on_resume(conn: aiosocker.Connection, was_resumed: bool) -> None:
            if not resumed.done():
                resumed.set_result(was_resumed)

        def inbox(message: bytes) -> bool:
            replies.put_nowait(message)
            return False

        conn.on_resume(on_resume)
        conn.add(inbox, name="inbox")

    async with aiosocker.connect(url, setup, resume_token=token) as conn:
        connected = time.perf_counter()
        if not await asyncio.wait_for(resumed, 10):
            return None
        resume_frame = time.perf_counter()
        await conn.send(b"move")
        reply = await asyncio.wait_for(replies.get(), 10)
        done = time.perf_counter()
    if reply != b"moved 2":
        raise RuntimeError(f"resumed, but the stage answered {reply!r}")
    return connected, resume_frame, done


async def fresh(url: str, name: str) -> float:
    """For comparison: a new session walked to the same point (connect, ``hello``,
    ``move``) with ``aiosocker.connect``; milliseconds from the connect to ``moved 1``."""
    import aiosocker

    replies: asyncio.Queue[bytes] = asyncio.Queue()

    def setup(conn: aiosocker.Connection) -> None:
        def inbox(message: bytes) -> bool:
            replies.put_nowait(message)
            return False

        conn.add(inbox, name="inbox")

    start = time.perf_counter()
    async with aiosocker.connect(url, setup) as conn:
        await conn.send(b"hello:" + name.encode())
        await conn.send(b"move")
        got = [await asyncio.wait_for(replies.get(), 10) for _ in range(2)]
        done = time.perf_counter()
    if got != [b"welcome", b"moved 1"]:
        raise RuntimeError(f"unexpected replies {got!r}")
    return (done - start) * 1e3
