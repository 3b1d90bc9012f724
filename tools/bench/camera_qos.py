"""camera_qos (part of `make bench`): the fraction of camera_node's 30 fps
frames (640x480, synthetic source) that reach a subscriber in a separate
process, RELIABLE (RViz, image_view) and sensor-data (image_proc), with Fast
DDS's defaults and with config/fastdds_camera.xml (camera_node's own
profile: a shared-memory segment that holds whole frames), then with the
whole simulated stack running idle; and camera_node's CPU meanwhile. Goal: >= 99 % delivered with the stack idle, without raising
the CPU by more than 2 points."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from tools.bench.stack import Stack, _node, _stop, cpu_of, out

QOS_S = float(os.environ.get("BENCH_CAMERA_QOS_S", "10"))


def bench_camera_qos() -> None:
    tmp = tempfile.mkdtemp(prefix="reachy_bench_camera_qos_")
    base = dict(os.environ, ROS_DOMAIN_ID="94", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", HOME=tmp)
    base.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    print(f"# camera/image_raw 640x480 at 30 fps to a subscriber in another process, {QOS_S:.0f} s each; "
          "goal >= 99 % delivered, camera_node CPU +2 points at most", flush=True)
    for label, profile in (("fastdds_default", "0"), ("camera_profile", "1")):
        env = dict(base, REACHY_MINI_CAMERA_FASTDDS_PROFILE=profile)
        cam = _node("camera_node", env, use_sim="true", fps=30.0, width=640, height=480, compressed_fps=0.0)
        try:
            time.sleep(4.0)
            _deliveries(cam.pid, base, label)
        finally:
            _stop(cam)
    # the whole stack on the simulated robot, idle (page closed), as `make run` starts it
    st = Stack(tempfile.mkdtemp(prefix="reachy_bench_camera_qos_stack_"), domain="94")
    try:
        pid = st.pids()["camera_node"]
        time.sleep(8.0)   # past start-up
        _deliveries(pid, base, "full_stack")
    finally:
        st.stop()


def _deliveries(cam_pid: int, env: dict, label: str) -> None:
    for kind in ("reliable", "sensor"):
        sub = subprocess.Popen([sys.executable, "-m", "tools.bench.image_sub", kind, str(QOS_S)], env=env,
                               stdout=subprocess.PIPE, text=True)
        time.sleep(2.0)   # discovery and the first frame
        cpu = cpu_of({"cam": cam_pid}, QOS_S - 2.0)["cam"]
        got = json.loads(sub.communicate(timeout=QOS_S + 30)[0].strip().splitlines()[-1])
        span = got["last"] - got["first"] + 1
        out(f"camera_delivered_{kind}_{label}", 100.0 * got["received"] / span if span > 0 else 0.0, "%")
        out(f"camera_node_cpu_{kind}_{label}", cpu, "%")
