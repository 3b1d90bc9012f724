"""The vendor daemon's HTTP API (PyPI `reachy-mini` 1.13.0,
`reachy_mini/daemon/app/routers/*.py`), as plain Python: what web_bridge's
vendor routes (web/vendor_api.py) decide with. No rclpy, no web framework.

Shared with /ws/sdk (core/sdk.py): goto planning (a goto here is the same
sdk.Command a `task` frame makes, planned by sdk.plan_goto), the head pose
formats (4x4 matrix <-> x, y, z, roll, pitch, yaw with the vendor's
extrinsic "xyz" Euler angles, which are our core/head rpy), the state
snapshot (joints by name -> the vendor's orders) and daemon_status.

Here: request checks (ValueError with the reason), the full-state answer
with its query flags, motor modes, the motor loop's figures for
backend_status, wake_up / goto_sleep as goto sequences, the routes this
stack answers 501 with the reason, and the access rules of every vendor
route (loopback, Host and Origin checks against DNS rebinding and cross-site
writes: the vendor's LocalNetworkGuardMiddleware rules).
"""
from __future__ import annotations

import ipaddress
import math
from datetime import datetime, timezone
from urllib.parse import urlsplit

import numpy as np

from reachy_mini.core import sdk

MODES = ("enabled", "disabled", "gravity_compensation")
GRAVITY_REASON = ("gravity_compensation is not served: it needs current control of the Stewart motors, and "
                  "this stack runs them in position control only (use enabled or disabled)")
MAX_TRANSLATION_M = 1.0          # beyond this no head pose is meaningful (the SDK protocol's own bound)
MAX_ANGLE_RAD = 2 * math.pi
MAX_DURATION_S = sdk.MAX_GOTO_S

# Every vendor route prefix (under which the access rules apply), including
# the audio (issue 30) and camera (issue 31) routers.
VENDOR_PREFIXES = ("/api/daemon", "/api/state", "/api/move", "/api/motors/status", "/api/motors/set_mode",
                   "/api/kinematics", "/api/volume", "/api/media", "/api/camera", "/api/apps", "/api/hf-auth",
                   "/api/update", "/api/wifi", "/api/telemetry", "/api/cache", "/api/logs", "/api/audio",
                   "/update", "/wifi", "/cache", "/logs")

# Routes of the vendor's daemon this stack answers 501 with the reason
# (prefix -> reason). The wireless-only routers (cache, logs, update, wifi)
# sit outside /api in the vendor's daemon; both spellings are answered.
UNSERVED = {
    "/api/apps": "app management (install, start, stop of Hugging Face Space apps) is not served by this stack: "
                 "run an app as a program of its own; it reaches the robot through /ws/sdk",
    "/api/hf-auth": "no Hugging Face account is kept by this stack",
    "/api/update": "the stack is updated with its own tools (pip / colcon), not over HTTP",
    "/api/wifi": "the network is configured by the operating system, not by this stack",
    "/api/telemetry": "this stack sends no telemetry",
    "/api/cache": "this stack keeps no daemon cache to clear",
    "/api/logs": "logs are in ROS (/rosout) and the journal (journalctl -u reachy-mini)",
    "/api/audio/config": "the microphone board's audio configuration is not served (audio_node owns the device)",
}
for _p in ("/update", "/wifi", "/cache", "/logs"):
    UNSERVED[_p] = UNSERVED["/api" + _p]
DAEMON_CONTROL_REASON = ("the stack is started, stopped and restarted by its supervisor (reachy-mini-bringup) or "
                         "systemd (reachy-mini.service), not over HTTP")
ROBOT_NAME_REASON = "the robot's name is web_bridge's robot_name parameter (set it in the stack's parameter file)"
RECORDED_MOVES_REASON = "recorded-move datasets are not served (they are downloaded from the Hugging Face hub)"
RAW_WRITE_REASON = "raw packets to the servo bus are not served: motor_node owns the bus (use its topics)"


MEDIA_PREFIXES = {"/api/volume": "audio", "/api/media": "audio", "/api/camera": "camera"}


def unserved_reason(path: str) -> str | None:
    """Why a vendor path is not served: the UNSERVED table, or for a path no
    route claims (a route of the vendor's daemon this stack lacks), a reason
    that says so (501, never a bare 404); None for other paths (404)."""
    for prefix, why in UNSERVED.items():
        if path == prefix or path.startswith(prefix + "/"):
            return why
    for prefix, what in MEDIA_PREFIXES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return (f"{path[:80]}: this {what} route of the vendor's daemon is not served by this stack (the {what} "
                    f"routes served are in the README's vendor API table; the {what} devices are also on "
                    f"{what}_node's ROS topics)")
    return None


def is_vendor_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in VENDOR_PREFIXES)


# ------------------------------------------------------------------ request checks
def _num(v, what: str, bound: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{what}: expected a number")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{what}: not a finite number")
    if abs(f) > bound:
        raise ValueError(f"{what}: {f:g} is beyond +-{bound:g}")
    return f


def pose_matrix(p: dict, what: str = "head_pose") -> np.ndarray:
    """The vendor's AnyPose (XYZRPYPose {x, y, z, roll, pitch, yaw} in m and
    rad, missing fields 0; or Matrix4x4Pose {m: 16 floats}) -> 4x4, checked."""
    if not isinstance(p, dict):
        raise ValueError(f"{what}: expected an object")
    if "m" in p:
        try:
            m = p["m"]
            return sdk.head_matrix(list(m) if isinstance(m, tuple) else m, f"{what}.m")
        except sdk.ProtocolError as e:
            raise ValueError(str(e)) from None
    unknown = set(p) - {"x", "y", "z", "roll", "pitch", "yaw"}
    if unknown:
        raise ValueError(f"{what}: unknown field(s) {', '.join(sorted(unknown))[:80]} (x, y, z, roll, pitch, yaw "
                         "or m)")
    xyz = [_num(p.get(k, 0.0), f"{what}.{k}", MAX_TRANSLATION_M) for k in ("x", "y", "z")]
    rpy = [_num(p.get(k, 0.0), f"{what}.{k}", MAX_ANGLE_RAD) for k in ("roll", "pitch", "yaw")]
    return sdk.pose_to_matrix(*xyz, *rpy)


def any_pose(m: np.ndarray, use_matrix: bool) -> dict:
    """The vendor's as_any_pose."""
    if use_matrix:
        return {"m": [float(v) for v in np.asarray(m).flatten()]}
    (x, y, z), (roll, pitch, yaw) = sdk.matrix_to_pose(m)
    return {"x": x, "y": y, "z": z, "roll": roll, "pitch": pitch, "yaw": yaw}


def antennas(v, what: str = "antennas") -> list[float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ValueError(f"{what}: expected [right, left], two numbers in rad")
    return [_num(x, f"{what}[{i}]", MAX_ANGLE_RAD) for i, x in enumerate(v)]


def goto_command(head_pose=None, antennas_=None, body_yaw=None, duration=None,
                 interpolation="minjerk") -> sdk.Command:
    """The vendor's GotoModelRequest -> the sdk goto Command (planned by
    sdk.plan_goto, as a /ws/sdk task). ValueError with the reason."""
    c = sdk.Command("task", "goto")
    if head_pose is not None:
        c.head = pose_matrix(head_pose)
    if antennas_ is not None:
        c.antennas = antennas(antennas_)
    if body_yaw is not None:
        c.body_yaw = _num(body_yaw, "body_yaw", MAX_ANGLE_RAD)
    if duration is None:
        raise ValueError("duration: required (seconds)")
    c.duration = _num(duration, "duration", 1e9)
    if not 0.0 < c.duration <= MAX_DURATION_S:
        raise ValueError(f"duration: must be in (0, {MAX_DURATION_S:g}] s")
    if interpolation not in sdk.METHODS:
        raise ValueError(f"interpolation: {str(interpolation)[:40]!r} is not one of {', '.join(sdk.METHODS)}")
    c.method = interpolation
    return c


def target_command(head_pose=None, antennas_=None, body_yaw=None) -> sdk.Command:
    """The vendor's FullBodyTarget -> an sdk motion Command (published at once,
    as /ws/sdk's set_full_target). ValueError with the reason."""
    c = sdk.Command("motion", "set_full_target")
    if head_pose is not None:
        c.head = pose_matrix(head_pose, "target_head_pose")
    if antennas_ is not None:
        c.antennas = antennas(antennas_, "target_antennas")
    if body_yaw is not None:
        c.body_yaw = _num(body_yaw, "target_body_yaw", MAX_ANGLE_RAD)
    if c.head is None and c.antennas is None and c.body_yaw is None:
        raise ValueError("none of target_head_pose, target_antennas, target_body_yaw given")
    return c


def check_mode(mode: str) -> bool:
    """set_mode/{mode} -> torque on (True) / off (False); ValueError for
    gravity_compensation (with the reason) and unknown modes."""
    if mode == "enabled":
        return True
    if mode == "disabled":
        return False
    if mode == "gravity_compensation":
        raise NotImplementedError(GRAVITY_REASON)
    raise ValueError(f"mode {str(mode)[:40]!r} is not one of {', '.join(MODES)}")


# ------------------------------------------------------------------ answers
FULL_FLAGS = ("with_control_mode", "with_head_pose", "with_target_head_pose", "with_head_joints",
              "with_target_head_joints", "with_body_yaw", "with_target_body_yaw", "with_antenna_positions",
              "with_target_antenna_positions", "with_passive_joints", "with_doa", "with_imu", "use_pose_matrix")
FULL_DEFAULTS = {"with_control_mode": True, "with_head_pose": True, "with_body_yaw": True,
                 "with_antenna_positions": True}


def head_joints(joints: dict[str, float]) -> list[float]:
    return [float(joints[n]) for n in sdk.HEAD_ORDER]


def antenna_positions(joints: dict[str, float]) -> list[float]:
    """The vendor's antennas order: [right, left] (its get_present_antenna_joint_positions)."""
    return [float(joints[n]) for n in sdk.ANTENNAS]


def full_state(flags: dict, joints: dict[str, float], head: np.ndarray, mode: str | None,
               targets: dict | None = None, doa: dict | None = None, imu: dict | None = None) -> dict:
    """GET /api/state/full: the vendor's FullState with its query flags.
    `targets`: {"head": 4x4, "joints": {name: rad}} of the last command
    (None when nothing was commanded through this API: the targets are then
    the present values, as a daemon that holds its position)."""
    f = {k: flags.get(k, FULL_DEFAULTS.get(k, False)) for k in FULL_FLAGS}
    mat = f["use_pose_matrix"]
    t_head = (targets or {}).get("head")
    t_joints = {**joints, **((targets or {}).get("joints") or {})}
    out: dict = {}
    if f["with_control_mode"]:
        out["control_mode"] = mode
    if f["with_head_pose"]:
        out["head_pose"] = any_pose(head, mat)
    if f["with_target_head_pose"]:
        out["target_head_pose"] = any_pose(head if t_head is None else t_head, mat)
    if f["with_head_joints"]:
        out["head_joints"] = head_joints(joints)
    if f["with_target_head_joints"]:
        out["target_head_joints"] = head_joints(t_joints)
    if f["with_body_yaw"]:
        out["body_yaw"] = float(joints[sdk.HEAD_ORDER[0]])
    if f["with_target_body_yaw"]:
        out["target_body_yaw"] = float(t_joints[sdk.HEAD_ORDER[0]])
    if f["with_antenna_positions"]:
        out["antennas_position"] = antenna_positions(joints)
    if f["with_target_antenna_positions"]:
        out["target_antennas_position"] = antenna_positions(t_joints)
    if f["with_passive_joints"]:
        out["passive_joints"] = None   # the vendor's None: the Stewart platform's passive joints are not computed
    if f["with_doa"]:
        out["doa"] = doa
    if f["with_imu"]:
        out["imu"] = imu
    out["timestamp"] = datetime.now(timezone.utc).isoformat()
    return out


def _f(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def loop_stats(bus: dict) -> dict:
    """backend_status.control_loop_stats from motor_node's bus diagnostic item
    (its values): the vendor's mean_control_loop_frequency,
    max_control_loop_interval (s) and nb_error, plus our own figures."""
    if not bus:
        return {}
    errors = sum(int(_f(bus.get(k)) or 0) for k in ("timeouts", "crc errors", "write errors"))
    cmax = _f(bus.get("cycle max (us)"))
    out = {"mean_control_loop_frequency": _f(bus.get("achieved rate (Hz)")),
           "max_control_loop_interval": None if cmax is None else cmax / 1e6,
           "nb_error": errors, "motor_controller": "reachy_mini motor_node (Rust driver)"}
    for k in ("target rate (Hz)", "cycle p50 (us)", "cycle p99 (us)", "jitter p99 (us)", "timeouts", "crc errors",
              "write errors", "garbage bytes", "disconnects", "reconnects"):
        if k in bus:
            out[k.replace(" (Hz)", "_hz").replace(" (us)", "_us").replace(" ", "_")] = _f(bus[k])
    if bus.get("last error"):
        out["last_error"] = bus["last error"]
    return out


def with_backend(status: dict, bus: dict) -> dict:
    """GET /api/daemon/status: core/sdk.daemon_status (state from our top
    level) with the motor loop's figures in backend_status and, as `version`,
    the protocol version served."""
    out = dict(status, version=sdk.SDK_VERSION)
    if out.get("backend_status") is not None:
        out["backend_status"] = dict(out["backend_status"], control_loop_stats=loop_stats(bus))
    return out


# ------------------------------------------------------------------ wake_up / goto_sleep (the vendor's gotos)
INIT_ANTENNAS = [-0.1745, 0.1745]          # the vendor's order, as ours: [right_antenna, left_antenna]
SLEEP_ANTENNAS = [-3.05, 3.05]
SLEEP_HEAD_POSE = np.array([[0.911, 0.004, 0.413, -0.021], [-0.004, 1.0, -0.001, 0.001],
                            [-0.413, -0.001, 0.911, -0.044], [0.0, 0.0, 0.0, 1.0]])


def _orthonormal(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m[:3, :3])
    out = m.copy()
    out[:3, :3] = u @ vt
    return out


def wake_up_steps() -> list[sdk.Command]:
    """The vendor's Backend.wake_up: to the initial pose, roll 20 deg, back."""
    roll = sdk.pose_to_matrix(0, 0, 0, math.radians(20), 0, 0)
    return [goto_command({"m": np.eye(4).flatten().tolist()}, INIT_ANTENNAS, None, 1.0),
            goto_command({"m": roll.flatten().tolist()}, None, None, 0.2),
            goto_command({"m": np.eye(4).flatten().tolist()}, None, None, 0.2)]


def goto_sleep_steps(head_now: np.ndarray) -> list[sdk.Command]:
    """The vendor's Backend.goto_sleep: via the initial pose when far from it,
    then the sleep pose (torque goes off after, as the vendor's)."""
    steps = []
    far = np.abs(head_now[:3, 3]).max() > 0.01 or np.abs(head_now[:3, :3] - np.eye(3)).max() > math.radians(10)
    if far:
        steps.append(goto_command({"m": np.eye(4).flatten().tolist()}, INIT_ANTENNAS, None, 1.0))
    steps.append(goto_command({"m": _orthonormal(SLEEP_HEAD_POSE).flatten().tolist()}, SLEEP_ANTENNAS, None, 2.0))
    return steps


# ------------------------------------------------------------------ access (the vendor's PR #1423 rules)
_LOCAL_HOSTNAMES = frozenset({"localhost", "tauri.localhost"})
_WEBVIEW_SCHEMES = frozenset({"tauri", "capacitor"})


def _ip(host: str):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _local_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host in _LOCAL_HOSTNAMES or host.endswith(".local")


def host_of(header: str) -> str | None:
    try:
        return urlsplit(f"//{header}").hostname
    except ValueError:
        return None


def trusted_host(host: str | None) -> bool:
    """A Host header's hostname: an IP literal or a local name (localhost,
    *.local). A DNS-rebinding attack arrives under a public DNS name."""
    if not host:
        return False
    return _ip(host) is not None or _local_name(host)


def trusted_origin(origin: str) -> bool:
    """The Origin of a state-changing request: a local name, a loopback /
    private / link-local address, or a native webview (tauri://localhost)."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme in _WEBVIEW_SCHEMES:
        return parts.hostname == "localhost"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if _local_name(parts.hostname):
        return True
    ip = _ip(parts.hostname)
    return ip is not None and (ip.is_loopback or ip.is_private or ip.is_link_local)


def access(client: str, hosts: list[str], origins: list[str], write: bool, open_to_network: bool,
           loopback) -> tuple[int, str] | None:
    """None when a request to a vendor route may go on, else (HTTP status,
    reason). `loopback(client)` says whether the peer is local; `write`:
    a state-changing request (not GET/HEAD/OPTIONS; every WebSocket)."""
    if len(hosts) > 1 or len(origins) > 1:
        return 400, "duplicate Host or Origin header"
    if not trusted_host(host_of(hosts[0]) if hosts else None):
        return 400, ("untrusted Host header: the vendor API answers only to an IP address, localhost or a .local "
                     "name (DNS-rebinding guard)")
    if write and origins and not trusted_origin(origins[0]):
        return 403, "cross-origin request rejected: the Origin is not this robot or a local-network page"
    if not open_to_network and not loopback(client):
        return 403, ("the vendor API accepts loopback clients only: it has no authentication, so the owner must "
                     "turn on web_bridge's parameter sdk_open_to_network to serve the network")
    return None

