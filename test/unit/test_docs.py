"""The documentation a newcomer reads: README.md (short, a map of the docs)
and docs/*.md. Every relative link and #anchor resolves, every page is linked
from the README, and the repository paths, `make` targets, commands, launch
files and tests the pages name exist."""
from __future__ import annotations

import os
import re
import sys
from glob import glob

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))   # test/ (docs_text)
from docs_text import DOCS, README, REPO, anchors, doc_files, read, rel, without_code  # noqa: E402

README_MAX_LINES = 250
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"`[^`\n]*`")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)   # http:, https:, mailto:, ...


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline link outside code."""
    out = []
    for no, line in enumerate(without_code(text).split("\n"), 1):
        for m in LINK.finditer(CODE_SPAN.sub("", line)):
            out.append((no, m.group(1)))
    return out


def broken_links(page: str, root: str = REPO) -> list[str]:
    """What is wrong with each relative link of `page` (links must stay inside `root`)."""
    text = read(page)
    bad = []
    for no, target in links(text):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        where = f"{rel(page)}:{no}: {target}"
        if os.path.relpath(dest, root).startswith(".."):
            bad.append(f"{where}: outside the repository")
        elif not os.path.exists(dest):
            bad.append(f"{where}: no such file")
        elif anchor:
            if not dest.endswith(".md"):
                bad.append(f"{where}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(text if dest == page else read(dest)):
                bad.append(f"{where}: no heading with anchor #{anchor} in {rel(dest)}")
    return bad


def test_readme_is_short():
    n = len(read(README).splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}): move detail into docs/"


def test_every_relative_link_and_anchor_resolves():
    bad = [b for page in doc_files() for b in broken_links(page)]
    assert not bad, "\n".join(bad)


def test_the_link_check_catches_what_it_must(tmp_path):
    """The check itself: a missing file, a missing anchor, an anchor into
    another page, and links in code (not links) are told apart."""
    (tmp_path / "other.md").write_text("# Other page\n\n## The driver (`rust_driver/`, `driver.py`)\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Topics and QoS\n\n"
        "[ok](#topics-and-qos) [ok](other.md) [ok](other.md#the-driver-rust_driver-driverpy) "
        "[ok](other.md#twice-1) [ok](https://example.com/x#y) `[code](nowhere.md)`\n"
        "[gone](missing.md) [no anchor](#nope) [no anchor there](other.md#topics-and-qos) [out](../x.md)\n"
        "```\n[in a fence](nowhere.md)\n```\n")
    bad = broken_links(str(page), root=str(tmp_path))
    assert [b.split(": ", 2)[1] for b in bad] == ["missing.md", "#nope", "other.md#topics-and-qos", "../x.md"], bad


def test_the_readme_links_every_docs_page():
    linked = {os.path.normpath(os.path.join(REPO, t.partition("#")[0])) for _, t in links(read(README))
              if not EXTERNAL.match(t)}
    pages = sorted(glob(os.path.join(DOCS, "**", "*.md"), recursive=True))
    assert pages, "docs/ holds no page"
    missing = [rel(p) for p in pages if p not in linked]
    assert not missing, f"pages the README's map does not link: {missing}"


# --- what the pages name exists -------------------------------------------------------------

TOP = ("reachy_mini/", "rust_driver/", "config/", "tools/", "test/", "launch/", "urdf/", "rviz/", "docs/", ".ci/")


def _code_spans() -> list[tuple[str, str]]:
    out = []
    for page in doc_files():
        text = read(page)
        out += [(page, s) for s in re.findall(r"`([^`\n]+)`", text)]
        out += [(page, line) for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S) for line in block.split("\n")]
    return out


def test_every_repository_path_named_exists():
    """`config/motors.yaml`, `test/system/test_namespaces.py`,
    `test/system/test_browser.py::test_page_on_the_lan_asks_for_the_token`: the
    file is there (and the test function in it)."""
    bad = []
    for page, span in _code_spans():
        for word in re.findall(r"(?<![\w./~-])((?:%s)[\w./*-]*(?:::\w+)?)" % "|".join(map(re.escape, TOP)), span):
            path, _, func = word.partition("::")
            if "<" in path or (page.endswith("config/monitoring/README.md") and not path.startswith("config/")):
                continue
            if not glob(os.path.join(REPO, path.rstrip("."))):
                bad.append(f"{rel(page)}: {word}: no such path")
            elif func and not re.search(rf"^\s*(?:async )?def {func}\(", read(os.path.join(REPO, path)), re.M):
                bad.append(f"{rel(page)}: {word}: no test {func} in {path}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_every_make_target_named_exists():
    makefile = read(os.path.join(REPO, "Makefile"))
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = {(page, t) for page, span in _code_spans() for t in re.findall(r"(?:^|[;&|(]\s*|\s)make\s+(?:[A-Z_]+=\S+\s+)*([a-z][\w-]*)", span)}
    assert named, "no `make <target>` found: the pattern is broken"
    bad = sorted(f"{rel(p)}: make {t}" for p, t in named if t not in targets)
    assert not bad, "targets the Makefile does not have:\n" + "\n".join(bad)


# `reachy-mini-...` names in the docs that are not our console scripts: the
# backup timer's systemd unit, and distributions on PyPI (the vendor's and others').
NOT_OUR_COMMANDS = {"reachy-mini-backup", "reachy-mini-rust-kinematics", "reachy-mini-dances-library",
                    "reachy-mini-motor-controller", "reachy-mini-mcp", "reachy-mini-cli"}


def test_every_command_launch_file_and_executable_named_exists():
    setup = read(os.path.join(REPO, "setup.py"))
    scripts = set(re.findall(r'"(reachy-mini-[\w-]+) =', setup))
    from reachy_mini.common.node_table import NODES
    executables = {n.name for n in NODES}
    launch = {os.path.basename(p) for p in glob(os.path.join(REPO, "launch", "*.py"))}
    modules = {m for m in ("tools.bench", "tools.soak", "tools.alarm_quality") if
               os.path.exists(os.path.join(REPO, *m.split("."))) or os.path.exists(os.path.join(REPO, *m.split(".")) + ".py")}
    bad = []
    for page, span in _code_spans():
        for cmd in re.findall(r"\b(reachy-mini-[a-z-]+[a-z])\b", span):
            if cmd not in scripts and cmd not in NOT_OUR_COMMANDS:
                bad.append(f"{rel(page)}: command {cmd}")
        for f in re.findall(r"ros2 launch reachy_mini (\S+)", span):
            if f not in launch:
                bad.append(f"{rel(page)}: launch file {f}")
        for e in re.findall(r"ros2 run reachy_mini (\w+)", span):
            if e not in executables:
                bad.append(f"{rel(page)}: executable {e}")
        for m in re.findall(r"python -m (tools\.\w+)", span):
            if m not in modules:
                bad.append(f"{rel(page)}: module {m}")
    assert scripts and launch, "setup.py or launch/ changed shape"
    assert not bad, "\n".join(sorted(set(bad)))


@pytest.mark.parametrize("page", [rel(p) for p in doc_files()])
def test_each_page_has_one_title(page):
    titles = [ln for ln in without_code(read(os.path.join(REPO, page))).split("\n") if re.match(r"^# ", ln)]
    assert len(titles) == 1, f"{page}: {len(titles)} top-level titles: {titles}"


def test_every_bench_section_named_exists():
    """`make bench BENCH=camera_qos`, `BENCH="health stack"`: sections tools/bench knows."""
    src = read(os.path.join(REPO, "tools", "bench", "__main__.py"))
    sections = set(re.findall(r'"(\w+)": (?:bench_|bench_stack\.)', src))
    assert {"stack", "envelope"} <= sections, "tools/bench/__main__.py changed shape"
    bad, named = [], 0
    for page in doc_files():
        for quoted, single in re.findall(r'\bBENCH=(?:"([^"]+)"|(\w+))', read(page)):
            for s in (quoted or single).split():
                named += 1
                if s not in sections:
                    bad.append(f"{rel(page)}: BENCH={s}")
    assert named and not bad, f"unknown bench sections (known: {sorted(sections)}): {bad}"


def test_launch_argument_table_matches_the_launch_file():
    """The table of launch arguments (header '| argument | default | |') lists
    every DeclareLaunchArgument of launch/bringup.launch.py, in order, with its
    default; the per-node `enable_<node>` arguments are one row."""
    import ast

    from docs_text import tables_with_header

    tree = ast.parse(read(os.path.join(REPO, "launch", "bringup.launch.py")))
    declared = []
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument":
            name = call.args[0]
            default = next(k.value for k in call.keywords if k.arg == "default_value")
            declared.append((name.value if isinstance(name, ast.Constant) else "enable_<node>",
                             f"`{default.value if isinstance(default, ast.Constant) else None}`"))
    declared.sort(key=lambda d: d[0] == "enable_<node>")     # ast.walk order: the list, then the comprehension
    found = tables_with_header("| argument | default | |")
    assert len(found) == 1, f"one launch argument table expected, found {len(found)}"
    documented = [(row[0].strip("`"), row[1]) for row in found[0][1]]
    assert [d[0] for d in documented] == [d[0] for d in declared]
    for (name, doc), (_, code) in zip(documented, declared):
        assert code == "`None`" or doc == (code if code != "``" else "`''`"), (name, doc, code)


def _created(kind: str) -> dict[str, str]:
    """Topic or service names the package's nodes create with a literal name: {name: file}."""
    out = {}
    for path in sorted(glob(os.path.join(REPO, "reachy_mini", "**", "*.py"), recursive=True)):
        for name in re.findall(rf'create_{kind}\(\s*\w+,\s*"([^"]+)"', read(path)):
            out.setdefault(name, rel(path))
    return out


def _first_column_names(header: str) -> set[str]:
    from docs_text import tables_with_header

    found = tables_with_header(header)
    assert len(found) == 1, f"one table '{header}' expected, found {len(found)}"
    return {n for row in found[0][1] for n in re.findall(r"`([^`]+)`", row[0])}


def test_topic_table_lists_every_topic_the_nodes_create():
    created = {**_created("publisher"), **_created("subscription")}
    assert {"joint_states", "head/pose", "/diagnostics"} <= set(created), "the search for create_* calls is broken"
    documented = _first_column_names("| topic | type | QoS | why |")
    missing = {n: f for n, f in created.items() if n not in documented}
    assert not missing, f"topics created but not in the topic table (docs/ros-interface.md): {missing}"
    stale = documented - set(created)
    assert not stale, f"topics in the table that no node creates: {stale}"


def test_service_table_lists_every_service_the_nodes_create():
    created = _created("service")
    assert "~/set_torque" in created, "the search for create_service calls is broken"
    documented = _first_column_names("| service | type | |")
    missing = {n: f for n, f in created.items() if n not in documented}
    assert not missing, f"services created but not in the service table (docs/ros-interface.md): {missing}"
