"""The ROS side of the vendor SDK's /ws/sdk endpoint, inside web_bridge's
process: the protocol's rules are in core/sdk.py, the websocket shell in
web/sdk_ws.py; this module turns SDK commands into motor_node's topics and
motor_node's state and refusals back into SDK answers."""
from __future__ import annotations

import threading
import time

from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from reachy_mini import __version__
from reachy_mini.core import cdr, sdk
from reachy_mini.core.head import HeadKinematics, load_geometry, quaternion_to_rpy, rpy_to_quaternion
from reachy_mini.ros import qos
from reachy_mini.ros.params import ParameterError
from reachy_mini.web.sdk_ws import SdkBackend, SdkHub
from reachy_mini.web.state import group_items, group_values
from reachy_mini.web.vendor_api import VendorApi, VendorBackend


def _live_values(tree: list[dict], group: str, leaf: str) -> dict:
    """An item's values while its node reports (not STALE: a dead node serves nothing)."""
    st = next((st for name, st in group_items(tree, group) if name == leaf), None)
    return st["values"] if st is not None and st.get("level", 3) <= 2 else {}


def take_latest(sub, msg_type, raw: bool = False):
    """The latest message of a subscription of the never-spun reader node, or
    None; its CDR bytes if `raw`."""
    with sub.handle:
        got = sub.handle.take_message(msg_type, raw)
    return None if got is None else got[0]


def _decoded(raw: bytes, msg_type, read):
    """core/cdr's reading of `raw`; rclpy's for what it does not read (a
    big-endian publisher)."""
    try:
        return read(raw)
    except ValueError:
        m = deserialize_message(raw, msg_type)
        if msg_type is JointState:
            return None, list(m.name), m.position, m.velocity, m.effort
        p, o = m.pose.position, m.pose.orientation
        return None, (p.x, p.y, p.z, o.x, o.y, o.z, o.w)


class SdkRos:
    """The ROS side of /ws/sdk (web/sdk_ws.py, core/sdk.py): every SDK command
    goes through the same motion path as a ROS client's (motor_node's
    topics: limits, IK, e-stop, command watchdog, torque rules), stamped
    uniquely so that motor_node's refusals on motors/safety_events are
    matched to the goto task that sent them."""

    def __init__(self, node) -> None:   # nodes/web_bridge.WebBridge
        self.node, c = node, node.cfg
        try:
            self.kin = HeadKinematics(load_geometry(c.head_kinematics_file or None))
        except ValueError as e:
            raise ParameterError(f"parameter 'head_kinematics_file': {e}") from None
        self.goal_pub = node.create_publisher(JointState, "motors/goal", qos.GOALS)
        self.pose_pub = node.create_publisher(PoseStamped, "head/target_pose", qos.GOALS)
        self.traj_pub = node.create_publisher(JointTrajectory, "motors/trajectory", qos.GOALS)
        # motor_node's refusals and clamps of motion commands (issue 21); absent: tasks
        # cannot report limit refusals, everything else works
        node.create_subscription(DiagnosticStatus, "motors/safety_events", self._on_safety, qos.GOALS)
        self.lock = threading.Lock()
        self.subs: dict = {}
        self.joints: dict | None = None
        self.head = None
        self.last_ns = 0
        self.events: dict[str, tuple[int, str]] = {}   # command stamp -> (level, message)
        self.task = None
        self.status_cache = (0.0, None)
        self.rest_until = 0.0   # the vendor HTTP API follows the state for 10 s after each use
        self.torque_set: tuple[bool, float] | None = None   # (on, monotonic) of the last successful set_torque
        self.hub = SdkHub(SdkBackend(self.motion, self.torque, self.state, self.status, self.goto, self.task_result,
                                     tuple(sdk.HEAD_ORDER + sdk.ANTENNAS), self._log, self._media),
                          c.sdk_open_to_network, c.sdk_max_commands_per_s)
        n = node
        self.vendor = VendorApi(VendorBackend(
            self.fresh_state, self.status, lambda: group_values(n.store.snapshot()["tree"], "Motors", "bus"),
            self.mode, self.motion, self.goto, self.task_result, self.torque, lambda: n.store.doa, self.urdf,
            n.robot, self._log), c.sdk_open_to_network, c.sdk_max_commands_per_s)

    def _media(self, cmd: sdk.Command) -> tuple[bool, str]:   # worker thread
        """The SDK's audio commands through audio_node (web/vendor_audio.MediaActions)."""
        from reachy_mini.web.vendor_audio import resolve_sound

        m = self.node.media
        if cmd.type == "play_sound":
            path, err = resolve_sound(cmd.value)
            if err:
                return False, err
            m.play_file(path)
            return True, ""
        if cmd.type in ("set_volume", "set_microphone_volume"):
            return m.set_param("speaker_volume" if cmd.type == "set_volume" else "microphone_gain", cmd.value)
        if cmd.type == "clear_incoming_audio":
            return m.stop_sound()
        return True, ""   # get_volume / get_microphone_volume: no reply over /ws/sdk, as the vendor's

    def _log(self, level: str, msg: str) -> None:   # rclpy: one severity per call site
        log = self.node.get_logger()
        if level == "info":
            log.info(msg)
        elif level == "warning":
            log.warning(msg)
        else:
            log.error(msg)

    # ---- state: joint_states and head/pose, followed while an SDK client is connected
    def follow_demand(self) -> None:   # executor thread, 5 Hz
        want = bool(self.hub.clients) or time.monotonic() < self.rest_until
        with self.lock:
            if want and not self.subs:
                r = self.node.reader
                self.subs = {"js": r.create_subscription(JointState, "joint_states", lambda m: None, qos.LATEST),
                             "pose": r.create_subscription(PoseStamped, "head/pose", lambda m: None, qos.LATEST)}
            elif not want and self.subs:
                for sub in self.subs.values():
                    self.node.reader.destroy_subscription(sub)
                self.subs = {}
                self.joints = self.head = None   # the next client must not get (or plan from) an old sample

    def fresh_state(self, timeout: float = 3.0):
        """The vendor HTTP API's read (uvicorn worker thread): follows joint_states
        and head/pose from now on for 10 s; waits for the first samples."""
        self.rest_until = time.monotonic() + 10.0
        with self.lock:
            if not self.subs:
                r = self.node.reader
                self.subs = {"js": r.create_subscription(JointState, "joint_states", lambda m: None, qos.LATEST),
                             "pose": r.create_subscription(PoseStamped, "head/pose", lambda m: None, qos.LATEST)}
        end = time.monotonic() + timeout
        while True:
            joints, head = self.state()
            if (joints is not None and head is not None) or time.monotonic() >= end:
                return joints, head
            time.sleep(0.01)

    def torque(self, on: bool) -> tuple[bool, str]:
        ok, msg = self.node._torque(on)
        if not ok and "failed:" in msg:   # a motor missed a reply (a blip on a busy bus): once more, idempotent
            self._log("warning", f"set_torque {on}: {msg}; retrying once")
            ok, msg = self.node._torque(on)
        if ok:
            self.torque_set = (on, time.monotonic())
        return ok, msg

    def mode(self) -> str | None:
        """enabled | disabled from the torque read back from the servos; for
        3 s after a successful set_torque, what it set (the diagnostics that
        carry the read-back come at 1 Hz)."""
        if self.torque_set is not None and time.monotonic() - self.torque_set[1] < 3.0:
            return "enabled" if self.torque_set[0] else "disabled"
        return sdk.motor_mode([m.get("torque") for m in self.node.store.motors()
                               if m["name"] in self.hub.backend.motors and m.get("torque") is not None])

    def urdf(self, timeout: float = 3.0) -> str | None:
        s = self.node.store
        end = time.monotonic() + timeout
        while True:
            s.ask("frames")   # web_bridge follows robot_description (latched) on demand
            if s.urdf or time.monotonic() >= end:
                return s.urdf
            time.sleep(0.05)

    def state(self):   # uvicorn thread, 50 Hz
        with self.lock:
            if self.subs:
                # as CDR bytes (core/cdr.py): no message objects at 50 Hz
                js = take_latest(self.subs["js"], JointState, raw=True)
                pose = take_latest(self.subs["pose"], PoseStamped, raw=True)
                if js is not None:
                    _, names, position, _, _ = _decoded(js, JointState, cdr.read_joint_state)
                    self.joints = dict(zip(names, position))
                if pose is not None:
                    x, y, z, qx, qy, qz, qw = _decoded(pose, PoseStamped, cdr.read_pose_stamped)[1]
                    self.head = sdk.pose_to_matrix(x, y, z, *quaternion_to_rpy(qx, qy, qz, qw))
            return self.joints, self.head

    def status(self) -> dict:
        n = self.node
        bus = next((st for leaf, st in group_items(n.store.snapshot()["tree"], "Motors") if leaf == "bus"), None)
        tree = n.store.snapshot()["tree"]
        media = sdk.media_from_diagnostics(_live_values(tree, "Camera", "camera"),
                                           _live_values(tree, "Audio", "microphone"))
        return sdk.daemon_status(n.robot, n.store.top, self.mode(),
                                 __version__, "",
                                 None if bus is None else bus["values"].get("simulated") == "true", media)

    # ---- commands
    def _stamp_ns(self) -> tuple[int, int]:
        """A unique stamp (sec, nanosec): motor_node's refusals are matched by it."""
        with self.lock:
            ns = max(time.time_ns(), self.last_ns + 1)
            self.last_ns = ns
        return ns // 1_000_000_000, ns % 1_000_000_000

    def _stamp(self) -> Time:
        sec, nsec = self._stamp_ns()
        return Time(sec=sec, nanosec=nsec)

    def motion(self, cmd: sdk.Command) -> None:   # uvicorn thread: published at once, as CDR bytes (core/cdr.py)
        names, pos = [], []
        if cmd.head_joints is not None:
            names, pos = list(sdk.HEAD_ORDER), list(cmd.head_joints)
        elif cmd.body_yaw is not None:
            names, pos = [sdk.HEAD_ORDER[0]], [cmd.body_yaw]
        if cmd.antennas is not None:
            names, pos = names + sdk.ANTENNAS, pos + list(cmd.antennas)
        if names:
            self.goal_pub.publish(cdr.joint_state(*self._stamp_ns(), "", names, [float(v) for v in pos]))
        if cmd.head is not None:
            (x, y, z), rpy = sdk.matrix_to_pose(cmd.head)
            self.pose_pub.publish(cdr.pose_stamped(*self._stamp_ns(), "base_link", x, y, z,
                                                   *rpy_to_quaternion(*rpy)))

    def _estop(self) -> str | None:
        for leaf, st in group_items(self.node.store.snapshot()["tree"], "Motors"):
            if leaf == "bus" and "emergency stop" in st["message"]:
                return "emergency stop active"
        return None

    def goto(self, cmd: sdk.Command):
        why = self._estop()
        if why:
            raise ValueError(why)
        if self.mode() == "disabled":
            raise ValueError("torque off: call enable_motors() first")
        joints, head = self.state()
        if joints is None or head is None:
            raise ValueError("no joint_states / head/pose from motor_node yet")
        plan = sdk.plan_goto(self.kin, joints, head, cmd, rate_hz=100.0)
        msg = JointTrajectory(joint_names=plan.names)
        msg.header.stamp = stamp = self._stamp()
        for t, pos in plan.points:
            msg.points.append(JointTrajectoryPoint(positions=pos, time_from_start=Duration(
                sec=int(t), nanosec=int(round((t - int(t)) * 1e9)))))
        key = f"{stamp.sec}.{stamp.nanosec:09d}"
        task = {"key": key, "end": plan.end, "error": None}
        with self.lock:
            if self.task is not None and self.task["error"] is None:
                self.task["error"] = "interrupted by a newer goto"
            self.task = task
        if plan.notes:
            self._log("warning", "SDK goto clamped: " + "; ".join(plan.notes))
        self.traj_pub.publish(msg)
        return task, cmd.duration

    def _on_safety(self, m: DiagnosticStatus) -> None:   # executor thread
        values = {kv.key: kv.value for kv in m.values}
        key = values.get("command_stamp")
        if key is None:
            return
        level = int.from_bytes(m.level, "little") if isinstance(m.level, bytes) else int(m.level)
        with self.lock:
            self.events[key] = (level, f"{m.name}: {m.message}")
            if len(self.events) > 1000:
                self.events.pop(next(iter(self.events)))
            t = self.task
            if t is not None and t["key"] == key and t["error"] is None:
                if level >= 2 or "torque off" in m.message:
                    t["error"] = f"refused by motor_node: {m.message}"

    def task_result(self, task: dict, final: bool):
        return sdk.task_outcome(task["error"], self._estop() is not None, self.joints or {}, task["end"], final)
