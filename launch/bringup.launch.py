"""Bring up the Reachy Mini stack with launch_ros.

    ros2 launch reachy_mini bringup.launch.py                 # real robot (serial_port from params_file)
    ros2 launch reachy_mini bringup.launch.py use_sim:=true   # simulated bus, camera and audio

The nodes come from reachy_mini.node_table.NODES, the same table the
no-ROS-install supervisor (reachy-mini-bringup) reads.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from reachy_mini.node_table import NODES


def generate_launch_description():
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace for every node"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("reachy_mini"), "config", "reachy_mini.yaml"]),
            description="parameter file for all nodes"),
        DeclareLaunchArgument("use_sim", default_value="false", description="simulated bus, camera and audio"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug|info|warn|error|fatal"),
        DeclareLaunchArgument("use_respawn", default_value="true", description="respawn nodes that exit"),
        DeclareLaunchArgument("web_port", default_value="8000", description="port of the web status page"),
    ]
    args += [DeclareLaunchArgument(spec.enable_arg, default_value="true", description=f"start {spec.name}: {spec.description}")
             for spec in NODES]
    return LaunchDescription(args + [OpaqueFunction(function=_nodes)])


def _enabled(context, spec) -> bool:
    return LaunchConfiguration(spec.enable_arg).perform(context).strip().lower() in ("true", "1", "yes", "on")


def _nodes(context):
    """One Node per enabled entry of the node table; the health node expects
    exactly the enabled ones (a node left out on purpose is not "missing")."""
    enabled = [spec.name for spec in NODES if _enabled(context, spec)]
    nodes = []
    for spec in NODES:
        if spec.name not in enabled:
            continue
        params = [LaunchConfiguration("params_file"), {"use_sim": LaunchConfiguration("use_sim")}]
        if spec.name == "web_bridge":
            params.append({"port": LaunchConfiguration("web_port")})
        if spec.name == "health_node":
            params.append({"expected_nodes": enabled})
        nodes.append(Node(
            package="reachy_mini",
            executable=spec.name,
            name=spec.name,
            namespace=LaunchConfiguration("namespace"),
            parameters=params,
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            # respawn also restarts a hung node that health_node killed (restart_hung_nodes)
            respawn=LaunchConfiguration("use_respawn"),
            respawn_delay=2.0,
            output="screen",
        ))
    return nodes
