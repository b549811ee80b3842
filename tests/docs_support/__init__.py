"""Find the fenced code blocks of the docs and the `doctest` directives written above them.

See the top of tests/test_docs.py (and docs/contributing.md) for the directives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Pages rendered from the code or included from elsewhere: they hold no hand-written blocks.
GENERATED = {"docs/stack.md", "docs/changelog.md"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^\n]*$")
_DIRECTIVE = re.compile(r"^<!--\s*doctest:\s*(?P<text>.*?)\s*(?P<end>-->)?\s*$")

# Directive names and whether they take a body (lines after the first, up to "-->").
KNOWN = {
    "skip",
    "covered-by",
    "stack",
    "combine",
    "load-only",
    "continue",
    "expect-exit",
    "env",
    "setup",
    "file",
    "save",
}


@dataclass(frozen=True)
class Directive:
    """One ``<!-- doctest: NAME ARG -->`` comment, with the lines after its first as ``body``."""

    name: str
    arg: str
    body: str
    line: int


@dataclass
class Block:
    """A fenced code block: where it is, its language, its text and its directives."""

    page: str  # path relative to the repository root, with "/"
    line: int  # 1-based line of the opening fence
    lang: str
    body: str
    directives: list[Directive] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    def get(self, name: str) -> Directive | None:
        for directive in self.directives:
            if directive.name == name:
                return directive
        return None

    def all(self, name: str) -> list[Directive]:
        return [d for d in self.directives if d.name == name]


def pages(root: Path = ROOT) -> list[Path]:
    """README.md, every docs/**/*.md but the generated ones, and examples/*/README.md."""
    found = [root / "README.md"]
    found += sorted(
        p for p in (root / "docs").rglob("*.md") if p.relative_to(root).as_posix() not in GENERATED
    )
    found += sorted((root / "examples").glob("*/README.md"))
    return [p for p in found if p.is_file()]


def _directives_above(lines: list[str], fence_index: int, page: str) -> list[Directive]:
    """The directive comments on the lines just above ``lines[fence_index]`` (no gap)."""
    found: list[Directive] = []
    i = fence_index - 1
    while i >= 0:
        text = lines[i].strip()
        if not text.endswith("-->"):
            break
        # Walk up to the line that opens this comment.
        start = i
        while start >= 0 and "<!--" not in lines[start]:
            start -= 1
        if start < 0:
            break
        head = _DIRECTIVE.match(lines[start].strip())
        if head is None:
            break
        first = head["text"]
        body_lines = list(lines[start + 1 : i + 1])
        if start != i:
            body_lines[-1] = body_lines[-1].rsplit("-->", 1)[0]
        indent = len(lines[start]) - len(lines[start].lstrip())
        body = "\n".join(ln[indent:] if ln[:indent].isspace() else ln for ln in body_lines)
        name, _, arg = first.partition(" ")
        if name not in KNOWN:
            msg = f"{page}:{start + 1}: unknown doctest directive {name!r} (known: {sorted(KNOWN)})"
            raise ValueError(msg)
        found.insert(0, Directive(name, arg.strip(), body.strip("\n"), start + 1))
        i = start - 1
    return found


def parse(path: Path, root: Path = ROOT) -> list[Block]:
    """Every fenced code block of one page."""
    page = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        end = i + 1
        while end < len(lines):
            stripped = lines[end].strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                break
            end += 1
        if end == len(lines):
            msg = f"{page}:{i + 1}: unclosed code fence"
            raise ValueError(msg)
        body = "\n".join(
            ln[len(indent) :] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1 : end]
        )
        blocks.append(
            Block(
                page=page,
                line=i + 1,
                lang=(match["lang"] or "text").lower(),
                body=body + "\n",
                directives=_directives_above(lines, i, page),
            )
        )
        i = end + 1
    return blocks


def collect(root: Path = ROOT) -> list[Block]:
    """Every block of every page, in page order."""
    return [block for page in pages(root) for block in parse(page, root)]
