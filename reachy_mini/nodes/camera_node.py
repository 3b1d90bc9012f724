"""camera_node: camera/image_raw (sensor_msgs/Image), camera/camera_info and,
at `compressed_fps`, camera/image_raw/compressed (JPEG). Sources (core/media/camera.py):
V4L2 device by path or `auto` (UVC 38FB:1002), a video file, or the synthetic
pattern under use_sim. Capture runs on its own thread (core/media/capture.SourceLoop),
which reopens a lost device with backoff; diagnostics say what happened.

Captures at capture_width x capture_height (the Lite camera's 1920x1080 mode) and
publishes ROS images resized to width x height; serves the vendor SDK's local
camera socket (core/media/unixfd.FrameServer) at the camera spec's size;
camera/release (std_srvs/SetBool) gives the device up for apps and takes it back.

Captures on demand (core/media/demand.py): the device is open only while
someone reads (a subscriber of a camera topic, an SDK socket client), and
closed `idle_close_s` after the last one left; while closed the SDK socket
stays listening (a client connecting starts the capture) and the device's
presence is probed every `presence_probe_s`."""
from __future__ import annotations

import os
import threading
import time

import cv2
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import SetBool

from reachy_mini.core.media import camera_specs
from reachy_mini.core.media.camera import OpenCVSource, SyntheticCamera, load_camera_info
from reachy_mini.core.media.capture import SourceLoop
from reachy_mini.core.media.demand import Demand, demand_values
from reachy_mini.core.media.config import CameraConfig
from reachy_mini.core.media.unixfd import DEFAULT_PATH as DEFAULT_SDK_PATH, FrameServer
from reachy_mini.common.paths import config_path
from reachy_mini.ros import qos
from reachy_mini.core.identity import robot_name
from reachy_mini.ros.diagnostics import RobotUpdater
from reachy_mini.ros.params import ParameterError, declare
from reachy_mini.ros.runner import run_node
from reachy_mini.ros.tasks import CaptureCheck
from reachy_mini.core.levels import WARN

CONFIG = CameraConfig


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__("camera_node")
        self.cfg = c = declare(self, CameraConfig)
        self.robot = robot_name(self.cfg.robot_name, self.get_namespace())
        self.size = (c.width, c.height)                         # camera/image_raw
        url = c.camera_info_url.removeprefix("file://")
        if url:
            try:
                i = load_camera_info(url)
            except ValueError as e:
                raise ParameterError(f"parameter 'camera_info_url': {e}") from None
            i = camera_specs.scale_info(i, self.size, f"{url}")
        else:
            i = camera_specs.camera_info(c.camera_specs, self.size)
        self.calibration_source = i["source"]
        self.info = CameraInfo(height=i["height"], width=i["width"], distortion_model=i["distortion_model"],
                               d=i["d"], k=i["k"], r=i["r"], p=i["p"])
        self.frame_id = c.frame_prefix + c.frame_id
        self.sim = c.simulated   # an absent device or file is waited for (SourceLoop reopens it)
        self.img_pub = self.create_publisher(Image, "camera/image_raw", qos.IMAGE)
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info", qos.CAMERA_INFO)
        self.jpg_pub = self.create_publisher(CompressedImage, "camera/image_raw/compressed", qos.PREVIEW)
        self.last_jpg = 0.0
        self.sdk = None
        if c.sdk_socket:
            sw, sh = camera_specs.get_spec(c.camera_specs).size
            self.sdk = FrameServer(sdk_socket_path(c.sdk_socket_path, dict(os.environ)), sw, sh, c.sdk_fps, max_clients=c.sdk_max_clients,
                                   idle_s=max(1.0, 3.0 / c.fps), log=self.get_logger().info)
        make = (lambda: SyntheticCamera(c.capture_width, c.capture_height)) if self.sim else \
            (lambda: OpenCVSource(c.device, c.capture_width, c.capture_height, c.fps, c.pixel_format))
        self.demand = Demand(lambda: self.cfg.idle_close_s, time.monotonic())
        self.released = False
        self.demand_lock = threading.Lock()
        self.loop = SourceLoop(make, self._publish, c.fps, c.stall_timeout_s, probe_s=c.presence_probe_s).start()
        # who reads: counted twice a second. One cheap timer covers the subscribers, the SDK clients,
        # the idle_close_s expiry and the socket's standby (rclpy's matched events do fire with these
        # wheels, checked, but SDK clients and the expiry would still need a timer). SDK clients are
        # counted at the tick, not on connect, so that another server's probe of the path
        # (FrameServer._free_path connects and leaves at once) does not wake the camera.
        self.demand_timer = self.create_timer(0.5, self._demand_tick)
        self.release_srv = self.create_service(SetBool, "camera/release", self._release)
        self.updater = RobotUpdater(self, self.robot)
        self.updater.setHardwareID(c.hardware_id)
        self.updater.add(CaptureCheck("camera", self.loop, "frame", lambda: c.fps, lambda: max(1.0, 3.0 / c.fps),
                                      self._values, self._sdk_findings))

    def _release(self, req, res):
        """data=true: give the camera up (the SDK socket goes away: apps see no_media); false: take it again."""
        if self.sdk is not None:
            self.sdk.pause(req.data)
        self.released = req.data
        ok = self.loop.hold(req.data)
        res.success = ok
        res.message = ("released for apps" if req.data else "acquired") if ok else \
            "the device did not close within 5 s (a read is stuck); it will close when the read returns"
        self.get_logger().info(f"camera/release({req.data}): {res.message}")
        return res

    def _readers(self) -> int:
        n = self.img_pub.get_subscription_count() + self.info_pub.get_subscription_count()
        if self.cfg.compressed_fps > 0:
            n += self.jpg_pub.get_subscription_count()
        if self.sdk is not None:
            n += len(self.sdk.clients)
        return n

    def _demand_tick(self) -> None:   # timer (executor)
        """Readers -> open or close the device; the SDK socket listens while the camera
        is closed for want of a reader but present (a client connecting starts capture)."""
        with self.demand_lock:   # one decision at a time (whatever executor runs the node)
            self.loop.want(self.demand.update(self._readers(), time.monotonic()))
            if self.sdk is not None:
                self.sdk.set_standby(not self.released and self.loop.snapshot()["present"])

    def _sdk_findings(self, _s: dict):
        if self.sdk is None:
            return []
        err = self.sdk.snapshot()["last_error"]
        return [(WARN, f"SDK camera socket: {err}")] if err and not self.sdk.serving else []

    def _publish(self, frame, t: float) -> None:  # capture thread
        """Serves the SDK socket (full size), then resizes, converts, copies and encodes
        only for topics someone subscribes to."""
        if self.sdk is not None:
            self.sdk.publish(frame, t)
        cf, enc = self.cfg.compressed_fps, self.cfg.encoding
        raw, info = self.img_pub.get_subscription_count() > 0, self.info_pub.get_subscription_count() > 0
        jpg_due = cf > 0 and time.monotonic() - self.last_jpg >= 1.0 / cf and self.jpg_pub.get_subscription_count() > 0
        if not (raw or info or jpg_due):
            return
        if frame.shape[1] != self.size[0] or frame.shape[0] != self.size[1]:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        h, w = frame.shape[:2]
        self.info.header.stamp, self.info.header.frame_id = self.get_clock().now().to_msg(), self.frame_id
        if raw:
            data = frame if enc == "bgr8" else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            msg = Image(height=h, width=w, encoding=enc, is_bigendian=0, step=w * 3, data=data.tobytes())
            msg.header = self.info.header
            self.img_pub.publish(msg)
        if info:
            self.info_pub.publish(self.info)
        if jpg_due:
            self.last_jpg = time.monotonic()
            ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
            if ok:
                c = CompressedImage(format=f"{enc}; jpeg compressed bgr8", data=jpg.tobytes())
                c.header = self.info.header
                self.jpg_pub.publish(c)

    def _values(self, s: dict):
        c = self.cfg
        return [("source", "synthetic" if self.sim else s["description"] or c.device),
                ("device present", str(s["present"]).lower()), ("target fps", f"{c.fps:.1f}"),
                ("measured fps", f"{s['rate']:.2f}"), ("frames", s["count"]), ("dropped frames", s["dropped"]),
                ("last frame age (s)", f"{s['age']:.3f}"), ("device opens", s["opens"]),
                ("device losses", s["losses"]), ("last error", s["last_error"] or ""),
                ("resolution (requested)", f"{c.capture_width}x{c.capture_height}"),
                ("published size", f"{c.width}x{c.height}"), ("encoding", c.encoding),
                ("calibration", self.calibration_source)] + \
            demand_values(self.demand.snapshot(time.monotonic())) + \
            [("device open", str(not s["idle"] and not s["held"] and s["present"]).lower()),
             ("presence probes (while idle)", s["probes"])] + self._sdk_values()

    def _sdk_values(self):
        if self.sdk is None:
            return [("sdk_socket", "off"), ("sdk socket path", "(sdk_socket is false)")]
        x = self.sdk.snapshot()
        return [("sdk_socket", "serving" if x["serving"] else "off"), ("sdk socket path", x["path"]),
                ("sdk socket standby (camera closed, a client starts it)", str(x["standby"]).lower()),
                ("camera_specs_name", self.cfg.camera_specs),
                ("sdk size", f"{self.sdk.width}x{self.sdk.height} BGR"), ("sdk target fps", f"{self.sdk.fps:g}"),
                ("sdk clients", x["clients"]), ("sdk connections", x["connections"]),
                ("sdk frames served", x["frames"]), ("sdk frames missed (client behind)", x["missed"]),
                ("sdk bad clients", x["bad_clients"]), ("sdk stuck clients", x["stuck_clients"]),
                ("sdk refused clients", x["refused"]), ("sdk stale files removed", x["stale_removed"]),
                ("sdk last error", x["last_error"]), ("sdk last event", x["last_event"])]

    def workers(self) -> dict:
        return {"capture": self.loop.thread}

    def shutdown(self) -> None:
        self.loop.stop()
        if self.sdk is not None:
            self.sdk.close()


def sdk_socket_path(param: str, env: dict) -> str:
    """The parameter, except that REACHY_MINI_SDK_CAMERA_SOCKET replaces its default ("%p": this
    process' id): the test suite gives every camera_node a private path that way, so parallel
    stacks on one machine never share the SDK's /tmp/reachymini_camera_socket."""
    override = env.get("REACHY_MINI_SDK_CAMERA_SOCKET", "")
    if override and param == DEFAULT_SDK_PATH:
        return override.replace("%p", str(os.getpid()))
    return param


def fastdds_profile(env: dict) -> str | None:
    """The Fast DDS profile this process should load (config/fastdds_camera.xml:
    a shared-memory segment that holds whole frames), or None: the user set
    their own, or another RMW is in use."""
    if env.get("FASTDDS_DEFAULT_PROFILES_FILE") or env.get("FASTRTPS_DEFAULT_PROFILES_FILE"):
        return None
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        return None
    return config_path("fastdds_camera.xml")


NODE = CameraNode   # nodes/robot.py


def before_init() -> None:
    """The camera's DDS profile, read when rclpy.init creates the participant."""
    profile = fastdds_profile(dict(os.environ))
    if profile and os.environ.get("REACHY_MINI_CAMERA_FASTDDS_PROFILE", "1") != "0":   # 0: off (bench baseline)
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = profile


def main(args=None) -> int:
    before_init()
    return run_node(CameraNode, "camera_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
