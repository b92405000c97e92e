"""Import layering: ``bench/`` has no import cycle, and its layers import one way.

The helpers read a package's modules as source (nothing is imported or run), so they work
on any folder of modules, e.g. ``find_cycle(import_graph(SRC / "aiosocker", "aiosocker"))``.
Every ``import``/``from ... import`` counts, wherever it is (inside functions, under
``if TYPE_CHECKING:``), unless ``type_checking=False`` leaves the latter out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Set
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


# -- the helpers -----------------------------------------------------------------------


def module_name(path: Path, root: Path, package: str) -> str:
    """``root/a/b.py`` -> ``package.a.b``; ``root/a/__init__.py`` -> ``package.a``."""
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST, type_checking: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, at any depth."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif not type_checking and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def resolve_from(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute module ``from <level dots><target> import ...`` names inside ``module``."""
    if not level:
        return target or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 >= len(parts):
        raise ValueError(f"{module}: relative import beyond the top-level package")
    parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, target] if target else parts)


def _known(name: str, modules: Set[str]) -> str | None:
    """``name`` or its longest prefix that is one of ``modules`` (``None``: outside)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph(root: Path, package: str, *, type_checking: bool = True) -> dict[str, set[str]]:
    """Who imports whom among the modules under ``root`` (the folder of ``package``).

    Keys are every module (``package``, ``package.sub``, ``package.__main__``...); values
    the modules of the same tree each one imports. ``from .m import x`` counts as an import
    of ``.m.x`` when that is a module, else of ``.m``; imports of anything outside the tree
    are left out, as is a module importing itself. A module does not implicitly depend on
    its parent packages' ``__init__`` here, only on what it names.
    """
    files = {
        module_name(path, root, package): path
        for path in sorted(root.rglob("*.py"))
        if not any(part.startswith(".") for part in path.relative_to(root).parts)
    }
    modules = set(files)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _import_nodes(tree, type_checking):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = resolve_from(name, is_package, node.level, node.module)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                found = _known(target, modules)
                if found is not None and found != name:
                    graph[name].add(found)
    return graph


def find_cycle(graph: Mapping[str, Set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or ``None`` (deterministic: sorted walk)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        on_path = {start}
        todo = [iter(sorted(graph[start]))]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                todo.pop()
                node = path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt in done or nxt not in graph:
                continue
            path.append(nxt)
            on_path.add(nxt)
            todo.append(iter(sorted(graph[nxt])))
    return None


def layer_violations(
    graph: Mapping[str, Set[str]], layer_of: Mapping[str, str], order: Mapping[str, int]
) -> list[str]:
    """Edges ``a -> b`` where ``b``'s layer is neither ``a``'s own nor below it."""
    bad = []
    for source in sorted(graph):
        for target in sorted(graph[source]):
            a, b = layer_of[source], layer_of[target]
            if a != b and order[b] >= order[a]:
                bad.append(f"{source} ({a}) -> {target} ({b})")
    return bad


# -- bench/ ----------------------------------------------------------------------------

BENCH_ORDER = {"shared": 0, "servers": 1, "clients": 1, "figures": 2, "main": 3}
"""runner/procs/rtc_common <- servers, clients <- figures <- ``python -m bench``."""


def bench_layer(module: str) -> str:
    parts = module.split(".")
    if module == "bench.__main__":
        return "main"
    if len(parts) > 1 and parts[1] in ("servers", "clients", "figures"):
        return parts[1]
    return "shared"


def test_bench_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(BENCH, "bench"))
    if cycle is not None:
        print("import cycle:", " -> ".join(cycle))
    assert cycle is None, "import cycle in bench/: " + " -> ".join(cycle or [])


def test_bench_layers_import_one_way() -> None:
    graph = import_graph(BENCH, "bench")
    assert {"bench.servers.__main__", "bench.clients.ws", "bench.figures.rtc"} <= set(graph)
    bad = layer_violations(graph, {m: bench_layer(m) for m in graph}, BENCH_ORDER)
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


# -- the helpers themselves ------------------------------------------------------------


def _package(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_import_graph_resolves_every_form(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "from .a import thing\n",
            "a.py": "import os\nimport pkg.sub.c\nfrom . import b\n",
            "b.py": "def f():\n    from .sub import c\n",
            "sub/__init__.py": "",
            "sub/c.py": "from ..a import x\nfrom .. import b as bb, helper\n",
            "sub/d.py": "from pkg.sub import *\nimport pkg.sub.nothing\n",
        },
    )
    assert import_graph(root, "pkg") == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.sub.c", "pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.a", "pkg.b", "pkg"},
        "pkg.sub.d": {"pkg.sub"},
    }


def test_find_cycle_sees_the_old_bench_cycle(tmp_path: Path) -> None:
    """The shape ``bench/`` had: ``rtc`` names ``server`` for typing only, ``server``
    imports ``rtc`` inside a function."""
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "runner.py": "",
            "rtc.py": (
                "from typing import TYPE_CHECKING\nfrom .runner import x\n"
                "if TYPE_CHECKING:\n    from .server import Life\n"
            ),
            "server.py": "from .runner import x\ndef kind():\n    from .rtc import serve\n",
        },
    )
    graph = import_graph(root, "pkg")
    assert find_cycle(graph) == ["pkg.rtc", "pkg.server", "pkg.rtc"]
    assert find_cycle(import_graph(root, "pkg", type_checking=False)) is None


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({}, None),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ],
)
def test_find_cycle(graph: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert find_cycle(graph) == cycle


# -- src/aiosocker ---------------------------------------------------------------------

SRC = REPO / "src" / "aiosocker"

SANS_IO = (
    "aiosocker.stages",
    "aiosocker.errors",
    "aiosocker.options",
    "aiosocker.routes",
    "aiosocker.handshake",
    "aiosocker.limits",
    "aiosocker.rooms",
    "aiosocker.resume",
    "aiosocker.meter",
    "aiosocker.rtc.envelope",
    "aiosocker.rtc.batch",
    "aiosocker.transports.picows.framing",
)
"""The pure core: testable with plain function calls, no event loop, no socket."""

SRC_ORDER = {"core": 0, "connection": 1, "hub": 2, "rtc": 2, "transports": 3, "entry": 4}
"""core <- connection <- hub <- transports <- server/client (rtc sits on connection)."""

SOCKET_LIBRARIES = {"websockets", "picows", "aiortc", "aioice", "socket", "ssl", "uvicorn"}


def src_layer(module: str) -> str:
    if module in SANS_IO:
        return "core"
    if module in ("aiosocker.connection", "aiosocker.background"):
        return "connection"
    if module in ("aiosocker.hub", "aiosocker.metrics", "aiosocker.status"):
        return "hub"
    for layer, prefix in (
        ("rtc", "aiosocker.rtc"),
        ("transports", "aiosocker.transports"),
        ("transports", "aiosocker.backends"),  # adapters to other processes, same layer
    ):
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return "entry"  # server, client, cli, demo, the package's __init__


def external_imports(path: Path) -> set[str]:
    """Top-level names of what a module imports from outside its package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in _import_nodes(tree, type_checking=True):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def module_path(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    package = SRC / relative / "__init__.py"
    return package if package.exists() else (SRC / relative).with_suffix(".py")


def test_src_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(SRC, "aiosocker"))
    assert cycle is None, "import cycle in src/: " + " -> ".join(cycle or [])


def test_src_layers_import_one_way() -> None:
    graph = import_graph(SRC, "aiosocker")
    assert {"aiosocker.hub", "aiosocker.handshake", "aiosocker.transports.asgi"} <= set(graph)
    bad = layer_violations(graph, {m: src_layer(m) for m in graph}, SRC_ORDER)
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_no_transport_imports_the_server() -> None:
    graph = import_graph(SRC, "aiosocker")
    transports = [m for m in graph if src_layer(m) == "transports"]
    assert len(transports) >= 8
    for module in transports:
        assert not graph[module] & {"aiosocker.server", "aiosocker.client", "aiosocker"}, module


@pytest.mark.parametrize("module", ["aiosocker.hub", *SANS_IO])
def test_hub_and_the_core_import_no_socket_library(module: str) -> None:
    imported = external_imports(module_path(module))
    assert not imported & SOCKET_LIBRARIES, f"{module} imports {imported & SOCKET_LIBRARIES}"


@pytest.mark.parametrize("module", SANS_IO)
def test_the_core_runs_without_an_event_loop(module: str) -> None:
    assert "asyncio" not in external_imports(module_path(module)), module


def test_the_layer_check_sees_a_transport_importing_the_server(tmp_path: Path) -> None:
    graph = {"aiosocker.transports.x": {"aiosocker.server"}, "aiosocker.server": set()}
    bad = layer_violations(graph, {m: src_layer(m) for m in graph}, SRC_ORDER)
    assert bad == ["aiosocker.transports.x (transports) -> aiosocker.server (entry)"]
