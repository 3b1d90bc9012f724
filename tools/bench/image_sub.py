"""A separate-process subscriber to camera/image_raw for `make bench`
(camera_qos): counts the synthetic camera's frames it receives.

    python -m tools.bench.image_sub reliable|sensor SECONDS

Prints one JSON line: frames received, and the first and last frame numbers
seen (the synthetic pattern's counter), so the fraction delivered is
received / (last - first + 1)."""
from __future__ import annotations

import json
import sys
import time

import numpy as np


def frame_number(img) -> int:
    px = np.frombuffer(bytes(img.data), np.uint8).reshape(img.height, img.width, 3)[0, :, 0]
    w = max(1, img.width // 32)
    return sum(1 << i for i in range(32) if px[i * w + w // 2] > 127)


def main(argv=None) -> int:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    kind, seconds = (argv or sys.argv[1:])[:2]
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE) if kind == "reliable" \
        else qos_profile_sensor_data
    rclpy.init()
    node = rclpy.create_node(f"bench_image_sub_{kind}")
    seen: list[int] = []
    node.create_subscription(Image, "camera/image_raw", lambda m: seen.append(frame_number(m)), qos)
    end = None
    while end is None or time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
        if end is None and seen:
            seen.clear()   # counted from the first frame on, after discovery
            end = time.monotonic() + float(seconds)
    print(json.dumps({"received": len(set(seen)), "first": min(seen, default=0), "last": max(seen, default=-1)}),
          flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
