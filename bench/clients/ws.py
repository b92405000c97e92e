"""A deliberately cheap WebSocket load client on plain blocking sockets.

It does a real HTTP/1.1 upgrade handshake, then writes frames it built beforehand
(masked, as a client must) in large chunks, so that the server is what is measured and
not the client. It never offers ``permessage-deflate``: no compression is negotiated,
whatever the server allows.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import time

MASK = b"\x37\xfa\x21\x3d"
CHUNK_BYTES = 256 * 1024
"""How much the stream client hands to the kernel per ``sendall``."""


def frame(payload: bytes, *, opcode: int = 0x2, mask: bytes = MASK) -> bytes:
    """One final client frame (binary by default), masked with ``mask``."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + masked


def server_frame_size(payload_size: int) -> int:
    """Bytes of an unmasked (server to client) frame carrying ``payload_size`` bytes."""
    if payload_size < 126:
        return 2 + payload_size
    if payload_size < 1 << 16:
        return 4 + payload_size
    return 10 + payload_size


def hello(n: int) -> bytes:
    """The first message of a stream: tells the server how many messages follow."""
    return frame(b"N:%d" % n)


def close_frame(code: int = 1000) -> bytes:
    return frame(code.to_bytes(2, "big"), opcode=0x8)


def upgrade_request(port: int, path: str = "/") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode()


def read_upgrade_response(sock: socket.socket) -> bytes:
    """Read the server's answer to the upgrade; return bytes received after it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("server closed during the handshake")
        buf += chunk
        if len(buf) > 65536:
            raise ConnectionError("handshake response too long")
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        raise ConnectionError(f"handshake refused: {status.decode(errors='replace')}")
    return rest


def _socket(port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connect(port: int, *, timeout: float = 10.0) -> socket.socket:
    """An open WebSocket (blocking socket, ``timeout`` per operation)."""
    sock = _socket(port, timeout)
    try:
        sock.sendall(upgrade_request(port))
        if read_upgrade_response(sock):
            raise ConnectionError("server sent data right after the handshake")
    except BaseException:
        sock.close()
        raise
    return sock


def goodbye(sock: socket.socket, *, timeout: float = 2.0) -> None:
    """Close cleanly: send a close frame, read until the server hangs up (bounded)."""
    try:
        sock.settimeout(timeout)
        sock.sendall(close_frame())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and sock.recv(65536):
            pass
    except OSError:
        pass
    finally:
        sock.close()


def stream(port: int, payload_size: int, n: int, *, timeout: float = 60.0) -> socket.socket:
    """Connect, send ``hello(n)`` then ``n`` binary messages of ``payload_size`` bytes.

    Returns the open socket; the caller waits for the server's report, then
    :func:`goodbye`. The frames are built before the first byte is sent.
    """
    one = frame(bytes(range(256)) * (payload_size // 256) + bytes(payload_size % 256))
    per_chunk = max(1, CHUNK_BYTES // len(one))
    chunk = one * per_chunk
    full, rest = divmod(n, per_chunk)
    tail = one * rest
    first = hello(n)
    sock = connect(port, timeout=timeout)
    try:
        sock.sendall(first)
        for _ in range(full):
            sock.sendall(chunk)
        if tail:
            sock.sendall(tail)
    except BaseException:
        sock.close()
        raise
    return sock


def echo(port: int, payload_size: int, n: int, *, timeout: float = 30.0) -> float:
    """``n`` request/response round trips, one at a time; return the seconds they took."""
    request = frame(bytes(payload_size))
    size = server_frame_size(payload_size)
    reply = bytearray(size)
    view = memoryview(reply)
    sock = connect(port, timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        start = time.perf_counter()
        for i in range(n):
            sock.sendall(request)
            got = 0
            while got < size:
                k = sock.recv_into(view[got:], size - got)
                if not k:
                    raise ConnectionError("server closed during the echo run")
                got += k
            if reply[0] != 0x82:
                raise ConnectionError(f"unexpected frame from the server: {bytes(reply[:2])!r}")
            if i & 1023 == 0 and time.monotonic() > deadline:
                raise TimeoutError(f"echo: {i} of {n} round trips in {timeout:g} s")
        elapsed = time.perf_counter() - start
    finally:
        goodbye(sock)
    return elapsed


def open_idle(
    port: int, count: int, *, batch: int = 100, timeout: float = 20.0
) -> list[socket.socket]:
    """Open ``count`` WebSockets and leave them idle: connect and send ``batch`` upgrade
    requests, then read their answers, batch after batch."""
    opened: list[socket.socket] = []
    group: list[socket.socket] = []
    try:
        while len(opened) < count:
            group = []
            for _ in range(min(batch, count - len(opened))):
                sock = _socket(port, timeout)
                group.append(sock)
                sock.sendall(upgrade_request(port))
            for sock in group:
                read_upgrade_response(sock)
            opened += group
            group = []
    except BaseException:
        for sock in opened + group:
            with contextlib.suppress(OSError):
                sock.close()
        raise
    return opened
