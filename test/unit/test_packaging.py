"""What `colcon build` / `colcon test` / rosdep rely on: package.xml names a
dependency for every module the tests import, setup.py tells colcon to use
pytest, the executables follow the node table, and the compiled driver is
found even when the source tree shadows the installed package."""
from __future__ import annotations

import ast
import glob
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import reachy_mini
from reachy_mini.common.node_table import NODES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

# top-level module -> rosdep key (or None: documented pip-only, the test skips without it)
ROSDEP = {
    "pytest": "python3-pytest", "httpx": "python3-httpx", "selenium": "python3-selenium", "yaml": "python3-yaml",
    "numpy": "python3-numpy", "cv2": "python3-opencv", "serial": "python3-serial", "psutil": "python3-psutil",
    "fastapi": "python3-fastapi", "uvicorn": "python3-uvicorn", "pydantic": "python3-pydantic",
    "websockets": "python3-websockets",
    "prometheus_client": "python3-prometheus-client",
    "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces", "diagnostic_msgs": "diagnostic_msgs",
    "sensor_msgs": "sensor_msgs", "std_msgs": "std_msgs", "std_srvs": "std_srvs", "launch": "launch",
    "geometry_msgs": "geometry_msgs", "trajectory_msgs": "trajectory_msgs",
    "launch_ros": "launch_ros", "launch_testing": "launch_testing", "launch_testing_ros": "launch_testing_ros",
    "diagnostic_updater": "diagnostic_updater", "ament_index_python": "ament_index_python",
    "hypothesis": "python3-hypothesis", "usb": "python3-usb", "soundfile": "python3-soundfile",
    "tf2_msgs": "tf2_msgs", "urdf_parser_py": "urdfdom_py",
    "sounddevice": None, "dynamixel_sdk": None, "schemathesis": None, "rosbags": None,
}
TEST_FILES = sorted(glob.glob(f"{REPO}/test/**/*.py", recursive=True))
LOCAL = {"reachy_mini", "tools", "conftest", "ros_probe"} | {os.path.basename(p)[:-3] for p in TEST_FILES}


def _deps(kinds) -> set[str]:
    root = ET.parse(os.path.join(REPO, "package.xml")).getroot()
    return {e.text.strip() for k in kinds for e in root.iter(k)}


def _imports(path: str) -> set[str]:
    tree = ast.parse(open(path).read())
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            out.add(n.module.split(".")[0])
        elif isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "importorskip" and n.args \
                and isinstance(n.args[0], ast.Constant):
            out.add(n.args[0].value.split(".")[0])
    return out


def test_every_test_import_has_a_package_xml_dependency():
    deps = _deps(["test_depend", "exec_depend", "depend", "build_depend"])
    missing = []
    for path in TEST_FILES:
        for mod in sorted(_imports(path) - LOCAL - set(sys.stdlib_module_names)):
            assert mod in ROSDEP, f"{os.path.basename(path)} imports {mod}: add it to ROSDEP and package.xml"
            key = ROSDEP[mod]
            if key is not None and key not in deps:
                missing.append(f"{mod} ({os.path.basename(path)}) -> <test_depend>{key}</test_depend>")
    assert not missing, "package.xml lacks: " + "; ".join(missing)
    xml = open(os.path.join(REPO, "package.xml")).read()
    for mod, key in ROSDEP.items():
        if key is None and any(mod in _imports(p) for p in TEST_FILES):
            assert mod in xml, f"{mod} has no rosdep key: package.xml must say how to get it"


def _setup_kwargs() -> dict:
    tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    return {k.arg: k.value for k in call.keywords}


def test_colcon_finds_pytest_in_extras_require():
    kw = _setup_kwargs()
    assert "tests_require" not in kw   # ignored by setuptools: colcon would fall back to unittest
    extras = ast.literal_eval(kw["extras_require"])
    assert "pytest" in extras["test"]


def test_one_version():
    """package.xml holds the version; setup.py, the package and the web API
    take it from there; the Rust crate states the same."""
    xml = re.search(r"<version>([^<]+)</version>", open(os.path.join(REPO, "package.xml")).read()).group(1)
    assert reachy_mini.__version__ == xml
    cargo = re.search(r'^version = "([^"]+)"', open(os.path.join(REPO, "rust_driver", "Cargo.toml")).read(), re.M)
    assert cargo.group(1) == xml
    from reachy_mini.web.app import create_app
    from reachy_mini.web.state import StateStore

    app = create_app(StateStore(), None)
    assert app.version == xml


def test_console_scripts_follow_the_node_table():
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    for n in NODES:
        assert scripts.get(n.name) == f"reachy_mini.nodes.{n.name}:main"
    assert scripts.get("robot") == "reachy_mini.nodes.robot:main"   # the shared process (--one-process)


def test_compiled_driver_found_when_source_tree_shadows_install(tmp_path):
    """colcon test: pytest imports reachy_mini from the source tree (no .so),
    while the .so sits in install/.../site-packages/reachy_mini."""
    import reachy_mini._driver as compiled

    so = [compiled.__file__]
    src = tmp_path / "src"
    shutil.copytree(os.path.dirname(reachy_mini.__file__), src / "reachy_mini",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    inst = tmp_path / "install" / "reachy_mini"
    inst.mkdir(parents=True)
    shutil.copy(so[0], inst)
    shutil.copy(src / "reachy_mini" / "__init__.py", inst)
    code = ("import reachy_mini, reachy_mini.driver as d; "
            "print(reachy_mini.__file__); print(d._driver.__file__)")
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{tmp_path / 'install'}")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(src), env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    pkg, drv = out.stdout.split()
    assert pkg.startswith(str(src)) and drv.startswith(str(tmp_path / "install"))


def test_driver_stub_matches_the_compiled_module():
    """reachy_mini/_driver.pyi is generated from the built extension; a
    binding change without a regenerated stub fails here."""
    r = subprocess.run([sys.executable, os.path.join(REPO, "tools", "gen_driver_stubs.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_setup_ships_what_the_package_claims():
    """package_data names files that exist (py.typed, the stub, the page)."""
    for rel in ("py.typed", "_driver.pyi", "web/static/index.html"):
        assert os.path.isfile(os.path.join(REPO, "reachy_mini", rel)), rel
