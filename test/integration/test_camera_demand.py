"""camera_node captures only while someone reads (core/media/demand.py),
through the real node process and real rclpy: no reader -> the device is
closed and the capture thread reads nothing (frame and open counters stop,
the diagnostic says idle); a subscriber -> frames; it leaves -> closed again
after idle_close_s; an SDK socket client (the socket listens while the
camera is closed) -> capture starts. And the fault: the device missing
while idle is reported (presence probe, no capture), its return seen."""
from __future__ import annotations

import os
import time

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

import pytest

from reachy_mini.core.media.demand import IDLE_MESSAGE

from conftest import wait_for
from ros_probe import RosProbe
from test_camera_socket import call_release
from test_media import diag, start_node, stop_node, vals, write_video
from test_unixfd import Reader

W, H = 1920, 1080


@pytest.fixture
def probe(ros_env):
    p = RosProbe("camdemand_test")
    p.listen(DiagnosticArray, "/diagnostics")
    yield p
    p.close()


def status(probe, since, pred, timeout=20.0):
    """The first camera status published after `since` for which pred(status, values) holds."""
    return wait_for(lambda: (s := diag(probe, "camera_node: camera", since)) and pred(s, vals(s)) and s,
                    timeout=timeout)


def idle(s, v):
    return s.level[0] == 0 and s.message == IDLE_MESSAGE and v["device open"] == "false"


def test_capture_follows_readers_subscriber_and_sdk_client(ros_env, tmp_path, probe):
    path = str(tmp_path / "cam.sock")
    node = start_node(ros_env, "camera_node", use_sim="true", fps=30.0, width=320, height=180,
                      sdk_socket_path=path, compressed_fps=5.0, idle_close_s=1.5, presence_probe_s=0.5)
    try:
        # nobody reads: after the start-up check (it opened and captured), the device is closed
        s = status(probe, 0.0, idle, timeout=30)
        v = vals(s)
        assert int(v["device opens"]) == 1 and int(v["frames"]) > 0 and v["capture"] == IDLE_MESSAGE
        assert v["readers"] == "0" and v["sdk socket standby (camera closed, a client starts it)"] == "true"
        frames, t0 = v["frames"], time.monotonic()
        s = status(probe, t0 + 2.5, idle)                      # seconds later: the capture thread read nothing
        assert (vals(s)["frames"], vals(s)["device opens"]) == (frames, "1")
        assert int(vals(s)["presence probes (while idle)"]) >= 2
        assert os.path.exists(path)                            # the SDK socket still listens

        # a subscriber: the device opens, frames flow
        t1 = time.monotonic()
        sub = probe.listen(Image, "/camera/image_raw", best_effort=True)
        wait_for(lambda: len(probe.get("/camera/image_raw", t1)) > 10, timeout=20)
        s = status(probe, t1, lambda s, v: v["capture"] == "reader present" and s.level[0] < 2, timeout=20)
        assert vals(s)["device open"] == "true" and int(vals(s)["device opens"]) == 2
        print(f"subscriber -> first frame after {probe.get('/camera/image_raw', t1)[0][0] - t1:.2f} s")

        # it leaves: closed again after idle_close_s
        probe.node.destroy_subscription(sub)
        t2 = time.monotonic()
        s = status(probe, t2, idle, timeout=20)
        assert int(vals(s)["idle closes"]) == 2 and vals(s)["device opens"] == "2"
        frames = int(vals(s)["frames"])

        # an SDK app connects to the listening socket: capture starts, frames reach it
        r = Reader(path, W, H)
        r.s.settimeout(20.0)
        t3 = time.monotonic()
        _id, _pts, img = r.frame()
        print(f"SDK client -> first frame after {time.monotonic() - t3:.2f} s")
        assert img.shape == (H, W, 3)
        s = status(probe, time.monotonic(), lambda s, v: v["device open"] == "true" and v["sdk clients"] == "1")
        assert int(vals(s)["frames"]) > frames and vals(s)["device opens"] == "3"
        r.close()
        status(probe, time.monotonic(), idle, timeout=20)      # the app left: closed again

        # camera/release while idle: released (no socket), then back to idle with the socket listening
        assert call_release(probe, True).success
        s = status(probe, time.monotonic(), lambda s, v: v["released"] == "true")
        assert s.level[0] == 0 and s.message == "released for apps"
        wait_for(lambda: not os.path.exists(path), timeout=15)
        assert call_release(probe, False).success
        status(probe, time.monotonic(), idle, timeout=20)
        wait_for(lambda: os.path.exists(path), timeout=15)
    finally:
        out = stop_node(node)
    assert "Traceback" not in out, out


def test_device_missing_while_idle_is_reported_and_recovered(ros_env, tmp_path, probe):
    video = tmp_path / "clip.avi"
    write_video(video)
    node = start_node(ros_env, "camera_node", device=str(video), fps=30.0, idle_close_s=1.0, presence_probe_s=0.5,
                      sdk_socket_path=str(tmp_path / "cam.sock"))
    try:
        s = status(probe, 0.0, idle, timeout=30)
        opens = vals(s)["device opens"]
        os.rename(video, tmp_path / "away.avi")                # unplugged while nobody reads
        t0 = time.monotonic()
        s = status(probe, t0, lambda s, v: s.level[0] == 2, timeout=15)
        assert "no such file" in s.message and "idle" in s.message
        assert vals(s)["device present"] == "false" and vals(s)["device opens"] == opens   # probed, not opened
        wait_for(lambda: not os.path.exists(tmp_path / "cam.sock"), timeout=15)   # no camera: no SDK socket
        os.rename(tmp_path / "away.avi", video)                # plugged back
        t1 = time.monotonic()
        s = status(probe, t1, idle, timeout=15)
        assert vals(s)["device present"] == "true"
        wait_for(lambda: os.path.exists(tmp_path / "cam.sock"), timeout=15)
        # and it captures again when someone reads
        sub_t = time.monotonic()
        probe.listen(Image, "/camera/image_raw", best_effort=True)
        wait_for(lambda: len(probe.get("/camera/image_raw", sub_t)) > 5, timeout=20)
        assert node.poll() is None
    finally:
        stop_node(node)
