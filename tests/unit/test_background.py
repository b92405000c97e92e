"""Background: side tasks kept so none outlives its owner, failures logged by name."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aiosocker.background import Background


def test_a_failing_coroutine_is_logged_with_what_it_was(caplog: pytest.LogCaptureFixture) -> None:
    async def hook() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("broken hook")

    async def main() -> None:
        background = Background()
        background.call("channel 'game': hook", hook)
        await background.finish(cancel=False)

    with caplog.at_level(logging.ERROR, logger="aiosocker"):
        asyncio.run(main())
    (record,) = [r for r in caplog.records if r.name == "aiosocker"]
    assert record.getMessage() == "channel 'game': hook raised"
    assert record.exc_info is not None and "broken hook" in str(record.exc_info[1])


def test_a_failing_plain_call_is_logged_and_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def hook() -> None:
        raise ValueError("plain")

    with caplog.at_level(logging.ERROR, logger="aiosocker"):
        Background().call("session hook", hook)
    assert [r.getMessage() for r in caplog.records] == ["session hook raised"]
