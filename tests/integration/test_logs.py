"""Every log line about a connection carries its id, stage and remote address as
``extra`` fields, and none carries a message payload (both transports)."""

from __future__ import annotations

import asyncio
import logging

import pytest

import aiosocker

from .conftest import StartServer

SECRET = b"player-password-123"


def setup(conn: aiosocker.Connection) -> None:
    @conn.stage()
    def playing(message: bytes) -> bool:
        raise ValueError("bad move")


async def test_log_lines_carry_the_connection_not_the_payload(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(setup)
    with caplog.at_level(logging.DEBUG, logger="aiosocker"):
        async with aiosocker.connect(server.url) as client:
            await client.send(SECRET)
            await asyncio.wait_for(client.wait_closed(), 5)
    raised = [r for r in caplog.records if "raised" in r.getMessage()]
    assert raised, caplog.text
    record = raised[0]
    assert record.conn_id.startswith("c")  # type: ignore[attr-defined]
    assert record.stage == "playing"  # type: ignore[attr-defined]
    assert record.remote.startswith("127.0.0.1:")  # type: ignore[attr-defined]
    assert SECRET.decode() not in caplog.text


def test_json_log_lines_carry_the_connection_fields() -> None:
    import json

    from aiosocker.run import JsonFormatter

    record = logging.LogRecord(
        "aiosocker", logging.ERROR, __file__, 1, "stage %r raised", ("x",), None
    )
    record.conn_id, record.stage, record.remote = "c7", "playing", "127.0.0.1:5000"
    line = json.loads(JsonFormatter("worker 1").format(record))
    assert line["message"] == "stage 'x' raised"
    assert (line["conn_id"], line["stage"], line["remote"]) == ("c7", "playing", "127.0.0.1:5000")
