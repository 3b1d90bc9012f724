"""camera_node and audio_node through their real capture code: OpenCV
decoding a video file the test writes, and ALSA capture through PortAudio
from a `file`-plugin PCM whose infile is a FIFO this test feeds in real time
(the FIFO is the device clock; pausing it is a stalled device)."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32, Int16MultiArray

from reachy_mini.core.identity import robot_name

from conftest import wait_for
from ros_probe import RosProbe

from tools.harness.fifo_mic import ASOUNDRC, FifoMic

cv2 = pytest.importorskip("cv2")


def start_node(env, module, **params):
    argv = [sys.executable, "-m", f"reachy_mini.nodes.{module}", "--ros-args"]
    for k, v in params.items():
        argv += ["-p", f"{k}:={v}"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_node(p):
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            return p.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            p.kill()
    return p.communicate()[0]


def diag(probe, name, since=0.0):
    """The latest status `name` that is a check's result: the updater's
    "Node starting up" broadcast (OK, published when a task is added, before
    its first run; diagnostic_updater does the same) is not one. A probe that
    discovers the node early under load sees it first."""
    for _, m in reversed(probe.get("/diagnostics", since)):
        for s in m.status:
            if s.name == name and s.message != "Node starting up":
                return s
    return None


def vals(s):
    return {kv.key: kv.value for kv in s.values}


@pytest.fixture
def probe(ros_env):
    p = RosProbe("media_test")
    p.listen(DiagnosticArray, "/diagnostics")
    yield p
    p.close()


def write_video(path, n=45, size=(320, 240), fps=30):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened()
    for i in range(n):
        f = np.full((size[1], size[0], 3), (i * 5) % 256, np.uint8)
        w.write(f)
    w.release()


# ---------------------------------------------------------------- camera

def test_camera_decodes_video_file(ros_env, tmp_path, probe):
    video = tmp_path / "clip.avi"
    write_video(video)
    probe.listen(Image, "/camera/image_raw", best_effort=True)
    probe.listen(CameraInfo, "/camera/camera_info", best_effort=True)
    probe.listen(CompressedImage, "/camera/image_raw/compressed")
    node = start_node(ros_env, "camera_node", device=str(video), fps=30.0, compressed_fps=5.0, width=320, height=240)
    try:
        wait_for(lambda: len(probe.get("/camera/image_raw")) > 10, timeout=15)
        # QoS per topic (docs/ros-interface.md "Topics and QoS"): frames and info are RELIABLE
        # (REP-2003 system default), so sensor-data and RELIABLE subscribers
        # both match; the preview is RELIABLE depth 1
        from rclpy.qos import ReliabilityPolicy as R
        assert [q.reliability for q in probe.publisher_qos("/camera/image_raw")] == [R.RELIABLE]
        assert [q.reliability for q in probe.publisher_qos("/camera/camera_info")] == [R.RELIABLE]
        assert [q.reliability for q in probe.publisher_qos("/camera/image_raw/compressed")] == [R.RELIABLE]
        t0 = time.monotonic()
        time.sleep(3.0)
        imgs = probe.get("/camera/image_raw", t0)
        rate = len(imgs) / 3.0
        assert 27.0 < rate < 33.0, rate
        img = imgs[-1][1]
        assert (img.width, img.height, img.encoding, img.step) == (320, 240, "bgr8", 960)
        assert img.header.frame_id == "camera_optical_frame"
        # the content is the file's: grey levels i*5, in order, looping over 45 frames
        levels = [int(np.frombuffer(bytes(m.data), np.uint8).mean() + 0.5) for _, m in imgs[:20]]
        steps = {(b - a) % 225 for a, b in zip(levels, levels[1:])}
        assert steps <= {4, 5, 6, 9, 10, 11}, levels   # +5 per frame (JPEG rounding), maybe a skipped frame
        stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in probe.get("/camera/camera_info", t0)}
        assert (img.header.stamp.sec, img.header.stamp.nanosec) in stamps
        info = probe.get("/camera/camera_info")[-1][1]
        assert len(info.k) == 9 and info.k[0] > 0
        jpgs = probe.get("/camera/image_raw/compressed", t0)
        assert 3 <= len(jpgs) <= 18 and "jpeg" in jpgs[-1][1].format
        dec = cv2.imdecode(np.frombuffer(bytes(jpgs[-1][1].data), np.uint8), cv2.IMREAD_COLOR)
        assert dec.shape == (240, 320, 3)
        s = wait_for(lambda: diag(probe, "camera_node: camera", t0), timeout=3)
        assert s.level[0] == 0 and 27.0 < float(vals(s)["measured fps"]) < 33.0
        assert vals(s)["device present"] == "true" and s.hardware_id == f"{robot_name()}/{video}"
    finally:
        stop_node(node)


def test_reliable_subscriber_gets_image_raw_at_full_rate(ros_env, probe):
    """REP-2003: a default (RELIABLE) subscriber, as RViz's Image display and
    image_view, gets the 30 fps of 640x480 frames from a separate process
    (>= 27 Hz over a 5 s window); a sensor-data one, as image_proc, too."""
    from ros_probe import RosProbe

    sensor = RosProbe("sensor_probe")
    probe.listen(Image, "/camera/image_raw", depth=10)
    sensor.listen(Image, "/camera/image_raw", depth=5, best_effort=True)
    node = start_node(ros_env, "camera_node", use_sim="true", fps=30.0, width=640, height=480,
                      frame_prefix="robot1/")
    try:
        wait_for(lambda: probe.get("/camera/image_raw") and sensor.get("/camera/image_raw"), timeout=15)
        time.sleep(1.0)
        t0 = time.monotonic()
        time.sleep(5.0)
        reliable, best_effort = len(probe.get("/camera/image_raw", t0)) / 5.0, len(sensor.get("/camera/image_raw", t0)) / 5.0
        assert probe.get("/camera/image_raw")[-1][1].header.frame_id == "robot1/camera_optical_frame"
    finally:
        stop_node(node)
        sensor.close()
    print(f"image_raw 640x480 at 30 fps: RELIABLE subscriber {reliable:.1f} Hz, sensor-data {best_effort:.1f} Hz")
    assert reliable >= 27.0, (reliable, best_effort)
    assert best_effort >= 27.0, (reliable, best_effort)


def test_camera_fastdds_profile_only_when_nobody_chose():
    """camera_node loads config/fastdds_camera.xml (frames fit in shared
    memory) unless the user set a Fast DDS profile or another RMW."""
    from reachy_mini.common.paths import config_path
    from reachy_mini.nodes.camera_node import fastdds_profile

    ours = config_path("fastdds_camera.xml")
    assert os.path.isfile(ours)
    assert fastdds_profile({}) == ours and fastdds_profile({"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}) == ours
    assert fastdds_profile({"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}) is None
    assert fastdds_profile({"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}) is None
    assert fastdds_profile({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) is None


def test_camera_device_loss_and_recovery(ros_env, tmp_path, probe):
    video = tmp_path / "clip.avi"
    write_video(video, n=15)   # 0.5 s: the end of file (reopen by path) comes soon
    # idle_close_s 0: capture always (nobody reads here); the loss while idle: test_camera_demand.py
    node = start_node(ros_env, "camera_node", device=str(video), fps=30.0, idle_close_s=0.0)
    try:
        wait_for(lambda: (s := diag(probe, "camera_node: camera")) and s.level[0] == 0, timeout=15)
        pid = node.pid
        os.rename(video, tmp_path / "away.avi")     # unplugged
        t0 = time.monotonic()
        s = wait_for(lambda: (s := diag(probe, "camera_node: camera", t0)) and s.level[0] == 2 and s, timeout=5)
        assert "no such file" in s.message and vals(s)["device present"] == "false"
        os.rename(tmp_path / "away.avi", video)     # plugged back
        t1 = time.monotonic()
        s = wait_for(lambda: (s := diag(probe, "camera_node: camera", t1)) and s.level[0] == 0 and s, timeout=10)
        assert vals(s)["device present"] == "true" and int(vals(s)["device opens"]) >= 2
        assert node.poll() is None and node.pid == pid      # recovered without a restart
    finally:
        stop_node(node)


def frame_counter(img) -> int:
    """The synthetic pattern's frame number: 32 bits in the top row, LSB first."""
    px = np.frombuffer(bytes(img.data), np.uint8).reshape(img.height, img.width, 3)[0, :, 0]
    w = max(1, img.width // 32)
    return sum(1 << i for i in range(32) if px[i * w + w // 2] > 127)


def stamp_s(img) -> float:
    return img.header.stamp.sec + img.header.stamp.nanosec * 1e-9


def test_camera_rate_diagnostics_honest_under_load(ros_env, tmp_path, probe):
    """Two busy processes load both cores; what diagnostics report must match
    the rate the node really publishes at. image_raw is BEST_EFFORT (sensor
    data), so a starved subscriber may miss frames: the published rate is
    read from the frame counter the synthetic pattern carries and the stamps."""
    probe.listen(Image, "/camera/image_raw", best_effort=True)
    node = start_node(ros_env, "camera_node", use_sim="true", fps=30.0)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        wait_for(lambda: len(probe.get("/camera/image_raw")) > 30, timeout=15)
        time.sleep(5.0)  # a full 5 s window under load
        t0 = time.monotonic()
        time.sleep(5.0)
        got = probe.get("/camera/image_raw", t0)
        seen = len(got) / 5.0
        (_, a), (_, b) = got[0], got[-1]
        published = (frame_counter(b) - frame_counter(a)) / (stamp_s(b) - stamp_s(a))
        s = wait_for(lambda: diag(probe, "camera_node: camera", time.monotonic() - 0.1), timeout=3)
        reported = float(vals(s)["measured fps"])
        print(f"under load: reported {reported:.1f} fps, published {published:.1f} fps, "
              f"subscriber received {seen:.1f} fps")
        assert abs(reported - published) <= max(2.0, 0.1 * published)
        assert seen <= published * 1.05
        assert (s.level[0] == 0) == (abs(reported - 30.0) <= 3.0)
    finally:
        for h in hogs:
            h.kill()
        stop_node(node)


def test_camera_absent_at_start_is_waited_for(ros_env, tmp_path, probe):
    """A camera path that does not exist yet: the node stays up, ERROR with
    the reason, and streams once the device (here a file) appears."""
    video = tmp_path / "later.avi"
    node = start_node(ros_env, "camera_node", device=str(video), fps=30.0)
    try:
        s = wait_for(lambda: (s := diag(probe, "camera_node: camera")) and s.level[0] == 2 and s, timeout=15)
        assert "no such file" in s.message and vals(s)["device present"] == "false"
        write_video(tmp_path / "tmp.avi", n=45)
        os.rename(tmp_path / "tmp.avi", video)       # plugged in
        t1 = time.monotonic()
        wait_for(lambda: (s := diag(probe, "camera_node: camera", t1)) and s.level[0] == 0, timeout=15)
        assert node.poll() is None, "no exit, no respawn"
    finally:
        stop_node(node)


def test_camera_invalid_device_fails_fast(ros_env):
    p = start_node(ros_env, "camera_node", device="not-a-device")
    out = p.communicate(timeout=30)[0]
    assert p.returncode == 2 and "'device'" in out and "Traceback" not in out


# ---------------------------------------------------------------- audio

@pytest.fixture
def mic(tmp_path):
    pytest.importorskip("sounddevice")
    m = FifoMic(str(tmp_path / "mic.fifo"))
    yield m
    m.close()


def audio_env(ros_env, home, define=True):
    if define:
        (home / ".asoundrc").write_text(ASOUNDRC.format(name="reachy_test", fifo=home / "mic.fifo"))
    return dict(ros_env, HOME=str(home))


def test_audio_through_alsa_level_silence_clipping(ros_env, tmp_path, probe, mic):
    probe.listen(Int16MultiArray, "/audio/chunk", best_effort=True)
    probe.listen(Float32, "/audio/level_dbfs", best_effort=True)
    node = start_node(audio_env(ros_env, tmp_path), "audio_node", device="reachy_test", silence_warn_s=1.0)
    try:
        wait_for(lambda: len(probe.get("/audio/chunk")) > 5, timeout=15)
        t0 = time.monotonic()
        time.sleep(6.0)   # a long window: on a loaded machine the FIFO feeder may burst after a stall
        chunks = probe.get("/audio/chunk", t0)
        assert 8.0 <= len(chunks) / 6.0 <= 12.0, len(chunks)   # 10 chunks/s of 1600 samples at 16 kHz
        m = chunks[-1][1]
        assert [(d.label, d.size) for d in m.layout.dim] == [("samples", 1600), ("channels", 1)]
        pcm = np.array(m.data, dtype=np.int16)
        assert abs(int(pcm.max()) - 9830) <= 2       # the samples are the ones the test wrote
        level = probe.get("/audio/level_dbfs", t0)[-1][1].data
        assert abs(level - 20 * math.log10(0.3 / math.sqrt(2))) < 0.5   # -13.5 dBFS
        # OK once the rate window holds steady capture: the FIFO feeder may
        # burst after a stall of the loaded machine (the rate is then honestly
        # "too high" for one window); the requirement is OK in steady state
        s = wait_for(lambda: (s := diag(probe, "audio_node: microphone", t0)) and s.level[0] == 0 and s, timeout=12)
        assert vals(s)["device"] == "reachy_test" and s.hardware_id == f"{robot_name()}/alsa:reachy_test"
        mic.mode = "silence"
        t1 = time.monotonic()
        s = wait_for(lambda: (s := diag(probe, "audio_node: microphone", t1)) and s.level[0] == 1 and s, timeout=6)
        assert "digital silence" in s.message
        mic.mode = "clip"
        t2 = time.monotonic()
        s = wait_for(lambda: (s := diag(probe, "audio_node: microphone", t2)) and "clipping" in s.message and s,
                     timeout=4)
        assert s.level[0] == 1
    finally:
        stop_node(node)


def test_audio_stalled_device_recovers_without_restart(ros_env, tmp_path, probe, mic):
    node = start_node(audio_env(ros_env, tmp_path), "audio_node", device="reachy_test")
    try:
        wait_for(lambda: (s := diag(probe, "audio_node: microphone")) and s.level[0] == 0, timeout=15)
        mic.mode = "pause"
        t0 = time.monotonic()
        s = wait_for(lambda: (s := diag(probe, "audio_node: microphone", t0)) and s.level[0] == 2 and s, timeout=5)
        assert "no audio" in s.message or "not available" in s.message
        mic.mode = "tone"
        t1 = time.monotonic()
        s = wait_for(lambda: (s := diag(probe, "audio_node: microphone", t1)) and s.level[0] == 0 and s, timeout=10)
        assert int(vals(s)["device losses"]) >= 1 and node.poll() is None
    finally:
        stop_node(node)


def test_audio_device_absent_then_plugged(ros_env, tmp_path, probe, mic):
    env = audio_env(ros_env, tmp_path, define=False)
    node = start_node(env, "audio_node", device="reachy_test")
    try:
        s = wait_for(lambda: (s := diag(probe, "audio_node: microphone")) and s, timeout=15)
        assert s.level[0] == 2 and "no capture device 'reachy_test'" in s.message, (s.level, s.message, s.hardware_id)
        audio_env(ros_env, tmp_path)   # the board appears
        t1 = time.monotonic()
        s = wait_for(lambda: (s := diag(probe, "audio_node: microphone", t1)) and s.level[0] == 0 and s, timeout=12)
        assert vals(s)["device present"] == "true" and node.poll() is None
    finally:
        stop_node(node)
