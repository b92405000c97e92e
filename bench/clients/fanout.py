"""The receivers of the fan-out figure, in a process of their own.

``python -m bench.clients.fanout --port PORT --conns N`` opens N WebSockets and joins
each to the room (the players' opening, :func:`bench.clients.players.open_players`),
prints ``OPEN <seconds>``, then serves one command a line on stdin until it closes:

``GO <count> <size> <timeout>``: the first connection sends the server
:func:`bench.rooms_common.go_message` (N members, ``count`` broadcasts of ``size``
bytes); every connection then reads until it has ``count`` frames, or ``timeout``
passes. One line answers: ``RESULT <json>`` with the frames delivered, the connections
that got all of theirs, the wall clock (``time.time()``) of the first and the last
arrival, whether the timeout passed first, bytes past ``count`` frames, and this
process's CPU share over the round (near 1.0: the receivers, not the server, may have
been the limit).

The servers send nothing but the broadcasts (no keepalive pings), so a connection's
frames are counted by their bytes (every frame has the same size); one ``epoll``, one
``recv_into`` per readable socket, nothing parsed.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time
import traceback
from typing import Any

from ..procs import raise_nofile
from ..rooms_common import go_message
from .players import open_players
from .ws import frame, server_frame_size

LIFETIME_S = 900.0


def receive_round(
    socks: list[socket.socket], carry: list[int], count: int, size: int, timeout: float
) -> dict[str, Any]:
    """Send GO on the first socket, then read until every socket has ``count`` frames."""
    n = len(socks)
    frame_size = server_frame_size(size)
    want = count * frame_size
    got = list(carry)  # bytes received before this round (the opening's leftovers)
    poller = select.epoll()
    slot = {}
    for i, sock in enumerate(socks):
        poller.register(sock.fileno(), select.EPOLLIN)
        slot[sock.fileno()] = i
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    done = sum(1 for g in got if g >= want)
    first = last = 0.0
    closed = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    socks[0].send(frame(go_message(n, count, size)))
    deadline = time.monotonic() + timeout
    try:
        while done < n and time.monotonic() < deadline:
            for fd, _ in poller.poll(0.05):
                i = slot[fd]
                try:
                    k = socks[i].recv_into(view)
                except BlockingIOError:
                    continue
                except OSError:
                    k = 0
                if not k:
                    poller.unregister(fd)
                    closed += 1
                    if got[i] < want:
                        done += 1  # it gets nothing more: done, short
                    continue
                before = got[i]
                got[i] = before + k
                if not first:
                    first = time.time()
                if before < want <= got[i]:
                    done += 1
                    last = time.time()
    finally:
        poller.close()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    delivered = sum(min(g, want) for g in got) // frame_size
    over = sum(max(0, g - want) for g in got)
    complete = sum(1 for g in got if g >= want)
    for i in range(n):
        carry[i] = 0
    return {
        "connections": n,
        "expected": n * count,
        "delivered": delivered,
        "complete": complete,
        "closed": closed,
        "extra_bytes": over,
        "first": first,
        "last": last,
        "receivers_cpu": round(cpu / wall, 4) if wall else None,
        "timed_out": done < n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clients.fanout", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0, help="opening, seconds")
    args = parser.parse_args(argv)
    if not 0 < args.conns <= 20_000:
        raise SystemExit("conns: 1..20000")
    raise_nofile(args.conns + 256)
    try:
        opened = time.perf_counter()
        socks, bufs = open_players(args.port, "socker", 0, args.conns, args.timeout)
        for sock in socks:
            sock.setblocking(False)
        carry = [len(b) for b in bufs]
        print(f"OPEN {time.perf_counter() - opened:.3f}", flush=True)
        end = time.monotonic() + LIFETIME_S
        try:
            while time.monotonic() < end:
                line = sys.stdin.readline()
                if not line:
                    break
                word, *rest = line.split()
                if word != "GO" or len(rest) != 3:
                    raise ValueError(f"unknown command {line!r}")
                count, size, timeout = int(rest[0]), int(rest[1]), float(rest[2])
                result = receive_round(socks, carry, count, size, min(timeout, 120.0))
                print("RESULT " + json.dumps(result), flush=True)
        finally:
            for sock in socks:
                sock.close()
    except Exception as exc:
        traceback.print_exc()
        print(f"ERR {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
