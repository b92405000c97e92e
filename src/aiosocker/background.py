"""Tasks a component starts on the side, kept so that none outlives it.

Hooks and handlers may be plain functions or coroutines; :meth:`Background.call` runs
either kind without waiting and logs what raises, so a broken hook never breaks the
component that called it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Background"]

logger = logging.getLogger("aiosocker")


def _log_failure(task: asyncio.Future[Any], what: str) -> None:
    exc = None if task.cancelled() else task.exception()
    if exc is not None:
        logger.error("%s raised", what, exc_info=exc)


class Background:
    """A set of running tasks: spawn, then cancel or wait for them at the end."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, awaitable: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run ``awaitable`` as a task held here until it is done."""
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def call(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)``; if it returns an awaitable, run it as a task. Exceptions
        are logged with ``what`` (e.g. ``"channel 'game': hook"``), not raised."""
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                self.spawn(result).add_done_callback(lambda task: _log_failure(task, what))
        except Exception:
            logger.exception("%s raised", what)

    def __len__(self) -> int:
        return len(self._tasks)

    async def finish(self, *, cancel: bool) -> None:
        """Wait for every task (cancelled first if ``cancel``), except the caller's."""
        current = asyncio.current_task()
        pending = [task for task in self._tasks if task is not current]
        if cancel:
            for task in pending:
                task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
