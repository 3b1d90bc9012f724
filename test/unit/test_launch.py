"""bringup.launch.py: a launch_testing check where launch_ros exists
(skipped cleanly here otherwise), and a no-ROS check that the launch file
is driven by the node table."""
import ast
import os

import pytest

from reachy_mini.common.node_table import NODES

LAUNCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))), "launch", "bringup.launch.py")


def test_launch_file_reads_node_table_and_declares_arguments():
    src = open(LAUNCH).read()
    tree = ast.parse(src)
    imported = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "reachy_mini.common.node_table"]
    assert imported and "NODES" in [a.name for a in imported[0].names]
    for arg in ("namespace", "params_file", "use_sim", "log_level", "use_respawn", "web_port"):
        assert f'"{arg}"' in src
    assert "spec.enable_arg" in src and all(n.enable_arg.startswith("enable_") for n in NODES)


def test_launch_description_with_launch_ros():
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (ROS 2 from PyPI wheels)")
    pytest.importorskip("launch_testing", reason="launch_testing is not installed")
    import importlib.util

    from launch import LaunchContext, LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location("bringup", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    assert isinstance(ld, LaunchDescription)
    ctx = LaunchContext()
    for e in ld.entities:
        if isinstance(e, DeclareLaunchArgument):
            e.execute(ctx)   # sets the defaults
    ctx.launch_configurations["enable_camera_node"] = "false"
    made = [n for e in ld.entities if isinstance(e, OpaqueFunction) for n in (e.execute(ctx) or [])]
    nodes = [n for n in made if isinstance(n, Node)]
    assert len(nodes) == len(NODES) - 1
    # one_process: the robot's nodes in one process, audio alone (camera disabled here)
    ctx.launch_configurations["one_process"] = "true"
    made = [n for e in ld.entities if isinstance(e, OpaqueFunction) for n in (e.execute(ctx) or [])]
    nodes = [n for n in made if isinstance(n, Node)]
    assert len(nodes) == 2, nodes
    # with the camera: the robot's process and the media's (camera and audio together)
    ctx.launch_configurations["enable_camera_node"] = "true"
    made = [n for e in ld.entities if isinstance(e, OpaqueFunction) for n in (e.execute(ctx) or [])]
    nodes = [n for n in made if isinstance(n, Node)]
    assert len(nodes) == 2, nodes


RUN_LAUNCH = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
args = dict(a.split(":=", 1) for a in sys.argv[2:])
ls = LaunchService()
ls.include_launch_description(LaunchDescription([IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=args.items())]))
sys.exit(ls.run())
"""


def _installed_launch_file():
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (ROS 2 from PyPI wheels)")
    try:
        from ament_index_python.packages import get_package_share_directory

        return os.path.join(get_package_share_directory("reachy_mini"), "launch", "bringup.launch.py")
    except (ImportError, LookupError, OSError):   # no ament index, not in it (a KeyError), AMENT_PREFIX_PATH unset
        pytest.skip("reachy_mini is not installed in an ament index (colcon build)")


def test_launch_respawn_rules(tmp_path, ros_env):
    """Real launch: exit 2 (invalid parameter) is never respawned; another
    exit (web_bridge's 3: its HTTP thread died, the port is taken) is
    respawned up to respawn_max_retries; a node waiting for its absent device
    stays up and is not restarted."""
    import socket
    import subprocess
    import sys
    import time

    launch_file = _installed_launch_file()
    params = tmp_path / "bad.yaml"
    params.write_text("/**/camera_node:\n  ros__parameters:\n    fps: -3.0\n"
                      "/**/motor_node:\n  ros__parameters:\n    serial_port: /dev/reachy_mini_no_such_port\n"
                      f"/**/web_bridge:\n  ros__parameters:\n    data_dir: {tmp_path}\n")
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    args = [f"params_file:={params}", "respawn_max_retries:=1", "enable_audio_node:=false",
            "enable_health_node:=false", f"web_port:={held.getsockname()[1]}"]
    env = dict(ros_env, XDG_RUNTIME_DIR=str(tmp_path), ROS_LOG_DIR=str(tmp_path / "log"))
    try:
        p = subprocess.Popen([sys.executable, "-c", RUN_LAUNCH, launch_file, *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        time.sleep(12.0)     # respawn_delay is 2 s: long enough for several respawns
        p.send_signal(2)
        out = p.communicate(timeout=30)[0]
    finally:
        held.close()
    starts = lambda name: sum(1 for line in out.splitlines() if "process started" in line and f"[{name}-" in line)  # noqa: E731
    assert starts("camera_node") == 1, out[-3000:]
    assert "camera_node: invalid parameter (exit 2); not respawning" in out
    assert starts("web_bridge") == 2, out[-3000:]          # the start and one respawn (respawn_max_retries:=1)
    assert "exit code 3" in out, out[-3000:]
    assert starts("motor_node") == 1, out[-3000:]          # waits for its adapter: no exit, no respawn
    assert "waiting for the servo adapter" in out
