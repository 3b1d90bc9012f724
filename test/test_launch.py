"""bringup.launch.py: a launch_testing check where launch_ros exists
(skipped cleanly here otherwise), and a no-ROS check that the launch file
is driven by the node table."""
import ast
import os

import pytest

from reachy_mini.node_table import NODES

LAUNCH = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "launch", "bringup.launch.py")


def test_launch_file_reads_node_table_and_declares_arguments():
    src = open(LAUNCH).read()
    tree = ast.parse(src)
    imported = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "reachy_mini.node_table"]
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
