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
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from reachy_mini import __version__
from reachy_mini.common.paths import config_path
from reachy_mini.core import sdk
from reachy_mini.core.head import HeadKinematics, load_geometry, quaternion_to_rpy, rpy_to_quaternion
from reachy_mini.ros import qos
from reachy_mini.ros.params import ParameterError
from reachy_mini.web.sdk_ws import SdkBackend, SdkHub
from reachy_mini.web.state import group_items


def take_latest(sub, msg_type):
    """The latest message of a subscription of the never-spun reader node, or None."""
    with sub.handle:
        got = sub.handle.take_message(msg_type, False)
    return None if got is None else got[0]


class SdkRos:
    """The ROS side of /ws/sdk (web/sdk_ws.py, core/sdk.py): every SDK command
    goes through the same motion path as a ROS client's (motor_node's
    topics: limits, IK, e-stop, command watchdog, torque rules), stamped
    uniquely so that motor_node's refusals on motors/safety_events are
    matched to the goto task that sent them."""

    def __init__(self, node) -> None:   # nodes/web_bridge.WebBridge
        self.node, c = node, node.cfg
        try:
            self.kin = HeadKinematics(load_geometry(c.head_kinematics_file or config_path("head_kinematics.yaml")))
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
        self.hub = SdkHub(SdkBackend(self.motion, node._torque, self.state, self.status, self.goto, self.task_result,
                                     tuple(sdk.HEAD_ORDER + sdk.ANTENNAS), self._log),
                          c.sdk_open_to_network, c.sdk_max_commands_per_s)

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
        want = bool(self.hub.clients)
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

    def state(self):   # uvicorn thread, 50 Hz
        with self.lock:
            if self.subs:
                js = take_latest(self.subs["js"], JointState)
                pose = take_latest(self.subs["pose"], PoseStamped)
                if js is not None:
                    self.joints = dict(zip(js.name, js.position))
                if pose is not None:
                    p, o = pose.pose.position, pose.pose.orientation
                    self.head = sdk.pose_to_matrix(p.x, p.y, p.z, *quaternion_to_rpy(o.x, o.y, o.z, o.w))
            return self.joints, self.head

    def status(self) -> dict:
        n = self.node
        torques = [m.get("torque") for m in n.store.motors() if m["name"] in self.hub.backend.motors]
        bus = next((st for leaf, st in group_items(n.store.snapshot()["tree"], "Motors") if leaf == "bus"), None)
        return sdk.daemon_status(n.robot, n.store.top, sdk.motor_mode([t for t in torques if t is not None]),
                                 __version__, "",
                                 None if bus is None else bus["values"].get("simulated") == "true")

    # ---- commands
    def _stamp(self) -> Time:
        with self.lock:
            ns = max(time.time_ns(), self.last_ns + 1)
            self.last_ns = ns
        return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def motion(self, cmd: sdk.Command) -> None:   # uvicorn thread: published at once
        names, pos = [], []
        if cmd.head_joints is not None:
            names, pos = list(sdk.HEAD_ORDER), list(cmd.head_joints)
        elif cmd.body_yaw is not None:
            names, pos = [sdk.HEAD_ORDER[0]], [cmd.body_yaw]
        if cmd.antennas is not None:
            names, pos = names + sdk.ANTENNAS, pos + list(cmd.antennas)
        if names:
            m = JointState(name=names, position=pos)
            m.header.stamp = self._stamp()
            self.goal_pub.publish(m)
        if cmd.head is not None:
            (x, y, z), rpy = sdk.matrix_to_pose(cmd.head)
            m = PoseStamped()
            m.header.stamp, m.header.frame_id = self._stamp(), "base_link"
            m.pose.position.x, m.pose.position.y, m.pose.position.z = x, y, z
            q = m.pose.orientation
            q.x, q.y, q.z, q.w = rpy_to_quaternion(*rpy)
            self.pose_pub.publish(m)

    def _estop(self) -> str | None:
        for leaf, st in group_items(self.node.store.snapshot()["tree"], "Motors"):
            if leaf == "bus" and "emergency stop" in st["message"]:
                return "emergency stop active"
        return None

    def goto(self, cmd: sdk.Command):
        why = self._estop()
        if why:
            raise ValueError(why)
        if sdk.motor_mode([m.get("torque") for m in self.node.store.motors()]) == "disabled":
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
