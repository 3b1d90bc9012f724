"""Bring up the Reachy Mini stack with launch_ros.

    ros2 launch reachy_mini bringup.launch.py                 # real robot (serial_port from params_file)
    ros2 launch reachy_mini bringup.launch.py use_sim:=true   # simulated bus, camera and audio
    ros2 launch reachy_mini bringup.launch.py namespace:=robot1 web_port:=8001   # one of several robots
    ros2 launch reachy_mini bringup.launch.py one_process:=true   # motor, health, web nodes in one process

The nodes come from reachy_mini.common.node_table.NODES, the same table the
no-ROS-install supervisor (reachy-mini-bringup) reads, with the same
namespace remappings and log-level rule.

Respawn: a node that exits is started again after 2 s (use_respawn), at most
respawn_max_retries times (-1: no limit). A node that exits with status 2
refused its parameters: it is not respawned at all, since a restart cannot
fix a bad value (the log says which parameter).

one_process:=true runs node_table.ROBOT_PROCESS (motor_node, health_node,
web_bridge) in one process (executable `robot`, nodes/robot.py): one
executor, one DDS participant; camera_node and audio_node keep their own.
That process watches its own spin loop (the health node that kills a hung
node lives in it) and exits to be respawned when it hangs.

One stack per robot per machine: each node takes its instance lock
(reachy_mini/common/instance.py) first. A node that finds this robot
(namespace) already running exits with status 4 (5: the runtime directory is
not private), and this launch stops at once, leaving the running stack alone.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown, matches_action
from launch.events.process import ShutdownProcess
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from reachy_mini.core.identity import check_robot_name
from reachy_mini.common.node_table import EXIT_ALREADY_RUNNING, EXIT_INVALID_PARAMETER, EXIT_UNSAFE_RUNTIME_DIR, \
    NODES, PROCESS_NAME, log_level_args, process_groups, process_label, remappings

TRUE = ("true", "1", "yes", "on")


def generate_launch_description():
    args = [
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the whole robot (topics, services, diagnostics)"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("reachy_mini"), "config", "reachy_mini.yaml"]),
            description="parameter file for all nodes"),
        DeclareLaunchArgument("use_sim", default_value="false", description="simulated bus, camera and audio"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="debug|info|warn|error|fatal, for our nodes' loggers (not rcl's)",
                              choices=["debug", "info", "warn", "error", "fatal"]),
        DeclareLaunchArgument("use_respawn", default_value="true", description="respawn nodes that exit"),
        DeclareLaunchArgument("respawn_max_retries", default_value="-1",
                              description="respawns per node before giving up (-1: no limit)"),
        DeclareLaunchArgument("web_port", default_value="8000", description="port of the web status page"),
        DeclareLaunchArgument("one_process", default_value="false",
                              description="run motor_node, health_node and web_bridge in one process (less CPU "
                                          "and memory, for a Raspberry Pi CM4)"),
        DeclareLaunchArgument("robot_name", default_value="",
                              description="the robot's name: page title, hardware ids, incidents, metric label "
                                          "(default: the namespace, else the host name)"),
    ]
    args += [DeclareLaunchArgument(spec.enable_arg, default_value="true", description=f"start {spec.name}: {spec.description}")
             for spec in NODES]
    return LaunchDescription(args + [OpaqueFunction(function=_nodes)])


def _arg(context, name: str) -> str:
    return LaunchConfiguration(name).perform(context).strip()


def _no_respawn_on_invalid_parameter(node: Node, label: str) -> RegisterEventHandler:
    """Exit status 2 = invalid parameter: cancel the pending respawn. Status
    4/5 = this robot already runs here / unsafe runtime directory: stop this
    whole launch (its other nodes would refuse too)."""
    def on_exit(event, _context):
        if event.returncode in (EXIT_ALREADY_RUNNING, EXIT_UNSAFE_RUNTIME_DIR):
            return [LogInfo(msg=f"{label}: refused to start (exit {event.returncode}, see its message "
                                "above); stopping this launch"),
                    EmitEvent(event=Shutdown(reason="reachy_mini refused to start"))]
        if event.returncode != EXIT_INVALID_PARAMETER:
            return None
        return [LogInfo(msg=f"{label}: invalid parameter (exit {event.returncode}); not respawning. "
                            "Fix the value named above and launch again."),
                EmitEvent(event=ShutdownProcess(process_matcher=matches_action(node)))]
    return RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_exit))


def _nodes(context):
    """One Node per enabled entry of the node table; the health node expects
    exactly the enabled ones (a node left out on purpose is not "missing")."""
    enabled = [spec.name for spec in NODES if _arg(context, spec.enable_arg).lower() in TRUE]
    namespace = _arg(context, "namespace")
    robot_name = _arg(context, "robot_name")
    err = check_robot_name(robot_name)
    if err:
        raise ValueError(f"launch argument 'robot_name' = {robot_name!r}: {err}")
    respawn = _arg(context, "use_respawn").lower() in TRUE
    try:
        max_retries = int(_arg(context, "respawn_max_retries"))
    except ValueError:
        raise ValueError("launch argument 'respawn_max_retries' must be an integer (-1: no limit)") from None
    out = []
    for group in process_groups(enabled, _arg(context, "one_process").lower() in TRUE):
        params = [LaunchConfiguration("params_file"), {"use_sim": _arg(context, "use_sim").lower() in TRUE}]
        if robot_name:
            params.append({"robot_name": robot_name})
        if "web_bridge" in group:
            params.append({"port": int(_arg(context, "web_port"))})   # only web_bridge declares it
        if "health_node" in group:
            params.append({"expected_nodes": enabled})
        shared = len(group) > 1
        node = Node(
            package="reachy_mini",
            executable=PROCESS_NAME if shared else group[0],
            # a shared process keeps each node's own name (a name here would rename them all)
            name=None if shared else group[0],
            namespace=namespace,
            arguments=list(group) if shared else None,
            parameters=params,
            remappings=remappings(namespace),
            ros_arguments=[a for n in group for a in log_level_args(namespace, n, _arg(context, "log_level"))],
            # respawn also restarts a hung node that health_node killed (restart_hung_nodes)
            respawn=respawn,
            respawn_delay=2.0,
            respawn_max_retries=max_retries,
            output="screen",
        )
        out += [node, _no_respawn_on_invalid_parameter(node, process_label(group))]
    return out
