"""The robot's frames (plain Python): the URDF's tree of joints, and the
transforms that place each frame in its parent, from joint positions and the
head's forward kinematics. motor_node publishes them on /tf and /tf_static;
web_bridge composes them into the picture on the page.

Joints: `fixed` ones are static (/tf_static), `revolute` ones turn about
their axis by the joint's position (joint_states), and the `floating` joint
`head_pose` is the head pose from forward kinematics (base_link -> head). A
transform is (parent, child, (x, y, z), (qx, qy, qz, qw)).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from reachy_mini.core.head import Target, rpy_to_matrix, rpy_to_quaternion

HEAD_JOINT = "head_pose"

Transform = tuple[str, str, tuple[float, float, float], tuple[float, float, float, float]]


@dataclass(frozen=True)
class Joint:
    name: str
    type: str
    parent: str
    child: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]
    axis: tuple[float, float, float]


def _floats(text: str | None, n: int, default: float, what: str) -> tuple[float, ...]:
    if text is None:
        return (default,) * n
    try:
        v = tuple(float(x) for x in text.split())
    except ValueError:
        v = ()
    if len(v) != n or not all(math.isfinite(x) for x in v):
        raise ValueError(f"{what}: expected {n} numbers, got {text!r}")
    return v


def quat_multiply(a, b) -> tuple[float, float, float, float]:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)


def quat_to_matrix(q) -> np.ndarray:
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


class RobotFrames:
    """The URDF's joint tree; raises ValueError on a description it cannot use."""

    def __init__(self, urdf_xml: str) -> None:
        try:
            root = ET.fromstring(urdf_xml)
        except ET.ParseError as e:
            raise ValueError(f"robot description is not XML: {e}") from None
        if root.tag != "robot":
            raise ValueError(f"robot description: root element is <{root.tag}>, expected <robot>")
        self.links = [l.get("name") for l in root.findall("link")]
        self.joints: list[Joint] = []
        for j in root.findall("joint"):
            name, kind = j.get("name", ""), j.get("type", "")
            parent, child, origin, axis = j.find("parent"), j.find("child"), j.find("origin"), j.find("axis")
            if kind not in ("fixed", "revolute", "continuous", "floating") or parent is None or child is None:
                raise ValueError(f"robot description: joint {name!r} of type {kind!r} is not supported here")
            o = {} if origin is None else origin.attrib
            self.joints.append(Joint(name, kind, parent.get("link", ""), child.get("link", ""),
                                     _floats(o.get("xyz"), 3, 0.0, f"joint {name} origin xyz"),
                                     _floats(o.get("rpy"), 3, 0.0, f"joint {name} origin rpy"),
                                     _floats(None if axis is None else axis.get("xyz"), 3, 0.0,
                                             f"joint {name} axis") if axis is not None else (1.0, 0.0, 0.0)))
        children = [j.child for j in self.joints]
        roots = [l for l in self.links if l not in children]
        if len(roots) != 1 or set(children) - set(self.links) or len(set(children)) != len(children):
            raise ValueError(f"robot description: the links do not form one tree (roots: {roots})")
        self.root = roots[0]
        self.moving = [j.name for j in self.joints if j.type in ("revolute", "continuous")]

    def static_transforms(self) -> list[Transform]:
        return [(j.parent, j.child, j.xyz, rpy_to_quaternion(*j.rpy)) for j in self.joints if j.type == "fixed"]

    def dynamic_transforms(self, positions: dict[str, float], head: Target | None) -> list[Transform]:
        """The moving joints' transforms: each revolute joint found in
        `positions` (rad), and the head from its pose (None: left out)."""
        out: list[Transform] = []
        for j in self.joints:
            if j.type == "floating":
                if j.name == HEAD_JOINT and head is not None:
                    out.append((j.parent, j.child, (head.x, head.y, head.z),
                                rpy_to_quaternion(head.roll, head.pitch, head.yaw)))
            elif j.type != "fixed" and positions.get(j.name) is not None:
                a, (ax, ay, az) = positions[j.name], j.axis
                n = math.sqrt(ax * ax + ay * ay + az * az) or 1.0
                s = math.sin(a / 2) / n
                out.append((j.parent, j.child, j.xyz,
                            quat_multiply(rpy_to_quaternion(*j.rpy), (ax * s, ay * s, az * s, math.cos(a / 2)))))
        return out


def compose(transforms: list[Transform], root: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each frame reachable from `root`: (position (3,), rotation (3, 3)) in root."""
    by_parent: dict[str, list[Transform]] = {}
    for t in transforms:
        by_parent.setdefault(t[0], []).append(t)
    out = {root: (np.zeros(3), np.eye(3))}
    todo = [root]
    while todo:
        p = todo.pop()
        pp, pr = out[p]
        for _, child, xyz, q in by_parent.get(p, []):
            if child not in out:
                out[child] = (pp + pr @ np.asarray(xyz, dtype=float), pr @ quat_to_matrix(q))
                todo.append(child)
    return out


def prefixed(frame: str, prefix: str) -> str:
    """tf2's frame_prefix, as robot_state_publisher applies it."""
    return prefix + frame


def pose_of(position: np.ndarray, rotation: np.ndarray) -> Target:
    """A Target (x, y, z, roll, pitch, yaw) from a composed frame."""
    from reachy_mini.core.head import matrix_to_rpy

    r, p, y = matrix_to_rpy(rotation)
    return Target(float(position[0]), float(position[1]), float(position[2]), r, p, y)


__all__ = ["HEAD_JOINT", "Joint", "RobotFrames", "Transform", "compose", "pose_of", "prefixed", "quat_to_matrix",
           "rpy_to_matrix"]
