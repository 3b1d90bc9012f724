"""Bring up the Reachy Mini stack with launch_ros.

    ros2 launch reachy_mini bringup.launch.py                 # real robot (serial_port from params_file)
    ros2 launch reachy_mini bringup.launch.py use_sim:=true   # simulated bus, camera and audio

The nodes come from reachy_mini.node_table.NODES, the same table the
no-ROS-install supervisor (reachy-mini-bringup) reads.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
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
    nodes = []
    for spec in NODES:
        params = [LaunchConfiguration("params_file"), {"use_sim": LaunchConfiguration("use_sim")}]
        if spec.name == "web_bridge":
            params.append({"port": LaunchConfiguration("web_port")})
        nodes.append(Node(
            package="reachy_mini",
            executable=spec.name,
            name=spec.name,
            namespace=LaunchConfiguration("namespace"),
            parameters=params,
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            respawn=LaunchConfiguration("use_respawn"),
            respawn_delay=2.0,
            output="screen",
            condition=IfCondition(LaunchConfiguration(spec.enable_arg)),
        ))
    return LaunchDescription(args + nodes)
