"""web_bridge: the web status page, JSON API and Prometheus metrics (web/app.py)
over a StateStore filled from /diagnostics_agg, /diagnostics_toplevel_state,
/joint_states, /tf and /tf_static (the page's robot view), the camera's compressed topic, the audio level and the incident
history. uvicorn runs on its own thread; writes call motor_node's services."""
from __future__ import annotations

import threading
import time

import rclpy
import uvicorn
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, JointState
from std_msgs.msg import Float32, String
from std_srvs.srv import SetBool, Trigger
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from reachy_mini import __version__
from reachy_mini.core import sdk
from reachy_mini.core.head import HeadKinematics, load_geometry, quaternion_to_rpy, rpy_to_quaternion
from reachy_mini.common.paths import config_path, data_dir
from reachy_mini.core.health.incidents import db_path, query, summary
from reachy_mini.core.levels import Level
from reachy_mini.ros import qos
from reachy_mini.core.identity import robot_name
from reachy_mini.ros.diagnostics import RobotUpdater
from reachy_mini.ros.params import ParameterError, declare
from reachy_mini.ros.runner import run_node
from reachy_mini.ros.tasks import SdkCheck, WebServerCheck
from reachy_mini.web.app import Actions, WebConfig, create_app
from reachy_mini.web.config import WILDCARD_HOSTS, WebBridgeConfig
from reachy_mini.web.sdk_ws import SdkBackend, SdkHub
from reachy_mini.web.state import StateStore, group_items, status_dict

CONFIG = WebBridgeConfig


def _d(st) -> dict:
    return status_dict(st.name, Level.of(st.level), st.message, [(kv.key, kv.value) for kv in st.values],
                       st.hardware_id)


def _transforms(m: TFMessage) -> list:
    """core/frames.Transform tuples of a TFMessage."""
    return [(t.header.frame_id, t.child_frame_id, (t.transform.translation.x, t.transform.translation.y,
             t.transform.translation.z), (t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
                                          t.transform.rotation.w)) for t in m.transforms]


def _take(sub, msg_type):
    """The latest message of a subscription of the never-spun reader node, or None."""
    with sub.handle:
        got = sub.handle.take_message(msg_type, False)
    return None if got is None else got[0]


class WebBridge(Node):
    def __init__(self) -> None:
        super().__init__("web_bridge")
        self.app = None
        self.cfg = c = declare(self, WebBridgeConfig, self._on_params)
        self.robot = robot_name(self.cfg.robot_name, self.get_namespace())
        try:
            token, scrape_token = c.secrets()
            tls = c.tls()
        except ValueError as e:
            raise ParameterError(str(e)) from None
        for path in c.token_file_exposed():
            self.get_logger().warning(f"secret file {path} is readable by other users (chmod 600 it)")
        self.store = StateStore(history_s=c.history_minutes * 60, stale_after_s=c.health_stale_s)
        self.db = db_path(c.data_dir or data_dir(self.get_namespace()))
        s = self.store
        # The diagnostics topics are absolute (ROS convention; remapped into the
        # namespace by the launch file and the supervisor); the rest is relative.
        self.create_subscription(DiagnosticStatus, "/diagnostics_toplevel_state",
                                 lambda m: s.set_diagnostics(_d(m), None), qos.DIAGNOSTICS_AGG)
        self.create_subscription(DiagnosticArray, "/diagnostics_agg",
                                 lambda m: s.set_diagnostics(None, [_d(x) for x in m.status]), qos.DIAGNOSTICS_AGG)
        # Joint states (100 Hz) and camera frames are followed only while a page
        # is open or an API client asked for them in the last 10 s (an idle
        # bridge costs nothing, and the camera encodes no JPEG for nobody), and
        # then read at 5 Hz: they live on a reader node that is never spun, and
        # the latest sample is taken (KEEP_LAST 1), so 100 Hz never wakes Python.
        # The robot view follows /tf (motor_node puts every moving frame in each
        # message, so the latest one is enough) and the latched /tf_static;
        # before the joints, whose push to the page carries the frames.
        self.on_demand = {
            "tf": ("frames", TFMessage, "/tf", lambda m: s.set_transforms(_transforms(m), False), qos.LATEST),
            "tf_static": ("frames", TFMessage, "/tf_static", lambda m: s.set_transforms(_transforms(m), True),
                          qos.LATCHED),
            "description": ("frames", String, "robot_description", lambda m: s.set_description(m.data), qos.LATCHED),
            "joints": ("joints", JointState, "joint_states", lambda m: s.set_joints(m.name, m.position, 0.1),
                       qos.LATEST),
            "camera": ("camera", CompressedImage, "camera/image_raw/compressed", lambda m: s.set_camera(m.data),
                       qos.LATEST)}
        # Its own `__node` remap: ros2 launch passes `-r __node:=web_bridge`
        # to the whole process, which would rename this one too (two
        # /web_bridge nodes). No parameter services: nobody configures it.
        self.reader = rclpy.create_node("web_bridge_reader", context=self.context, start_parameter_services=False,
                                        cli_args=["--ros-args", "-r", "__node:=web_bridge_reader"])
        self.demand_subs: dict = {}
        self.audio_sub = self.reader.create_subscription(Float32, "audio/level_dbfs", lambda m: None, qos.LATEST)
        # One 5 Hz tick does all the periodic work (each wake-up of the Python
        # executor costs more than the work itself): demand, audio level, a
        # silent health node (STALE on the page and /api/health), incidents.
        self.ticks = 0
        self.create_timer(0.2, self._tick)
        self.torque_cli = self.create_client(SetBool, f"{c.motor_node}/set_torque")
        self.reboot_cli = self.create_client(Trigger, f"{c.motor_node}/reboot")
        web = WebConfig(token=token, write_rate=c.write_rate, write_window_s=c.write_window_s,
                        protect_reads=c.exposed(), scrape_token=scrape_token, read_rate=c.read_rate,
                        read_window_s=c.read_window_s, tls=bool(tls), session_cookie=f"reachy_mini_session_{c.port}",
                        public_config=c.public() | {"namespace": self.get_namespace()},
                        robot=self.robot)
        self.sdk = SdkRos(self) if c.sdk_enabled else None
        app = create_app(s, Actions(self._torque, self._reboot,
                                    lambda since=None, limit=100: query(self.db, since=since, limit=limit),
                                    lambda: summary(self.db)["by_level"]), web, self.sdk and self.sdk.hub)
        self.server = uvicorn.Server(uvicorn.Config(app, host=c.host, port=c.port, log_level="warning",
                                                    timeout_graceful_shutdown=2, ws_max_size=sdk.MAX_FRAME_BYTES,
                                                    **tls))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        self.updater = RobotUpdater(self, self.robot, period=1.0)
        url = c.url()
        self.updater.setHardwareID(url)
        self.app = app
        self.updater.add(WebServerCheck(self))
        if self.sdk is not None:
            self.updater.add(SdkCheck(self.sdk.hub, c.exposed()))
            if c.sdk_open_to_network and c.exposed():
                self.get_logger().warning("SDK endpoint /ws/sdk open to the network without authentication "
                                          "(sdk_open_to_network): anyone who reaches this port can move the robot")
        where = url + (f", listening on {c.host}:{c.port}" if c.host in WILDCARD_HOSTS else "")
        self.get_logger().info(f"web status page on {where} (writes {'enabled' if token else 'disabled: no token'}; "
                               + ("reads need the token: host is not loopback" if c.exposed() else
                                  "reads open: loopback only") + ")")

    def _poll_incidents(self) -> None:
        """The page's incident list, read from SQLite only while a page is open."""
        if self.app is not None and self.app.state.hub.clients:
            self.store.set_incidents(query(self.db, limit=20))

    def _tick(self) -> None:
        self.ticks += 1
        self._follow_demand()
        level = _take(self.audio_sub, Float32)
        if level is not None:
            self.store.set_audio_level(level.data)
        if self.ticks % 2 == 0:
            self.store.check_stale()
        if self.ticks % 5 == 0:
            self._poll_incidents()

    def _follow_demand(self) -> None:
        if self.sdk is not None:
            self.sdk.follow_demand()
        clients = bool(self.app and self.app.state.hub.clients)
        for what, (asked, msg_type, topic, cb, profile) in self.on_demand.items():
            want = clients or self.store.asked_within(asked, 10.0)
            sub = self.demand_subs.get(what)
            if want and sub is None:
                self.demand_subs[what] = self.reader.create_subscription(msg_type, topic, cb, profile)
            elif not want and sub is not None:
                self.reader.destroy_subscription(sub)
                self.demand_subs[what] = None
            elif sub is not None:
                got = _take(sub, msg_type)
                if got is not None:
                    cb(got)

    def _on_params(self, changed: dict) -> None:
        if "health_stale_s" in changed:
            self.store.stale_after_s = self.cfg.health_stale_s
        if self.app is not None and ("write_rate" in changed or "write_window_s" in changed):
            self.app.state.limiter.configure(self.cfg.write_rate, self.cfg.write_window_s)
        if self.app is not None and ("read_rate" in changed or "read_window_s" in changed):
            self.app.state.read_limiter.configure(self.cfg.read_rate, self.cfg.read_window_s)

    def _call(self, cli, req) -> tuple[bool, str]:   # uvicorn worker thread; the executor completes it
        if not cli.wait_for_service(timeout_sec=self.cfg.service_timeout_s):
            raise TimeoutError(f"service {cli.srv_name} not available (is motor_node running?)")
        fut = cli.call_async(req)
        end = time.monotonic() + self.cfg.service_timeout_s
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.005)
        if not fut.done():
            fut.cancel()
            raise TimeoutError(f"service {cli.srv_name} did not answer within {self.cfg.service_timeout_s} s")
        r = fut.result()
        return r.success, r.message

    def _torque(self, enabled: bool) -> tuple[bool, str]:
        return self._call(self.torque_cli, SetBool.Request(data=enabled))

    def _reboot(self) -> tuple[bool, str]:
        return self._call(self.reboot_cli, Trigger.Request())

    def workers(self) -> dict:
        return {"uvicorn": self.thread}

    def shutdown(self) -> None:
        self.reader.destroy_node()
        self.app.state.hub.close()
        time.sleep(0.1)
        self.server.should_exit = True
        self.thread.join(3)


class SdkRos:
    """The ROS side of /ws/sdk (web/sdk_ws.py, core/sdk.py): every SDK command
    goes through the same motion path as a ROS client's (motor_node's
    topics: limits, IK, e-stop, command watchdog, torque rules), stamped
    uniquely so that motor_node's refusals on motors/safety_events are
    matched to the goto task that sent them."""

    def __init__(self, node: WebBridge) -> None:
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
                js = _take(self.subs["js"], JointState)
                pose = _take(self.subs["pose"], PoseStamped)
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


def main(args=None) -> int:
    return run_node(WebBridge, "web_bridge", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
