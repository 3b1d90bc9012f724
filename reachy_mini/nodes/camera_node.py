"""camera_node: camera/image_raw (sensor_msgs/Image), camera/camera_info and,
at `compressed_fps`, camera/image_raw/compressed (JPEG). Sources (core/media/camera.py):
V4L2 device by path or `auto` (UVC 38FB:1002), a video file, or the synthetic
pattern under use_sim. Capture runs on its own thread (core/media/capture.SourceLoop),
which reopens a lost device with backoff; diagnostics say what happened."""
from __future__ import annotations

import time

import cv2
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from reachy_mini.core.media.camera import OpenCVSource, SyntheticCamera, load_camera_info
from reachy_mini.core.media.capture import SourceLoop
from reachy_mini.core.media.config import CameraConfig
from reachy_mini.common.paths import config_path
from reachy_mini.ros import qos
from reachy_mini.core.identity import robot_name
from reachy_mini.ros.diagnostics import RobotUpdater
from reachy_mini.ros.params import ParameterError, declare
from reachy_mini.ros.runner import run_node
from reachy_mini.ros.tasks import CaptureCheck

CONFIG = CameraConfig


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__("camera_node")
        self.cfg = c = declare(self, CameraConfig)
        self.robot = robot_name(self.cfg.robot_name, self.get_namespace())
        url = c.camera_info_url.removeprefix("file://") or config_path("camera_info.yaml")
        try:
            i = load_camera_info(url)
        except ValueError as e:
            raise ParameterError(f"parameter 'camera_info_url': {e}") from None
        self.info = CameraInfo(height=i["height"], width=i["width"], distortion_model=i["distortion_model"],
                               d=i["d"], k=i["k"], r=i["r"], p=i["p"])
        self.frame_id = c.frame_prefix + c.frame_id
        self.sim = c.simulated   # an absent device or file is waited for (SourceLoop reopens it)
        self.img_pub = self.create_publisher(Image, "camera/image_raw", qos.IMAGE)
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info", qos.CAMERA_INFO)
        self.jpg_pub = self.create_publisher(CompressedImage, "camera/image_raw/compressed", qos.PREVIEW)
        self.last_jpg = 0.0
        make = (lambda: SyntheticCamera(c.width, c.height)) if self.sim else \
            (lambda: OpenCVSource(c.device, c.width, c.height, c.fps, c.pixel_format))
        self.loop = SourceLoop(make, self._publish, c.fps, c.stall_timeout_s).start()
        self.updater = RobotUpdater(self, self.robot)
        self.updater.setHardwareID(c.hardware_id)
        self.updater.add(CaptureCheck("camera", self.loop, "frame", lambda: c.fps, lambda: max(1.0, 3.0 / c.fps),
                                      self._values))

    def _publish(self, frame, _t: float) -> None:  # capture thread
        """Converts, copies and encodes only for topics someone subscribes to."""
        cf, enc = self.cfg.compressed_fps, self.cfg.encoding
        raw, info = self.img_pub.get_subscription_count() > 0, self.info_pub.get_subscription_count() > 0
        jpg_due = cf > 0 and time.monotonic() - self.last_jpg >= 1.0 / cf and self.jpg_pub.get_subscription_count() > 0
        if not (raw or info or jpg_due):
            return
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
                ("resolution (requested)", f"{c.width}x{c.height}"), ("encoding", c.encoding)]

    def workers(self) -> dict:
        return {"capture": self.loop.thread}

    def shutdown(self) -> None:
        self.loop.stop()


def fastdds_profile(env: dict) -> str | None:
    """The Fast DDS profile this process should load (config/fastdds_camera.xml:
    a shared-memory segment that holds whole frames), or None: the user set
    their own, or another RMW is in use."""
    if env.get("FASTDDS_DEFAULT_PROFILES_FILE") or env.get("FASTRTPS_DEFAULT_PROFILES_FILE"):
        return None
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        return None
    return config_path("fastdds_camera.xml")


def main(args=None) -> int:
    import os

    profile = fastdds_profile(dict(os.environ))
    if profile and os.environ.get("REACHY_MINI_CAMERA_FASTDDS_PROFILE", "1") != "0":   # 0: off (bench baseline)
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = profile   # read when rclpy.init creates the participant
    return run_node(CameraNode, "camera_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
