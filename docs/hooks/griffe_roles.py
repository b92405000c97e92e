"""A Griffe extension for the docs site: the docstrings' reST bits, rendered as Markdown.

The docstrings are written for ``help()`` and doctest, in reST: ``:class:`~aiosocker.Hub```
roles and ``>>>`` examples. Before mkdocstrings renders them, this extension turns

* each role into a cross-reference when its target is found in the package (relative to
  the object, its class, its module, then the package), marked optional so that a target
  not shown on the API page stays plain code instead of failing ``mkdocs build --strict``;
  targets outside the package (``ValueError``) become plain code;
* each run of ``>>>`` lines (with their ``...`` continuations and output) into a ``pycon``
  code block.

The source files are not changed. Loaded by ``mkdocs.yml`` (``extensions:``).
"""

from __future__ import annotations

import html
import re
from functools import partial
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj):`([^`]+)`")
EXPLICIT = re.compile(r"^(.*?)\s*<([^>]+)>$")


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                text = _doctests(obj.docstring.value)
                obj.docstring.value = ROLE.sub(partial(_role, obj=obj), text)


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if isinstance(member, griffe.Object):  # not an Alias: each object once, where defined
            found.extend(_walk(member))
    return found


def _role(match: re.Match[str], obj: griffe.Object) -> str:
    target = match.group(1)
    title = None
    explicit = EXPLICIT.match(target)
    if explicit:
        title, target = explicit.group(1), explicit.group(2)
    short = target.startswith("~")
    target = target.lstrip("~")
    if title is None:
        title = target.rsplit(".", 1)[-1] if short else target
    path = _resolve(target, obj)
    code = f"<code>{html.escape(title)}</code>"
    if path is None:
        return f"`{title}`"
    return f'<autoref identifier="{path}" optional>{code}</autoref>'


def _resolve(target: str, obj: griffe.Object) -> str | None:
    """The full path of ``target`` as seen from ``obj``, or ``None`` outside the package."""
    package = obj.package
    if target.startswith("."):
        base = obj if obj.is_module else obj.module
        if base.is_init_module:  # ".x" in a package's __init__ is a sibling module
            return _lookup(package, f"{base.path}{target}")
        return _lookup(package, f"{base.parent.path if base.parent else ''}{target}")
    scope: griffe.Object | None = obj
    while scope is not None:
        found = _lookup(package, f"{scope.path}.{target}")
        if found:
            return found
        scope = scope.parent
    return _lookup(package, target)


def _lookup(package: griffe.Module, path: str) -> str | None:
    head, _, rest = path.partition(".")
    if head != package.name:
        return None
    try:
        found = package[rest] if rest else package
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return str(found.path)


def _doctests(text: str) -> str:
    """Fence every run of doctest lines (``>>>``, ``...``, their output)."""
    out: list[str] = []
    in_fence = in_doctest = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and not in_doctest and stripped.startswith(">>>"):
            in_doctest = True
            out.append("```pycon")
        elif in_doctest and not stripped:
            in_doctest = False
            out.append("```")
        out.append(line)
    if in_doctest:
        out.append("```")
    return "\n".join(out)
