"""``/metrics`` and ``/status.json`` on real servers (both transports): the numbers
they show are checked against what the test did, with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import aiosocker

from .conftest import StartServer, collector, eventually


def chain(conn: aiosocker.Connection) -> None:
    @conn.stage(timeout=0.3)
    def hello(message: bytes) -> bool:
        return message == b"hello"

    @conn.stage()
    def playing(message: bytes) -> bool:
        if message == b"boom":
            raise ValueError("bad move")
        conn.write(b"ok")
        return False


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    def fetch() -> tuple[int, bytes]:
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    return await asyncio.to_thread(fetch)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_count_what_happened(start_server: StartServer) -> None:
    server = await start_server(chain, metrics=True, status_page=True)
    got: list[bytes] = []
    async with aiosocker.connect(server.url) as player:
        player.add(collector(got), name="inbox")
        await player.send(b"hello")
        await player.send(b"move")
        await eventually(lambda: got == [b"ok"])
        async with aiosocker.connect(server.url) as idle:  # times out in 'hello'
            await asyncio.wait_for(idle.wait_closed(), 5)
        async with aiosocker.connect(server.url) as bad:
            await bad.send(b"hello")
            await bad.send(b"boom")
            await asyncio.wait_for(bad.wait_closed(), 5)
        await eventually(lambda: len(server.connections) == 1, what="two closed")
        status, body = await get(server.http_url + "metrics")
    assert status == 200
    m = samples(body.decode())
    assert m[("aiosocker_connections", (("stage", "playing"),))] == 1
    assert m[("aiosocker_stage_entries_total", (("stage", "hello"),))] == 3
    assert m[("aiosocker_stage_entries_total", (("stage", "playing"),))] == 2
    assert m[("aiosocker_stage_exits_total", (("how", "advance"), ("stage", "hello")))] == 2
    assert m[("aiosocker_stage_exits_total", (("how", "timeout"), ("stage", "hello")))] == 1
    assert m[("aiosocker_stage_exits_total", (("how", "1011"), ("stage", "playing")))] == 1
    assert m[("aiosocker_closes_total", (("code", "4408"),))] == 1
    assert m[("aiosocker_closes_total", (("code", "1011"),))] == 1
    assert m[("aiosocker_handler_errors_total", (("stage", "playing"),))] == 1
    assert m[("aiosocker_messages_in_total", ())] == 4
    assert m[("aiosocker_bytes_in_total", ())] == len(b"hellomovehelloboom")
    assert m[("aiosocker_messages_out_total", ())] == 1
    hello_visits = m[("aiosocker_stage_seconds_count", (("stage", "hello"),))]
    assert hello_visits == 3
    assert m[("aiosocker_stage_seconds_sum", (("stage", "hello"),))] >= 0.3  # the timeout
    assert m[("aiosocker_stage_seconds_bucket", (("le", "+Inf"), ("stage", "hello")))] == 3


async def test_status_json_is_the_same_numbers(start_server: StartServer) -> None:
    server = await start_server(chain, status_page=True)
    async with aiosocker.connect(server.url) as player:
        player.add(collector([]), name="inbox")
        await player.send(b"hello")
        await eventually(lambda: server.hub.meter and server.hub.meter.entries["playing"] == 1)
        status, body = await get(server.http_url + "status.json")
        page_status, page = await get(server.http_url + "status")
    assert status == 200 and page_status == 200 and b"stage funnel" in page.lower()
    data: dict[str, Any] = json.loads(body)
    rows = {row["stage"]: row for row in data["funnel"]}
    assert rows["hello"]["entered"] == 1 and rows["hello"]["exits"] == {"advance": 1}
    assert rows["playing"]["now"] == 1 and data["live"] == 1
    assert data["messages"]["in"] == 1


async def test_observing_routes_are_off_by_default_and_guarded(start_server: StartServer) -> None:
    plain = await start_server(chain)
    for path in ("metrics", "status", "status.json"):
        assert (await get(plain.http_url + path))[0] == 404

    def authenticate(request: aiosocker.Request) -> Any:
        return request.headers.get("Authorization") == "Bearer ops"

    guarded = await start_server(chain, metrics=True, status_page=True, authenticate=authenticate)
    for path in ("metrics", "status", "status.json"):
        assert (await get(guarded.http_url + path))[0] == 403
        assert (await get(guarded.http_url + path, {"Authorization": "Bearer ops"}))[0] == 200
        cross_site = {"Authorization": "Bearer ops", "Origin": "https://evil.example"}
        assert (await get(guarded.http_url + path, cross_site))[0] == 403
