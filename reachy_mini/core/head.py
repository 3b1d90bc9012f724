"""Head pose control (plain Python): the Stewart-platform head's inverse and
forward kinematics, with the vendor's analytical solver
(`reachy-mini-rust-kinematics`, analytical IK, numerical FK) and geometry,
and the limits a target must respect.

The geometry is the vendor's own data file, unchanged: reachy-mini 1.13.0's
`reachy_mini/assets/kinematics_data.json` (GEOMETRY_SOURCE), shipped as
config/kinematics_data.json (GEOMETRY_FILE). It is read as the vendor's
AnalyticalKinematics reads it; a file of another form is refused at start
with its name and what differs (load_geometry). Everything that needs the
head's geometry (motor_node's IK/FK, head/pose and /tf, the safety
envelope's mechanism rules, the SDK and HTTP bridges) goes through
HeadKinematics built from it.

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


# The head's geometry: the vendor's data file, copied byte for byte
# (test/unit/test_core.py checks the digest; test/system/test_vendor_kinematics.py
# checks it against the file the vendor's wheel installs).
GEOMETRY_FILE = "kinematics_data.json"
GEOMETRY_SOURCE = "reachy-mini 1.13.0 (PyPI), reachy_mini/assets/kinematics_data.json"
GEOMETRY_SHA256 = "b07324cfe46515d7b3bd5be416f5f2ed87811ac1fcdb0e6ad841119e4ed9ab3b"
# A head goal beyond +/-80 deg is out of reach: the widest Stewart joint
# range (the vendor's hardware_config.yaml, +/-910 ticks; config/motors.yaml
# has each motor's own range, enforced by the driver). The data file's own
# limits are +/-pi.
REACH_RAD = math.radians(80.0)

_TOP_KEYS = {"motor_arm_length", "rod_length", "head_z_offset", "motors"}
_MOTOR_KEYS = {"name", "branch_frame", "offset", "solution", "T_motor_world", "branch_position", "limits"}


@dataclass(frozen=True)
class Branch:
    motor: str
    branch_position: tuple[float, float, float]   # the rod's end on the head, in the head frame (m)
    t_motor_world: np.ndarray                      # 4x4: the motor's frame in the world (the base)
    solution: int                                  # which of the two IK solutions (0/1)
    limits: tuple[float, float]                    # rad


@dataclass(frozen=True)
class Geometry:
    """The Stewart head's geometry, in the vendor's terms (m, rad). The
    world frame is the robot's base (x forward, y left, z up); the head
    pose is the head frame in it, z lowered by head_z_offset so that the
    home pose is the identity."""
    motor_arm_length: float
    rod_length: float
    head_z_offset: float
    branches: tuple[Branch, ...]
    path: str = ""


def _number(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {v!r}")
    return float(v)


def parse_geometry(data, path: str = "") -> Geometry:
    """The vendor's kinematics_data.json content -> Geometry. ValueError
    naming the file and what is not in the form reachy-mini 1.13.0 ships."""
    where = f"head kinematics: {path or 'geometry'}"
    try:
        if not isinstance(data, dict):
            raise ValueError("is not a JSON object")
        keys = set(data)
        if keys != _TOP_KEYS:
            raise ValueError(f"keys {sorted(keys)}, expected {sorted(_TOP_KEYS)}")
        motors = data["motors"]
        if not isinstance(motors, list) or [m.get("name") if isinstance(m, dict) else None
                                            for m in motors] != HEAD_JOINTS:
            raise ValueError(f"'motors' must be {HEAD_JOINTS} in this order")
        branches = []
        for m in motors:
            n = m["name"]
            if set(m) != _MOTOR_KEYS:
                raise ValueError(f"{n}: keys {sorted(m)}, expected {sorted(_MOTOR_KEYS)}")
            t = np.array(m["T_motor_world"], dtype=float)
            bp = [_number(v, f"{n}: branch_position") for v in m["branch_position"]]
            lim = [_number(v, f"{n}: limits") for v in m["limits"]]
            if t.shape != (4, 4) or not np.all(np.isfinite(t)) or len(bp) != 3 or len(lim) != 2 or lim[0] >= lim[1]:
                raise ValueError(f"{n}: T_motor_world must be 4x4 numbers, branch_position 3 numbers, "
                                 "limits [min, max]")
            if m["solution"] not in (0, 1) or isinstance(m["solution"], bool):
                raise ValueError(f"{n}: solution must be 0 or 1, got {m['solution']!r}")
            _number(m["offset"], f"{n}: offset")   # unused by the vendor's analytical kinematics, as here
            branches.append(Branch(n, tuple(bp), t, int(m["solution"]), (lim[0], lim[1])))
        g = Geometry(_number(data["motor_arm_length"], "motor_arm_length"), _number(data["rod_length"], "rod_length"),
                     _number(data["head_z_offset"], "head_z_offset"), tuple(branches), path)
        if g.motor_arm_length <= 0 or g.rod_length <= 0:
            raise ValueError("motor_arm_length and rod_length must be > 0")
        return g
    except (TypeError, ValueError, KeyError) as e:
        msg = f"missing entry {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{where}: not the vendor's kinematics_data.json form ({GEOMETRY_SOURCE}): {msg}") from None


def load_geometry(path: str | None = None) -> Geometry:
    """The geometry in `path` (default: the package's config/kinematics_data.json)."""
    import json

    if not path:
        from reachy_mini.common.paths import config_path
        path = config_path(GEOMETRY_FILE)
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except OSError as e:
        raise ValueError(f"head kinematics: cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ValueError(f"head kinematics: {path} is not valid JSON ({e}); expected the vendor's "
                         f"kinematics_data.json ({GEOMETRY_SOURCE})") from None
    return parse_geometry(data, path)


class HeadKinematics:
    """IK: a Target -> joint goals (rad) for stewart_1..6 and body_rotation.
    FK: the six head joints (and the body yaw) -> the head pose. Built as
    the vendor's AnalyticalKinematics builds its solver."""

    def __init__(self, geometry: Geometry | None = None) -> None:
        from reachy_mini_rust_kinematics import ReachyMiniRustKinematics

        g = self.geometry = geometry if geometry is not None else load_geometry()
        self.z_offset = g.head_z_offset
        self.kin = ReachyMiniRustKinematics(g.motor_arm_length, g.rod_length)
        for b in g.branches:
            self.kin.add_branch(list(b.branch_position), np.linalg.inv(b.t_motor_world).tolist(),
                                1.0 if b.solution else -1.0)
        self.joint_limits = {b.motor: (max(b.limits[0], -REACH_RAD), min(b.limits[1], REACH_RAD))
                             for b in g.branches}
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
