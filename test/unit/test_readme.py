"""The README documents every parameter of every node: one table per node,
with the default and whether `ros2 param set` changes it on a running node.
This test compares those tables with the declared parameters."""
from __future__ import annotations

import importlib
import os
import re

import pytest

from reachy_mini.common.node_table import NODES
from reachy_mini.common.paths import share_dir

README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))), "README.md")
# declared by diagnostic_updater's Updater in every node (read once, at start)
UPDATER = [("diagnostic_updater.period", 1.0, False), ("diagnostic_updater.use_fqn", False, False)]


def fmt_default(v) -> str:
    if isinstance(v, bool):
        return "`true`" if v else "`false`"
    if isinstance(v, str):
        return "`''`" if v == "" else f"`{v.replace(share_dir(), '<share>')}`"
    if isinstance(v, list):
        return "`[" + ", ".join(map(str, v)) + "]`"
    return f"`{v}`"


def declared(node: str) -> list[tuple[str, str, str]]:
    specs = importlib.import_module(f"reachy_mini.nodes.{node}").CONFIG.specs()
    rows = [(s.name, fmt_default(s.default), "yes" if s.runtime else "no") for s in specs]
    return rows + [(n, fmt_default(d), "yes" if rt else "no") for n, d, rt in UPDATER]


def documented(node: str) -> list[tuple[str, str, str]]:
    text = open(README).read()
    m = re.search(rf"^#### `{node}` parameters\n\n\| parameter \| default \| runtime \| description \|\n\|[-|]+\|\n"
                  rf"((?:\|.*\|\n)+)", text, re.M)
    assert m, f"README has no '#### `{node}` parameters' table"
    rows = []
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((cells[0].strip("`"), cells[1], cells[2]))
    return rows


@pytest.mark.parametrize("node", [n.name for n in NODES])
def test_readme_parameter_table_matches_declared(node):
    doc, decl = documented(node), declared(node)
    assert [r[0] for r in doc] == [r[0] for r in decl], "names (in declaration order)"
    assert doc == decl


def render(node: str) -> str:
    """The table as the README should hold it (descriptions from the specs)."""
    specs = {s.name: s for s in importlib.import_module(f"reachy_mini.nodes.{node}").CONFIG.specs()}
    lines = [f"#### `{node}` parameters", "", "| parameter | default | runtime | description |", "|---|---|---|---|"]
    for name, default, rt in declared(node):
        desc = specs[name].description if name in specs else {
            "diagnostic_updater.period": "period of /diagnostics (s); diagnostic_updater's own parameter",
            "diagnostic_updater.use_fqn": "prefix status names with the namespace (diagnostic_updater)"}[name]
        lines.append(f"| `{name}` | {default} | {rt} | {desc.replace('|', '/')} |")
    return "\n".join(lines)


def rewrite(text: str) -> str:
    """The README with every node's table replaced by render()."""
    for n in NODES:
        head = f"#### `{n.name}` parameters"
        start = text.index(head)
        end = text.find("\n\n", text.index("|---|", start))
        text = text[:start] + render(n.name) + text[end if end >= 0 else len(text):]
    return text


if __name__ == "__main__":   # `python test/unit/test_readme.py --write` updates the README's tables
    import sys

    if "--write" in sys.argv:
        with open(README) as f:
            new = rewrite(f.read())
        with open(README, "w") as f:
            f.write(new)
    else:
        for n in NODES:
            print(render(n.name) + "\n")
