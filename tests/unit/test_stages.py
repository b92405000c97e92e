"""The stage machine, with plain function calls: no sockets, no event loop for sync paths."""

from __future__ import annotations

import asyncio
import sys

import pytest

from aiosocker import Entered, OutOfStagesError, Stages


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def chain(*results: object, clock: FakeClock | None = None) -> Stages:
    """A chain whose stage i always returns results[i]."""
    stages = Stages(clock=clock or FakeClock())
    for i, result in enumerate(results):
        stages.add(lambda message, r=result: r, name=f"s{i}")
    return stages


def test_advance_stay_and_last_stage_stays() -> None:
    stages = Stages()
    seen: list[tuple[str, bytes]] = []

    @stages.stage()
    def hello(message: bytes) -> bool:
        seen.append(("hello", message))
        return message == b"hello"

    @stages.stage()
    def final(message: bytes) -> bool:
        seen.append(("final", message))
        return False

    assert stages.current == "hello"
    assert stages.handle_sync(b"nope") is False
    assert stages.current == "hello"
    assert stages.handle_sync(b"hello") is True
    assert stages.current == "final" and stages.index == 1
    assert stages.handle_sync(b"x") is False
    assert stages.current == "final"
    assert seen == [("hello", b"nope"), ("hello", b"hello"), ("final", b"x")]


def test_advance_past_last_stage_raises_and_stays() -> None:
    stages = chain(True, True)
    assert stages.handle_sync(b"") is True
    with pytest.raises(OutOfStagesError, match="'s1'.*last stage") as info:
        stages.handle_sync(b"")
    assert info.value.stage == "s1"
    assert stages.current == "s1"


def test_jump_by_name_and_reenter_self() -> None:
    clock = FakeClock()
    stages = Stages(clock=clock)
    stages.add(lambda m: True, name="a")
    stages.add(lambda m: "a" if m == b"again" else m.decode(), name="b", timeout=5)
    stages.add(lambda m: False, name="c")
    stages.handle_sync(b"")
    assert stages.current == "b"
    assert stages.handle_sync(b"again") is True
    assert stages.current == "a"
    stages.handle_sync(b"")
    assert stages.deadline == 105.0
    clock.now = 103.0
    assert stages.handle_sync(b"b") is True  # naming itself re-enters, restarting the clock
    assert stages.current == "b" and stages.deadline == 108.0
    assert stages.handle_sync(b"c") is True
    assert stages.current == "c"
    assert [e.via for e in stages.history] == [
        "start",
        "advance",
        "jump",
        "advance",
        "jump",
        "jump",
    ]


def test_unknown_stage_name_is_value_error_and_stays() -> None:
    stages = chain("nowhere", False)
    with pytest.raises(ValueError, match="'s0' returned 'nowhere', which names no stage"):
        stages.handle_sync(b"")
    assert stages.current == "s0"


@pytest.mark.parametrize("bad", [None, 1, 0, b"s1", 1.0, ["s1"]])
def test_bad_return_values_are_type_errors(bad: object) -> None:
    stages = chain(bad, False)
    with pytest.raises(TypeError, match="returned .*True \\(advance\\), False \\(stay\\)"):
        stages.handle_sync(b"")
    assert stages.current == "s0"


def test_raising_handler_leaves_machine_in_place() -> None:
    stages = Stages()
    stages.add(lambda m: True, name="first")

    @stages.stage()
    def boom(message: bytes) -> bool:
        raise RuntimeError("kaput")

    stages.add(lambda m: False, name="last")
    stages.handle_sync(b"")
    with pytest.raises(RuntimeError, match="kaput"):
        stages.handle_sync(b"")
    assert stages.current == "boom"
    assert len(stages.history) == 2


async def test_async_and_sync_handlers_through_handle() -> None:
    stages = Stages()

    @stages.stage()
    async def wait_a_bit(message: bytes) -> bool:
        await asyncio.sleep(0)
        return message == b"go"

    stages.add(lambda m: True, name="sync_one")

    @stages.stage()
    async def jumper(message: bytes) -> str:
        return "wait_a_bit"

    assert await stages.handle(b"no") is False
    assert stages.current == "wait_a_bit"
    assert await stages.handle(b"go") is True
    assert await stages.handle(b"") is True
    assert stages.current == "jumper"
    assert await stages.handle(b"") is True
    assert stages.current == "wait_a_bit"


async def test_async_handler_errors_match_sync_ones() -> None:
    async def returns_none(message: bytes) -> None:
        return None

    stages = Stages()
    stages.add(returns_none)
    with pytest.raises(TypeError, match="'returns_none' returned None"):
        await stages.handle(b"")

    async def last(message: bytes) -> bool:
        return True

    only = Stages()
    only.add(last)
    with pytest.raises(OutOfStagesError):
        await only.handle(b"")


def test_handle_sync_refuses_async_handler_without_leaking_coroutine() -> None:
    stages = Stages()

    @stages.stage()
    async def later(message: bytes) -> bool:
        return True

    with pytest.raises(TypeError, match="'later' is async: use 'await stages.handle\\(\\)'"):
        stages.handle_sync(b"")
    assert stages.current == "later"


async def test_feed_returns_bool_for_sync_and_awaitable_for_async() -> None:
    stages = Stages()
    stages.add(lambda m: True, name="sync")

    @stages.stage()
    async def slow(message: bytes) -> bool:
        return message == b"ok"

    stages.add(lambda m: False, name="end")
    assert stages.feed(b"") is True
    pending = stages.feed(b"no")
    assert not isinstance(pending, bool)
    assert await pending is False
    assert stages.current == "slow"
    pending = stages.feed(b"ok")
    assert not isinstance(pending, bool)
    assert await pending is True
    assert stages.current == "end"
    assert stages.feed(b"") is False


def test_history_records_stages_with_monotonic_times() -> None:
    clock = FakeClock()
    stages = chain(True, True, False, clock=clock)
    clock.now = 101.5
    stages.handle_sync(b"")
    clock.now = 102.0
    stages.handle_sync(b"")
    assert stages.history == (
        Entered("s0", 0, 100.0, "start"),
        Entered("s1", 1, 101.5, "advance"),
        Entered("s2", 2, 102.0, "advance"),
    )
    assert stages.entered_at == 102.0
    stages.reset()
    assert stages.current == "s0"
    assert stages.history == (Entered("s0", 0, 102.0, "reset"),)


def test_history_is_bounded() -> None:
    stages = Stages(history_limit=3)
    stages.add(lambda m: "a", name="a")
    for _ in range(10):
        stages.handle_sync(b"")
    assert len(stages.history) == 3
    with pytest.raises(ValueError, match="history_limit"):
        Stages(history_limit=0)


def test_default_clock_is_monotonic() -> None:
    stages = chain(True, False)
    real = Stages()
    real.add(lambda m: True, name="a")
    real.add(lambda m: False, name="b")
    real.handle_sync(b"")
    first, second = real.history
    assert second.at >= first.at
    assert stages.entered_at == 100.0


def test_deadline_and_expired() -> None:
    clock = FakeClock()
    stages = Stages(clock=clock)
    stages.add(lambda m: True, name="quick", timeout=2)
    stages.add(lambda m: False, name="forever")
    assert stages.deadline == 102.0
    assert stages.expired(101.9) is False
    assert stages.expired(102.0) is True
    clock.now = 101.0
    assert stages.expired() is False
    clock.now = 150.0
    assert stages.expired() is True
    stages.handle_sync(b"")
    assert stages.deadline is None
    assert stages.expired() is False
    assert stages["quick"].timeout == 2.0


def test_jump_and_reset_from_outside() -> None:
    stages = chain(True, True, False)
    stages.jump("s2")
    assert stages.current == "s2"
    with pytest.raises(ValueError, match="no stage named 'x'"):
        stages.jump("x")
    Stages().reset()  # empty: nothing to do, no error


def test_add_validation() -> None:
    stages = Stages()
    stages.add(lambda m: False, name="a")
    with pytest.raises(ValueError, match="'a' already exists"):
        stages.add(lambda m: False, name="a")
    with pytest.raises(ValueError, match="give the stage a name"):
        stages.add(lambda m: False)
    with pytest.raises(ValueError, match="non-empty string"):
        stages.add(lambda m: False, name="")
    with pytest.raises(TypeError, match="must be callable"):
        stages.add("not a function", name="b")  # type: ignore[arg-type]
    for bad in (0, -1, True, float("nan")):
        with pytest.raises(ValueError, match="timeout must be a positive"):
            stages.add(lambda m: False, name="c", timeout=bad)
    assert stages.names == ("a",)


def test_names_default_to_function_names_and_decorator_returns_function() -> None:
    stages = Stages()

    def hello(message: bytes) -> bool:
        return True

    assert stages.add(hello) is hello

    @stages.stage(name="custom", timeout=1.5)
    def anything(message: bytes) -> bool:
        return False

    assert anything(b"") is False
    assert stages.names == ("hello", "custom")
    assert [s.name for s in stages] == ["hello", "custom"]
    assert "custom" in stages and "anything" not in stages
    assert len(stages) == 2
    assert stages.current_stage.handler is hello
    assert "'hello'" in repr(stages)


def test_empty_chain_errors_are_clear() -> None:
    stages = Stages()
    with pytest.raises(LookupError, match="no stages"):
        stages.handle_sync(b"")
    with pytest.raises(LookupError, match="no stages"):
        _ = stages.current
    with pytest.raises(LookupError, match="no stages"):
        _ = stages.current_stage
    assert stages.entered_at is None and stages.deadline is None
    assert "empty" in repr(stages)
    assert stages.diagram() == "stateDiagram-v2\n"


def test_diagram_is_mermaid_state_diagram() -> None:
    stages = Stages()
    stages.add(lambda m: True, name="hello")
    stages.add(lambda m: True, name='say "ready"', timeout=5)
    stages.add(lambda m: False, name="final")
    assert stages.diagram() == (
        "stateDiagram-v2\n"
        '    state "hello" as s0\n'
        "    state \"say 'ready' (timeout 5s)\" as s1\n"
        '    state "final" as s2\n'
        "    [*] --> s0\n"
        "    s0 --> s1\n"
        "    s1 --> s2\n"
        "    s2 --> s2 : stay\n"
    )


def test_stage_machine_imports_only_the_standard_library_and_no_io() -> None:
    # The package __init__ pulls in the I/O layers, so inspect the modules' own imports.
    import ast
    import pathlib

    import aiosocker.stages

    src = pathlib.Path(aiosocker.stages.__file__).parent
    for module in ("stages.py", "errors.py"):
        tree = ast.parse((src / module).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 0
        }
        assert imported <= set(sys.stdlib_module_names), (module, imported)
        assert not imported & {"asyncio", "socket", "selectors", "ssl"}, (module, imported)


class Later:
    """An awaitable that is not a coroutine (like a Future or a custom object)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __await__(self):  # type: ignore[no-untyped-def]
        yield from asyncio.sleep(0).__await__()
        return self.value


async def test_non_coroutine_awaitables_are_awaited_on_every_async_path() -> None:
    stages = Stages()
    stages.add(lambda m: Later(True), name="a")
    stages.add(lambda m: Later("a") if m == b"back" else Later(False), name="b")
    assert await stages.handle(b"") is True
    assert stages.current == "b"
    assert await stages.handle(b"stay") is False
    pending = stages.feed(b"back")
    assert not isinstance(pending, bool)
    assert await pending is True
    assert stages.current == "a"
    with pytest.raises(TypeError, match="'a' is async"):
        stages.handle_sync(b"")  # an awaitable without close() is refused all the same
