"""The stage machine: an ordered chain of message handlers with a cursor.

Sans-I/O: this module imports no asyncio and no socket library. A connection (or a test,
or a game loop without asyncio) feeds it messages; it runs the current stage's handler
and moves the cursor by the handler's answer.

Rules
-----
* A handler takes the message (``bytes``) and returns ``True`` (advance to the next
  stage), ``False`` (stay) or the *name* of a stage (jump there; naming the current stage
  re-enters it and restarts its timeout).
* Advancing past the last stage raises :class:`~aiosocker.OutOfStagesError`; the cursor stays
  on the last stage.
* Any other return value raises :class:`TypeError`; an unknown stage name raises
  :class:`ValueError`. A handler that raises leaves the cursor where it was.
* Handlers may be plain functions or ``async def``. :meth:`Stages.handle_sync` runs plain
  handlers without any event loop; ``await`` :meth:`Stages.handle` runs both kinds.
* Timeouts are data: entering a stage computes its deadline; :meth:`Stages.expired`
  answers for a given time. Whoever owns the clock (the connection) enforces it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from inspect import isawaitable
from types import CoroutineType
from typing import Any, Literal, TypeAlias, TypeVar

from .errors import OutOfStagesError
from .limits import Rate

__all__ = ["Entered", "Handler", "Result", "Stage", "Stages"]

Result: TypeAlias = bool | str
"""What a handler returns: advance (``True``), stay (``False``) or a stage name."""

Handler: TypeAlias = Callable[[bytes], "Result | Awaitable[Result]"]
"""A stage handler: sync or async, takes the message."""

H = TypeVar("H", bound=Callable[..., Any])

Via: TypeAlias = Literal["start", "advance", "jump", "reset"]


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of a chain."""

    name: str
    """Unique within its chain."""
    handler: Handler
    """Called with each message while this stage is current."""
    timeout: float | None
    """Seconds the connection may stay in this stage, or ``None`` for no limit."""
    rate: Rate | None = None
    """How fast the peer may send while in this stage (``None``: the connection's)."""


@dataclass(frozen=True, slots=True)
class Entered:
    """A record in :attr:`Stages.history`: the machine entered ``stage``."""

    stage: str
    """Name of the stage entered."""
    index: int
    """Its position in the chain."""
    at: float
    """The clock's time (``time.monotonic()`` by default) when it was entered."""
    via: Via
    """How: ``"start"`` (first stage added), ``"advance"``, ``"jump"`` or ``"reset"``."""


def _no_stages(message: bytes) -> Result:
    # Stands in as handler 0 while the chain is empty, so the hot path needs no check.
    raise LookupError("the chain has no stages: add one with stages.add() before handling")


class Stages:
    """An ordered chain of stages and a cursor on the current one.

    >>> stages = Stages()
    >>> @stages.stage()
    ... def hello(message: bytes) -> bool:
    ...     return message == b"hello"
    >>> @stages.stage()
    ... def playing(message: bytes) -> bool:
    ...     return False
    >>> stages.handle_sync(b"hi"), stages.current
    (False, 'hello')
    >>> stages.handle_sync(b"hello"), stages.current
    (True, 'playing')
    """

    __slots__ = (
        "_begun",
        "_by_name",
        "_clock",
        "_deadline",
        "_handlers",
        "_history",
        "_history_limit",
        "_index",
        "_stages",
        "observer",
    )

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, history_limit: int = 256
    ) -> None:
        """``clock`` gives the time for history and deadlines; ``history_limit`` bounds
        :attr:`history` (a connection that renegotiates forever must not grow it)."""
        if history_limit < 1:
            raise ValueError(f"history_limit must be at least 1, got {history_limit}")
        self._clock = clock
        self._stages: list[Stage] = []
        # Parallel to _stages: the hot path indexes a plain list of callables.
        self._handlers: list[Handler] = [_no_stages]
        self._by_name: dict[str, int] = {}
        self._index = 0
        self._begun = 0
        self._deadline: float | None = None
        # A list, trimmed by hand: a deque's first block costs ~600 bytes per connection.
        self._history: list[Entered] = []
        self._history_limit = history_limit
        self.observer: Callable[[Entered | None, Entered], None] | None = None
        """Called with (the entry left, the entry made) on every stage entered (the
        first one too, with ``None``): how metrics see the chain move."""

    # -- building --------------------------------------------------------------------

    def add(
        self,
        handler: H,
        *,
        name: str | None = None,
        timeout: float | None = None,
        rate: Rate | None = None,
    ) -> H:
        """Append a stage running ``handler``; returns ``handler`` unchanged.

        ``name`` defaults to the handler's ``__name__``. ``timeout`` is in seconds.
        ``rate`` bounds how fast the peer may send in this stage (connections enforce
        it: 4429 past it).
        """
        if not callable(handler):
            raise TypeError(f"a stage handler must be callable, got {handler!r}")
        if name is None:
            name = getattr(handler, "__name__", None)
            if not isinstance(name, str) or name == "<lambda>":
                raise ValueError(f"give the stage a name: {handler!r} has no usable __name__")
        if not isinstance(name, str) or not name:
            raise ValueError(f"a stage name must be a non-empty string, got {name!r}")
        if name in self._by_name:
            raise ValueError(f"a stage named {name!r} already exists; stage names are unique")
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self._by_name[name] = len(self._stages)
        if rate is not None and not isinstance(rate, Rate):
            raise TypeError(f"rate must be an aiosocker.limits.Rate, got {rate!r}")
        self._stages.append(Stage(name, handler, None if timeout is None else float(timeout), rate))
        if len(self._stages) == 1:
            self._handlers[0] = handler
            self._enter(0, "start")
        else:
            self._handlers.append(handler)
        return handler

    def stage(
        self, *, name: str | None = None, timeout: float | None = None, rate: Rate | None = None
    ) -> Callable[[H], H]:
        """Decorator form of :meth:`add`."""

        def decorate(handler: H) -> H:
            return self.add(handler, name=name, timeout=timeout, rate=rate)

        return decorate

    # -- handling --------------------------------------------------------------------

    def handle_sync(self, message: bytes) -> bool:
        """Run the current (synchronous) handler; return whether the stage changed.

        Raises :class:`TypeError` if the handler is ``async``: use :meth:`handle`.
        """
        index = self._index
        result = self._handlers[index](message)
        if result is False:
            return False
        if not isinstance(result, (bool, str)) and isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # don't leave a never-awaited coroutine behind
            raise TypeError(
                f"stage {self._stages[index].name!r} is async: use 'await stages.handle()'"
            )
        return self._settle(index, result)

    async def handle(self, message: bytes) -> bool:
        """Run the current handler, sync or async; return whether the stage changed."""
        index = self._index
        result = self._handlers[index](message)
        # An ``async def`` handler's coroutine is recognised by its exact type, in C;
        # inspect.isawaitable (a Python call) only runs for other awaitables.
        if type(result) is CoroutineType or (
            type(result) is not bool and not isinstance(result, str) and isawaitable(result)
        ):
            result = await result
        if result is False:
            return False
        return self._settle(index, result)

    def feed(self, message: bytes) -> bool | Awaitable[bool]:
        """Run the current handler without waiting.

        Returns whether the stage changed if the handler finished synchronously, else an
        awaitable that finishes the step. For drivers that must never block (a game
        loop's tick) yet allow ``async`` handlers.
        """
        index = self._index
        result = self._handlers[index](message)
        if result is False:
            return False
        if type(result) is CoroutineType or (
            type(result) is not bool and not isinstance(result, str) and isawaitable(result)
        ):
            return self._finish(index, result)
        return self._settle(index, result)

    async def _finish(self, index: int, pending: Awaitable[Any]) -> bool:
        result = await pending
        return False if result is False else self._settle(index, result)

    def _begin(self, message: bytes) -> bool | Awaitable[Result]:
        """:meth:`feed` for a driver that awaits async handlers itself, one at a time (a
        connection's read pump): an async handler's awaitable comes back as it is, and
        what it gives goes to :meth:`_end`. One coroutine frame less per message than
        :meth:`feed`'s wrapper."""
        index = self._index
        result = self._handlers[index](message)
        if result is False:
            return False
        if type(result) is CoroutineType or (
            type(result) is not bool and not isinstance(result, str) and isawaitable(result)
        ):
            self._begun = index
            return result
        return self._settle(index, result)

    def _end(self, result: object) -> bool:
        """Apply what the awaitable :meth:`_begin` returned gave: whether the stage
        changed (the handler's stage is the one current when it began)."""
        return False if result is False else self._settle(self._begun, result)

    def _settle(self, index: int, result: object) -> bool:
        if result is True:
            following = index + 1
            if following >= len(self._stages):
                raise OutOfStagesError(self._stages[index].name)
            self._enter(following, "advance")
            return True
        if isinstance(result, str):
            target = self._by_name.get(result)
            if target is None:
                raise ValueError(
                    f"stage {self._stages[index].name!r} returned {result!r}, which names no"
                    f" stage; the stages are {list(self._by_name)}"
                )
            self._enter(target, "jump")
            return True
        raise TypeError(
            f"stage {self._stages[index].name!r} returned {result!r}; a handler returns"
            " True (advance), False (stay) or the name of a stage (jump)"
        )

    def jump(self, name: str) -> None:
        """Move to the stage called ``name`` from outside a handler (e.g. a timer)."""
        target = self._by_name.get(name)
        if target is None:
            raise ValueError(f"no stage named {name!r}; the stages are {list(self._by_name)}")
        self._enter(target, "jump")

    def reset(self) -> None:
        """Go back to the first stage; history restarts with a ``"reset"`` entry."""
        if not self._stages:
            return
        self._history.clear()
        self._enter(0, "reset")

    def _enter(self, index: int, via: Via) -> None:
        now = self._clock()
        self._index = index
        stage = self._stages[index]
        self._deadline = None if stage.timeout is None else now + stage.timeout
        history = self._history
        entered = Entered(stage.name, index, now, via)
        previous = history[-1] if history else None
        history.append(entered)
        if len(history) > self._history_limit:
            del history[0]
        if self.observer is not None:
            self.observer(previous, entered)

    # -- introspection ---------------------------------------------------------------

    @property
    def current(self) -> str:
        """Name of the current stage."""
        if not self._stages:
            raise LookupError("the chain has no stages yet")
        return self._stages[self._index].name

    @property
    def current_stage(self) -> Stage:
        """The current :class:`Stage` (name, handler, timeout)."""
        if not self._stages:
            raise LookupError("the chain has no stages yet")
        return self._stages[self._index]

    @property
    def index(self) -> int:
        """Position of the current stage in the chain (0 while empty)."""
        return self._index

    @property
    def names(self) -> tuple[str, ...]:
        """Names of all stages, in order."""
        return tuple(stage.name for stage in self._stages)

    @property
    def history(self) -> tuple[Entered, ...]:
        """The stages entered, oldest first (bounded by ``history_limit``)."""
        return tuple(self._history)

    @property
    def entered_at(self) -> float | None:
        """When the current stage was entered, on the machine's clock."""
        return self._history[-1].at if self._history else None

    @property
    def deadline(self) -> float | None:
        """When the current stage times out, on the machine's clock, or ``None``."""
        return self._deadline

    def expired(self, now: float | None = None) -> bool:
        """Whether the current stage's deadline has passed at ``now`` (default: now)."""
        if self._deadline is None:
            return False
        return (self._clock() if now is None else now) >= self._deadline

    def __len__(self) -> int:
        return len(self._stages)

    def __iter__(self) -> Iterator[Stage]:
        return iter(self._stages)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Stage:
        return self._stages[self._by_name[name]]

    def __repr__(self) -> str:
        where = repr(self.current) if self._stages else "empty"
        return f"<Stages {where} of {list(self._by_name)}>"

    def diagram(self) -> str:
        """A Mermaid ``stateDiagram-v2`` of the chain (jumps are not known statically)."""
        lines = ["stateDiagram-v2"]
        for i, stage in enumerate(self._stages):
            label = stage.name.replace('"', "'")
            if stage.timeout is not None:
                label += f" (timeout {stage.timeout:g}s)"
            lines.append(f'    state "{label}" as s{i}')
        if self._stages:
            lines.append("    [*] --> s0")
            for i in range(1, len(self._stages)):
                lines.append(f"    s{i - 1} --> s{i}")
            last = len(self._stages) - 1
            lines.append(f"    s{last} --> s{last} : stay")
        return "\n".join(lines) + "\n"
