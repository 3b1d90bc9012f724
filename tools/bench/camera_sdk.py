"""camera_sdk (part of `make bench`, issue 31): what serving the vendor SDK's camera
socket costs camera_node, measured in one run on this machine.

Configurations, each with one RELIABLE camera/image_raw subscriber in another
process (tools/bench/image_sub.py: the ROS rate must not drop; read from the synthetic
pattern's frame counter, so for the synthetic camera only):
  before        today's node before issue 31: capture and publish 640x480, no socket
  after_idle    capture 1920x1080 (the Lite spec's mode), publish 640x360, socket served, no app
  after_1app    the same with one SDK app reading frames
  after_2apps   the same with two SDK apps
for the synthetic camera and for an MJPEG file (a UVC camera's MJPEG mode: decoding
is the real capture cost; the file is 640x480 "before" and 1920x1080 "after").
The apps are the vendor's real client (its MediaManager, LOCAL backend: GStreamer
unixfdsrc) run in the Debian 13 root (tools/trixie_root.sh) when it is built,
pointed at the bench's private socket path; otherwise the figures say "no root".
Prints camera_node CPU (% of one core), the ratio to `before`, the ROS image rate
and the frames per second each app got."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

from tools.bench.stack import _node, _stop, cpu_of, out
from tools.harness.diag_listener import DiagnosticsListener

SECS = float(os.environ.get("BENCH_CAMERA_SDK_S", "12"))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

APP = textwrap.dedent("""
    import json, os, sys, time
    import reachy_mini.media.camera_gstreamer as cg
    cg.CAMERA_SOCKET_PATH = sys.argv[1]          # the bench's private path instead of the SDK's fixed one
    from reachy_mini.media.media_manager import MediaManager, MediaBackend
    from reachy_mini.media.camera_constants import get_camera_specs_by_name
    m = MediaManager(backend=MediaBackend.LOCAL, camera_specs=get_camera_specs_by_name("lite"))
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < float(sys.argv[2]):
        if m.get_frame() is not None:
            n += 1
        time.sleep(0.005)
    print(json.dumps({"fps": n / float(sys.argv[2])}), flush=True)
    os._exit(0)
""")


def _root() -> str | None:
    path = subprocess.run(["bash", os.path.join(REPO, "tools", "trixie_root.sh"), "--path"],
                          capture_output=True, text=True).stdout.strip()
    return path if os.path.exists(os.path.join(path, ".complete")) else None


def _app(root: str, script: str, sock: str, secs: float) -> subprocess.Popen:
    inner = ('mount --bind /tmp "$1/tmp" && mount --bind /dev "$1/dev" && mount -t proc proc "$1/proc" && '
             'exec chroot "$1" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp /opt/sdk/bin/python "$2" "$3" "$4"')
    return subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", inner, "_", root, script,
                             sock, str(secs)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/")


def _video(path: str, size: tuple[int, int]) -> None:
    import cv2
    import numpy as np

    w, h = size
    wr = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx // 3) % 256, (yy // 2) % 256, ((xx + yy) // 4) % 256], -1).astype(np.int16)
    for i in range(60):   # gradients, a moving box, sensor-like noise: a camera-ish picture
        f = base + rng.integers(-6, 7, base.shape)
        x = (20 + i * w // 100) % (w - w // 5)
        f[h // 5:h // 2, x:x + w // 5] = (40, 200, 240)
        wr.write(np.clip(f, 0, 255).astype(np.uint8))
    wr.release()


def bench_camera_sdk() -> None:
    tmp = tempfile.mkdtemp(prefix="reachy_bench_camera_sdk_")   # under /tmp: shared with the root's apps
    env = dict(os.environ, ROS_DOMAIN_ID="91", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", HOME=tmp)
    env.pop("REACHY_MINI_SDK_CAMERA_SOCKET", None)
    root = _root()
    script = os.path.join(tmp, "app.py")
    with open(script, "w") as f:
        f.write(APP)
    small, big = os.path.join(tmp, "v480.avi"), os.path.join(tmp, "v1080.avi")
    _video(small, (640, 480))
    _video(big, (1920, 1080))
    print(f"# camera_node CPU (% of one core) at 30 fps, {SECS:.0f} s each, one RELIABLE image_raw subscriber; "
          f"SDK apps: {'the vendor client in ' + root if root else 'none (no Debian 13 root: make trixie-root)'}; "
          "busy shared machine: compare within this run", flush=True)
    sock = os.path.join(tmp, "cam.sock")
    diag = DiagnosticsListener(91, "/diagnostics", "bench_camera_sdk")

    def frames() -> tuple[float, int]:   # (arrival time of the latest camera status, frames captured then)
        with diag.lock:
            item = diag.items.get("camera_node: camera")
        return (item[3], int(item[2].get("frames", 0))) if item else (time.monotonic(), 0)
    for source in ("synthetic", "file_mjpeg"):
        before_cpu = None
        for label, apps in (("before", 0), ("after_idle", 0), ("after_1app", 1), ("after_2apps", 2)):
            if apps and root is None:
                continue
            params = dict(fps=30.0, compressed_fps=0.0, sdk_socket_path=sock)
            if source == "synthetic":
                params["use_sim"] = "true"
            else:
                params["device"] = small if label == "before" else big
            if label == "before":
                params.update(capture_width=640, capture_height=480, width=640, height=480, sdk_socket="false")
            cam = _node("camera_node", env, **params)
            try:
                time.sleep(4.0)
                if cam.poll() is not None:
                    raise RuntimeError(f"camera_node exited with {cam.returncode}")
                sub = subprocess.Popen([sys.executable, "-m", "tools.bench.image_sub", "reliable", str(SECS)],
                                       env=env, stdout=subprocess.PIPE, text=True)
                procs = [_app(root, script, sock, SECS) for _ in range(apps)]
                time.sleep(2.0)   # discovery, the apps' pipelines
                t0, f0 = frames()
                cpu = cpu_of({"cam": cam.pid}, SECS - 3.0)["cam"]
                t1, f1 = frames()
                got = json.loads(sub.communicate(timeout=SECS + 60)[0].strip().splitlines()[-1])
                fps = [json.loads((p.communicate(timeout=SECS + 60)[0] or "{}").strip().splitlines()[-1]
                                  or "{}").get("fps", 0.0) for p in procs]
            finally:
                _stop(cam)
            before_cpu = cpu if label == "before" else before_cpu
            out(f"camera_sdk_cpu_{source}_{label}", cpu, "%")
            if label != "before" and before_cpu:
                out(f"camera_sdk_cpu_ratio_{source}_{label}", cpu / before_cpu, "x")
            out(f"camera_sdk_capture_fps_{source}_{label}", (f1 - f0) / (t1 - t0), "fps")   # = ROS publish rate
            if source == "synthetic":   # distinct frame numbers received (the pattern's counter) per second
                out(f"camera_sdk_ros_image_fps_{source}_{label}", got["received"] / (SECS - 0.0), "fps")
            for i, f in enumerate(fps):
                out(f"camera_sdk_app{i + 1}_fps_{source}_{label}", f, "fps")
    diag.close()
