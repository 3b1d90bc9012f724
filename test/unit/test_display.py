"""launch/display.launch.py and rviz/reachy_mini.rviz: RViz shows the robot
model, its TF frames and the camera image from our topics, with the QoS our
publishers offer; the launch file runs without RViz installed (it says so)."""
from __future__ import annotations

import os

import pytest
import yaml

from reachy_mini.common.paths import share_dir, urdf_path
from reachy_mini.core.frames import RobotFrames

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
LAUNCH = os.path.join(REPO, "launch", "display.launch.py")


def _rviz() -> dict:
    with open(os.path.join(share_dir(), "rviz", "reachy_mini.rviz")) as f:
        return yaml.safe_load(f)


def test_rviz_config_shows_our_topics_and_frames():
    cfg = _rviz()["Visualization Manager"]
    d = {x["Class"].split("/")[-1]: x for x in cfg["Displays"]}
    assert {"RobotModel", "TF", "Image", "Grid"} <= set(d)
    with open(urdf_path()) as f:
        links = set(RobotFrames(f.read()).links)
    assert cfg["Global Options"]["Fixed Frame"] in links and d["Grid"]["Reference Frame"] in links
    # relative topics (resolved in the robot's namespace); QoS that our publishers match
    rm = d["RobotModel"]["Description Topic"]
    assert rm["Value"] == "robot_description" and rm["Durability Policy"] == "Transient Local"
    img = d["Image"]["Topic"]
    assert img["Value"] == "camera/image_raw" and img["Reliability Policy"] == "Reliable"


def test_display_launch_without_rviz_says_so():
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (ROS 2 from PyPI wheels)")
    import importlib.util

    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, LogInfo

    spec = importlib.util.spec_from_file_location("display", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    ctx = LaunchContext()
    # given, as on a command line: its default (FindPackageShare) needs reachy_mini in an ament index
    ctx.launch_configurations["rviz_config"] = os.path.join(share_dir(), "rviz", "reachy_mini.rviz")
    for e in ld.entities:
        if isinstance(e, DeclareLaunchArgument):
            e.visit(ctx)
    mod.installed = lambda package, executable: False
    actions = mod._actions(ctx)
    # LogInfo.msg is a list of substitutions (launch 3.x): a TextSubstitution's text, the description of
    # any other (performing one such as FindPackageShare would need an ament index)
    texts = ["".join(m if isinstance(m, str) else getattr(m, "text", None) or m.describe()
                     for m in ([a.msg] if isinstance(a.msg, str) else a.msg))
             for a in actions if isinstance(a, LogInfo)]
    assert any("rviz2 is not installed" in t for t in texts), texts


def test_display_launch_remaps_like_the_bringup():
    src = open(LAUNCH).read()
    assert "remappings(ns)" in src and "from reachy_mini.common.node_table import" in src
