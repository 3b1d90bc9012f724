"""Build script for the reachy_mini ROS 2 package (ament_python + Rust).

Works for `pip install .`, `pip install -e .` and `colcon build`
(with or without --symlink-install).
"""
import os
import re
import runpy
from glob import glob

from setuptools import find_packages, setup
from setuptools_rust import Binding, RustExtension

HERE = os.path.dirname(os.path.realpath(__file__))
PACKAGE = "reachy_mini"


class _RustExtension(RustExtension):
    """colcon evaluates repr() of the setup() kwargs: keep it plain."""

    def __repr__(self):
        # ast.literal_eval must accept it: a quoted string, not a call.
        return repr(f"RustExtension({self.name}, {self.path})")


# One definition each: the version is package.xml's, the executables are the node table's.
with open(os.path.join(HERE, "package.xml")) as _f:
    VERSION = re.search(r"<version>([^<]+)</version>", _f.read()).group(1)
_TABLE = runpy.run_path(os.path.join(HERE, PACKAGE, "common", "node_table.py"))
NODES = [n.name for n in _TABLE["NODES"]]
PROCESS_NAME, PROCESS_MODULE = _TABLE["PROCESS_NAME"], _TABLE["PROCESS_MODULE"]

setup(
    name=PACKAGE,
    version=VERSION,
    packages=find_packages(include=[PACKAGE, PACKAGE + ".*"]),
    package_data={PACKAGE: ["web/static/*", "_driver.pyi", "py.typed"]},
    rust_extensions=[
        _RustExtension(
            f"{PACKAGE}._driver",
            path=os.path.join(HERE, "rust_driver", "Cargo.toml"),
            binding=Binding.PyO3,
            features=["python"],
            debug=False,
        )
    ],
    data_files=[
        ("share/ament_index/resource_index/packages", [os.path.join("resource", PACKAGE)]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", sorted(glob("launch/*.py"))),
        (f"share/{PACKAGE}/urdf", sorted(glob("urdf/*"))),
        (f"share/{PACKAGE}/rviz", sorted(glob("rviz/*"))),
        (f"share/{PACKAGE}/config", sorted(p for p in glob("config/*") if os.path.isfile(p))),
        (f"share/{PACKAGE}/config/udev", sorted(glob("config/udev/*"))),
        (f"share/{PACKAGE}/config/monitoring", sorted(p for p in glob("config/monitoring/*") if os.path.isfile(p))),
        (f"share/{PACKAGE}/config/monitoring/grafana", sorted(glob("config/monitoring/grafana/*"))),
        (f"share/{PACKAGE}/config/monitoring/tests", sorted(glob("config/monitoring/tests/*"))),
    ],
    install_requires=["setuptools", "pyyaml", "numpy", "pyserial", "psutil", "fastapi", "fastapi-offline", "uvicorn", "websockets", "prometheus-client",
                      "opencv-python-headless", "sounddevice", "pyusb>=1.2", "soundfile>=0.12",
                      "reachy-mini-rust-kinematics>=1.0.3,<1.1",
                      "mcap>=1.2", "mcap-ros2-support>=0.5"],
    zip_safe=False,
    maintainer="reachy_mini developers",
    maintainer_email="dev@reachy-mini.invalid",
    description="ROS 2 driver and health monitoring for the Reachy Mini robot",
    license="Apache-2.0",
    # colcon picks pytest when it finds it here (setuptools ignores tests_require)
    extras_require={"test": ["pytest", "pytest-timeout", "httpx", "selenium", "schemathesis", "rosbags"]},
    entry_points={
        "console_scripts": [f"{n} = {PACKAGE}.nodes.{n}:main" for n in NODES]
        + [f"{PROCESS_NAME} = {PROCESS_MODULE}:main"]   # several nodes in one process (ros2 run reachy_mini robot ...)
        + [
            "reachy-mini-bringup = reachy_mini.ops.supervisor:main",
            "reachy-mini-sim-bus = reachy_mini.sim.cli:main",
            "reachy-mini-incidents = reachy_mini.core.health.incidents:main",
            "reachy-mini-service = reachy_mini.ops.systemd:main",
        ],
    },
)
