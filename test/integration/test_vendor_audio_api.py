"""The vendor's /api/volume/* and /api/media/* (web/vendor_audio.py) served by
a real web_bridge over a real audio_node (on the test stand-in of
test_audio_node: file PCMs, simulated board): volume parameters, test sound,
play_sound, stop_sound, release/acquire (camera_node absent: its failure is
named), the routes not served (501 with the reason), and the DoA snapshot
conversion. The routes' logic with a fake ROS side is at the end."""
from __future__ import annotations

import math
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Int16MultiArray

from reachy_mini.web.app import Actions, create_app
from reachy_mini.web.state import StateStore
from reachy_mini.web.vendor_audio import MediaActions

from conftest import wait_for
from ros_probe import RosProbe
from test_audio_node import MIC, Stand, dominant_hz, ok_mic, tone
from test_media import diag, start_node, stop_node, vals


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stack(ros_env, tmp_path):
    import shutil

    if not shutil.which("aplay"):
        pytest.skip("alsa-utils not installed")
    stand = Stand(tmp_path)
    probe = RosProbe("vendor_audio_test")
    probe.listen(DiagnosticArray, "/diagnostics")
    probe.listen(Int16MultiArray, "/audio/chunk", best_effort=True)
    node = start_node(dict(ros_env, HOME=str(tmp_path)), "audio_node", pcm_clock="false",
                      board=f"sim:{stand.board}", stall_timeout_s=2.0)
    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "reachy_mini.nodes.web_bridge", "--ros-args", "-p", f"port:={port}",
                            "-p", f"data_dir:={tmp_path / 'data'}", "-p", "service_timeout_s:=3.0"], env=ros_env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url), timeout=30, period=0.2)
        ok_mic(probe)
        yield stand, probe, url
    finally:
        web.send_signal(signal.SIGINT)
        try:
            web.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            web.kill()
        stop_node(node)
        probe.close()


def _up(url) -> bool:
    try:
        return httpx.get(url + "/api/system/info", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_volume_routes_set_audio_node_parameters_and_play_the_test_sound(stack):
    stand, probe, url = stack
    r = httpx.get(url + "/api/volume/current", timeout=15)
    assert r.status_code == 200 and r.json() == {"volume": 100, "platform": "linux",
                                                 "device": "reachymini_audio_sink"}, r.text
    r = httpx.post(url + "/api/volume/set", json={"volume": 40}, timeout=15)
    assert r.status_code == 200 and r.json()["volume"] == 40, r.text
    assert httpx.get(url + "/api/volume/current", timeout=15).json()["volume"] == 40
    out = stand.played_at_least(4800)       # the vendor plays a test sound after setting the volume
    assert dominant_hz(out[:4800, 0]) == pytest.approx(880, abs=20)
    assert np.abs(out[:4800, 0]).max() == pytest.approx(0.3 * 32767 * 0.4, rel=0.03)
    assert httpx.post(url + "/api/volume/set", json={"volume": 140}, timeout=15).status_code == 422
    r = httpx.post(url + "/api/volume/microphone/set", json={"volume": 55}, timeout=15)
    assert r.status_code == 200 and r.json()["device"] == "reachymini_audio_src"
    assert httpx.get(url + "/api/volume/microphone/current", timeout=15).json()["volume"] == 55
    t = time.monotonic()
    s = wait_for(lambda: (s := diag(probe, MIC, t)) and vals(s)["microphone gain (%)"] == "55" and s, timeout=10)
    # the gain applies to what audio_node captures: 55 % of the 0.3 full-scale tone
    chunk = wait_for(lambda: (c := probe.get("/audio/chunk", time.monotonic() - 0.5)) and c[-1][1], timeout=10)
    assert np.abs(np.array(chunk.data)).max() == pytest.approx(0.3 * 32767 * 0.55, rel=0.03)


def test_media_routes_play_stop_release_and_the_unserved_ones(stack, tmp_path):
    import soundfile

    stand, probe, url = stack
    wav = tmp_path / "beep.wav"
    soundfile.write(wav, tone(0.5, 660.0, channels=1)[:, 0], 16000, subtype="PCM_16")
    r = httpx.post(url + "/api/media/play_sound", json={"file": str(wav)}, timeout=15)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    out = stand.played_at_least(8000)
    assert dominant_hz(out[:8000, 0]) == pytest.approx(660, abs=15)
    r = httpx.post(url + "/api/media/play_sound", json={"file": str(tmp_path / "nope.wav")}, timeout=15)
    assert r.status_code == 404 and "no such file" in r.json()["detail"]
    r = httpx.post(url + "/api/media/play_sound", json={"file": "../etc/passwd"}, timeout=15)
    assert r.status_code == 400
    for path in ("/api/media/stop_sound", "/api/media/clear_incoming_audio"):
        r = httpx.post(url + path, timeout=15)
        assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text
    # release: audio_node gives its devices up; camera_node is not running here, and is named
    r = httpx.post(url + "/api/media/release", timeout=30)
    assert r.status_code == 503 and "camera:" in r.json()["detail"] and "audio:" not in r.json()["detail"], r.text
    t = time.monotonic()
    s = wait_for(lambda: (s := diag(probe, MIC, t)) and s.message == "released for apps" and s, timeout=10)
    assert vals(s)["released"] == "true"
    r = httpx.post(url + "/api/media/acquire", timeout=30)
    assert r.status_code == 503 and "camera:" in r.json()["detail"]
    ok_mic(probe, time.monotonic())
    for path in ("/api/media/sounds", "/api/media/wobbling/enable", "/api/media/tracking/face"):
        r = httpx.request("POST" if "enable" in path else "GET", url + path, timeout=15)
        assert r.status_code == 501 and r.json()["detail"], (path, r.text)


# ------------------------------------------------------------------ the routes with a fake ROS side
def fake_media(calls, state=None, fail_camera=False):
    params = {"speaker_volume": 100, "microphone_gain": 100}

    def set_param(n, v):
        calls.append(("set", n, v))
        params[n] = v
        return True, ""

    return MediaActions(
        get_param=lambda n: params[n], set_param=set_param,
        release_audio=lambda b: (calls.append(("audio", b)) or (True, "ok")),
        release_camera=lambda b: (calls.append(("camera", b)) or ((False, "device busy") if fail_camera
                                                                   else (True, "ok"))),
        play_file=lambda p: calls.append(("play", p)), stop_sound=lambda: (calls.append(("stop",)) or (True, "")),
        test_tone=lambda: calls.append(("tone",)), audio_state=lambda: state or {})


def client(media):
    from fastapi.testclient import TestClient

    acts = Actions(lambda on: (True, ""), lambda: (True, ""), lambda since=None, limit=100: [], media=media)
    return TestClient(create_app(StateStore(), acts))


def test_routes_map_onto_the_ros_side():
    calls = []
    c = client(fake_media(calls, {"shared_pcm": True, "released": False}))
    assert c.post("/api/volume/set", json={"volume": 30}).json()["volume"] == 30
    assert ("set", "speaker_volume", 30) in calls and ("tone",) in calls
    assert c.get("/api/media/status").json() == {"available": True, "released": False, "no_media": False}
    assert c.post("/api/media/release").json() == {"status": "ok"}
    assert ("audio", True) in calls and ("camera", True) in calls
    r = client(fake_media([], fail_camera=True)).post("/api/media/acquire")
    assert r.status_code == 503 and r.json()["detail"] == "acquire failed: camera: device busy"
    assert client(fake_media([])).get("/api/media/status").json()["no_media"] is True
    assert client(None).get("/api/volume/current").status_code == 404   # no ROS side: not served at all


def test_doa_snapshot_angle_is_the_vendors():
    from reachy_mini.core.media.xvf3800 import doa_vector

    for a in (0.0, 0.3, math.pi / 2, 2.5, math.pi):
        x, y, _ = doa_vector(a)
        assert math.atan2(x, y) == pytest.approx(a)   # what web_bridge stores in store.doa["angle"]
