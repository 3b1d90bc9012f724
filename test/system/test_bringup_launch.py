"""launch_testing test of launch/bringup.launch.py, as `launch_test` and
`colcon test` run it in a ROS 2 workspace: the whole simulated robot in a
namespace, each node publishing its diagnostics under that namespace, and the
top level reaching OK.

Skipped cleanly where launch_testing / launch_ros are absent (ROS 2 from PyPI
wheels) or reachy_mini is not installed in an ament index (colcon build).
"""
import os
import socket
import tempfile
import time
import unittest

import pytest

launch_testing = pytest.importorskip("launch_testing", reason="launch_testing is not installed")
pytest.importorskip("launch_ros", reason="launch_ros is not installed")
try:
    from ament_index_python.packages import get_package_share_directory

    SHARE = get_package_share_directory("reachy_mini")
except (ImportError, LookupError, OSError):   # no ament index, not in it (a KeyError), AMENT_PREFIX_PATH unset
    pytest.skip("reachy_mini is not installed in an ament index (colcon build)", allow_module_level=True)

import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription, SetEnvironmentVariable  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from reachy_mini.common.node_table import NODES  # noqa: E402

NS = "lt_robot"
SCRATCH = tempfile.mkdtemp(prefix="reachy_mini_launch_test_")
os.environ.setdefault("ROS_DOMAIN_ID", "91")
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.launch_test
def generate_test_description():
    return LaunchDescription([
        # the robot's simulated bus, state and incident database in a scratch dir
        SetEnvironmentVariable("XDG_RUNTIME_DIR", SCRATCH),
        SetEnvironmentVariable("XDG_DATA_HOME", SCRATCH),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "bringup.launch.py")),
            launch_arguments={"use_sim": "true", "namespace": NS, "web_port": str(_free_port())}.items()),
        launch_testing.actions.ReadyToTest(),
    ])


class TestBringup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("bringup_launch_test")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_each_node_publishes_and_top_level_reaches_ok(self):
        seen: set[str] = set()
        top: list[DiagnosticStatus] = []
        global_diag: list[DiagnosticArray] = []
        self.node.create_subscription(DiagnosticArray, f"/{NS}/diagnostics",
                                      lambda m: seen.update(s.name.split(":")[0] for s in m.status), 50)
        self.node.create_subscription(DiagnosticStatus, f"/{NS}/diagnostics_toplevel_state", top.append, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", global_diag.append, 50)
        end = time.monotonic() + 90
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.1)
            if seen >= {n.name for n in NODES} and top and top[-1].level == DiagnosticStatus.OK:
                break
        self.assertEqual(seen, {n.name for n in NODES}, "every node publishes on its robot's /diagnostics")
        self.assertTrue(top, "no /<ns>/diagnostics_toplevel_state")
        self.assertEqual(top[-1].level, DiagnosticStatus.OK, f"top level: {top[-1].message}")
        self.assertEqual(global_diag, [], "nothing of a namespaced robot on the global /diagnostics")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_clean_exit(self, proc_info):
        # SIGINT from launch's shutdown: 0, or -2 / -15 when a signal ended it
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
