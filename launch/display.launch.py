"""The robot in RViz: its model (robot_description), TF frames, the camera
image, and its diagnostics in rqt_robot_monitor.

    ros2 launch reachy_mini display.launch.py                      # beside a running robot (bringup)
    ros2 launch reachy_mini display.launch.py bringup:=true use_sim:=true   # the simulated robot too
    ros2 launch reachy_mini display.launch.py namespace:=robot1   # one of several robots

RViz subscribes to /tf and /tf_static by their absolute names: with a
namespace they are remapped into it, as the bringup remaps motor_node's
(node_table.remappings); robot_description and camera/image_raw are relative
in rviz/reachy_mini.rviz, so they resolve in the namespace. rviz2 and
rqt_robot_monitor start when installed; otherwise the launch says so and
goes on (the robot itself needs neither).
"""
import os
import shutil

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, LogInfo, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from reachy_mini.common.node_table import normalize_namespace, remappings

TRUE = ("true", "1", "yes", "on")


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="the robot's namespace"),
        DeclareLaunchArgument("rviz_config", description="RViz configuration",
                              default_value=PathJoinSubstitution([FindPackageShare("reachy_mini"), "rviz",
                                                                  "reachy_mini.rviz"])),
        DeclareLaunchArgument("bringup", default_value="false",
                              description="also start the robot's stack (bringup.launch.py)"),
        DeclareLaunchArgument("use_sim", default_value="false", description="with bringup: the simulated robot"),
        DeclareLaunchArgument("monitor", default_value="true", description="start rqt_robot_monitor (diagnostics)"),
        OpaqueFunction(function=_actions),
    ])


def installed(package: str, executable: str) -> bool:
    """An executable of a ROS package (ament index) or on PATH."""
    try:
        from ament_index_python.packages import get_package_prefix

        return os.path.exists(os.path.join(get_package_prefix(package), "lib", package, executable))
    except Exception:  # noqa: BLE001 - not indexed, or no ament_index
        return shutil.which(executable) is not None


def _actions(context):
    arg = lambda name: LaunchConfiguration(name).perform(context).strip()   # noqa: E731
    ns = normalize_namespace(arg("namespace"))
    actions = []
    if arg("bringup").lower() in TRUE:
        actions.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([FindPackageShare("reachy_mini"), "launch", "bringup.launch.py"])),
            launch_arguments={"namespace": arg("namespace"), "use_sim": arg("use_sim")}.items()))
    if installed("rviz2", "rviz2"):
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", namespace=ns,
                            arguments=["-d", arg("rviz_config")], remappings=remappings(ns), output="screen"))
    else:
        actions.append(LogInfo(msg="rviz2 is not installed: no RViz window (sudo apt install ros-$ROS_DISTRO-rviz2)"))
    if arg("monitor").lower() in TRUE:
        if installed("rqt_robot_monitor", "rqt_robot_monitor"):
            actions.append(Node(package="rqt_robot_monitor", executable="rqt_robot_monitor", namespace=ns,
                                remappings=remappings(ns)))
        else:
            actions.append(LogInfo(msg="rqt_robot_monitor is not installed: no diagnostics window "
                                       "(sudo apt install ros-$ROS_DISTRO-rqt-robot-monitor)"))
    return actions
