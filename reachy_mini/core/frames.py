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
class Visual:
    """A link's visual shape: box (size x, y, z), cylinder (radius, length,
    along z) or sphere (radius), placed by xyz/rpy in the link's frame."""
    link: str
    shape: str
    dims: tuple[float, ...]
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]


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
        self.visuals: list[Visual] = []
        for l in root.findall("link"):
            for v in l.findall("visual"):
                o = v.find("origin")
                o = {} if o is None else o.attrib
                g = v.find("geometry")
                for shape, attrs in (("box", ("size",)), ("cylinder", ("radius", "length")), ("sphere", ("radius",))):
                    e = None if g is None else g.find(shape)
                    if e is not None:
                        dims = _floats(" ".join(e.get(a, "") for a in attrs), 3 if shape == "box" else len(attrs),
                                       0.0, f"link {l.get('name')} {shape}")
                        self.visuals.append(Visual(l.get("name"), shape, dims,
                                                   _floats(o.get("xyz"), 3, 0.0, f"link {l.get('name')} visual xyz"),
                                                   _floats(o.get("rpy"), 3, 0.0, f"link {l.get('name')} visual rpy")))
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


def _outline(v: Visual, n: int = 12) -> list[np.ndarray]:
    """Polylines (arrays of points, in the visual's frame) that draw a shape."""
    if v.shape == "box":
        x, y, z = (d / 2 for d in v.dims)
        loop = [(-x, -y), (x, -y), (x, y), (-x, y), (-x, -y)]
        return [np.array([(a, b, -z) for a, b in loop]), np.array([(a, b, z) for a, b in loop])] + \
            [np.array([(a, b, -z), (a, b, z)]) for a, b in loop[:4]]
    a = np.linspace(0, 2 * math.pi, n + 1)
    r = v.dims[0]
    if v.shape == "cylinder":
        h = v.dims[1] / 2
        ring = lambda z: np.stack([r * np.cos(a), r * np.sin(a), np.full_like(a, z)], 1)   # noqa: E731
        return [ring(-h), ring(h)] + [np.array([(r * c, r * s, -h), (r * c, r * s, h)])
                                      for c, s in ((1, 0), (0, 1), (-1, 0), (0, -1))]
    c, s, o = r * np.cos(a), r * np.sin(a), np.zeros_like(a)
    return [np.stack([c, s, o], 1), np.stack([c, o, s], 1), np.stack([o, c, s], 1)]


def view(transforms: list[Transform], visuals: list[Visual] = ()) -> dict:
    """The page's robot view: every frame in the tree's root (the frame that
    is no one's child: base_link, or <frame_prefix>base_link), the prefix
    taken off the names: {"root", "prefix", "frames": {name: {"p": [x, y, z],
    "r": [9 numbers, row-major]}}, "lines": [{"link", "pts": [[x, y, z], ...]}]},
    the lines drawing each visual shape of the URDF where TF puts its link;
    {} when there is no single root yet."""
    children = {t[1] for t in transforms}
    roots = {t[0] for t in transforms} - children
    if len(roots) != 1:
        return {}
    root = roots.pop()
    prefix = root[: -len("base_link")] if root.endswith("base_link") else ""
    tree = compose(transforms, root)
    lines = []
    for v in visuals:
        if prefix + v.link in tree:
            p, r = tree[prefix + v.link]
            vr = rpy_to_matrix(*v.rpy)
            for pts in _outline(v):
                world = p + (np.asarray(v.xyz) + pts @ vr.T) @ r.T
                lines.append({"link": v.link, "pts": np.round(world, 3).tolist()})
    return {"root": root, "prefix": prefix, "lines": lines,
            "frames": {name[len(prefix):]: {"p": [round(float(v), 5) for v in p],
                                            "r": [round(float(v), 5) for v in r.ravel()]}
                       for name, (p, r) in tree.items()}}


def prefixed(frame: str, prefix: str) -> str:
    """tf2's frame_prefix, as robot_state_publisher applies it."""
    return prefix + frame


def pose_of(position: np.ndarray, rotation: np.ndarray) -> Target:
    """A Target (x, y, z, roll, pitch, yaw) from a composed frame."""
    from reachy_mini.core.head import matrix_to_rpy

    r, p, y = matrix_to_rpy(rotation)
    return Target(float(position[0]), float(position[1]), float(position[2]), r, p, y)


__all__ = ["HEAD_JOINT", "Joint", "RobotFrames", "Visual", "Transform", "compose", "pose_of", "prefixed", "quat_to_matrix",
           "rpy_to_matrix", "view"]
