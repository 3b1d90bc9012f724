"""One process for the robot: several nodes of the node table in one
process, one executor, one DDS participant (issue 33: less CPU and memory on
a Raspberry Pi CM4).

    python -m reachy_mini.nodes.robot motor_node health_node web_bridge --ros-args ...
    ros2 run reachy_mini robot motor_node health_node web_bridge --ros-args ...

`reachy-mini-bringup --one-process` and the launch file's `one_process:=true`
start it with common/node_table.ROBOT_PROCESS, and once more with MEDIA_PROCESS
(camera and audio: apart from the motors, together with each other). Each node keeps its name,
parameters, topics, services and diagnostics; the process holds each node's
instance lock and beats each node's heartbeat (ros/runner.py). Safety does not
change: the motors' watchdog and torque rules run in the driver's own thread
(Rust), whatever the Python side does; a worker thread that dies in any node
ends the process (status 3) after motor_node's clean exit (on_exit torque
rule), and its process manager respawns it. A hung spin loop is caught by
reachy-mini-bringup (heartbeat) or, under ros2 launch, by the process's own
hang watch (ros/runner.HangWatch), since the health node that would kill it
lives in it.
"""
from __future__ import annotations

import importlib
import sys

from reachy_mini.common.node_table import BY_NAME, EXIT_INVALID_PARAMETER, PROCESS_NAME, before_ros_args


def parse(argv: list[str]) -> tuple[list[str], str]:
    """The node names before --ros-args (node table order kept as given);
    an error message ('' if none)."""
    names = before_ros_args(argv)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        return [], f"unknown node(s) {unknown}; the node table has {sorted(BY_NAME)}"
    if not names:
        return [], f"usage: {PROCESS_NAME} <node> [<node> ...] [--ros-args ...]; nodes: {sorted(BY_NAME)}"
    if len(set(names)) != len(names):
        return [], f"a node is named twice: {names}"
    return names, ""


def main(args=None) -> int:
    argv = list(sys.argv if args is None else args)
    names, err = parse(argv[1:])
    if err:
        print(f"[{PROCESS_NAME}] FATAL: {err}", file=sys.stderr, flush=True)
        return EXIT_INVALID_PARAMETER
    from reachy_mini.ros.runner import run_nodes

    modules = [importlib.import_module(BY_NAME[n].module) for n in names]
    return run_nodes([(m.NODE, n) for m, n in zip(modules, names)], argv,
                     before_init=[m.before_init for m in modules if hasattr(m, "before_init")])


if __name__ == "__main__":
    sys.exit(main())
