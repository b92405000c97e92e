"""Every program in examples/ runs, as a user would run it, and says what it should."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(*args: str, timeout: float = 20) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_staged_server_and_client() -> None:
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "staged_server.py"), "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()  # blocks until the server listens
        match = re.fullmatch(r"listening on (ws://127\.0\.0\.1:\d+/)\n", first)
        assert match, f"unexpected first line {first!r}"
        url = match.group(1)

        client = run(str(EXAMPLES / "staged_client.py"), url, "3")
        assert client.splitlines() == [
            "scene: scene:player-1,player-2,crate-7",
            "stages: scene -> offer -> final",
            "acks: ack:state:0, ack:state:1, ack:state:2",
            "closed 1000",
        ]
        server.send_signal(signal.SIGTERM)  # graceful shutdown
        out, err = server.communicate(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, err
    lines = out.splitlines()
    conn_id = lines[0].split(":")[0]
    assert lines == [
        f"{conn_id}: set up after hello -> handshake -> answer",
        f"{conn_id}: state:0",
        f"{conn_id}: state:1",
        f"{conn_id}: state:2",
        f"{conn_id}: closed 1000",
        "shutting down",
        "server closed",
    ]


def test_staged_server_stops_after_its_seconds() -> None:
    out = run(str(EXAMPLES / "staged_server.py"), "0", "0.2")
    assert out.splitlines()[1:] == ["shutting down", "server closed"]


def grab(pattern: str, text: str) -> tuple[str, ...]:
    match = re.search(pattern, text, re.M)
    assert match, f"{pattern!r} not in:\n{text}"
    return match.groups()


def test_tick_loop_runs_at_60_hz() -> None:
    out = run(str(EXAMPLES / "tick_loop.py"), "1", "3")
    frames, rate = grab(r"^frames: (\d+) in [\d.]+ s \(([\d.]+) Hz\)$", out)
    handled, inputs = grab(
        r"^messages handled by tick\(\): (\d+) \((\d+) inputs from 3 bots\)$", out
    )
    (states,) = grab(r"^states received per bot: (.*)$", out)
    assert 50 <= int(frames) <= 61, out
    assert 50 <= float(rate) <= 61, out
    assert int(handled) == int(inputs) + 3  # three joins, then inputs, all through tick()
    assert int(inputs) >= 20, out  # 3 bots at 20 Hz for about a second
    assert all(int(n) >= 20 for n in states.split(", ")), out  # a state every frame


def test_rtc_pair_opens_channels_and_talks_on_both() -> None:
    lines = run(str(EXAMPLES / "rtc_pair.py")).splitlines()
    assert lines[0] == "client scene: b'scene: 2 players, 1 crate'"
    assert lines[1] == "client control: b'channels open'"
    assert sorted(line for line in lines if line.startswith("client game:")) == [
        f"client game: b'ack move {i}'" for i in range(3)
    ]
    assert "client chat: b'server heard: hello from the client'" in lines
    assert "client stages: ['scene', 'rtc_offer', 'rtc_open', 'control']" in lines
    assert lines[-1] == "server control: b'bye'"
