"""The one table of the stack's nodes. The launch file, the no-ROS-install
supervisor and the health node all read it, so they cannot drift apart."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeSpec:
    name: str            # node name == executable name (ros2 run reachy_mini <name>)
    module: str          # python -m module runs it (supervisor)
    description: str
    # Seconds without any /diagnostics from this node before it is STALE
    # (health node) and, under the supervisor, considered hung.
    stale_timeout_s: float = 5.0

    @property
    def enable_arg(self) -> str:
        return f"enable_{self.name}"


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("motor_node", "reachy_mini.nodes.motor_node", "Dynamixel servo bus: joint states, goals, motor diagnostics"),
    NodeSpec("camera_node", "reachy_mini.nodes.camera_node", "UVC camera: image_raw + camera_info"),
    NodeSpec("audio_node", "reachy_mini.nodes.audio_node", "microphone array: audio chunks and level"),
    NodeSpec("health_node", "reachy_mini.nodes.health_node", "diagnostics aggregation and system checks"),
    NodeSpec("web_bridge", "reachy_mini.nodes.web_bridge", "web status page and JSON API"),
)

BY_NAME = {n.name: n for n in NODES}

# One process for the robot (`reachy-mini-bringup --one-process`, launch
# `one_process:=true`): the robot's nodes share one process, one executor and
# one DDS participant (python -m reachy_mini.nodes.robot <node>...; `ros2 run
# reachy_mini robot <node>...`), and the media nodes another: a media driver
# that crashes or blocks (GStreamer, OpenCV, ALSA, a USB device) must not take
# the motors' node with it, but camera and audio may share a process (one
# Python, one rclpy, one participant: -40 MB PSS; docs/benchmarks.md,
# Footprint, has the figures of each choice).
ROBOT_PROCESS = ("motor_node", "health_node", "web_bridge")
MEDIA_PROCESS = ("camera_node", "audio_node")
SHARED_PROCESSES = (("robot", ROBOT_PROCESS), ("media", MEDIA_PROCESS))   # (process name, its nodes)
PROCESS_NAME = "robot"                      # executable that runs several nodes in one process
PROCESS_MODULE = "reachy_mini.nodes.robot"


def process_groups(names: list[str], one_process: bool) -> list[tuple[str, ...]]:
    """The processes that run `names` (node table order): one per node, or,
    with `one_process`, the enabled nodes of each SHARED_PROCESSES entry
    together (the robot's first, then the media's) and every other node alone
    (a shared process of one node is that node's own process)."""
    names = [n.name for n in NODES if n.name in names]
    groups = [g for g in (tuple(n for n in names if n in members) for _, members in SHARED_PROCESSES)
              if one_process and len(g) > 1]
    shared = {n for g in groups for n in g}
    return groups + [(n,) for n in names if n not in shared]


def process_name(group) -> str:
    """The supervisor's name of a process (its state, log and heartbeat
    files): its node, or the shared process' name ("robot", "media")."""
    group = tuple(group)
    if len(group) == 1:
        return group[0]
    return next(name for name, members in SHARED_PROCESSES if set(group) <= set(members))


def process_label(names) -> str:
    """How logs name a process: its node, or the shared process and its nodes."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{process_name(names)} ({', '.join(names)})"


def before_ros_args(args: list[str]) -> list[str]:
    """The arguments before --ros-args (all of them if there is none)."""
    return args[:args.index("--ros-args")] if "--ros-args" in args else list(args)


def hosted_nodes(cmdline: list[str]) -> list[str]:
    """The node-table nodes a shared process runs (its arguments before
    --ros-args, after the robot module or executable); [] for any other."""
    for i, a in enumerate(cmdline[:4]):
        if a == PROCESS_MODULE or a.rsplit("/", 1)[-1] == PROCESS_NAME:
            return [n for n in before_ros_args(cmdline[i + 1:]) if n in BY_NAME]
    return []


# Exit status of a node that refused its parameters: respawning cannot fix it,
# so neither the launch file nor the supervisor restarts it.
EXIT_INVALID_PARAMETER = 2
# Exit status of a node that is alive but broken (a worker thread died):
# restarting it is the cure, so both respawn it.
EXIT_BROKEN = 3
# Exit status of a start refused because this robot (namespace) already runs
# on this machine (common/instance.py), or because the runtime directory is
# not private (common/paths.py): a restart cannot fix either, so neither the
# launch file nor the supervisor restarts it (launch stops altogether).
EXIT_ALREADY_RUNNING = 4
EXIT_UNSAFE_RUNTIME_DIR = 5
NOT_RESPAWNED = (EXIT_INVALID_PARAMETER, EXIT_ALREADY_RUNNING, EXIT_UNSAFE_RUNTIME_DIR)

# The diagnostics topics keep their absolute ROS names (diagnostic_updater,
# diagnostic_aggregator, rqt_robot_monitor). With a namespace they are
# remapped into it, so each robot's health stays its own.
DIAGNOSTICS_TOPICS = ("/diagnostics", "/diagnostics_agg", "/diagnostics_toplevel_state")
# So do the TF topics (tf2 listeners, RViz): remapped alike, each robot's frames
# stay its own (two robots' base_link would fight on one /tf).
TF_TOPICS = ("/tf", "/tf_static")


def normalize_namespace(namespace: str | None) -> str:
    """'' or '/' -> '/'; 'robot1', '/robot1/' -> '/robot1'."""
    return "/" + (namespace or "").strip("/")


def remappings(namespace: str | None) -> list[tuple[str, str]]:
    ns = normalize_namespace(namespace)
    return [] if ns == "/" else [(t, ns + t) for t in DIAGNOSTICS_TOPICS + TF_TOPICS]


def logger_name(namespace: str | None, node: str) -> str:
    """rcl's logger name of a node: namespace and name joined by dots."""
    ns = normalize_namespace(namespace).strip("/")
    return ".".join(p for p in ns.split("/") + [node] if p)


def log_level_args(namespace: str | None, node: str, level: str) -> list[str]:
    """`--log-level <node logger>:=<level>`: the level applies to our node's
    logger, not to rcl's (whose debug output would drown it)."""
    return ["--log-level", f"{logger_name(namespace, node)}:={level}"]


def namespace_of(cmdline: list[str]) -> str:
    """The namespace a ROS node process was started in ('/' if none):
    launch_ros and reachy-mini-bringup both pass `-r __ns:=/robot1`."""
    ns = "/"
    for a in cmdline:
        if a.startswith("__ns:="):
            ns = "/" + a[len("__ns:="):].strip("/")
    return ns
