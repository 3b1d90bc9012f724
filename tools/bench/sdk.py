"""`make bench BENCH=sdk`: the vendor SDK (PyPI reachy-mini 1.13.0, in its own
venv .venv-sdk, tools/sdk_venv.sh) against the full simulated stack, in one run:

- sdk_set_target_to_wire p50/p99: the SDK's set_target(head, antennas)
  streamed at 100 Hz -> web_bridge /ws/sdk -> motors/goal + head/target_pose
  -> motor_node -> its sync write arriving at the simulator (the right
  antenna's raw goal, matched exactly; same monotonic clock);
- ros_goal_in_stack_to_wire p50/p99: the same figure for a ROS client's
  motors/goal, same stack, same pacing;
- web_bridge CPU (% of one core) during the 100 Hz SDK stream, with the SDK
  connected but sending nothing (the 50 Hz state stream alone), and with no
  SDK client.
Goal: p99 <= 5 ms and web_bridge <= 10 % of a core.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

from tools.bench.stack import Stack, free_port, out

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SDK_PY = os.path.join(REPO, ".venv-sdk", "bin", "python")
N = int(os.environ.get("BENCH_SDK_N", "1000"))      # 10 s at 100 Hz

SCRIPT = textwrap.dedent("""
    import json, math, sys, time
    from reachy_mini import ReachyMini
    from reachy_mini.utils import create_head_pose
    vals, port = json.loads(sys.argv[1]), int(sys.argv[2])
    with ReachyMini(port=port, media_backend="no_media") as r:
        print("ready", flush=True)
        sys.stdin.readline()
        sent, t_next = [], time.monotonic()
        for k, v in enumerate(vals):
            t_next += 0.01
            time.sleep(max(0.0, t_next - time.monotonic()))
            head = create_head_pose(pitch=5 * math.sin(k / 50), degrees=True)
            t = time.monotonic()
            r.set_target(head=head, antennas=[v, v])
            sent.append(t)
        print(json.dumps(sent), flush=True)
        time.sleep(0.3)
""")


def _pct(xs: list[float], q: float) -> float:
    return xs[int(q * (len(xs) - 1))] if xs else float("nan")


def bench_sdk() -> None:
    import psutil

    from reachy_mini.core.motors.map import MotorMap
    from tools.bench.__main__ import _latencies

    if not os.path.exists(os.path.join(REPO, ".venv-sdk", ".installed")):
        print("# sdk: skipped, no .venv-sdk (make sdk-venv)", flush=True)
        return
    tmp = tempfile.mkdtemp(prefix="reachy_bench_sdk_")
    dom = os.environ.get("ROS_DOMAIN_ID", "96")
    st = Stack(tmp, domain=dom, port=int(os.environ.get("BENCH_SDK_PORT", "0")) or free_port())
    m = MotorMap.load().by_name["right_antenna"]
    ctl = os.path.join(tmp, "reachy_mini_sim", "ttyDXL.ctl")
    try:
        wb = psutil.Process(st.pids()["web_bridge"])
        time.sleep(8.0)   # the stack settles (discovery, first diagnostics)
        # -- ROS client: motors/goal on the same stack, same pacing
        os.environ["ROS_DOMAIN_ID"] = dom
        import rclpy
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState

        from reachy_mini.sim.bus import send_command

        rclpy.init()
        node = rclpy.create_node("bench_sdk_ros_client")
        pub = node.create_publisher(JointState, "motors/goal", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        end = time.monotonic() + 10
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(0.5)
        send_command(ctl, {"cmd": "goals"})
        sent, t_next = [], time.monotonic()
        for k in range(N // 2):
            t_next += 0.01
            time.sleep(max(0.0, t_next - time.monotonic()))
            raw = 1500 + k
            msg = JointState(name=["right_antenna", "left_antenna"], position=[m.raw_to_rad(raw)] * 2)
            t = time.monotonic()
            pub.publish(msg)
            sent.append((t, raw))
        time.sleep(0.3)
        ros = _latencies(ctl, sent, m.id)
        node.destroy_node()
        rclpy.shutdown()
        # -- idle web_bridge CPU (no SDK client)
        c0, t0 = wb.cpu_times(), time.monotonic()
        time.sleep(5.0)
        c1 = wb.cpu_times()
        idle = (c1.user + c1.system - c0.user - c0.system) / (time.monotonic() - t0) * 100
        # -- the SDK client
        raws = [2500 + k for k in range(N)]
        p = subprocess.Popen([SDK_PY, "-c", SCRIPT, json.dumps([m.raw_to_rad(r) for r in raws]), str(st.port)],
                             cwd=tmp, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        assert p.stdout.readline().strip() == "ready", "the SDK did not connect"
        time.sleep(1.0)
        c0, t0 = wb.cpu_times(), time.monotonic()
        time.sleep(5.0)   # connected, receiving the 50 Hz state stream, sending nothing
        c1 = wb.cpu_times()
        streaming = (c1.user + c1.system - c0.user - c0.system) / (time.monotonic() - t0) * 100
        send_command(ctl, {"cmd": "goals"})
        p.stdin.write("\n")
        p.stdin.flush()
        c0, t0 = wb.cpu_times(), time.monotonic()
        times = json.loads(p.stdout.readline())
        c1, dt = wb.cpu_times(), time.monotonic() - t0
        p.wait(20)
        sdk = _latencies(ctl, list(zip(times, raws)), m.id)
        busy = (c1.user + c1.system - c0.user - c0.system) / dt * 100
        print(f"# one run, full simulated stack: ROS motors/goal {len(ros)}/{N // 2} goals, SDK set_target "
              f"{len(sdk)}/{N} goals, both at 100 Hz; goal p99 <= 5 ms, web_bridge <= 10 % of a core", flush=True)
        out("ros_goal_in_stack_to_wire_p50", _pct(ros, 0.5), "ms")
        out("ros_goal_in_stack_to_wire_p99", _pct(ros, 0.99), "ms")
        out("sdk_set_target_to_wire_p50", _pct(sdk, 0.5), "ms")
        out("sdk_set_target_to_wire_p99", _pct(sdk, 0.99), "ms")
        out("sdk_over_ros_goal_p50_ratio", _pct(sdk, 0.5) / _pct(ros, 0.5), "x")
        out("web_bridge_cpu_sdk_100hz", busy, "% of a core")
        out("web_bridge_cpu_sdk_connected_idle", streaming, "% of a core")
        out("web_bridge_cpu_no_sdk_client", idle, "% of a core")
    finally:
        st.stop()


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    bench_sdk()
