"""The browser client as an npm package (``js/``), the way an app with a bundler gets it.

``npm pack`` makes the tarball (its ``prepack`` script copies the very files the server
serves from ``src/aiosocker/static/``); a throwaway project in a temp dir installs it
with ``esbuild`` (a devDependency), and esbuild bundles a page that imports
``{ connect, rtc } from "aiosocker"`` into one file. A live aiosocker server serves that
page and the bundle, and headless Chromium walks the whole rtc flow with it: connect, a
scene stage that sends READY through rtc's client stages, the DataChannel opens, one
message goes there and back on it.

Nothing here talks to the npm registry: ``make`` installs esbuild into ``.venv/npm``, and
the test project installs it ``--offline`` from a temp-dir copy of that prefix's npm cache.
Nothing is written outside temp dirs and ``js/``'s gitignored copies. npm and node are
installed by ``make test`` (``make system``); a missing one fails here, it is never skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

import aiosocker
from aiosocker import Route
from aiosocker.rtc import server_stages

from .conftest import PAGE_PATH, TIMINGS
from .test_browser_modules import PUBLIC

# npm pack and install: more room than the suite's 120 s per test.
pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "js"
STATIC = ROOT / "src" / "aiosocker" / "static"
# The bundler of the test project: `make` installs it here (ESBUILD in the Makefile), which
# fills this prefix's npm cache; the test installs the same version offline from a copy.
NPM_PREFIX = Path(sys.prefix) / "npm"

# The app's page, as its author writes it: the bare specifier "aiosocker" resolves to the
# installed package, and esbuild inlines it.
PAGE_JS = """\
import { connect, rtc } from "aiosocker";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

window.startFlow = async () => {
  const r = (window.results = { scene: null, opened: 0, echo: null, closed: null, errors: [] });
  try {
    const conn = (window.conn = await connect("/"));
    let session;
    conn.stage("scene", async (message) => {        // the server's scene, after our hello
      r.scene = decoder.decode(message);
      await session.ready();                          // READY: the server offers
      return true;
    });
    session = rtc.clientStages(conn, { iceServers: [], timeout: 5000 });  // rtc_offer, rtc_open
    conn.stage("control", () => false);               // the final stage stays
    session.onOpen(() => {
      r.opened += 1;
      session.send(encoder.encode("ping"));           // on the "game" DataChannel
    });
    session.onMessage("game", (bytes) => { r.echo = decoder.decode(bytes); });
    conn.onClose((code, reason) => { r.closed = { code, reason }; });
    conn.onError((err) => r.errors.push(`${err.name}: ${err.message}`));
    conn.send(encoder.encode("hello"));
  } catch (err) {
    r.errors.push(`${err.name}: ${err.message}`);
  }
};
window.pageReady = true;
"""

PAGE_HTML = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><link rel="icon" href="data:,"><title>npm bundle</title></head>
<body><script type="module" src="/bundle.js"></script></body>
</html>
"""


def npm(*args: str, cwd: Path, cache: Path) -> str:
    """Run npm with its cache in ``cache`` (a temp dir), failing with its output."""
    env = {
        **os.environ,
        "npm_config_cache": str(cache),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    done = subprocess.run(
        ["npm", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"npm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def client_files() -> dict[str, bytes]:
    """What the server serves, by path in the npm package."""
    files = {"aiosocker.js": STATIC / "aiosocker.js", "aiosocker.d.ts": STATIC / "aiosocker.d.ts"}
    for module in sorted((STATIC / "aiosocker").glob("*.js")):
        files[f"aiosocker/{module.name}"] = module
    return {name: path.read_bytes() for name, path in files.items()}


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``npm pack`` of ``js/``, in a temp dir."""
    assert shutil.which("npm") and shutil.which("node"), "no npm/node: `make system` installs them"
    out = tmp_path_factory.mktemp("pack")
    started = time.monotonic()
    npm("pack", "--pack-destination", str(out), cwd=PACKAGE, cache=out / ".npm-cache")
    TIMINGS.append(("npm pack", (time.monotonic() - started) * 1000, "prepack copies included"))
    (found,) = out.glob("aiosocker-*.tgz")
    return found


def test_tarball_ships_the_served_files(tarball: Path) -> None:
    with tarfile.open(tarball) as archive:
        names = {name.removeprefix("package/") for name in archive.getnames()}

        def read(name: str) -> bytes:
            member = archive.extractfile(f"package/{name}")
            assert member is not None, name
            return member.read()

        manifest = json.loads(read("package.json"))
        shipped = {name: read(name) for name in client_files()}
        license_text = read("LICENSE")
    assert shipped == client_files(), "the package's files differ from what the server serves"
    assert names == {*client_files(), "package.json", "README.md", "LICENSE"}, names
    assert manifest["name"] == "aiosocker"
    assert manifest["version"] == aiosocker.__version__
    assert manifest["type"] == "module"
    assert manifest["exports"]["."] == {"types": "./aiosocker.d.ts", "default": "./aiosocker.js"}
    assert manifest["types"] == "./aiosocker.d.ts"
    assert manifest["license"] == "MIT"
    assert license_text == (ROOT / "LICENSE").read_bytes()
    assert not manifest.get("dependencies"), "the browser client has no runtime dependencies"


@pytest.fixture(scope="module")
def bundle(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The page bundled by esbuild in a project that installed the tarball from npm."""
    installed_esbuild = NPM_PREFIX / "node_modules" / "esbuild" / "package.json"
    assert installed_esbuild.is_file(), f"no esbuild in {NPM_PREFIX}: `make` installs it"
    esbuild = json.loads(installed_esbuild.read_text())["version"]
    project = tmp_path_factory.mktemp("app")
    manifest = {
        "name": "aiosocker-npm-test-app",
        "private": True,
        "type": "module",
        "dependencies": {"aiosocker": f"file:{tarball}"},
        "devDependencies": {"esbuild": esbuild},
    }
    (project / "package.json").write_text(json.dumps(manifest, indent=2))
    (project / "page.js").write_text(PAGE_JS)
    cache = project / ".npm-cache"
    shutil.copytree(NPM_PREFIX / "cache", cache)  # esbuild's packuments and tarballs
    started = time.monotonic()
    npm("install", "--offline", "--no-audit", "--no-fund", cwd=project, cache=cache)
    installed = time.monotonic()
    run(
        project / "node_modules" / ".bin" / "esbuild",
        "page.js",
        "--bundle",
        "--format=esm",
        "--platform=browser",
        "--log-level=warning",
        "--outfile=dist/page.js",
        cwd=project,
    )
    done = time.monotonic()
    TIMINGS.append(("npm install (tarball + esbuild)", (installed - started) * 1000, "offline"))
    TIMINGS.append(("esbuild bundle", (done - installed) * 1000, "one file"))

    # Node resolves the package through its exports and loads it without a browser.
    names = run(
        "node",
        "--input-type=module",
        "-e",
        "const m = await import('aiosocker'); console.log(JSON.stringify(Object.keys(m).sort()))",
        cwd=project,
    )
    assert json.loads(names) == PUBLIC
    assert (project / "node_modules" / "aiosocker" / "aiosocker.d.ts").is_file()
    return (project / "dist" / "page.js").read_bytes()


def test_bundle_is_one_file(bundle: bytes) -> None:
    """esbuild inlined the package: nothing is left to import at run time."""
    assert b"// node_modules/aiosocker/aiosocker/rtc.js" in bundle  # esbuild marks each file
    assert b"var Connection = class" in bundle and b"clientStages" in bundle
    assert not re.search(rb"^\s*(import|export)\b", bundle, re.MULTILINE)
    assert b'from "aiosocker"' not in bundle


@pytest.mark.asyncio(loop_scope="module")
async def test_bundled_page_walks_the_rtc_flow(
    bundle: bytes, launch: Any, start_server: Any, open_page: Any
) -> None:
    conns: list[aiosocker.Connection] = []
    got: list[bytes] = []

    async def setup(conn: aiosocker.Connection) -> None:
        conns.append(conn)

        @conn.stage(timeout=5)
        async def hello(message: bytes) -> bool:
            assert message == b"hello", message
            await conn.send(b"the scene")
            return True

        session = server_stages(conn, timeout=5)  # rtc_ready, rtc_answer, rtc_open

        @session.on_message("game")
        def game(message: bytes) -> None:
            got.append(message)
            session.send(b"echo " + message)

        @conn.stage()
        def control(message: bytes) -> bool:
            return False

    routes = {
        PAGE_PATH: Route.html(PAGE_HTML),
        "/bundle.js": Route("text/javascript; charset=utf-8", bundle),
    }
    server = await start_server(setup, routes=routes)
    tab = await open_page(await launch("mdns"), server)

    started = await tab.eval("performance.now()")
    await tab.eval("() => { window.startFlow(); }")
    await tab.wait_for(
        "window.results.echo !== null && window.conn.current === 'control'",
        within_ms=10000,
        what="the channel to open and the echo to come back",
    )
    elapsed = await tab.eval("performance.now()") - started
    TIMINGS.append(("npm bundle: connect -> echo on the DataChannel", elapsed, "mdns"))

    results = await tab.eval("window.results")
    assert results["errors"] == [] and results["closed"] is None, results
    assert results["scene"] == "the scene"
    assert results["opened"] == 1
    assert results["echo"] == "echo ping"
    assert got == [b"ping"]
    history = await tab.eval("window.conn.history.map((entry) => entry.stage)")
    assert history == ["scene", "rtc_offer", "rtc_open", "control"]
    (conn,) = conns
    assert [e.stage for e in conn.stages.history] == [
        "hello",
        "rtc_ready",
        "rtc_answer",
        "rtc_open",
        "control",
    ]
    # The page ran the bundle only: it never fetched the server's own /aiosocker.js.
    scripts = await tab.eval(
        "performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname)"
    )
    assert [s for s in scripts if s.endswith(".js")] == ["/bundle.js"], scripts
