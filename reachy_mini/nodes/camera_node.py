"""camera_node: camera/image_raw (sensor_msgs/Image), camera/camera_info and,
at `compressed_fps`, camera/image_raw/compressed (JPEG). Sources (camera_core):
V4L2 device by path or `auto` (UVC 38FB:1002), a video file, or the synthetic
pattern under use_sim. Capture runs on its own thread (capture.SourceLoop),
which reopens a lost device with backoff; diagnostics say what happened."""
from __future__ import annotations

import os
import time

import cv2
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from reachy_mini.core.media.camera import PIXEL_FORMATS, OpenCVSource, SyntheticCamera, load_camera_info
from reachy_mini.ros import qos
from reachy_mini.core.media.capture import SourceLoop, rate_status
from reachy_mini.core.levels import ERROR, Level
from reachy_mini.ros.diagnostics import Updater
from reachy_mini.ros.params import Param, ParameterError, declare, run_node
from reachy_mini.ops.paths import config_path

SPECS = [
    Param("use_sim", False, "synthetic test pattern instead of a device"),
    Param("device", "auto", "'auto' (UVC 38FB:1002), 'sim', a V4L2 device path or a video file"),
    Param("width", 640, "image width", 16, 4096),
    Param("height", 480, "image height", 16, 4096),
    Param("fps", 30.0, "target frame rate", 0.5, 120.0),
    Param("frame_id", "camera_optical_frame", "frame_id of the images (REP-103 optical frame)"),
    Param("camera_info_url", "", "calibration YAML, path or file:// URL (default: config/camera_info.yaml)"),
    Param("pixel_format", "any", "V4L2 capture format", choices=PIXEL_FORMATS),
    Param("encoding", "bgr8", "published encoding", choices=("bgr8", "rgb8"), runtime=True),
    Param("compressed_fps", 5.0, "rate of camera/image_raw/compressed (0: off)", 0.0, 120.0, runtime=True),
    Param("jpeg_quality", 80, "JPEG quality", 1, 100, runtime=True),
    Param("stall_timeout_s", 1.0, "no frame for this long: device lost, reopen", 0.1, 60.0),
]


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__("camera_node")
        self.p = p = declare(self, SPECS)
        url = p["camera_info_url"].removeprefix("file://") or config_path("camera_info.yaml")
        try:
            i = load_camera_info(url)
        except ValueError as e:
            raise ParameterError(f"parameter 'camera_info_url': {e}") from None
        self.info = CameraInfo(height=i["height"], width=i["width"], distortion_model=i["distortion_model"],
                               d=i["d"], k=i["k"], r=i["r"], p=i["p"])
        self.sim = p["use_sim"] or p["device"] == "sim"
        if not self.sim and p["device"] != "auto" and not p["device"].startswith("/dev/") \
                and not os.path.isfile(p["device"]):
            raise ParameterError(f"parameter 'device' = {p['device']!r}: not 'auto', 'sim', a /dev path or a file")
        self.img_pub = self.create_publisher(Image, "camera/image_raw", qos.IMAGE)
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info", qos.CAMERA_INFO)
        self.jpg_pub = self.create_publisher(CompressedImage, "camera/image_raw/compressed", qos.PREVIEW)
        self.last_jpg = 0.0
        make = (lambda: SyntheticCamera(p["width"], p["height"])) if self.sim else \
            (lambda: OpenCVSource(p["device"], p["width"], p["height"], p["fps"], p["pixel_format"]))
        self.loop = SourceLoop(make, self._publish, p["fps"], p["stall_timeout_s"]).start()
        self.updater = Updater(self)
        self.updater.setHardwareID("camera:synthetic" if self.sim else
                                   "uvc:38fb:1002" if p["device"] == "auto" else p["device"])
        self.updater.add("camera", self._diag)

    def _publish(self, frame, _t: float) -> None:  # capture thread
        stamp = self.get_clock().now().to_msg()
        h, w = frame.shape[:2]
        enc = self.p["encoding"]
        data = frame if enc == "bgr8" else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        msg = Image(height=h, width=w, encoding=enc, is_bigendian=0, step=w * 3, data=data.tobytes())
        msg.header.stamp, msg.header.frame_id = stamp, self.p["frame_id"]
        self.img_pub.publish(msg)
        self.info.header = msg.header
        self.info_pub.publish(self.info)
        cf = self.p["compressed_fps"]
        if cf > 0 and time.monotonic() - self.last_jpg >= 1.0 / cf:
            self.last_jpg = time.monotonic()
            ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.p["jpeg_quality"]])
            if ok:
                c = CompressedImage(format=f"{enc}; jpeg compressed bgr8", data=jpg.tobytes())
                c.header = msg.header
                self.jpg_pub.publish(c)

    def _diag(self, st):
        s = self.loop.snapshot()
        target = self.p["fps"]
        lv, msg = rate_status(s["rate"], target)
        if not s["present"]:
            lv, msg = ERROR, f"device not available: {s['last_error']}; retrying"
        elif s["age"] > max(1.0, 3.0 / target):
            lv, msg = ERROR, f"no frame for {s['age']:.1f} s"
        st.summary(Level(lv).to_bytes(), msg)
        st.add("source", "synthetic" if self.sim else s["description"] or self.p["device"])
        st.add("device present", str(s["present"]).lower())
        st.add("target fps", f"{target:.1f}")
        st.add("measured fps", f"{s['rate']:.2f}")
        st.add("frames", str(s["count"]))
        st.add("dropped frames", str(s["dropped"]))
        st.add("last frame age (s)", f"{s['age']:.3f}")
        st.add("device opens", str(s["opens"]))
        st.add("device losses", str(s["losses"]))
        st.add("last error", str(s["last_error"] or ""))
        st.add("resolution (requested)", f"{self.p['width']}x{self.p['height']}")
        st.add("encoding", self.p["encoding"])
        return st

    def shutdown(self) -> None:
        self.loop.stop()


def main(args=None) -> int:
    return run_node(CameraNode, "camera_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
