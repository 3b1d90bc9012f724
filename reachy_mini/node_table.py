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
