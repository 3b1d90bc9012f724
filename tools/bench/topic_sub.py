"""A separate-process subscriber for `make bench` (stack): /tf as RViz or a
tf2 listener would subscribe, or joint_states as a separate TF publisher
would have to (the lower bound of its cost: receiving and deserializing
every sample, before any kinematics or publishing).

    python -m tools.bench.topic_sub tf|joint_states SECONDS

Prints one JSON line: the rate received, counted from the first message on."""
from __future__ import annotations

import json
import sys
import time


def main(argv=None) -> int:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    kind, seconds = (argv or sys.argv[1:])[:2]
    if kind == "tf":
        from tf2_msgs.msg import TFMessage as T
        topic = "/tf"
    else:
        from sensor_msgs.msg import JointState as T
        topic = "joint_states"
    rclpy.init()
    node = rclpy.create_node(f"bench_{kind}_sub")
    n = [0]
    node.create_subscription(T, topic, lambda m: n.__setitem__(0, n[0] + 1),
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    end = time.monotonic() + 30.0   # discovery
    counting = False
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
        if n[0] and not counting:
            counting, n[0], end = True, 0, time.monotonic() + float(seconds)
    print(json.dumps({"rate": n[0] / float(seconds)}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
