"""The fenced blocks and the prose of README.md and docs/*.md, as the docs tests read them."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE = "# example: not run by the tests"
CODE, SHOWN, PARAMS = {"bash", "sh", "shell", "python"}, {"console", "text", ""}, {"yaml"}


@dataclass(frozen=True)
class Block:
    doc: str  # relative to ROOT
    line: int  # of the opening fence, 1-based
    lang: str
    text: str

    @property
    def example(self) -> bool:
        return next((ln.strip() for ln in self.text.splitlines() if ln.strip()), "").startswith(EXAMPLE)

    def __str__(self) -> str:
        return f"{self.doc}:{self.line} ({self.lang or 'no language'})"


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@functools.cache
def parse(path: Path) -> tuple[tuple[Block, ...], str]:
    """The fenced blocks of a markdown file, and its text outside them."""
    blocks, prose, lines, i = [], [], path.read_text().splitlines(), 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        close = re.compile(rf"[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*")
        j = i + 1
        while j < len(lines) and not close.fullmatch(lines[j]):
            j += 1
        assert j < len(lines), f"{rel(path)}:{i + 1}: the fence is never closed"
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1:j]]
        lang = (m["info"].split() or [""])[0].lower()
        blocks.append(Block(rel(path), i + 1, lang, "\n".join(body) + "\n"))
        i = j + 1
    return tuple(blocks), "\n".join(prose)


def all_blocks() -> tuple[Block, ...]:
    return tuple(b for doc in DOCS for b in parse(doc)[0])


def prose(doc: Path) -> str:
    """The text outside fences, with line breaks folded into spaces."""
    return re.sub(r"\s+", " ", parse(doc)[1])
