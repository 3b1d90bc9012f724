"""The project's documentation as the tests read it: README.md, docs/*.md and
the READMEs next to shipped files (config/monitoring/README.md).

Tests find a table by its heading or by its header row in whichever page holds
it, never in a fixed file, so a section moved to another page, or a table added
to any page, is still checked."""
from __future__ import annotations

import os
import re
from glob import glob

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
README = os.path.join(REPO, "README.md")
DOCS = os.path.join(REPO, "docs")


def doc_files() -> list[str]:
    """Every documentation page, README.md first."""
    pages = sorted(glob(os.path.join(DOCS, "**", "*.md"), recursive=True))
    others = [os.path.join(REPO, "config", "monitoring", "README.md")]
    return [README] + pages + [p for p in others if os.path.exists(p)]


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def rel(path: str) -> str:
    return os.path.relpath(path, REPO)


def without_code(text: str) -> str:
    """The text with fenced code blocks blanked (line numbers kept)."""
    out, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def table_rows(block: str) -> list[list[str]]:
    """Cells of each row of a Markdown table (header and separator excluded)."""
    rows = []
    for line in block.strip("\n").split("\n")[2:]:
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def tables_with_header(header: str) -> list[tuple[str, list[list[str]]]]:
    """Every table whose header row is `header` (e.g. '| metric | type | ... |'),
    in any page: [(page, rows)]."""
    pat = re.compile(rf"^{re.escape(header)}\n\|[-| ]+\|\n(?:\|.*\|\n?)*", re.M)
    out = []
    for path in doc_files():
        for m in pat.finditer(read(path)):
            out.append((path, table_rows(m.group(0))))
    return out


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces -> '-',
    a repeated anchor gets -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for line in without_code(text).split("\n"):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))   # a link in a heading keeps its text
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out
