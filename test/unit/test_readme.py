"""The documentation lists every parameter of every node: one table per node,
under a heading '`<node>` parameters' on whichever page of README.md or docs/
holds it, with the default and whether `ros2 param set` changes it on a
running node. This test compares those tables with the declared parameters.
`python test/unit/test_readme.py --write` regenerates the tables where they are."""
from __future__ import annotations

import importlib
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))   # test/ (docs_text)
from docs_text import doc_files, read, rel  # noqa: E402

from reachy_mini.common.node_table import NODES  # noqa: E402
from reachy_mini.common.paths import share_dir  # noqa: E402

# declared by diagnostic_updater's Updater in every node (read once, at start)
UPDATER = [("diagnostic_updater.period", 1.0, False), ("diagnostic_updater.use_fqn", False, False)]
HEADER = "| parameter | default | runtime | description |"


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


def table_re(node: str) -> re.Pattern:
    """A heading (any level) '`<node>` parameters', a blank line, then the table."""
    return re.compile(rf"^(#{{2,6}} `{node}` parameters\n\n)({re.escape(HEADER)}\n\|[-|]+\|\n(?:\|.*\|\n)+)", re.M)


def tables(node: str) -> list[tuple[str, re.Match]]:
    return [(p, m) for p in doc_files() for m in table_re(node).finditer(read(p))]


def documented(node: str) -> list[tuple[str, str, str]]:
    found = tables(node)
    assert found, f"no page of README.md or docs/ has a '`{node}` parameters' heading with a table"
    assert len(found) == 1, f"'`{node}` parameters' tables in several places: {[rel(p) for p, _ in found]}"
    rows = []
    for line in found[0][1].group(2).splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((cells[0].strip("`"), cells[1], cells[2]))
    return rows


@pytest.mark.parametrize("node", [n.name for n in NODES])
def test_parameter_table_matches_declared(node):
    doc, decl = documented(node), declared(node)
    assert [r[0] for r in doc] == [r[0] for r in decl], "names (in declaration order)"
    assert doc == decl


def test_the_table_finder_sees_a_table_at_any_heading_level():
    """A page may hold a node's table under ## or ####; a heading that only
    mentions the node, or a table of another shape, is not one."""
    table = f"{HEADER}\n|---|---|---|---|\n| `x` | `1` | no | d |\n"
    for level in ("##", "###", "####"):
        assert table_re("motor_node").search(f"{level} `motor_node` parameters\n\n{table}")
    assert not table_re("motor_node").search(f"## motor_node parameters\n\n{table}")
    assert not table_re("motor_node").search("## `motor_node` parameters\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")


def render(node: str) -> str:
    """The table as the docs should hold it (descriptions from the specs)."""
    specs = {s.name: s for s in importlib.import_module(f"reachy_mini.nodes.{node}").CONFIG.specs()}
    lines = [HEADER, "|---|---|---|---|"]
    for name, default, rt in declared(node):
        desc = specs[name].description if name in specs else {
            "diagnostic_updater.period": "period of /diagnostics (s); diagnostic_updater's own parameter",
            "diagnostic_updater.use_fqn": "prefix status names with the namespace (diagnostic_updater)"}[name]
        lines.append(f"| `{name}` | {default} | {rt} | {desc.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def rewrite(text: str) -> str:
    """The page with every node's table it holds replaced by render()."""
    for n in NODES:
        text = table_re(n.name).sub(lambda m, n=n: m.group(1) + render(n.name), text)
    return text


if __name__ == "__main__":   # `python test/unit/test_readme.py --write` updates the tables where they are
    if "--write" in sys.argv:
        for page in doc_files():
            old = read(page)
            new = rewrite(old)
            if new != old:
                with open(page, "w", encoding="utf-8") as f:
                    f.write(new)
                print(f"updated {rel(page)}")
    else:
        for n in NODES:
            print(f"#### `{n.name}` parameters\n\n{render(n.name)}")
