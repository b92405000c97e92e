"""The Python package a user installs: the sdist and the wheel, built as a release would be.

``python -m build`` makes both (the wheel from the sdist, so the sdist is complete); the
tests read their metadata and file lists, then install the wheel into a fresh venv (with
only its own requirements) and run README's first example and the ``aiosocker`` command
there, away from this checkout.

Nothing here talks to a package index: ``make`` installs ``build`` and the build backend
(the dev extra) and fills a wheelhouse with the runtime requirements (``.venv/wheelhouse``);
the build runs with ``--no-isolation`` and the fresh venv installs with ``--no-index``.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import aiosocker

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "aiosocker" / "static"
# The runtime requirements' wheels, filled by `make` in the venv running the tests.
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"

pytestmark = pytest.mark.timeout(600)


def run(*args: str | Path, cwd: Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build``'s output folder: one sdist and one wheel."""
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    # The venv's own build and hatchling (the dev extra): no isolated env from the index.
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT, cwd=out)
    print(f"python -m build: {time.monotonic() - started:.1f} s")
    return out


def only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {folder}, got {found}"
    return found[0]


def metadata(text: str) -> email.message.Message:
    return email.parser.Parser().parsestr(text)


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def static_files() -> dict[str, bytes]:
    """Every file of the package's static/ folder (the browser client), by wheel path."""
    return {
        "aiosocker/static/" + path.relative_to(STATIC).as_posix(): path.read_bytes()
        for path in sorted(STATIC.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_wheel_metadata(dist: Path) -> None:
    wheel = only(dist, "aiosocker-*.whl")
    version = aiosocker.__version__
    assert wheel.name == f"aiosocker-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        info = f"aiosocker-{version}.dist-info"
        meta = metadata(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        license_text = archive.read(f"{info}/licenses/LICENSE").decode()
    assert meta["Name"] == "aiosocker"
    assert meta["Version"] == version
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert license_text == (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    assert meta["Requires-Python"] == ">=3.11"
    assert "websockets>=14" in meta.get_all("Requires-Dist", [])
    assert {"rtc", "fast", "asgi"} <= set(meta.get_all("Provides-Extra", []))
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "make demo" in meta.get_payload()  # the README is the long description
    assert re.search(r"^\[console_scripts\]\naiosocker = aiosocker\.cli:main$", entry_points, re.M)


def test_wheel_files(dist: Path) -> None:
    """The wheel holds the typing marker and the whole browser client, byte for byte."""
    wheel = only(dist, "aiosocker-*.whl")
    names = wheel_names(wheel)
    assert "aiosocker/py.typed" in names
    assert "aiosocker/__init__.py" in names
    static = static_files()
    assert "aiosocker/static/aiosocker.js" in static
    assert "aiosocker/static/aiosocker.d.ts" in static
    assert any(re.fullmatch(r"aiosocker/static/aiosocker/\w+\.js", name) for name in static)
    missing = sorted(set(static) - names)
    assert not missing, f"static files missing from the wheel: {missing}"
    with zipfile.ZipFile(wheel) as archive:
        for name, body in static.items():
            assert archive.read(name) == body, f"{name} differs from the source"
    assert not [n for n in names if n.startswith(("tests/", "bench/", "docs/", "examples/"))]


def test_sdist(dist: Path) -> None:
    """The sdist names the same package and version and holds what a rebuild needs."""
    sdist = only(dist, "aiosocker-*.tar.gz")
    version = aiosocker.__version__
    top = f"aiosocker-{version}"
    assert sdist.name == f"{top}.tar.gz"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
        pkg_info = archive.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        meta = metadata(pkg_info.read().decode())
    assert (meta["Name"], meta["Version"]) == ("aiosocker", version)
    for path in ("pyproject.toml", "README.md", "LICENSE", "src/aiosocker/py.typed"):
        assert f"{top}/{path}" in names, f"{path} missing from the sdist"
    for name in static_files():
        assert f"{top}/src/{name}" in names, f"{name} missing from the sdist"


def test_wheel_installs_and_runs_the_readme_example(
    dist: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A fresh venv with the wheel and its requirements only runs README's first example
    and the ``aiosocker`` command, importing the installed package, not this checkout."""
    wheel = only(dist, "aiosocker-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        meta = metadata(
            archive.read(f"aiosocker-{aiosocker.__version__}.dist-info/METADATA").decode()
        )
    requirements = [r for r in meta.get_all("Requires-Dist", []) if "extra ==" not in r]
    assert requirements == ["websockets>=14"]

    home = tmp_path_factory.mktemp("user")
    venv = home / "venv"
    python = venv / "bin" / "python"
    started = time.monotonic()
    run(sys.executable, "-m", "venv", venv, cwd=home)
    assert any(WHEELHOUSE.glob("*.whl")), f"no wheels in {WHEELHOUSE}: `make` fills it"
    offline = ("--quiet", "--no-index", "--find-links", WHEELHOUSE)
    run(python, "-m", "pip", "install", *offline, "--no-deps", wheel, cwd=home)
    run(python, "-m", "pip", "install", *offline, *requirements, cwd=home)
    print(f"venv and install: {time.monotonic() - started:.1f} s")

    where = run(
        python, "-c", "import aiosocker; print(aiosocker.__file__, aiosocker.__version__)", cwd=home
    )
    path, version = where.split()
    assert Path(path).is_relative_to(venv), f"imported {path}, not the installed wheel"
    assert version == aiosocker.__version__

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    example = next(block for block in blocks if block.startswith("from aiosocker import Stages"))
    (home / "example.py").write_text(example)
    out = run(python, "example.py", cwd=home, timeout=60)
    assert out.startswith("stateDiagram-v2\n")

    # The browser client is served from the installed package's files.
    routes = run(
        python,
        "-c",
        "from aiosocker.routes import default_routes; print(*sorted(default_routes()))",
        cwd=home,
    ).split()
    assert "/aiosocker.js" in routes and "/aiosocker.d.ts" in routes
    modules = {f"/aiosocker/{p.name}" for p in (STATIC / "aiosocker").glob("*.js")}
    assert modules <= set(routes)

    assert "demo" in run(venv / "bin" / "aiosocker", "--help", cwd=home)
