"""Camera sources without ROS (all deliver BGR uint8 HxWx3 frames):

- SyntheticCamera: moving colour bars, a binary frame counter band and the
  frame number drawn in; the default under use_sim;
- OpenCVSource: a V4L2 device (path or `auto` = the UVC camera 38FB:1002)
  or a video file, both decoded by OpenCV (opencv-python-headless). A file
  loops, and is reopened by path at its end, so a file that disappears
  behaves like an unplugged camera.

plus camera_info loading from a camera_calibration_parsers YAML.
"""
from __future__ import annotations

import glob
import os

import numpy as np
import yaml

from reachy_mini.core.media.capture import SourceError

UVC_VID, UVC_PID = "38fb", "1002"
PIXEL_FORMATS = ("any", "mjpeg", "yuyv")


def find_uvc_device(vid: str = UVC_VID, pid: str = UVC_PID, sys_root: str = "/sys/class/video4linux") -> str | None:
    """/dev/videoN of the first capture node (index 0) of the USB camera vid:pid."""
    for node in sorted(glob.glob(os.path.join(sys_root, "video*")), key=lambda p: int(p.rsplit("video", 1)[1] or 0)):
        dev = os.path.realpath(os.path.join(node, "device"))
        ids = {}
        for d in (dev, os.path.dirname(dev)):
            for k in ("idVendor", "idProduct"):
                try:
                    with open(os.path.join(d, k)) as f:
                        ids.setdefault(k, f.read().strip().lower())
                except OSError:
                    pass
        try:
            with open(os.path.join(node, "index")) as f:
                index = f.read().strip()
        except OSError:
            index = "0"
        if ids.get("idVendor") == vid and ids.get("idProduct") == pid and index == "0":
            return "/dev/" + os.path.basename(node)
    return None


class OpenCVSource:
    """V4L2 device or video file through cv2.VideoCapture."""

    def __init__(self, device: str, width: int, height: int, fps: float, pixel_format: str = "any") -> None:
        self.device, self.width, self.height, self.fps, self.pixel_format = device, width, height, fps, pixel_format
        self.is_file = not device.startswith("/dev/") and device != "auto"
        self.paced = not self.is_file
        self.description = device
        self.cap = None

    def _path(self) -> str:
        """The device's path (`auto`: the sysfs lookup); SourceError when it is not there."""
        path = self.device
        if path == "auto":
            path = find_uvc_device()
            if path is None:
                raise SourceError(f"no UVC camera {UVC_VID}:{UVC_PID} found (is it plugged in?)")
        if not os.path.exists(path):
            raise SourceError(f"{path}: no such {'file' if self.is_file else 'device'}")
        return path

    def probe(self) -> str | None:
        """None when the device is there, else why not: no open, no capture (while idle)."""
        try:
            self._path()
        except SourceError as e:
            return str(e)
        return None

    def open(self) -> None:
        import cv2

        path = self._path()
        self.description = path
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG if self.is_file else cv2.CAP_V4L2)
        if not cap.isOpened():
            raise SourceError(f"{path}: cannot open (permissions, or busy?)")
        if not self.is_file:
            if self.pixel_format == "mjpeg":
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
            elif self.pixel_format == "yuyv":
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"YUYV"))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        self.cap = cap

    def read(self, timeout: float):
        ok, frame = self.cap.read()
        if not ok and self.is_file:   # end of file: reopen by path and loop
            self.close()
            self.open()
            ok, frame = self.cap.read()
        if not ok or frame is None:
            raise SourceError(f"{self.description}: read failed (device lost?)")
        return frame

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class SyntheticCamera:
    """Moving colour bars, a binary frame-counter band and the frame number."""
    paced = False
    description = "synthetic test pattern"

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        x = np.arange(width, dtype=np.uint16)
        self._bars = np.stack([(x * 3) % 256, (x * 5 + 85) % 256, (x * 7 + 170) % 256], axis=-1).astype(np.uint8)
        self.count = 0

    def read(self, timeout: float = 0.0) -> np.ndarray:
        shift = (self.count * 4) % self.width
        row = np.roll(self._bars, shift, axis=0)
        frame = np.broadcast_to(row, (self.height, self.width, 3)).copy()
        # frame counter as a binary band in the top rows
        bits = np.array([(self.count >> i) & 1 for i in range(32)], dtype=np.uint8) * 255
        band = np.repeat(bits, max(1, self.width // 32))[: self.width]
        frame[: max(1, self.height // 40), : band.size, :] = band[None, :, None]
        try:
            import cv2

            cv2.putText(frame, f"{self.count}", (8, self.height // 2), cv2.FONT_HERSHEY_SIMPLEX,
                        max(0.5, self.height / 240), (255, 255, 255), 2)
        except ImportError:
            pass
        self.count += 1
        return frame


def load_camera_info(path: str) -> dict:
    """Reads a camera_calibration_parsers YAML; raises ValueError naming the file."""
    try:
        with open(path) as f:
            d = yaml.safe_load(f)
        return {
            "width": int(d["image_width"]), "height": int(d["image_height"]),
            "distortion_model": str(d.get("distortion_model", "plumb_bob")),
            "d": [float(v) for v in d["distortion_coefficients"]["data"]],
            "k": [float(v) for v in d["camera_matrix"]["data"]],
            "r": [float(v) for v in d["rectification_matrix"]["data"]],
            "p": [float(v) for v in d["projection_matrix"]["data"]],
        }
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as e:
        raise ValueError(f"{path} is not a camera calibration file: {e}") from None

