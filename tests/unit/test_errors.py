"""Every exception says what happened and carries it as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiosocker import (
    CloseCode,
    ConnectionClosedError,
    HandshakeRejected,
    OutOfStagesError,
    SockerError,
    StageTimeoutError,
)


def test_errors_carry_their_data_and_say_what_to_do() -> None:
    out = OutOfStagesError("final")
    assert out.stage == "final"
    assert "return False from a final stage" in str(out)

    timeout = StageTimeoutError("rtc_ready", 5.0)
    assert (timeout.stage, timeout.timeout) == ("rtc_ready", 5.0)
    assert str(timeout) == "stage 'rtc_ready' timed out after 5 s"

    closed = ConnectionClosedError(1001, "server shutting down")
    assert (closed.code, closed.reason) == (1001, "server shutting down")
    assert "1001" in str(closed)

    refused = HandshakeRejected(403, "origin not allowed")
    assert (refused.status, refused.reason) == (403, "origin not allowed")
    assert str(refused) == "server refused the connection: HTTP 403 origin not allowed"
    assert str(HandshakeRejected(503)) == "server refused the connection: HTTP 503"


@pytest.mark.parametrize(
    "error", [OutOfStagesError("x"), StageTimeoutError("x", 1), ConnectionClosedError(1000, "")]
)
def test_every_error_is_a_socker_error(error: Exception) -> None:
    assert isinstance(error, SockerError)


def test_close_codes_are_the_documented_numbers() -> None:
    codes = [1000, 1001, 1003, 1009, 1011, 4400, 4408, 4413, 4429]
    assert [int(code) for code in CloseCode] == codes
    table = (Path(__file__).parents[2] / "docs" / "close-codes.md").read_text()
    for code in CloseCode:
        assert f"| {int(code)} | `CloseCode.{code.name}` |" in table, code
