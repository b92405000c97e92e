"""The players of the players-per-core figure, in a process of their own.

``python -m bench.clients.players --proto P --port PORT --players N --server-pid PID``
opens N WebSockets (socker: ``/``; python-socketio: engine.io v4 straight on a WebSocket,
``/socket.io/?EIO=4&transport=websocket``, then ``40``), joins each player to its room
(player ``p`` is in room ``p // 10``, slot ``p % 10``), then runs the game for
``--warm + --measure + --drain`` seconds and prints one line, ``RESULT <json>``.

It is built not to be the bottleneck, and to say when it is:

* One thread, plain non-blocking sockets and one ``epoll``; no event loop, no WebSocket
  library. Every input frame (masked, as a client must) is built before the first send;
  one ``send()`` per input.
* The inputs go out at 30 Hz per player, spread evenly: input ``s`` of player ``i`` is
  due at ``t0 + ((s - 1) * N + i) / (30 N)``. How late the sends run behind that schedule
  is measured (``send_lag_*``), and so is this process's CPU time over the measured
  window (``players_cpu``: the players' share of their core; headroom is the rest).
* A state is parsed only as far as this player's ack (4 bytes at a fixed offset) and the
  tick's start time.

Latency: input ``s`` sent at ``t`` (the wall clock, read just before its ``send()``) is
answered by the first state whose ack for its slot is ``>= s``, which arrived at ``t'``:
the kernel's receive timestamp (``SO_TIMESTAMPNS``, the same clock), so a state waiting
in the socket while this one process reads the other players' states does not count
against the server. The sample is ``t' - t``, for the inputs sent in the measured window.
Inputs of the window still unanswered when the run ends count with ``end - t`` (a lower
bound), so a server that falls behind shows in the tail instead of vanishing from it.
``delivery_*`` is arrival minus the tick's start (stamped in the state): the game loop's
own delay, without the wait for the next tick.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import sys
import time
import traceback
from array import array
from typing import Any

from ..players_common import (
    ACKS_AT,
    INPUT_HZ,
    SOCKETIO_PATH,
    SOCKETIO_STATE_HEX_AT,
    SOCKETIO_STATE_PREFIX,
    STAMP_AT,
    TICK_HZ,
    input_payload,
    join_message,
    socketio_input,
)
from ..procs import CLK_TCK, raise_nofile, run_delay
from .ws import frame, read_upgrade_response, upgrade_request

PROTOCOLS = ("socker", "socketio", "socketio-binary")
BATCH = 100
"""Connections opened per batch (upgrade requests sent, then their answers read)."""
_STAMP = struct.Struct(">d")
_TIMESPEC = struct.Struct("@qq")


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux: receive timestamps (``struct timespec``, wall clock) with each ``recvmsg``."""


def cpu_times(pid: int) -> tuple[float, float]:
    """``(user, system)`` CPU seconds of ``pid`` (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


# -- opening -------------------------------------------------------------------------


def _read_frame(sock: socket.socket, buf: bytes) -> tuple[int, bytes, bytes]:
    """One server frame (blocking): ``(opcode, payload, rest of buf)``."""
    while True:
        if len(buf) >= 2:
            n = buf[1] & 0x7F
            head = 2
            if n == 126:
                head, n = 4, int.from_bytes(buf[2:4], "big") if len(buf) >= 4 else -1
            elif n == 127:
                head, n = 10, int.from_bytes(buf[2:10], "big") if len(buf) >= 10 else -1
            if n >= 0 and len(buf) >= head + n:
                return buf[0] & 0x0F, buf[head : head + n], buf[head + n :]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed while opening")
        buf += chunk


def _read_text(sock: socket.socket, buf: bytes, prefix: bytes) -> bytes:
    """Skip frames until a text frame starting with ``prefix``; return the rest of buf."""
    for _ in range(16):
        op, payload, buf = _read_frame(sock, buf)
        if op == 0x1 and payload.startswith(prefix):
            return buf
        if op == 0x8:
            raise ConnectionError(f"server closed while opening: {payload[2:]!r}")
    raise ConnectionError(f"no {prefix!r} from the server")


def open_players(
    port: int, proto: str, first: int, count: int, timeout: float
) -> tuple[list[socket.socket], list[bytes]]:
    """Open and join ``count`` players (numbers ``first``...): their sockets, and what each
    has received beyond the opening (the start of its first frames)."""
    socketio = proto != "socker"
    path = SOCKETIO_PATH if socketio else "/"
    socks: list[socket.socket] = []
    bufs: list[bytes] = []
    try:
        while len(socks) < count:
            group = []
            for _ in range(min(BATCH, count - len(socks))):
                sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                group.append(sock)
                socks.append(sock)
                sock.sendall(upgrade_request(port, path))
            rests = [read_upgrade_response(sock) for sock in group]
            if socketio:
                # engine.io's open packet ("0{...}"), then connect to namespace "/".
                for j, sock in enumerate(group):
                    rests[j] = _read_text(sock, rests[j], b"0")
                    sock.sendall(frame(b"40", opcode=0x1))
                for j, sock in enumerate(group):
                    rests[j] = _read_text(sock, rests[j], b"40")
            for j, sock in enumerate(group):
                player = first + len(bufs) + j
                if socketio:
                    sock.sendall(frame(b'42["join",%d]' % player, opcode=0x1))
                else:
                    sock.sendall(frame(join_message(player)))
            bufs += rests
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks, bufs


def input_frames(proto: str, last_seq: int) -> list[bytes]:
    """The bytes one ``send()`` carries for input ``s`` (index ``s``; index 0 unused)."""
    frames = [b""]
    header = frame(b'451-["input",{"_placeholder":true,"num":0}]', opcode=0x1)
    for seq in range(1, last_seq + 1):
        if proto == "socker":
            frames.append(frame(input_payload(seq)))
        elif proto == "socketio":
            frames.append(frame(socketio_input(seq), opcode=0x1))
        else:  # a binary event: its text header, then the attachment
            frames.append(header + frame(input_payload(seq)))
    return frames


# -- the game ------------------------------------------------------------------------


def _percentiles(xs: list[float], scale: float = 1e3) -> dict[str, float | None]:
    if not xs:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    xs.sort()
    n = len(xs)

    def at(q: float) -> float:
        return round(xs[min(n - 1, int(q * n))] * scale, 3)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": round(xs[-1] * scale, 3)}


def play(
    socks: list[socket.socket],
    bufs: list[bytes],
    proto: str,
    first: int,
    *,
    warm: float,
    measure: float,
    drain: float,
    server_pid: int,
) -> dict[str, Any]:
    """Send inputs, read states, measure; returns the numbers of the measured window."""
    n = len(socks)
    rate = n * INPUT_HZ
    total = warm + measure + drain
    last_seq = int(total * INPUT_HZ) + 2
    frames = input_frames(proto, last_seq)
    stride = last_seq + 1
    tsend = array("d", bytes(8 * n * stride))
    last_ack = [0] * n
    text_states = proto == "socketio"
    ack_at = []
    for i in range(n):
        slot = (first + i) % 10
        if text_states:
            ack_at.append(SOCKETIO_STATE_HEX_AT + 2 * (ACKS_AT + 4 * slot))
        else:
            ack_at.append(ACKS_AT + 4 * slot)
    stamp_at = SOCKETIO_STATE_HEX_AT + 2 * STAMP_AT if text_states else STAMP_AT
    state_prefix = SOCKETIO_STATE_PREFIX
    pong_socketio = frame(b"3", opcode=0x1)

    poller = select.epoll()
    slot_of_fd: dict[int, int] = {}
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        poller.register(sock.fileno(), select.EPOLLIN)
        slot_of_fd[sock.fileno()] = i
    sends = [sock.send for sock in socks]
    recvs = [sock.recvmsg for sock in socks]
    cmsg_space = socket.CMSG_SPACE(16)
    pending: dict[int, bytes] = {}

    lat: list[float] = []
    delivery: list[float] = []
    lags: list[float] = []
    states = 0
    blocked = 0
    closed = 0
    perf = time.perf_counter
    wall = time.time
    unpack_stamp = _STAMP.unpack_from
    unpack_ts = _TIMESPEC.unpack_from
    # The schedule runs on the monotonic clock; the samples on the wall clock (the one
    # the server's stamps and the kernel's arrival times use). t0 is on both.
    t0 = perf() + 0.05
    offset = wall() - perf()
    w0 = t0 + warm
    w1 = w0 + measure
    end = w1 + drain
    r0, r1 = w0 + offset, w1 + offset
    k = 0
    k_max = n * last_seq
    cpu_players0 = 0.0
    cpu_players = cpu_server = user = system = -1.0
    server0 = (0.0, 0.0)
    waits0 = (0.0, 0.0)
    server_wait = players_wait = 0.0
    states_window = 0
    window_open = False
    while True:
        now = perf()
        if now >= end:
            break
        if not window_open and now >= w0:
            window_open = True
            cpu_players0 = time.process_time()
            server0 = cpu_times(server_pid)
            waits0 = run_delay(server_pid), run_delay("self")
            states = 0
        elif window_open and now >= w1 and cpu_players < 0:
            cpu_players = (time.process_time() - cpu_players0) / (now - w0)
            server1 = cpu_times(server_pid)
            user = (server1[0] - server0[0]) / (now - w0)
            system = (server1[1] - server0[1]) / (now - w0)
            cpu_server = user + system
            server_wait = (run_delay(server_pid) - waits0[0]) / (now - w0)
            players_wait = (run_delay("self") - waits0[1]) / (now - w0)
            states_window = states
        # -- inputs due by now, each stamped (wall clock) just before its send
        due = min(int((now - t0) * rate), k_max)
        if due > k:
            if w0 <= now < w1:
                lags.append(now - (t0 + k / rate))
            while k < due:
                seq, i = divmod(k, n)
                seq += 1
                k += 1
                data = frames[seq]
                if pending:
                    rest = pending.pop(i, None)
                    if rest is not None:
                        data = rest + data
                t = wall()
                try:
                    sent = sends[i](data)
                except BlockingIOError:
                    blocked += 1
                    continue
                except OSError:
                    closed += 1
                    continue
                tsend[i * stride + seq] = t
                if sent < len(data):
                    pending[i] = data[sent:]
        # -- states in: their arrival is the kernel's receive timestamp (SO_TIMESTAMPNS),
        # not when this process got round to reading them.
        wait = (t0 + (k + 1) / rate) - perf()
        events = poller.poll(min(0.002, max(0.0, wait)))
        for fd, _ in events:
            i = slot_of_fd[fd]
            try:
                chunk, ancillary, _flags, _addr = recvs[i](262144, cmsg_space)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                poller.unregister(fd)
                closed += 1
                continue
            if ancillary:
                sec, nsec = unpack_ts(ancillary[0][2])
                arrived = sec + nsec * 1e-9
            else:  # no timestamp: now, a later bound
                arrived = wall()
            buf = bufs[i]
            if buf:
                chunk = buf + chunk
            size = len(chunk)
            pos = 0
            while size - pos >= 2:
                length = chunk[pos + 1]
                head = 2
                if length == 126:
                    if size - pos < 4:
                        break
                    length = (chunk[pos + 2] << 8) | chunk[pos + 3]
                    head = 4
                elif length > 126:
                    if size - pos < 10:
                        break
                    length = int.from_bytes(chunk[pos + 2 : pos + 10], "big")
                    head = 10
                start = pos + head
                stop = start + length
                if stop > size:
                    break
                op = chunk[pos] & 0x0F
                pos = stop
                if text_states:
                    if op != 0x1:
                        if op == 0x9:
                            sends[i](frame(chunk[start:stop], opcode=0xA))
                        continue
                    if chunk.startswith(state_prefix, start):
                        a = start + ack_at[i]
                        ack = int(chunk[a : a + 8], 16)
                        s = start + stamp_at
                        stamp = unpack_stamp(bytes.fromhex(chunk[s : s + 16].decode()))[0]
                    else:
                        if length == 1 and chunk[start] == 0x32:  # engine.io ping "2"
                            sends[i](pong_socketio)
                        continue
                elif op == 0x2:
                    a = start + ack_at[i]
                    ack = int.from_bytes(chunk[a : a + 4], "big")
                    stamp = unpack_stamp(chunk, start + stamp_at)[0]
                else:
                    if op == 0x9:  # a WebSocket ping: pong with its payload
                        sends[i](frame(chunk[start:stop], opcode=0xA))
                    elif op == 0x1 and length == 1 and chunk[start] == 0x32:
                        sends[i](pong_socketio)
                    continue
                states += 1
                if r0 <= stamp < r1:
                    delivery.append(arrived - stamp)
                before = last_ack[i]
                if ack > before:
                    last_ack[i] = ack
                    base = i * stride
                    for seq in range(before + 1, min(ack, last_seq) + 1):
                        t = tsend[base + seq]
                        if r0 <= t < r1:
                            lat.append(arrived - t)
            bufs[i] = chunk[pos:] if pos < size else b""
    finished = wall()
    if cpu_players < 0:
        raise RuntimeError("the run ended before its measured window closed")
    censored = 0
    for i in range(n):
        base = i * stride
        for seq in range(last_ack[i] + 1, last_seq + 1):
            t = tsend[base + seq]
            if r0 <= t < r1:
                lat.append(finished - t)
                censored += 1
    poller.close()
    window = w1 - w0
    sent_window = sum(1 for x in tsend if r0 <= x < r1)
    return {
        "players": n,
        "window_s": round(window, 3),
        "inputs_sent": sent_window,
        "inputs_expected": round(n * INPUT_HZ * window),
        "inputs_unanswered": censored,
        "latency_ms": _percentiles(lat),
        "delivery_ms": _percentiles(delivery),
        "states": states_window,
        "states_expected": round(n * TICK_HZ * window),
        "send_lag_ms": _percentiles(lags),
        "blocked_sends": blocked,
        "closed": closed,
        "players_cpu": round(cpu_players, 4),
        "server_cpu": round(cpu_server, 4),
        "server_cpu_user": round(user, 4),
        "server_cpu_system": round(system, 4),
        "server_wait": round(server_wait, 4),
        "players_wait": round(players_wait, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clients.players", description=__doc__)
    parser.add_argument("--proto", choices=PROTOCOLS, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--players", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="number of the first player")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--warm", type=float, default=1.0)
    parser.add_argument("--measure", type=float, default=3.0)
    parser.add_argument("--drain", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if not 0 < args.players <= 100_000 or args.warm + args.measure + args.drain > 120:
        raise SystemExit("players: 1..100000, and at most 120 s in all")
    raise_nofile(args.players + 256)
    try:
        opened = time.perf_counter()
        socks, bufs = open_players(args.port, args.proto, args.first, args.players, args.timeout)
        print(f"OPEN {time.perf_counter() - opened:.3f}", flush=True)
        try:
            result = play(
                socks,
                bufs,
                args.proto,
                args.first,
                warm=args.warm,
                measure=args.measure,
                drain=args.drain,
                server_pid=args.server_pid,
            )
        finally:
            for sock in socks:
                sock.close()
    except Exception as exc:
        traceback.print_exc()
        print(f"ERR {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
        return 1
    result["open_s"] = round(time.perf_counter() - opened, 3)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
