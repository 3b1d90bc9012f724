"""camera_node: publishes camera/image_raw and camera/camera_info.

Sources: the synthetic test pattern (use_sim or device:=sim). V4L2 capture
is tracked in its own issue; with a real device path this node reports the
device as unsupported in diagnostics instead of pretending.
"""
from __future__ import annotations

import time

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from ..camera_core import SyntheticCamera, load_camera_info
from ..diag import ERROR, FrequencyStatus, FrequencyStatusParam, Updater, level_byte
from ..params import P, ParameterError, declare, run_node
from ..paths import config_path

SPECS = [
    P("use_sim", False, "synthetic test pattern instead of a device"),
    P("device", "auto", "'auto', 'sim' or a V4L2 device path"),
    P("width", 640, "image width", 16, 4096),
    P("height", 480, "image height", 16, 4096),
    P("fps", 30.0, "frame rate", 0.5, 120.0),
    P("frame_id", "camera_optical_frame", "frame_id of the images (REP-103 optical frame)"),
    P("camera_info_url", "", "calibration YAML (default: the package's config/camera_info.yaml)"),
    P("pixel_format", "rgb8", "published encoding", choices=("rgb8", "bgr8")),
]


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__("camera_node")
        self.p = p = declare(self, SPECS)
        url = p["camera_info_url"].removeprefix("file://") or config_path("camera_info.yaml")
        try:
            self.info = load_camera_info(url)
        except ValueError as e:
            raise ParameterError(f"parameter 'camera_info_url': {e}") from None
        self.sim = p["use_sim"] or p["device"] == "sim"
        self.source = SyntheticCamera(p["width"], p["height"]) if self.sim else None
        self.img_pub = self.create_publisher(Image, "camera/image_raw", 5)
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info", 5)
        self.freq = FrequencyStatus(FrequencyStatusParam({"min": p["fps"], "max": p["fps"]}, 0.1, 5), "frame rate")
        self.last_frame = 0.0
        self.dropped = 0
        self.updater = Updater(self, period=1.0)
        self.updater.setHardwareID("uvc:38fb:1002" if not self.sim else "camera:synthetic")
        self.updater.add("frames", self._diag)
        self.create_timer(1.0 / p["fps"], self._tick)

    def _tick(self) -> None:
        if self.source is None:
            return
        frame = self.source.read()
        stamp = self.get_clock().now().to_msg()
        msg = Image(height=frame.shape[0], width=frame.shape[1], encoding=self.p["pixel_format"],
                    is_bigendian=0, step=frame.shape[1] * 3)
        msg.header.stamp, msg.header.frame_id = stamp, self.p["frame_id"]
        msg.data = frame.tobytes() if self.p["pixel_format"] == "rgb8" else frame[..., ::-1].tobytes()
        self.img_pub.publish(msg)
        i = self.info
        info = CameraInfo(height=i["height"], width=i["width"], distortion_model=i["distortion_model"],
                          d=i["d"], k=i["k"], r=i["r"], p=i["p"])
        info.header = msg.header
        self.info_pub.publish(info)
        self.freq.tick()
        self.last_frame = time.monotonic()

    def _diag(self, st):
        if self.source is None:
            st.summary(level_byte(ERROR), f"device {self.p['device']!r}: V4L2 capture is not available in this build")
            st.add("device present", "unknown")
            return st
        self.freq.run(st)
        age = time.monotonic() - self.last_frame if self.last_frame else float("inf")
        if age > 1.0:
            st.summary(level_byte(ERROR), f"no frame for {age:.1f} s")
        st.add("device", "synthetic" if self.sim else self.p["device"])
        st.add("device present", "true")
        st.add("last frame age (s)", f"{age:.3f}")
        st.add("dropped frames", self.dropped)
        st.add("resolution", f"{self.p['width']}x{self.p['height']}")
        return st

def main(args=None) -> int:
    return run_node(CameraNode, "camera_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
