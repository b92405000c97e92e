"""Kind ``raw-picows``: a ``picows`` listener (the floor socker-on-picows is compared with)."""

from __future__ import annotations

import time
from typing import Any

from .base import HOST, Life, Ready, parse_hello, report


async def raw_picows(mode: str, ready: Ready, life: Life) -> None:
    from picows import WSListener, WSMsgType, ws_create_server

    binary = WSMsgType.BINARY

    def control(transport: Any, frame: Any) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    # Each listener takes the payload as bytes, as a websockets handler (or a stage
    # handler) receives it: the floor socker-on-picows is compared with.
    class Stream(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.count = 0
            self.t0 = 0
            self.c0 = 0

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not binary:
                control(transport, frame)
                return
            message = frame.get_payload_as_bytes()
            if not self.n:
                self.n = parse_hello(message)
                self.t0, self.c0 = time.perf_counter_ns(), time.process_time_ns()
                return
            self.count += 1
            if self.count == self.n:
                report(self.n, self.t0, self.c0)

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not binary:
                control(transport, frame)
                return
            transport.send(binary, frame.get_payload_as_bytes())

    class Idle(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not binary:
                control(transport, frame)

    listener = {"stream": Stream, "echo": Echo, "idle": Idle}[mode]
    server = await ws_create_server(lambda request: listener(), HOST, 0)
    try:
        ready(server.sockets[0].getsockname()[1])
        await life.wait()
    finally:
        server.close()
