"""The browser client's files: the entry ``/aiosocker.js`` and its modules, as served.

The entry imports its modules relatively (``./aiosocker/<name>.js``) and they import each
other relatively, so a page needs no build step and the same files work under any mount
point. These tests check that every module is served, that every import resolves to a
served module, and that the imports form no cycle.
"""

from __future__ import annotations

import re
from importlib.resources import files
from urllib.parse import urljoin

import pytest

from aiosocker.routes import CLIENT_JS_PATH, default_routes

MODULES = files("aiosocker").joinpath("static", "aiosocker")
MODULE_NAMES = sorted(m.name for m in MODULES.iterdir() if m.name.endswith(".js"))
JS = "text/javascript; charset=utf-8"

# A static import or re-export: `import {a, b} from "./x.js"`, `import * as x from "..."`,
# `export {a} from "..."`, `export * from "..."`, `import "..."`, at the start of a line
# (so an example in a comment does not count). Only names, `*`, `as`, braces and commas
# may stand between the keyword and the specifier.
IMPORT = re.compile(r'^(?:import|export)\s+(?:[\w$*\s{},]+?\s+from\s+)?"([^"]+)"', re.MULTILINE)
DYNAMIC_IMPORT = re.compile(r"\bimport\s*\(")


def served_js() -> dict[str, bytes]:
    """Every JavaScript route of a server: path -> body."""
    return {
        path: route.render()[1]
        for path, route in default_routes().items()
        if route.content_type.startswith("text/javascript")
    }


def imports_of(source: bytes) -> list[str]:
    return IMPORT.findall(source.decode())


def import_graph() -> dict[str, list[str]]:
    """Served path -> the served paths it imports (resolved as a browser would)."""
    return {
        path: [urljoin(path, spec) for spec in imports_of(body)]
        for path, body in served_js().items()
    }


def test_the_package_has_the_modules() -> None:
    # The split mirrors the Python modules; a missing file would be a packaging mistake.
    assert {
        "errors.js",
        "bytes.js",
        "envelope.js",
        "batch.js",
        "stages.js",
        "connection.js",
        "reconnect.js",
        "rtc.js",
    } <= set(MODULE_NAMES)


def test_every_module_is_served() -> None:
    routes = default_routes()
    assert routes[CLIENT_JS_PATH].content_type == JS
    assert routes["/aiosocker.d.ts"].content_type.startswith("application/typescript")
    for name in MODULE_NAMES:
        route = routes[f"/aiosocker/{name}"]
        assert route.content_type == JS
        assert route.render()[1] == MODULES.joinpath(name).read_bytes()
    # And nothing else under /aiosocker/.
    served = {path for path in routes if path.startswith("/aiosocker/")}
    assert served == {f"/aiosocker/{name}" for name in MODULE_NAMES}


def test_the_entry_imports_every_public_module() -> None:
    entry = imports_of(served_js()[CLIENT_JS_PATH])
    assert entry, "the entry imports nothing"
    for spec in entry:
        # Relative to the entry, so a page under an ASGI mount (/ws/aiosocker.js) gets
        # /ws/aiosocker/<name>.js.
        assert spec.startswith("./aiosocker/"), spec
    assert urljoin("/ws/aiosocker.js", entry[0]).startswith("/ws/aiosocker/")
    assert {urljoin(CLIENT_JS_PATH, spec) for spec in entry} >= {
        f"/aiosocker/{name}.js"
        for name in ("errors", "envelope", "batch", "connection", "reconnect", "rtc")
    }


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_every_import_resolves_to_a_served_module(name: str) -> None:
    routes = default_routes()
    path = f"/aiosocker/{name}"
    source = routes[path].render()[1]
    assert not DYNAMIC_IMPORT.search(source.decode()), f"{name} has a dynamic import"
    for spec in imports_of(source):
        # Relative only: an absolute path would break under a mount point.
        assert spec.startswith("./"), f"{name} imports {spec!r}: use a relative ./ import"
        target = urljoin(path, spec)
        assert target in routes, f"{name} imports {spec!r}, which resolves to unserved {target}"
        assert routes[target].content_type == JS


def test_the_imports_form_no_cycle() -> None:
    graph = import_graph()
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycle = [*trail[trail.index(node) :], node]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        if node in done:
            return
        for target in graph.get(node, []):
            visit(target, [*trail, node])
        done.add(node)

    for node in graph:
        visit(node, [])
    # Nothing imports the entry back.
    assert not any(CLIENT_JS_PATH in targets for targets in graph.values())


def test_the_import_regex_sees_every_form() -> None:
    source = b"""// import { nope } from "./comment.js";
import { a, b as c } from "./a.js";
import {
  d,
  e,
} from "./d.js";
import * as f from "./f.js";
export { g } from "./g.js";
export * from "./h.js";
import "./i.js";
export class Connection { from() { return "./no.js"; } }
"""
    assert imports_of(source) == ["./a.js", "./d.js", "./f.js", "./g.js", "./h.js", "./i.js"]
