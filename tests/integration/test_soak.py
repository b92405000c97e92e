"""The short soak: ``python -m bench.soak --short`` (``make soak`` is the full one).

A real server in its own process (``hello`` (5 s) -> ``handshake`` (5 s) -> ``playing``,
plus the rtc stages for rtc clients; ``max_size`` 64 KiB, ``max_memory`` 1 MiB, a rate of
200 messages/s), 50 WebSocket clients and 5 rtc clients (real aiortc) in two other
processes for 15 s, with random abrupt disconnects, and the hostile clients once each.
The run writes JSON; these tests read it. See ``docs/guarantees.md`` (``## Soak``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aiosocker import CloseCode

REPO = Path(__file__).resolve().parents[2]

HOSTILE = {
    "flood": CloseCode.OVER_RATE,  # tiny frames in hello, over serve(rate=...)
    "oversize": CloseCode.MESSAGE_TOO_BIG,  # max_size + 1 bytes
    "text": CloseCode.UNSUPPORTED_DATA,  # a text frame
    "silent": CloseCode.STAGE_TIMEOUT,  # never says hello
    "rtc-garbage": CloseCode.BAD_SIGNALING,  # garbage signaling in rtc_ready
    "bigsend": CloseCode.OVER_MEMORY,  # big messages in playing, never reads the echoes
    "rtc-defer": CloseCode.OVER_MEMORY,  # ~max_size app frames mid-rtc (all deferred)
}
"""Each hostile client and the close code docs/close-codes.md gives it (the server's
on_close hook reports it)."""

RSS_END_FACTOR = 2


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("soak") / "soak.json"
    # Not traced by coverage even where subprocesses would be: the soak measures the server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS")}
    run = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--short", "--json", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    print(run.stdout)  # the table, shown when a test fails
    print(run.stderr[-4000:], file=sys.stderr)
    assert path.exists(), f"the soak wrote no JSON (exit {run.returncode})"
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def role(soak: dict[str, Any], name: str) -> dict[str, Any]:
    roles: dict[str, dict[str, Any]] = soak["summary"]["roles"]
    return roles[name]


@pytest.mark.timeout(150)
@pytest.mark.parametrize(("name", "tag"), [("ws", "ws"), ("rtc", "rtc")])
def test_every_well_behaved_session_gets_every_echo_in_order(
    soak: dict[str, Any], name: str, tag: str
) -> None:
    clients = role(soak, name)
    well = clients["sessions"]["well"]
    assert well >= (100 if name == "ws" else 10), "too few sessions to say anything"
    assert clients["bad_count"] == 0, clients["bad"]
    assert clients["in_order"] == well
    assert clients["received"] == clients["sent"] > 0
    end = soak["end"]
    assert end["played"][tag] == clients["sent"], "the server got each message, in order"
    assert tag not in end["out_of_order"]
    assert end["closes_by_tag"][tag] == {"1000": well}


@pytest.mark.timeout(150)
def test_abrupt_disconnects_happened_and_ended_without_a_close_frame(
    soak: dict[str, Any],
) -> None:
    assert role(soak, "ws")["sessions"]["abrupt"] >= 10
    assert sum(role(soak, "rtc")["abrupt_at"].values()) >= 1
    by_tag = soak["end"]["closes_by_tag"]
    assert set(by_tag["ws-abrupt"]) == {"1006"}
    assert set(by_tag["rtc-abrupt"]) == {"1006"}


@pytest.mark.timeout(150)
@pytest.mark.parametrize(("who", "code"), HOSTILE.items())
def test_each_hostile_client_gets_its_documented_close_code(
    soak: dict[str, Any], who: str, code: int
) -> None:
    rounds = soak["plan"]["hostile_rounds"]
    assert soak["end"]["closes_by_tag"][who] == {str(code): rounds}, soak["end"]["reasons"][who]


@pytest.mark.timeout(150)
def test_slowloris_is_dropped_before_it_becomes_a_connection(soak: dict[str, Any]) -> None:
    loris = [h for h in soak["summary"]["hostile"] if h.get("who") == "slowloris"]
    assert len(loris) == soak["plan"]["hostile_rounds"]
    for h in loris:
        assert h["dropped"], h  # within the soak's own bound on the wait (20 s)
    assert "slowloris" not in soak["end"]["closes_by_tag"]


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    "resource", ["connections", "tasks", "fds", "udp_sockets", "peer_connections"]
)
def test_the_server_is_back_to_its_baseline(soak: dict[str, Any], resource: str) -> None:
    assert soak["end"][resource] == soak["baseline"][resource]


@pytest.mark.timeout(150)
def test_the_server_was_loaded_and_its_rss_came_back(soak: dict[str, Any]) -> None:
    assert soak["end"]["peak_connections"] >= 40
    rss = soak["rss_kib"]
    assert rss["end"] <= RSS_END_FACTOR * rss["start"], rss


@pytest.mark.timeout(150)
def test_every_check_of_the_run_passed(soak: dict[str, Any]) -> None:
    failed = {k: c["detail"] for k, c in soak["summary"]["checks"].items() if not c["ok"]}
    assert not failed
