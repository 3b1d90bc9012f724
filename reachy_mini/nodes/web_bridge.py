"""web_bridge: the web status page, JSON API and Prometheus metrics (web/app.py)
over a StateStore filled from /diagnostics_agg, /diagnostics_toplevel_state,
/joint_states, /tf and /tf_static (the page's robot view), the camera's compressed topic, the audio level and the incident
history. uvicorn runs on its own thread; writes call motor_node's services."""
from __future__ import annotations

import math
import threading
import time

import rclpy
import uvicorn
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Vector3Stamped
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, JointState
from std_msgs.msg import Bool, Float32, Int16MultiArray, MultiArrayDimension, String
from std_srvs.srv import SetBool, Trigger
from tf2_msgs.msg import TFMessage

from reachy_mini.core import sdk
from reachy_mini.common.paths import data_dir
from reachy_mini.core.health.aggregator import shown_message
from reachy_mini.core.health.incidents import db_path, query, summary
from reachy_mini.core.health.recorder import snapshot_dir
from reachy_mini.core.levels import Level
from reachy_mini.core.motors.sampling import WEB_READER_NODE
from reachy_mini.ros import qos
from reachy_mini.core.identity import robot_name
from reachy_mini.ros.diagnostics import RobotUpdater
from reachy_mini.ros.params import ParameterError, declare
from reachy_mini.ros.runner import run_node
from reachy_mini.ros.sdk import SdkRos, take_latest
from reachy_mini.ros.tasks import SdkCheck, WebServerCheck
from reachy_mini.web.app import Actions, WebConfig, create_app
from reachy_mini.web.config import WILDCARD_HOSTS, WebBridgeConfig
from reachy_mini.web.state import StateStore, status_dict
from reachy_mini.web.server import QuietServer
from reachy_mini.web.vendor_audio import MediaActions

CONFIG = WebBridgeConfig


def _d(st) -> dict:   # a group's message on the page and in the API: its cause (core/health/aggregator.py)
    values = [(kv.key, kv.value) for kv in st.values]
    return status_dict(st.name, Level.of(st.level), shown_message(st.message, values), values, st.hardware_id)


def _transforms(m: TFMessage) -> list:
    """core/frames.Transform tuples of a TFMessage."""
    return [(t.header.frame_id, t.child_frame_id, (t.transform.translation.x, t.transform.translation.y,
             t.transform.translation.z), (t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
                                          t.transform.rotation.w)) for t in m.transforms]


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
        data = c.data_dir or data_dir(self.get_namespace())
        self.db = db_path(data)
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
        self.reader = rclpy.create_node(WEB_READER_NODE, context=self.context, start_parameter_services=False,
                                        cli_args=["--ros-args", "-r", f"__node:={WEB_READER_NODE}"])
        self.demand_subs: dict = {}
        self.audio_sub = self.reader.create_subscription(Float32, "audio/level_dbfs", lambda m: None, qos.LATEST)
        # direction of arrival (10 Hz from audio_node), read at 5 Hz into store.doa
        self.dir_sub = self.reader.create_subscription(Vector3Stamped, "audio/direction", lambda m: None, qos.LATEST)
        self.speech_sub = self.reader.create_subscription(Bool, "audio/speech", lambda m: None, qos.LATEST)
        self.speech = False
        self.doa_seen = 0.0
        # One 5 Hz tick does all the periodic work (each wake-up of the Python
        # executor costs more than the work itself): demand, audio level, a
        # silent health node (STALE on the page and /api/health), incidents.
        self.ticks = 0
        self.create_timer(0.2, self._tick)
        self.torque_cli = self.create_client(SetBool, f"{c.motor_node}/set_torque")
        self.reboot_cli = self.create_client(Trigger, f"{c.motor_node}/reboot")
        self.snapshot_cli = self.create_client(Trigger, "health_node/snapshot")   # the flight recorder
        # the vendor's /api/volume and /api/media (web/vendor_audio.py)
        self.audio_get_cli = self.create_client(GetParameters, "audio_node/get_parameters")
        self.audio_set_cli = self.create_client(SetParameters, "audio_node/set_parameters")
        self.audio_release_cli = self.create_client(SetBool, "audio/release")
        self.camera_release_cli = self.create_client(SetBool, "camera/release")
        self.audio_stop_cli = self.create_client(Trigger, "audio/stop")
        self.play_file_pub = self.create_publisher(String, "audio/play_file", 10)
        self.audio_out_pub = self.create_publisher(Int16MultiArray, "audio/out", qos.AUDIO)
        web = WebConfig(token=token, write_rate=c.write_rate, write_window_s=c.write_window_s,
                        protect_reads=c.exposed(), scrape_token=scrape_token, read_rate=c.read_rate,
                        read_window_s=c.read_window_s, tls=bool(tls), session_cookie=f"reachy_mini_session_{c.port}",
                        public_config=c.public() | {"namespace": self.get_namespace()},
                        robot=self.robot)
        self.media = self._media_actions()
        self.sdk = SdkRos(self) if c.sdk_enabled else None
        app = create_app(s, Actions(self._torque, self._reboot,
                                    lambda since=None, limit=100: query(self.db, since=since, limit=limit),
                                    lambda: summary(self.db)["by_level"], snapshot_dir(data),
                                    lambda: self._call(self.snapshot_cli, Trigger.Request()),
                                    media=self.media if self.sdk else None),   # vendor routes: under its guard
                         web, self.sdk and self.sdk.hub,
                         self.sdk and self.sdk.vendor)
        self.server = QuietServer(uvicorn.Config(app, host=c.host, port=c.port, log_level="warning",
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
            self.updater.add(SdkCheck(self.sdk.hub, c.exposed(), self.sdk.vendor))
            if c.sdk_open_to_network and c.exposed():
                self.get_logger().warning("SDK endpoint /ws/sdk and the vendor HTTP API (/api/daemon, /api/move, ...) "
                                          "open to the network without authentication (sdk_open_to_network): "
                                          "anyone who reaches this port can move the robot")
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
        level = take_latest(self.audio_sub, Float32)
        if level is not None:
            self.store.set_audio_level(level.data)
        self._take_doa()
        if self.ticks % 2 == 0:
            self.store.check_stale()
        if self.ticks % 5 == 0:
            self._poll_incidents()

    def _take_doa(self) -> None:
        """store.doa (the vendor's DoaSnapshot) from audio/direction + audio/speech; None
        when audio_node has said nothing for 2 s (no board)."""
        sp = take_latest(self.speech_sub, Bool)
        if sp is not None:
            self.speech = sp.data
        d = take_latest(self.dir_sub, Vector3Stamped)
        now = time.monotonic()
        if d is not None:
            self.doa_seen = now
            # unit vector (sin a, cos a, 0) in mic_array -> the vendor's angle a (0 left, pi/2 front, pi right)
            self.store.doa = {"angle": math.atan2(d.vector.x, d.vector.y), "speech_detected": bool(self.speech)}
        elif self.store.doa is not None and now - self.doa_seen > 2.0:
            self.store.doa = None

    # ---- the vendor's audio API (web/vendor_audio.py), on uvicorn's threads
    def _media_actions(self) -> MediaActions:
        def get_param(name: str) -> int:
            r = self._call_raw(self.audio_get_cli, GetParameters.Request(names=[name]))
            if not r.values or r.values[0].type != ParameterType.PARAMETER_INTEGER:
                raise TimeoutError(f"audio_node has no integer parameter {name}")
            return r.values[0].integer_value

        def set_param(name: str, value: int) -> tuple[bool, str]:
            p = Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_INTEGER,
                                                          integer_value=int(value)))
            res = self._call_raw(self.audio_set_cli, SetParameters.Request(parameters=[p])).results[0]
            return res.successful, res.reason

        def publish(pub, msg) -> None:
            """Publish once audio_node listens (a message sent before discovery is lost)."""
            end = time.monotonic() + self.cfg.service_timeout_s
            while pub.get_subscription_count() == 0:
                if time.monotonic() > end:
                    raise TimeoutError(f"nobody subscribes to {pub.topic_name} (is audio_node running?)")
                time.sleep(0.02)
            pub.publish(msg)

        def test_tone() -> None:   # 0.3 s of 880 Hz at -10 dBFS, mono 16 kHz
            n = 4800
            m = Int16MultiArray()
            m.layout.dim = [MultiArrayDimension(label="samples", size=n, stride=n),
                            MultiArrayDimension(label="channels", size=1, stride=1)]
            m.data = [int(0.3 * 32767 * math.sin(2 * math.pi * 880 * i / 16000)) for i in range(n)]
            publish(self.audio_out_pub, m)

        def audio_state() -> dict:
            v = next((st["values"] for st in self.store.tree
                      if st["name"].endswith("microphone") and "shared_pcm" in st["values"]), {})
            return {"shared_pcm": v.get("shared_pcm") == "true", "released": v.get("released") == "true"}

        return MediaActions(
            get_param=get_param, set_param=set_param,
            release_audio=lambda give_up: self._call(self.audio_release_cli, SetBool.Request(data=give_up)),
            release_camera=lambda give_up: self._call(self.camera_release_cli, SetBool.Request(data=give_up)),
            play_file=lambda path: publish(self.play_file_pub, String(data=path)),
            stop_sound=lambda: self._call(self.audio_stop_cli, Trigger.Request()),
            test_tone=test_tone, audio_state=audio_state)

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
                got = take_latest(sub, msg_type)
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
        r = self._call_raw(cli, req)
        return r.success, r.message

    def _call_raw(self, cli, req):
        if not cli.wait_for_service(timeout_sec=self.cfg.service_timeout_s):
            raise TimeoutError(f"service {cli.srv_name} not available (is its node running?)")
        fut = cli.call_async(req)
        end = time.monotonic() + self.cfg.service_timeout_s
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.005)
        if not fut.done():
            fut.cancel()
            raise TimeoutError(f"service {cli.srv_name} did not answer within {self.cfg.service_timeout_s} s")
        return fut.result()

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
        self.server.stop()
        self.thread.join(3)


NODE = WebBridge   # nodes/robot.py


def main(args=None) -> int:
    return run_node(WebBridge, "web_bridge", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
