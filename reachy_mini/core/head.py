"""Head pose control (plain Python): the Stewart-platform head's inverse and
forward kinematics, with the vendor's analytical solver
(`reachy-mini-rust-kinematics`, analytical IK, numerical FK) and geometry
(config/head_kinematics.yaml), and the limits a target must respect.

Frames (REP-103): the pose is the head frame in `base_link`, the robot's
base (x forward, y left, z up), with the height shifted so that the home
pose (head level, looking forward) is the identity. Body yaw is the
`body_rotation` joint; head yaw is about the base's z axis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

HEAD_JOINTS = [f"stewart_{i}" for i in range(1, 7)]
BODY_JOINT = "body_rotation"


@dataclass(frozen=True)
class Limits:
    """Degrees. The head's yaw relative to the body is what the mechanism bounds."""
    roll_pitch_deg: float = 40.0
    head_yaw_deg: float = 180.0
    body_yaw_deg: float = 160.0
    relative_yaw_deg: float = 65.0


@dataclass
class Target:
    """A head pose in base_link (m, rad) and the body yaw (rad)."""
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    body_yaw: float = 0.0
    notes: list[str] = field(default_factory=list)   # what was clamped, and why


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll) (REP-103 fixed-axis roll, pitch, yaw)."""
    cr, sr, cp, sp, cy, sy = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), \
        math.cos(yaw), math.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def matrix_to_rpy(r: np.ndarray) -> tuple[float, float, float]:
    pitch = -math.asin(max(-1.0, min(1.0, r[2, 0])))
    return math.atan2(r[2, 1], r[2, 2]), pitch, math.atan2(r[1, 0], r[0, 0])


def quaternion_to_rpy(x: float, y: float, z: float, w: float) -> tuple[float, float, float]:
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(n) or n < 1e-9:
        raise ValueError("orientation is not a valid quaternion (zero or not finite)")
    x, y, z, w = x / n, y / n, z / n, w / n
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    return matrix_to_rpy(r)


def rpy_to_quaternion(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    cr, sr, cp, sp, cy, sy = math.cos(roll / 2), math.sin(roll / 2), math.cos(pitch / 2), math.sin(pitch / 2), \
        math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def limit(t: Target, lim: Limits, auto_body_yaw: bool) -> Target:
    """Clamps a target into the head's range; each clamp is noted with its
    reason. With auto_body_yaw the body turns to keep the head within its
    yaw range relative to the body, as the vendor's SDK does."""
    out = Target(t.x, t.y, t.z, t.roll, t.pitch, _wrap(t.yaw), t.body_yaw, [])

    def clamp(name: str, v: float, bound_deg: float, center: float = 0.0, why: str = "") -> float:
        b = math.radians(bound_deg)
        c = min(max(v, center - b), center + b)
        if abs(c - v) > 1e-9:
            out.notes.append(f"{name} {math.degrees(v):.1f} deg clamped to {math.degrees(c):.1f} deg ({why})")
        return c

    out.roll = clamp("roll", out.roll, lim.roll_pitch_deg, why=f"limit +/-{lim.roll_pitch_deg:g} deg")
    out.pitch = clamp("pitch", out.pitch, lim.roll_pitch_deg, why=f"limit +/-{lim.roll_pitch_deg:g} deg")
    out.yaw = clamp("head yaw", out.yaw, lim.head_yaw_deg, why=f"limit +/-{lim.head_yaw_deg:g} deg")
    if auto_body_yaw:
        rel = math.radians(lim.relative_yaw_deg)
        if out.yaw - out.body_yaw > rel:
            out.body_yaw = out.yaw - rel
        elif out.yaw - out.body_yaw < -rel:
            out.body_yaw = out.yaw + rel
    out.body_yaw = clamp("body yaw", out.body_yaw, lim.body_yaw_deg, why=f"limit +/-{lim.body_yaw_deg:g} deg")
    out.yaw = clamp("head yaw", out.yaw, lim.relative_yaw_deg, center=out.body_yaw,
                    why=f"head yaw minus body yaw within +/-{lim.relative_yaw_deg:g} deg")
    return out


class HeadKinematics:
    """IK: a Target -> joint goals (rad) for stewart_1..6 and body_rotation.
    FK: the six head joints (and the body yaw) -> the head pose."""

    def __init__(self, geometry: dict) -> None:
        from reachy_mini_rust_kinematics import ReachyMiniRustKinematics

        try:
            self.z_offset = float(geometry["head_z_offset"])
            self.kin = ReachyMiniRustKinematics(float(geometry["motor_arm_length"]), float(geometry["rod_length"]))
            branches = geometry["branches"]
            if [b["motor"] for b in branches] != HEAD_JOINTS:
                raise ValueError(f"branches must be {HEAD_JOINTS} in this order")
            for b in branches:
                t = np.array(b["T_motor_world"], dtype=float)
                if t.shape != (4, 4) or len(b["branch_position"]) != 3:
                    raise ValueError(f"{b['motor']}: T_motor_world must be 4x4 and branch_position 3 numbers")
                self.kin.add_branch([float(v) for v in b["branch_position"]], np.linalg.inv(t).tolist(),
                                    1.0 if b["solution"] else -1.0)
            self.joint_limits = {b["motor"]: tuple(b["limits"]) for b in branches}
        except (KeyError, TypeError) as e:
            raise ValueError(f"head kinematics: missing or malformed entry {e}") from None
        self.kin.reset_forward_kinematics(self._world(Target()).tolist())

    def _world(self, t: Target) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = rpy_to_matrix(t.roll, t.pitch, t.yaw)
        m[:3, 3] = (t.x, t.y, t.z + self.z_offset)
        return m

    def ik(self, t: Target) -> dict[str, float]:
        """Raises ValueError when the pose is out of the mechanism's reach."""
        angles = self.kin.inverse_kinematics(self._world(t).tolist(), t.body_yaw)
        if len(angles) != 6 or not all(math.isfinite(a) for a in angles):
            raise ValueError("pose out of reach (no inverse kinematics solution)")
        for name, a in zip(HEAD_JOINTS, angles):
            lo, hi = self.joint_limits[name]
            if not lo <= a <= hi:
                raise ValueError(f"pose out of reach: {name} would need {math.degrees(a):.0f} deg")
        return dict(zip(HEAD_JOINTS, angles)) | {BODY_JOINT: t.body_yaw}

    def fk(self, joints: dict[str, float], iterations: int = 3) -> Target:
        """Numerical (Newton) FK, warm-started from the previous solution."""
        body = joints.get(BODY_JOINT, 0.0) or 0.0
        angles = [joints[n] for n in HEAD_JOINTS]
        m = None
        for _ in range(iterations):
            m = np.array(self.kin.forward_kinematics(angles, body))
        roll, pitch, yaw = matrix_to_rpy(m[:3, :3])
        return Target(m[0, 3], m[1, 3], m[2, 3] - self.z_offset, roll, pitch, yaw, body)


def load_geometry(path: str) -> dict:
    from reachy_mini.core.config import read_yaml

    data = read_yaml(path, "head kinematics")
    if not isinstance(data, dict):
        raise ValueError(f"head kinematics: {path} is not a mapping")
    return data
