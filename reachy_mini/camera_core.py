"""Camera sources without ROS: a synthetic moving test pattern (default in
simulation) and camera_info loading from a calibration YAML."""
from __future__ import annotations

import time

import numpy as np
import yaml


class SyntheticCamera:
    """Moving colour bars plus a frame counter band; rgb8, HxWx3."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        x = np.arange(width, dtype=np.uint16)
        self._bars = np.stack([(x * 3) % 256, (x * 5 + 85) % 256, (x * 7 + 170) % 256], axis=-1).astype(np.uint8)
        self.count = 0

    def read(self) -> np.ndarray:
        shift = (self.count * 4) % self.width
        row = np.roll(self._bars, shift, axis=0)
        frame = np.broadcast_to(row, (self.height, self.width, 3)).copy()
        # frame counter as a binary band in the top rows
        bits = np.array([(self.count >> i) & 1 for i in range(32)], dtype=np.uint8) * 255
        band = np.repeat(bits, max(1, self.width // 32))[: self.width]
        frame[: max(1, self.height // 40), : band.size, :] = band[None, :, None]
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


def now() -> float:
    return time.monotonic()
