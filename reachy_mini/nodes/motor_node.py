"""motor_node: the ROS shell around the servo bus (bus_link.py, over the Rust
driver).

Publishes joint_states (and head/pose, from forward kinematics, and /tf:
body yaw, head, antennas) once per driver sample (at once, or in bursts
while only the flight recorder and web_bridge's polling reader read them:
core/motors/sampling.py),
robot_description and /tf_static once (transient local), takes goals on
motors/goal and head targets on
head/target_pose (core/head.py: limits, inverse kinematics), serves
~/set_torque, ~/reboot and ~/emergency_stop, and reports per-motor and bus
diagnostics (ros/tasks.py). Rules: core/motors. Safety (command timeout,
torque off, joint ranges, velocity) lives in the driver thread, not here;
the head's mechanism rules on raw goals in core/motors/envelope.py. Every
refusal or clamp of a motion command goes out on motors/safety_events.
"""
from __future__ import annotations

import math
import threading
import time

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TransformStamped
from rclpy.logging import LoggingSeverity
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import JointTrajectory

from reachy_mini.bus_link import BusLink, Outcome
from reachy_mini.core.cdr import JointStateEncoder, pose_stamped, stamp_of
from reachy_mini.core.frames import RobotFrames, Transform
from reachy_mini.core.head import BODY_JOINT, HEAD_JOINTS, HeadKinematics, Limits, Target, limit, load_geometry, \
    quaternion_to_rpy, rpy_to_quaternion
from reachy_mini.core.motors.config import MotorConfig
from reachy_mini.core.motors.envelope import MechanismRules, PerMotorThrottle, stamp_text
from reachy_mini.core.motors.map import MotorMap
from reachy_mini.core.motors.sampling import BATCH_PERIOD_S, SampleReaders, mode, samples_per_wake
from reachy_mini.common.paths import sim_link, urdf_path
from reachy_mini.ros import qos
from reachy_mini.core.identity import robot_name
from reachy_mini.ros.diagnostics import RobotUpdater
from reachy_mini.ros.params import ParameterError, declare
from reachy_mini.ros.runner import run_node
from reachy_mini.ros.tasks import BusCheck, MotorCheck, RecoveryCheck

CONFIG = MotorConfig


class MotorNode(Node):
    def __init__(self) -> None:
        super().__init__("motor_node")
        self.bus = None
        cfg = self.cfg = declare(self, MotorConfig, lambda changed: self.bus and self.bus.configure(changed))
        self.robot = robot_name(self.cfg.robot_name, self.get_namespace())
        try:
            motor_map = MotorMap.load(cfg.motors_file or None)
        except ValueError as e:
            raise ParameterError(f"parameter 'motors_file': {e}") from None
        try:
            geometry = load_geometry(cfg.head_kinematics_file or None)
            self.head = HeadKinematics(geometry)
            rules = MechanismRules(HeadKinematics(geometry), motor_map)   # its own FK state: callbacks, not the js thread
        except ValueError as e:
            raise ParameterError(f"parameter 'head_kinematics_file': {e}") from None
        path = cfg.robot_description_file or urdf_path()
        try:
            with open(path) as f:
                self.urdf = f.read()
            self.frames = RobotFrames(self.urdf)
        except (OSError, ValueError) as e:
            raise ParameterError(f"parameter 'robot_description_file': {path}: {e}") from None
        self.base_frame = cfg.frame_prefix + "base_link"
        self.bus = bus = BusLink(cfg, motor_map, sim_link(self.get_namespace()), self.get_logger(), rules)
        self.clamp_throttle = PerMotorThrottle(1.0)
        self.safety_pub = self.create_publisher(DiagnosticStatus, "motors/safety_events", qos.SAFETY_EVENTS)
        self.js_pub = self.create_publisher(JointState, "joint_states", qos.JOINT_STATES)
        self.pose_pub = self.create_publisher(PoseStamped, "head/pose", qos.JOINT_STATES)
        # The robot model and its frames (docs/ros-interface.md "The robot in RViz and TF"):
        # robot_description and /tf_static once, latched; /tf once per sample.
        # /tf and /tf_static are absolute, as tf2 listens (remapped into a namespace).
        self.description_pub = self.create_publisher(String, "robot_description", qos.LATCHED)
        self.description_pub.publish(String(data=self.urdf))
        self.tf_pub = self.create_publisher(TFMessage, "/tf", qos.TF)
        self.tf_static_pub = self.create_publisher(TFMessage, "/tf_static", qos.LATCHED)
        now = self.get_clock().now().to_msg()
        self.tf_static_pub.publish(TFMessage(transforms=[self._tf(t, now) for t in self.frames.static_transforms()]))
        self.create_subscription(JointState, "motors/goal", self._on_goal, qos.GOALS)
        self.create_subscription(PoseStamped, "head/target_pose", self._on_head_target, qos.GOALS)
        self.create_subscription(JointTrajectory, "motors/trajectory", self._on_trajectory, qos.GOALS)
        self.create_service(SetBool, "~/set_torque", lambda req, resp: self._answer(resp, bus.set_torque_all(req.data)))
        self.create_service(Trigger, "~/reboot", lambda req, resp: self._answer(resp, bus.reboot_faulty()))
        self.create_service(Trigger, "~/emergency_stop", self._srv_estop)
        self.create_timer(0.1, self._watch)
        self.updater = RobotUpdater(self, self.robot)   # period: parameter diagnostic_updater.period (1 s)
        self.updater.setHardwareID(f"dynamixel_bus:{bus.port}")
        self.updater.add(BusCheck(bus))
        self.updater.add(RecoveryCheck(bus))
        for m in motor_map.motors:
            self.updater.add(MotorCheck(m.name, bus))
        # A robot that is not plugged in (or a port held by another program)
        # is waited for, not fatal: the bus is ERROR with the reason until it opens.
        self.connect_timer = None
        if not self._connect():
            self.connect_timer = self.create_timer(1.0, self._connect)
        self.running = True
        self.stopping = threading.Event()
        self.fk_last: tuple = ((), None, None)   # (head joint positions, their pose, (x, y, z, qx, qy, qz, qw))
        self.js_cdr = JointStateEncoder()
        self.js_thread = threading.Thread(target=self._joint_states, name="joint_states", daemon=True)
        self.js_thread.start()

    def _connect(self) -> bool:
        if not self.bus.connect():
            return False
        if self.connect_timer is not None:
            self.destroy_timer(self.connect_timer)
            self.connect_timer = None
        self.updater.setHardwareID(f"dynamixel_bus:{self.bus.drv.port}")
        self.updater.force_update()
        return True

    def _joint_states(self) -> None:
        """One joint_states (and head/pose, /tf) message per driver sample,
        stamped with the sample's time, published at once while someone reads
        them live, in bursts while only the flight recorder and web_bridge's
        polling reader do (core/motors/sampling.py); nothing converted for topics nobody reads."""
        readers = SampleReaders()
        while self.running:
            counts = (self.js_pub.get_subscription_count(), self.pose_pub.get_subscription_count(),
                      self.tf_pub.get_subscription_count())
            period = readers.update(counts, time.monotonic(), self._sample_readers)
            self.bus.js_mode = mode(period, any(counts))
            if period < BATCH_PERIOD_S:   # at once, or polling readers: woken by the driver's samples
                if not self.bus.wait_sample(0.5, samples_per_wake(period, self.cfg.loop_rate_hz)):
                    continue
            elif self.stopping.wait(period):
                return
            samples = self.bus.samples_since()
            if not any(counts):
                continue
            readings = self.bus.readings
            for stamp, positions in samples:   # published as CDR bytes (core/cdr.py): no message objects
                sec, nsec = stamp_of(stamp)
                names = [n for n, _ in positions]
                rad = [p for _, p in positions]
                if counts[0] and names:
                    effort = [((r and r.current_ma) or 0.0) / 1000.0 for r in map(readings.get, names)]
                    self.js_pub.publish(self.js_cdr.encode(sec, nsec, names, rad, (), effort))
                    self.bus.js_published += 1
                if counts[1] or counts[2]:
                    self._publish_pose(sec, nsec, dict(zip(names, rad)), counts[1] > 0, counts[2] > 0)

    def _sample_readers(self) -> list[str]:
        """Names of the nodes subscribed to joint_states or head/pose."""
        return [i.node_name for p in (self.js_pub, self.pose_pub)
                for i in self.get_subscriptions_info_by_topic(p.topic_name)]

    def _publish_pose(self, sec: int, nsec: int, joints: dict, pose: bool, tf: bool) -> None:
        """head/pose and /tf from one forward kinematics of the sample (the
        last one's again while the head joints have not moved)."""
        head = tuple(joints.get(n) for n in HEAD_JOINTS)
        if head != self.fk_last[0]:
            p = self.head.fk(joints) if None not in head else None
            wire = None if p is None else (p.x, p.y, p.z, *rpy_to_quaternion(p.roll, p.pitch, p.yaw))
            self.fk_last = (head, p, wire)
        p = self.fk_last[1]
        if pose and p is not None:
            self.pose_pub.publish(pose_stamped(sec, nsec, self.base_frame, *self.fk_last[2]))
        if tf:
            moving = self.frames.dynamic_transforms(joints, p)
            if moving:
                stamp = Time(sec=sec, nanosec=nsec)
                self.tf_pub.publish(TFMessage(transforms=[self._tf(t, stamp) for t in moving]))

    def _tf(self, t: Transform, stamp) -> TransformStamped:
        parent, child, (x, y, z), (qx, qy, qz, qw) = t
        m = TransformStamped()
        m.header.stamp = stamp
        m.header.frame_id, m.child_frame_id = self.cfg.frame_prefix + parent, self.cfg.frame_prefix + child
        v, q = m.transform.translation, m.transform.rotation
        v.x, v.y, v.z = float(x), float(y), float(z)
        q.x, q.y, q.z, q.w = float(qx), float(qy), float(qz), float(qw)
        return m

    def _on_head_target(self, msg: PoseStamped) -> None:
        """A head pose in base_link -> limits -> inverse kinematics -> goals."""
        path, joints = "head/target_pose", HEAD_JOINTS + [BODY_JOINT]
        if msg.header.frame_id not in ("", "base_link", self.base_frame):
            return self._refuse(path, msg, joints, f"head target in frame {msg.header.frame_id!r}; expected {self.base_frame!r}")
        o, p = msg.pose.orientation, msg.pose.position
        try:
            if not all(math.isfinite(v) for v in (p.x, p.y, p.z)):
                raise ValueError("position is not finite")
            roll, pitch, yaw = quaternion_to_rpy(o.x, o.y, o.z, o.w)
            body = self.bus.readings.get("body_rotation")
            t = limit(Target(p.x, p.y, p.z, roll, pitch, yaw, (body and body.position_rad) or 0.0), Limits(),
                      self.cfg.head_auto_body_yaw)
            goals = self.head.ik(t)
        except ValueError as e:
            return self._refuse(path, msg, joints, f"head target: {e}")
        out = self.bus.goal(list(goals), list(goals.values()), mechanism=False)
        if t.notes and out.refused is None:
            self._clamped(path, msg, joints, "head target clamped: " + "; ".join(t.notes))
        self._outcome(path, msg, out)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        """Executed in the driver thread, interpolated at loop rate; a new one preempts it."""
        points = [(p.time_from_start.sec + p.time_from_start.nanosec * 1e-9, list(p.positions)) for p in msg.points]
        self._outcome("motors/trajectory", msg, self.bus.trajectory(list(msg.joint_names), points), "trajectory: ")

    def _on_goal(self, msg: JointState) -> None:
        self._outcome("motors/goal", msg, self.bus.goal(list(msg.name), list(msg.position)))

    # ---- what became of a motion command: log + motors/safety_events
    def _outcome(self, path: str, msg, out: Outcome, prefix: str = "") -> None:
        if out.refused is not None:
            return self._refuse(path, msg, out.motors, prefix + out.refused)
        if out.clamped:
            what = "; ".join(f"{n} {req:.3f} rad clamped to {got:.3f} rad (joint limit)" for n, req, got in out.clamped)
            self._clamped(path, msg, [n for n, _, _ in out.clamped], prefix + what)
        if out.torque_off:
            why = f"goals ignored: torque off ({', '.join(out.torque_off)}); call ~/set_torque true"
            self.get_logger().warning(why, throttle_duration_sec=5.0)
            self._safety(DiagnosticStatus.WARN, path, msg, out.torque_off, why)

    def _refuse(self, path: str, msg, motors, why: str) -> None:
        """Refusals are per command: never rate-limited on the topic."""
        self.bus.goal_rejects += 1
        self.get_logger().warning(f"goal rejected: {why}", throttle_duration_sec=1.0)
        self._safety(DiagnosticStatus.ERROR, path, msg, motors, why)

    def _clamped(self, path: str, msg, motors, why: str) -> None:
        """Clamps: at most once a second per motor (log and topic)."""
        due = self.clamp_throttle.due(motors, time.monotonic())
        if due:
            self.get_logger().warning(why)
            self._safety(DiagnosticStatus.WARN, path, msg, due, why)

    def _safety(self, level: bytes, path: str, msg, motors, why: str) -> None:
        stamp = msg.header.stamp if hasattr(msg, "header") else None
        ev = DiagnosticStatus(level=level, name=path, message=why, hardware_id=self.robot)
        ev.values = [KeyValue(key="command_stamp", value=stamp_text(stamp.sec, stamp.nanosec) if stamp else ""),
                     KeyValue(key="motors", value=",".join(motors))]
        self.safety_pub.publish(ev)

    @staticmethod
    def _answer(resp, result: tuple[bool, str]):
        resp.success, resp.message = result
        return resp

    def _srv_estop(self, req, resp):
        self._answer(resp, self.bus.emergency_stop())
        self.get_logger().error(f"EMERGENCY STOP: {resp.message}")
        self.updater.force_update()
        return resp

    def _watch(self) -> None:
        log = self.get_logger()
        if self.bus.watch():
            self.updater.force_update()  # a change to ERROR goes out at once
        if log.is_enabled_for(LoggingSeverity.DEBUG):   # `log_level:=debug`: a 10 Hz trace of the bus
            s = self.bus.stats
            log.debug(f"bus {s['achieved_rate_hz']:.1f} Hz, cycle p50 {s['cycle_p50_us']:.0f} us "
                      f"p99 {s['cycle_p99_us']:.0f} us, jitter p99 {s['jitter_p99_us']:.0f} us, "
                      f"timeouts {s['timeouts']}, crc {s['crc_errors']}, garbage {s['garbage_bytes']}")

    def workers(self) -> dict:
        return {"joint_states": self.js_thread}

    def shutdown(self) -> None:
        self.running = False
        self.stopping.set()
        self.js_thread.join(1.0)
        self.bus.close()


NODE = MotorNode   # nodes/robot.py


def main(args=None) -> int:
    return run_node(MotorNode, "motor_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
