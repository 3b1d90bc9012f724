"""The vendor SDK's protocol (PyPI `reachy-mini` 1.13, `/ws/sdk`), as plain
Python: what the web bridge's websocket endpoint (web/sdk_ws.py) and node
(nodes/web_bridge.py) decide with. No rclpy, no web framework.

- parse(): a client's JSON text frame -> a Command, or ProtocolError with
  the reason (malformed, unknown type, bad field);
- the vendor's joint order, units and frame: `joint_positions` is
  [body_rotation, stewart_1..6] and [right_antenna, left_antenna] in rad;
  `head_pose` a 4x4 matrix in metres, identity = neutral head, x forward,
  y left, z up (our head/pose frame, core/head.py);
- interpolation (linear, minjerk, ease_in_out, cartoon) with the vendor's
  formulas (reachy_mini.utils.interpolation) and goto planning: the move
  sampled at the motor loop rate, head poses through our IK;
- daemon_status from our health; the per-client flood guard and recording
  buffer.
"""
from __future__ import annotations

import json
import math
import time
import uuid as _uuid
from dataclasses import dataclass, field

import numpy as np

from reachy_mini.core.head import BODY_JOINT, HEAD_JOINTS, Limits, Target, limit, matrix_to_rpy, rpy_to_matrix

HEAD_ORDER = [BODY_JOINT] + HEAD_JOINTS               # the vendor's head_joint_positions
ANTENNAS = ["right_antenna", "left_antenna"]          # the vendor's antennas_joint_positions
SDK_VERSION = "1.13.0"                               # the protocol version served
MAX_FRAME_BYTES = 2 * 1024 * 1024                    # a bigger frame closes the client (1009)
METHODS = ("linear", "minjerk", "ease_in_out", "cartoon")
MAX_GOTO_S = 60.0

# Commands of the vendor's protocol this stack does not honour, with the reason.
UNSUPPORTED = {
    "set_gravity_compensation": "gravity compensation needs current control of the Stewart motors, which this "
                                "stack does not run (position control only)",
    "set_wobbling": "audio-reactive wobbling is not implemented (no media over the SDK protocol)",
    "set_speech_offsets": "speech offsets (wobbling) are not implemented (no media over the SDK protocol)",
    "set_head_tracking": "daemon-side face tracking is not implemented",
    "get_tracked_face": "daemon-side face tracking is not implemented",
    "set_motor_mode": "motor modes other than torque on/off are not implemented; use set_torque",
    "wake_up": "daemon-side wake-up is not implemented; the SDK's wake_up() (a goto) works",
    "goto_sleep": "daemon-side sleep is not implemented; the SDK's goto_sleep() (gotos) works",
    "goto_target": "daemon-side goto command is not implemented; the SDK's goto_target() (a task) works",
    "play_recorded_move": "recorded-move datasets are not served; play_move() in the app works",
    "preload_dataset": "recorded-move datasets are not served",
    "apply_audio_config": "raw XVF3800 parameters are not served: audio_node owns the board's USB interface",
    "read_audio_parameter": "raw XVF3800 parameters are not served: audio_node owns the board's USB interface",
    "set_robot_name": "the robot's name is the stack's robot_name parameter",
    "delete_hf_token": "no Hugging Face account is kept by this stack",
    "restart_daemon": "the stack is restarted by its supervisor or systemd, not by an app",
    "start_update": "the stack is updated with its own tools, not by an app",
    "set_telemetry": "this stack sends no telemetry",
    "subscribe_logs": "logs are in ROS (/rosout) and the journal",
    "subscribe_pose": "the pose stream is the WebRTC transport's; /ws/sdk already streams the pose",
    "play_uploaded_move": "uploaded moves are not implemented; play_move() in the app works",
    "cancel_move": "uploaded moves are not implemented",
    "stop_move": "uploaded moves are not implemented; a new target preempts a goto",
    "play_uploaded_audio": "audio uploads are not implemented; play_sound with a path on the robot works",
    "cancel_audio": "audio uploads are not implemented; clear_incoming_audio stops what is playing",
}
# Audio commands served through audio_node (web_bridge -> audio/play_file, audio/stop, its
# speaker_volume / microphone_gain parameters). Over /ws/sdk the vendor sends no reply
# (fire-and-forget), so get_volume / get_microphone_volume are accepted and answer nothing, as there.
MEDIA = ("play_sound", "set_volume", "get_volume", "set_microphone_volume", "get_microphone_volume",
         "clear_incoming_audio")
for _t in ("upload_move_start", "upload_move_chunk", "upload_move_finish",
           "upload_audio_start", "upload_audio_chunk", "upload_audio_finish"):
    UNSUPPORTED[_t] = "uploads are not implemented"
# Queries answered by the vendor's JSON-RPC transport (WebRTC), not used by the
# Python SDK over /ws/sdk: dropped with the reason, like the unsupported ones.
for _t in ("get_state", "get_version", "get_hardware_id", "get_imu", "get_motor_mode", "get_robot_name",
           "get_first_wake_up", "set_first_wake_up", "get_telemetry", "unsubscribe_logs", "unsubscribe_pose"):
    UNSUPPORTED.setdefault(_t, "a JSON-RPC query of the WebRTC transport; not answered over /ws/sdk")


class ProtocolError(ValueError):
    """A frame that is not a valid command; str() is the reason. `kind` is
    what the counters count it as: malformed | unknown | invalid."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass
class Command:
    """kind: motion | torque | auto_body_yaw | record_start | record_stop |
    record_append | task | media | unsupported."""
    kind: str
    type: str
    head: np.ndarray | None = None          # 4x4
    antennas: list[float] | None = None     # [right, left]
    body_yaw: float | None = None
    head_joints: list[float] | None = None  # HEAD_ORDER
    on: bool | None = None
    ids: list[str] | None = None
    record: dict | None = None
    uuid: str | None = None
    duration: float = 0.0
    method: str = "minjerk"
    reason: str = ""
    value: object = None                    # media: the file (play_sound) or the volume 0-100 (set_*)


def _float(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ProtocolError("invalid", f"{what}: expected a number, got {type(v).__name__}")
    f = float(v)
    if not math.isfinite(f):
        raise ProtocolError("invalid", f"{what}: not a finite number")
    return f


def _floats(v, n: int, what: str) -> list[float]:
    if not isinstance(v, list) or len(v) != n:
        raise ProtocolError("invalid", f"{what}: expected a list of {n} numbers")
    if all(type(x) is float and math.isfinite(x) for x in v):   # the common case, without a name per item
        return v
    return [_float(x, f"{what}[{i}]") for i, x in enumerate(v)]


def _bool(v, what: str) -> bool:
    if not isinstance(v, bool):
        raise ProtocolError("invalid", f"{what}: expected true or false")
    return v


def head_matrix(v, what: str = "head") -> np.ndarray:
    """16 floats row-major -> a 4x4 rigid transform (checked)."""
    f = _floats(v, 16, what)
    rows = (f[0:3], f[4:7], f[8:11])   # plain Python: ~5x faster than numpy for a 3x3 (100 Hz streams)
    ortho = all(abs(sum(a * b for a, b in zip(rows[i], rows[j])) - (i == j)) <= 1e-3
                for i in range(3) for j in range(i, 3))
    det = (rows[0][0] * (rows[1][1] * rows[2][2] - rows[1][2] * rows[2][1])
           - rows[0][1] * (rows[1][0] * rows[2][2] - rows[1][2] * rows[2][0])
           + rows[0][2] * (rows[1][0] * rows[2][1] - rows[1][1] * rows[2][0]))
    if not ortho or det < 0 or any(abs(a - b) > 1e-6 for a, b in zip(f[12:], (0.0, 0.0, 0.0, 1.0))):
        raise ProtocolError("invalid", f"{what}: not a rigid transform (rotation not orthonormal or last row "
                                       "not [0, 0, 0, 1])")
    if max(abs(f[3]), abs(f[7]), abs(f[11])) > 1.0:
        raise ProtocolError("invalid", f"{what}: translation beyond 1 m")
    return np.array(f).reshape(4, 4)


def parse(text: str | bytes) -> Command:
    """A client frame -> Command; ProtocolError(kind, reason) otherwise."""
    if len(text) > MAX_FRAME_BYTES:
        raise ProtocolError("oversized", f"frame of {len(text)} bytes (max {MAX_FRAME_BYTES})")
    try:
        d = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError("malformed", f"not JSON: {e}") from None
    if not isinstance(d, dict) or not isinstance(d.get("type"), str):
        raise ProtocolError("malformed", "not a JSON object with a string 'type'")
    t = d["type"]
    if t in ("set_full_target", "set_target", "set_body_yaw", "set_antennas", "set_head_joints"):
        c = Command("motion", t)
        if t == "set_target" or (t == "set_full_target" and d.get("head") is not None):
            c.head = head_matrix(d.get("head"))
        if t == "set_antennas" or (t == "set_full_target" and d.get("antennas") is not None):
            c.antennas = _floats(d.get("antennas"), 2, "antennas")
        if t == "set_body_yaw" or (t == "set_full_target" and d.get("body_yaw") is not None):
            c.body_yaw = _float(d.get("body_yaw"), "body_yaw")
        if t == "set_head_joints":
            c.head_joints = _floats(d.get("joints"), 7, "joints")
        if c.head is None and c.antennas is None and c.body_yaw is None and c.head_joints is None:
            raise ProtocolError("invalid", "set_full_target: none of head, antennas, body_yaw given")
        return c
    if t == "set_torque":
        ids = d.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            raise ProtocolError("invalid", "ids: expected null or a list of motor names")
        return Command("torque", t, on=_bool(d.get("on"), "on"), ids=ids)
    if t == "set_automatic_body_yaw":
        return Command("auto_body_yaw", t, on=_bool(d.get("enabled"), "enabled"))
    if t == "start_recording":
        return Command("record_start", t)
    if t == "stop_recording":
        return Command("record_stop", t)
    if t == "append_record":
        if not isinstance(d.get("record"), dict):
            raise ProtocolError("invalid", "record: expected an object")
        return Command("record_append", t, record=d["record"])
    if t == "task":
        return _task(d)
    if t in MEDIA:
        c = Command("media", t)
        if t == "play_sound":
            if not isinstance(d.get("file"), str) or not d["file"]:
                raise ProtocolError("invalid", "play_sound: file: expected a non-empty string")
            c.value = d["file"]
        elif t.startswith("set_"):
            v = d.get("volume")
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 100:
                raise ProtocolError("invalid", f"{t}: volume: expected an integer in [0, 100]")
            c.value = v
        return c
    if t in UNSUPPORTED:
        return Command("unsupported", t, reason=UNSUPPORTED[t])
    raise ProtocolError("unknown", f"unknown message type {t[:60]!r}")


def _task(d: dict) -> Command:
    try:
        uid = str(_uuid.UUID(str(d.get("uuid"))))
    except ValueError:
        raise ProtocolError("invalid", "task: uuid is not a UUID") from None
    req = d.get("req")
    if not isinstance(req, dict):
        raise ProtocolError("invalid", "task: req is not an object")
    if "move_name" in req:
        return Command("unsupported", "task", uuid=uid,
                       reason="play-move tasks (recorded moves by name) are not served; play_move() in the app works")
    c = Command("task", "task", uuid=uid)
    if req.get("head") is not None:
        c.head = head_matrix(req["head"], "req.head")
    if req.get("antennas") is not None:
        c.antennas = _floats(req["antennas"], 2, "req.antennas")
    if req.get("body_yaw") is not None:
        c.body_yaw = _float(req["body_yaw"], "req.body_yaw")
    c.duration = _float(req.get("duration"), "req.duration")
    if not 0.0 < c.duration <= MAX_GOTO_S:
        raise ProtocolError("invalid", f"req.duration: must be in (0, {MAX_GOTO_S:g}] s")
    c.method = req.get("method", "minjerk")
    if c.method not in METHODS:
        raise ProtocolError("invalid", f"req.method: {str(c.method)[:40]!r} is not one of {', '.join(METHODS)}")
    return c


# ------------------------------------------------------------------ frames
def matrix_to_pose(m: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """((x, y, z), (roll, pitch, yaw)) of a 4x4 matrix."""
    return (float(m[0, 3]), float(m[1, 3]), float(m[2, 3])), matrix_to_rpy(m[:3, :3])


def pose_to_matrix(x: float, y: float, z: float, roll: float, pitch: float, yaw: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rpy_to_matrix(roll, pitch, yaw)
    m[:3, 3] = (x, y, z)
    return m


def joint_positions_msg(joints: dict[str, float]) -> dict | None:
    """Our joint_states (name -> rad) as the vendor's message; None while a joint is missing."""
    try:
        return {"type": "joint_positions", "head_joint_positions": [float(joints[n]) for n in HEAD_ORDER],
                "antennas_joint_positions": [float(joints[n]) for n in ANTENNAS]}
    except KeyError:
        return None


def head_pose_msg(m: np.ndarray) -> dict:
    return {"type": "head_pose", "head_pose": [[float(v) for v in row] for row in m]}


def motor_mode(torques: list[str]) -> str | None:
    """The vendor's motor_control_mode from our motors' torque values
    ("True"/"False"): enabled when all are on; None when unknown."""
    if not torques:
        return None
    return "enabled" if all(t == "True" for t in torques) else "disabled"


def media_status(camera_serving: bool, audio_shared: bool, camera_specs: str = "lite") -> dict:
    """The status fields that steer an SDK app's media choice (ReachyMini._configure_mediamanager):
    no_media is false only while camera_node serves the SDK camera socket AND audio_node shares
    its devices (else the SDK would fall back to WebRTC, which we do not serve, and fail);
    camera_specs_name names the spec (the frame size apps read) only while the socket serves."""
    return {"no_media": not (camera_serving and audio_shared),
            "camera_specs_name": camera_specs if camera_serving else ""}


def media_from_diagnostics(camera: dict, audio: dict) -> dict:
    """media_status from camera_node's and audio_node's diagnostic values
    (keys `sdk_socket` = serving|off, `camera_specs_name`; `shared_pcm` = true|false)."""
    return media_status(camera.get("sdk_socket") == "serving", audio.get("shared_pcm") == "true",
                        camera.get("camera_specs_name") or "lite")


def daemon_status(robot: str, top: dict | None, mode: str | None, version: str, hardware_id: str = "",
                  simulated: bool | None = None, media: dict | None = None) -> dict:
    """running while our top level is OK or WARN; error (with our message) while
    it is ERROR or STALE or not heard yet.

    `version` is this package's own version, reported as `package_version`;
    the daemon `version` an SDK compares with its own (and warns about on
    connect when they differ) is the vendor protocol version we serve,
    SDK_VERSION. Also the body of GET /api/daemon/status."""
    if top is None:
        state, error = "error", "no health report from the stack yet"
    elif top["level"] >= 2:
        state, error = "error", f"{top['level_name']}: {top['message']}"
    else:
        state, error = "running", None
    backend = None if mode is None else {"ready": state == "running", "motor_control_mode": mode,
                                         "last_alive": time.time(), "control_loop_stats": {}, "error": error}
    return {"type": "daemon_status", "robot_name": robot, "state": state, "wireless_version": False,
            "desktop_app_daemon": False, "simulation_enabled": simulated, "mockup_sim_enabled": None,
            "no_media": True, "camera_specs_name": "", "backend_status": backend, "error": error,
            "version": SDK_VERSION, "package_version": version, "hardware_id": hardware_id or None, **(media or {})}


def task_progress_msg(uid: str, error: str | None = None) -> dict:
    from datetime import datetime

    return {"type": "task_progress", "uuid": uid, "finished": True, "error": error,
            "timestamp": datetime.now().isoformat()}


# ------------------------------------------------------------------ interpolation (the vendor's formulas)
def time_trajectory(t: float, method: str = "minjerk") -> float:
    """reachy_mini.utils.interpolation.time_trajectory: t in [0, 1] -> progress."""
    if t < 0 or t > 1:
        raise ValueError("time value is out of range [0,1]")
    if method == "linear":
        return t
    if method == "minjerk":
        return 10 * t ** 3 - 15 * t ** 4 + 6 * t ** 5
    if method == "ease_in_out":
        return 2 * t * t if t < 0.5 else 1 - ((-2 * t + 2) ** 2) / 2
    if method == "cartoon":
        c1 = 1.70158
        c2 = c1 * 1.525
        if t < 0.5:
            return ((2 * t) ** 2 * ((c2 + 1) * 2 * t - c2)) / 2
        return (((2 * t - 2) ** 2 * ((c2 + 1) * (2 * t - 2) + c2)) + 2) / 2
    raise ValueError(f"unknown interpolation method {method!r}")


def _rotvec(r: np.ndarray) -> np.ndarray:
    """The rotation vector (axis * angle) of a rotation matrix."""
    c = max(-1.0, min(1.0, (np.trace(r) - 1) / 2))
    a = math.acos(c)
    if a < 1e-9:
        return np.zeros(3)
    w = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    if math.pi - a < 1e-6:   # 180 deg: the axis from the symmetric part
        axis = np.sqrt(np.maximum((np.diag(r) + 1) / 2, 0))
        i = int(np.argmax(axis))
        axis = r[:, i] + np.eye(3)[i]
        return axis / np.linalg.norm(axis) * a
    return w / (2 * math.sin(a)) * a


def _from_rotvec(v: np.ndarray) -> np.ndarray:
    a = float(np.linalg.norm(v))
    if a < 1e-12:
        return np.eye(3)
    k = v / a
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(a) * kx + (1 - math.cos(a)) * kx @ kx


def _rz(yaw: float) -> np.ndarray:
    return rpy_to_matrix(0.0, 0.0, yaw)


def linear_pose_interpolation(start: np.ndarray, target: np.ndarray, s: float) -> np.ndarray:
    """The vendor's linear_pose_interpolation(..., yaw_as_scalar=True): yaw as
    a signed scalar (through the front), the roll/pitch residual by SLERP,
    the translation linearly; s may leave [0, 1] (cartoon overshoots)."""
    r0, r1 = start[:3, :3], target[:3, :3]
    y0, y1 = math.atan2(r0[1, 0], r0[0, 0]), math.atan2(r1[1, 0], r1[0, 0])   # as_euler("xyz")[2]
    res0, res1 = _rz(-y0) @ r0, _rz(-y1) @ r1
    res = res0 @ _from_rotvec(_rotvec(res0.T @ res1) * s)
    out = np.eye(4)
    out[:3, :3] = _rz(y0 + (y1 - y0) * s) @ res
    out[:3, 3] = start[:3, 3] + (target[:3, 3] - start[:3, 3]) * s
    return out


@dataclass
class GotoPlan:
    names: list[str]
    points: list[tuple[float, list[float]]]    # (seconds from start, positions of names)
    notes: list[str] = field(default_factory=list)

    @property
    def end(self) -> dict[str, float]:
        return dict(zip(self.names, self.points[-1][1]))


def plan_goto(kin, joints: dict[str, float], head_now: np.ndarray, cmd: Command, rate_hz: float = 100.0,
              lim: Limits = Limits()) -> GotoPlan:
    """The vendor's GotoMove, sampled at the motor loop rate into joint
    waypoints: head poses through our limits and IK (`kin`: core.head.HeadKinematics).
    An omitted head/antennas stays where it is; body_yaw None stays too (the
    SDK sends 0.0 for an omitted body yaw, as the vendor's daemon gets it).
    Raises ValueError with the reason (pose out of reach, joint missing)."""
    missing = [n for n in HEAD_ORDER + ANTENNAS if n not in joints]
    if missing:
        raise ValueError(f"no present position yet for {', '.join(missing)}")
    target_head = cmd.head if cmd.head is not None else head_now
    a0 = np.array([joints[n] for n in ANTENNAS])
    a1 = np.array(cmd.antennas) if cmd.antennas is not None else a0
    b0 = joints[BODY_JOINT]
    b1 = cmd.body_yaw if cmd.body_yaw is not None else b0
    n = max(1, int(math.ceil(cmd.duration * rate_hz)))
    names = HEAD_ORDER + ANTENNAS
    points, notes = [], []
    for i in range(1, n + 1):
        t = min(cmd.duration, i / rate_hz)
        s = time_trajectory(t / cmd.duration, cmd.method)
        m = linear_pose_interpolation(head_now, target_head, s)
        (x, y, z), (roll, pitch, yaw) = matrix_to_pose(m)
        body = b0 + (b1 - b0) * s
        tgt = limit(Target(x, y, z, roll, pitch, yaw, body), lim, auto_body_yaw=False)
        for note in tgt.notes:
            if note not in notes:
                notes.append(note)
        g = kin.ik(tgt)
        ant = a0 + (a1 - a0) * s
        points.append((t, [g[BODY_JOINT]] + [g[j] for j in HEAD_JOINTS] + [float(ant[0]), float(ant[1])]))
    return GotoPlan(names, points, notes)


REACHED_RAD = math.radians(2.0)


def task_outcome(error: str | None, estop: bool, joints: dict[str, float], end: dict[str, float],
                 final: bool) -> str | None | bool:
    """A goto task's answer from what the bridge knows: an error (motor_node's
    refusal, an interruption), an emergency stop, or the joints at the
    trajectory's end point (within 2 deg). False: not decided yet (the move
    may still be arriving); at `final`, a target not reached is an error."""
    if error:
        return error
    if estop:
        return "emergency stop active"
    off = {n: abs(joints.get(n, math.inf) - v) for n, v in end.items()}
    worst = max(off, key=off.get)
    if off[worst] <= REACHED_RAD:
        return None
    if not final:
        return False
    return f"did not reach the target: {worst} is {off[worst]:.3f} rad away"


# ------------------------------------------------------------------ per-client policy
class FloodGuard:
    """Token bucket per client: `rate` commands/s with a burst of one
    second's worth. A frame beyond it is dropped (counted); a client that
    keeps flooding (more than `kick_after` drops within 2 s) is closed."""

    def __init__(self, rate: float, kick_after: int | None = None, now: float | None = None) -> None:
        self.rate = float(rate)
        self.tokens = float(rate)
        self.last = time.monotonic() if now is None else now
        self.kick_after = int(kick_after if kick_after is not None else 2 * rate)
        self.dropped = 0
        self._recent: list[float] = []

    def allow(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.rate, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.dropped += 1
        self._recent.append(now)
        if len(self._recent) > self.kick_after:
            del self._recent[: len(self._recent) - self.kick_after]
        return False

    def should_kick(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return len(self._recent) >= self.kick_after and now - self._recent[0] <= 2.0


class Recording:
    """The vendor's recording: start clears, append_record appends while
    recording, stop returns what was appended. Bounded: the SDK's websocket
    accepts frames of 1 MiB at most, so the answer is kept below that;
    records beyond it are dropped and counted."""

    def __init__(self, max_bytes: int = 900_000) -> None:
        self.max_bytes = max_bytes
        self.active = False
        self.records: list[dict] = []
        self.size = 0
        self.dropped = 0

    def start(self) -> None:
        self.active, self.records, self.size, self.dropped = True, [], 0, 0

    def append(self, record: dict) -> bool:
        if not self.active:
            return False
        n = len(json.dumps(record, default=str)) + 2
        if self.size + n > self.max_bytes:
            self.dropped += 1
            return False
        self.records.append(record)
        self.size += n
        return True

    def stop(self) -> list[dict]:
        out, self.records, self.active, self.size = self.records, [], False, 0
        return out
