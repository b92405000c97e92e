"""A MkDocs hook: pages take text from README.md instead of keeping a copy that drifts.

A line of its own in a page, one of

    <!-- README: Connections -->              the section under that heading, its
                                              subheadings raised to sit under the page title
    <!-- README block: async def client -->   the fenced code block whose first line starts so

is replaced by that part of README.md. Links are rewritten for the site: ``docs/x.md``
becomes ``x.md``; a link into the checkout (``examples/...``) becomes its text. A
directive that finds nothing fails the build. Loaded by ``mkdocs.yml`` (``hooks:``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

README = Path(__file__).resolve().parents[2] / "README.md"

DIRECTIVE = re.compile(r"^<!-- README(?P<block> block)?: (?P<what>.+?) -->$", re.MULTILINE)
HEADING = re.compile(r"^(#{1,6}) (.+)$")
FENCE = re.compile(r"^```[\w-]*\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"(?P<image>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    readme = README.read_text()

    def replace(match: re.Match[str]) -> str:
        what = match["what"]
        found = _block(readme, what) if match["block"] else _section(readme, what)
        if found is None:
            kind = "code block starting with" if match["block"] else "section"
            raise PluginError(f"{page.file.src_path}: README.md has no {kind} {what!r}")
        return _links(found)

    return DIRECTIVE.sub(replace, markdown)


def _section(readme: str, title: str) -> str | None:
    """The body of the section headed ``title``, without its heading; fenced code is
    skipped when looking for headings (``# comment`` lines)."""
    lines = readme.splitlines()
    level = None
    body: list[str] = []
    in_fence = False
    for line in lines:
        if line.startswith("```"):
            in_fence = not in_fence
        heading = None if in_fence else HEADING.match(line)
        if level is None:
            if heading and heading.group(2).strip() == title:
                level = len(heading.group(1))
            continue
        if heading and len(heading.group(1)) <= level:
            break
        if heading:  # a subsection: one level below the page's title
            line = "#" * (len(heading.group(1)) - level + 1) + " " + heading.group(2)
        body.append(line)
    return "\n".join(body).strip() + "\n" if level is not None else None


def _block(readme: str, start: str) -> str | None:
    for fence in FENCE.finditer(readme):
        if fence["body"].startswith(start):
            return fence.group(0)
    return None


def _links(text: str) -> str:
    def rewrite(link: re.Match[str]) -> str:
        target = link["target"]
        if re.match(r"^([a-z]+:|#)", target):
            return link.group(0)
        if target.startswith("docs/"):
            return f"{link['image']}[{link['text']}]({target.removeprefix('docs/')})"
        text = link["text"]  # a file of the checkout, not part of the site: its name
        return text if "`" in text or " " in text else f"`{text}`"

    out: list[str] = []
    for part in re.split(r"(^```.*?^```$)", text, flags=re.MULTILINE | re.DOTALL):
        out.append(part if part.startswith("```") else LINK.sub(rewrite, part))
    return "".join(out)
