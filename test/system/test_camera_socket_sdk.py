"""The vendor's real client reads camera_node's SDK camera socket (issue 31).

The SDK (PyPI reachy-mini 1.13.0, unmodified) reads frames with GStreamer's
unixfdsrc, which Debian 12's GStreamer (1.22) lacks: its scripts run in a
Debian 13 root (GStreamer 1.26, the SDK client-only: tools/trixie_root.sh, built
once by `make test` into /var/cache/reachy_mini) through chroot, in a private
mount namespace (unshare -m) with /tmp, /dev and /proc bound in: the mounts end
with the process. The stack runs on the simulated robot with camera_node on the
SDK's own path, /tmp/reachymini_camera_socket (the only test that uses it).

audio_node is not started: it is issue 30 that reports `shared_pcm`; this test
publishes audio_node's diagnostic with shared_pcm=true itself so that the
status says no_media=false while the socket serves, as it will with the real
audio_node (the computation under test is core/sdk.media_status).
Skips with the reason only where the root cannot be made (no root, no debootstrap)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import threading
import time

import numpy as np
import pytest

from reachy_mini.core.media.unixfd import DEFAULT_PATH
from tools.bench.stack import Stack

from conftest import REPO, wait_for
from test_camera_socket import counter, expected   # the synthetic camera's frame number and frame

PORT = 18530
W, H = 1920, 1080


def _root() -> tuple[str | None, str]:
    path = subprocess.run(["bash", os.path.join(REPO, "tools", "trixie_root.sh"), "--path"],
                          capture_output=True, text=True).stdout.strip()
    if os.path.exists(os.path.join(path, ".complete")):
        return path, ""
    try:
        with open(path + ".failed") as f:
            return None, f.read().strip()
    except OSError:
        return None, f"the Debian 13 root is not built: run `make trixie-root` (tools/trixie_root.sh) [{path}]"


ROOT, WHY = _root()
pytestmark = pytest.mark.skipif(ROOT is None, reason=WHY)

PRELUDE = textwrap.dedent("""
    import json, os, sys, time, traceback
    import numpy as np
    from reachy_mini import ReachyMini
    def out(**kw):
        print(json.dumps(kw, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)), flush=True)
    def _die(*exc):   # the SDK's GLib threads would keep a failed script alive
        traceback.print_exception(*exc)
        sys.stderr.flush()
        os._exit(1)
    sys.excepthook = _die
""")


def chroot_python(script: str, tmp, stdin: bool = False) -> subprocess.Popen:
    """Runs `script` with the root's SDK venv, in the root, sharing /tmp."""
    path = os.path.join(str(tmp), f"sdk_{time.monotonic_ns()}.py")
    with open(path, "w") as f:
        f.write(PRELUDE + textwrap.dedent(script) + "\nsys.stdout.flush()\nos._exit(0)\n")
    inner = ('mount --bind /tmp "$1/tmp" && mount --bind /dev "$1/dev" && mount -t proc proc "$1/proc" && '
             'exec chroot "$1" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp PYTHONUNBUFFERED=1 '
             'GST_REGISTRY=/tmp/reachy_mini_trixie_gst_registry.bin /opt/sdk/bin/python "$2"')
    return subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", inner, "_", ROOT, path],
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")


def results(p: subprocess.Popen, timeout: float) -> list[dict]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert p.returncode == 0 and lines, f"rc={p.returncode}\nstdout:{out[-3000:]}\nstderr:{err[-3000:]}"
    return lines


class AudioShared:
    """Stands in for audio_node's diagnostic (issue 30's key shared_pcm=true), 1 Hz."""

    def __init__(self, domain: str):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=int(domain))
        self.node = rclpy.create_node("audio_shared_standin", context=self.ctx)
        pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)

        def tick():
            a = DiagnosticArray()
            a.header.stamp = self.node.get_clock().now().to_msg()
            a.status = [DiagnosticStatus(level=DiagnosticStatus.OK, name="audio_node: microphone",
                                         message="desired frequency met", hardware_id="audio:synthetic",
                                         values=[KeyValue(key="shared_pcm", value="true")])]
            pub.publish(a)
        self.timer = self.node.create_timer(1.0, tick)
        self.stop = threading.Event()
        from rclpy.executors import SingleThreadedExecutor

        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.thread = threading.Thread(target=lambda: [self.ex.spin_once(timeout_sec=0.1)
                                                       for _ in iter(self.stop.is_set, True)], daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.node.destroy_node()
        self.ctx.shutdown()


def _http_up(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if os.path.exists(DEFAULT_PATH):
        pytest.fail(f"{DEFAULT_PATH} exists before the test: another camera server runs on this machine")
    tmp = str(tmp_path_factory.mktemp("camsdk"))
    base = int(os.environ.get("REACHY_MINI_TEST_DOMAIN_BASE", "20"))
    span = int(os.environ.get("REACHY_MINI_TEST_DOMAIN_SPAN", "40"))
    dom = str(base + span - 2)
    st = Stack(tmp, ["--disable-audio-node"], domain=dom, port=PORT,
               env={"REACHY_MINI_SDK_CAMERA_SOCKET": DEFAULT_PATH})
    audio = None
    try:
        wait_for(lambda: st.pids().get("camera_node"), timeout=60, period=0.3)
        wait_for(lambda: os.path.exists(DEFAULT_PATH), timeout=60, period=0.2)
        wait_for(lambda: _http_up(PORT), timeout=60, period=0.3)
        audio = AudioShared(dom)
        st.scripts = tmp_path_factory.mktemp("camsdk_scripts")
        yield st
    finally:
        if audio is not None:
            audio.close()
        st.stop()
    assert not os.path.exists(DEFAULT_PATH), "the socket outlived the stack"


def test_get_frame_returns_what_camera_node_captured_and_look_at_image_answers(stack):
    p = chroot_python(f"""
        # the SDK picks its media backend from our status: LOCAL needs no_media=false and the socket
        deadline = time.monotonic() + 60
        while True:
            try:
                r = ReachyMini(port={PORT}, media_backend="default")
            except ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
                continue
            st = r.client.get_status()
            if (not st.no_media and r.media.camera is not None) or time.monotonic() > deadline:
                break
            r.__exit__(None, None, None)
            time.sleep(1.0)
        with r:
            out(status=st.model_dump(mode="json"), backend=str(r.media_manager.backend))
            got, t0 = 0, time.monotonic()
            first = None
            while time.monotonic() - t0 < 6.0:
                f = r.media.get_frame()
                if f is not None:
                    got += 1
                    if first is None:
                        first = f.copy()
                time.sleep(0.005)
            np.save("{stack.scripts}/frame.npy", first)
            out(frames=got, seconds=6.0, shape=list(first.shape), dtype=str(first.dtype),
                res=list(r.media.camera.resolution), K=r.media.camera.K)
            pose = r.look_at_image(1200, 400, duration=0.5)
            out(pose=pose)
    """, stack.tmp)
    lines = results(p, 180)
    s = lines[0]["status"]
    assert s["no_media"] is False and s["camera_specs_name"] == "lite", s
    assert "LOCAL" in lines[0]["backend"].upper()
    got = lines[1]
    assert got["shape"] == [H, W, 3] and got["dtype"] == "uint8" and got["res"] == [W, H]
    img = np.load(os.path.join(str(stack.scripts), "frame.npy"))
    n = counter(img)
    assert np.array_equal(img, expected(n)), "the SDK's frame differs from the synthetic camera's frame"
    fps = got["frames"] / got["seconds"]
    print(f"one SDK client: {fps:.1f} frames/s through get_frame() (camera_node sdk_fps 15)")
    assert fps >= 5.0        # the vendor serves 10; we serve 15 (the bench measures it; here: frames flow)
    pose = np.array(lines[2]["pose"])
    assert pose.shape == (4, 4) and np.allclose(pose[3], [0, 0, 0, 1])
    assert not np.allclose(pose[:3, :3], np.eye(3), atol=1e-3)   # a pixel right of centre: the head turns


def test_two_sdk_clients_at_once(stack):
    script = f"""
        from reachy_mini.media.media_manager import MediaManager, MediaBackend
        from reachy_mini.media.camera_constants import get_camera_specs_by_name
        m = MediaManager(backend=MediaBackend.LOCAL, camera_specs=get_camera_specs_by_name("lite"))
        got, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 8.0:
            f = m.get_frame()
            if f is not None:
                got += 1
                assert f.shape == ({H}, {W}, 3)
            time.sleep(0.005)
        out(frames=got, seconds=8.0)
        m.close()
    """
    a, b = chroot_python(script, stack.tmp), chroot_python(script, stack.tmp)
    ra, rb = results(a, 120)[-1], results(b, 120)[-1]
    fa, fb = ra["frames"] / ra["seconds"], rb["frames"] / rb["seconds"]
    print(f"two SDK clients at once: {fa:.1f} and {fb:.1f} frames/s")
    assert fa >= 3.0 and fb >= 3.0


def test_what_an_app_sees_across_a_camera_node_restart(stack):
    """Measured, then asserted as documented (docs/ros-interface.md "The camera for apps"): the
    protocol has no reconnection, so an app connected before the restart gets
    None from get_frame() from the crash on (at most the frame or two already queued
    in its own pipeline first); a new MediaManager (or app) gets frames."""
    p = chroot_python("""
        from reachy_mini.media.media_manager import MediaManager, MediaBackend
        from reachy_mini.media.camera_constants import get_camera_specs_by_name
        spec = get_camera_specs_by_name("lite")
        m = MediaManager(backend=MediaBackend.LOCAL, camera_specs=spec)
        bins, t0 = {}, time.monotonic()
        while time.monotonic() - t0 < 3.0:
            if m.get_frame() is not None:
                bins["before"] = bins.get("before", 0) + 1
            time.sleep(0.005)
        out(phase="ready", frames=bins.get("before", 0))
        sys.stdin.readline()                     # the test restarts camera_node, then says go
        t1 = time.monotonic()
        while time.monotonic() - t1 < 5.0:
            if m.get_frame() is not None:
                bins["after"] = bins.get("after", 0) + 1
            time.sleep(0.005)
        m2 = MediaManager(backend=MediaBackend.LOCAL, camera_specs=spec)
        fresh, t2 = 0, time.monotonic()
        while time.monotonic() - t2 < 3.0:
            if m2.get_frame() is not None:
                fresh += 1
            time.sleep(0.005)
        out(before=bins.get("before", 0), after_old=bins.get("after", 0), after_new=fresh)
        m.close(); m2.close()
    """, stack.tmp, stdin=True)
    line = p.stdout.readline()
    assert line.startswith("{") and json.loads(line)["phase"] == "ready", line + p.stderr.read()[-3000:]
    old = stack.pids()["camera_node"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: (n := stack.pids().get("camera_node")) and n != old, timeout=60, period=0.2)
    wait_for(lambda: os.path.exists(DEFAULT_PATH), timeout=60, period=0.1)
    p.stdin.write("go\n")
    p.stdin.flush()
    r = results(p, 120)[-1]
    print(f"across a camera_node restart: before {r['before']} frames in 3 s; the same MediaManager after the "
          f"restart: {r['after_old']} frames in 5 s; a new MediaManager: {r['after_new']} frames in 3 s")
    assert r["before"] > 0 and r["after_old"] <= 2 and r["after_new"] > 0
