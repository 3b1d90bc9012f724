"""camera_node serves the vendor SDK's local camera socket (issue 31), checked
through the real node process: 1920x1080 BGR frames equal to what it captured
from the synthetic camera, camera_info with the vendor's calibration scaled to
the published size, camera/release and acquire, a crash's stale socket replaced,
the path removed on stop. The protocol reader is test/unit/test_unixfd.Reader; the
vendor's own client is test/system/test_camera_socket_sdk.py."""
from __future__ import annotations

import os
import signal
import socket
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import SetBool

from reachy_mini.core.media import camera_specs
from reachy_mini.core.media.camera import SyntheticCamera

from conftest import wait_for
from ros_probe import RosProbe
from test_media import diag, start_node, stop_node, vals
from test_unixfd import Reader

W, H = 1920, 1080


@pytest.fixture
def probe(ros_env):
    p = RosProbe("camsock_test")
    p.listen(DiagnosticArray, "/diagnostics")
    yield p
    p.close()


def counter(img: np.ndarray) -> int:
    w = img.shape[1] // 32
    return sum(1 << i for i in range(32) if img[0, i * w + w // 2, 0] > 127)


def expected(n: int) -> np.ndarray:
    cam = SyntheticCamera(W, H)
    cam.count = n
    return cam.read()


def read_frame(r: Reader, timeout=20.0):
    r.s.settimeout(timeout)
    return r.frame()


def call_release(probe, data: bool):
    cli = probe.node.create_client(SetBool, "/camera/release")
    assert cli.wait_for_service(timeout_sec=20)
    fut = cli.call_async(SetBool.Request(data=data))
    res = wait_for(lambda: fut.done() and fut.result(), timeout=20)
    probe.node.destroy_client(cli)
    return res


def test_camera_node_serves_the_sdk_socket(ros_env, tmp_path, probe):
    path = str(tmp_path / "cam.sock")
    probe.listen(CameraInfo, "/camera/camera_info", best_effort=True)
    probe.listen(Image, "/camera/image_raw", best_effort=True)
    node = start_node(ros_env, "camera_node", use_sim="true", fps=30.0, width=320, height=180,
                      sdk_socket_path=path, sdk_fps=15.0, compressed_fps=0.0)
    try:
        wait_for(lambda: os.path.exists(path), timeout=30)
        r = Reader(path, W, H)
        # frames: the spec's size, exactly what was captured (the synthetic pattern of that frame number)
        for _ in range(3):
            _id, pts, img = read_frame(r)
            assert img.shape == (H, W, 3)
            assert np.array_equal(img, expected(counter(img)))
            assert abs(pts / 1e9 - time.monotonic()) < 5.0          # CLOCK_MONOTONIC, fresh
        s = wait_for(lambda: (s := diag(probe, "camera_node: camera")) and vals(s)["sdk clients"] == "1" and s,
                     timeout=15)
        v = vals(s)
        assert (v["sdk_socket"], v["camera_specs_name"], v["released"]) == ("serving", "lite", "false")
        assert v["sdk size"] == "1920x1080 BGR" and v["resolution (requested)"] == "1920x1080"
        # ROS keeps its own size; camera_info is the vendor's Lite calibration scaled to it
        img = wait_for(lambda: probe.get("/camera/image_raw"), timeout=15)[-1][1]
        assert (img.width, img.height, img.header.frame_id) == (320, 180, "camera_optical_frame")
        info = wait_for(lambda: probe.get("/camera/camera_info"), timeout=15)[-1][1]
        want = camera_specs.camera_info("lite", (320, 180))
        assert (info.width, info.height, info.distortion_model) == (320, 180, "rational_polynomial")
        assert np.allclose(info.k, want["k"]) and np.allclose(info.d, want["d"]) and len(info.d) == 12
        assert info.header.frame_id == "camera_optical_frame"
        assert "camera_constants.py lite" in v["calibration"]

        # release: the device is closed, the socket goes away (apps see no_media), a diagnostic says so
        res = call_release(probe, True)
        assert res.success and res.message == "released for apps"
        assert not os.path.exists(path)
        t0 = time.monotonic()
        s = wait_for(lambda: (s := diag(probe, "camera_node: camera", t0)) and vals(s)["released"] == "true" and s,
                     timeout=15)
        assert s.level[0] == 0 and s.message == "released for apps" and vals(s)["sdk_socket"] == "off"
        # acquire: frames again, the socket is back, and the client connected before is served again
        res = call_release(probe, False)
        assert res.success and res.message == "acquired"
        wait_for(lambda: os.path.exists(path), timeout=20)
        _id, _pts, img = read_frame(r)
        assert np.array_equal(img, expected(counter(img)))
        r.close()
    finally:
        out = stop_node(node)
    assert not os.path.exists(path), out[-2000:]                       # removed on stop


def test_a_crash_leaves_a_stale_socket_that_the_next_camera_node_replaces(ros_env, tmp_path, probe):
    path = str(tmp_path / "cam.sock")
    args = dict(use_sim="true", fps=15.0, width=160, height=90, sdk_socket_path=path, compressed_fps=0.0)
    node = start_node(ros_env, "camera_node", **args)
    try:
        wait_for(lambda: os.path.exists(path), timeout=30)
        r = Reader(path, W, H)
        read_frame(r)
        node.send_signal(signal.SIGKILL)
        node.wait(10)
        assert os.path.exists(path)                     # the crash leaves the file: nobody answers on it
        # what an app connected before the crash sees: the connection ends (EOF), no more frames
        r.s.settimeout(10)
        with pytest.raises((EOFError, ConnectionResetError)):
            while True:
                r.command()
        probe2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with pytest.raises(ConnectionRefusedError):
            probe2.connect(path)
        probe2.close()
        t0 = time.monotonic()
        node = start_node(ros_env, "camera_node", **args)
        s = wait_for(lambda: (s := diag(probe, "camera_node: camera", t0)) and vals(s)["sdk_socket"] == "serving"
                     and s, timeout=30)
        assert vals(s)["sdk stale files removed"] == "1"
        r2 = Reader(path, W, H)
        _id, _pts, img = read_frame(r2)
        assert np.array_equal(img, expected(counter(img)))
        r2.close()
    finally:
        stop_node(node)
    assert not os.path.exists(path)


def test_the_path_taken_by_another_users_file_is_reported_and_capture_goes_on(ros_env, tmp_path, probe):
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    path = str(tmp_path / "cam.sock")
    open(path, "w").close()
    os.chown(path, 65534, 65534)
    node = start_node(ros_env, "camera_node", use_sim="true", fps=15.0, width=160, height=90,
                      sdk_socket_path=path, compressed_fps=0.0)
    try:
        s = wait_for(lambda: (s := diag(probe, "camera_node: camera")) and "another user" in s.message and s,
                     timeout=30)
        assert s.level[0] == 1 and vals(s)["sdk_socket"] == "off" and float(vals(s)["measured fps"]) > 0
        os.unlink(path)                                 # its owner removes it: served without a restart
        t0 = time.monotonic()
        s = wait_for(lambda: (s := diag(probe, "camera_node: camera", t0)) and vals(s)["sdk_socket"] == "serving"
                     and s, timeout=30)
        assert s.level[0] == 0
    finally:
        stop_node(node)


def test_sdk_socket_path_must_be_absolute(ros_env):
    node = start_node(ros_env, "camera_node", use_sim="true", sdk_socket_path="rel/cam.sock")
    out = node.communicate(timeout=60)[0]
    assert node.returncode != 0 and "sdk_socket_path" in out and "absolute" in out


def test_camera_unplugged_while_an_app_is_connected(ros_env, tmp_path, probe):
    """The socket goes away while the device is lost (new apps would wait forever on it),
    the connected app stays connected and gets frames again when the camera is back."""
    import threading

    import cv2

    from test_media import write_video

    video = tmp_path / "clip.avi"
    write_video(video, n=15)
    path = str(tmp_path / "cam.sock")
    node = start_node(ros_env, "camera_node", device=str(video), fps=30.0, width=320, height=240,
                      sdk_socket_path=path, compressed_fps=0.0)
    frames: list[np.ndarray] = []
    done = threading.Event()

    def app(r: Reader) -> None:   # as an SDK app: reads and releases every frame, on its own thread
        r.s.settimeout(0.5)
        while not done.is_set():
            try:
                frames.append(r.frame()[2])
            except (TimeoutError, OSError):
                continue
    try:
        wait_for(lambda: os.path.exists(path), timeout=30)
        r = Reader(path, W, H)
        th = threading.Thread(target=app, args=(r,), daemon=True)
        th.start()
        wait_for(lambda: len(frames) > 0, timeout=20)
        img = frames[-1]
        assert img.shape == (H, W, 3)            # the 320x240 file, resized to the spec's size
        small = cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA)
        assert abs(int(small.mean()) - int(small[0, 0, 0])) <= 2   # a uniform grey frame of the file
        os.rename(video, tmp_path / "away.avi")  # unplugged
        wait_for(lambda: not os.path.exists(path), timeout=20)
        t0 = time.monotonic()
        # a status computed just before the path went away may arrive after t0 on a busy machine:
        # wait for the one that says both (ERROR, socket off)
        s = wait_for(lambda: (s := diag(probe, "camera_node: camera", t0)) and s.level[0] == 2
                     and vals(s)["sdk_socket"] == "off" and s, timeout=20)
        assert vals(s)["sdk clients"] == "1"
        n = len(frames)
        os.rename(tmp_path / "away.avi", video)  # plugged back
        wait_for(lambda: os.path.exists(path), timeout=30)
        wait_for(lambda: len(frames) > n, timeout=20)   # the same app, served again
        assert frames[-1].shape == (H, W, 3)
        done.set()
        th.join(5)
        r.close()
    finally:
        stop_node(node)
