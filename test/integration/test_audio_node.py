"""audio_node on the shared devices, through real ALSA (alsa-utils) and real
pyusb: the board's PCMs are file PCMs over null under the vendor's names
(reachymini_audio_src / reachymini_audio_sink, core/media/alsa.sim_asoundrc)
and the USB board is the simulated XVF3800 behind pyusb's backend API, driven
by a state file. Speaker, direction of arrival, volume, release, faults."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Vector3Stamped
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from std_msgs.msg import Bool, Int16MultiArray, MultiArrayDimension, String
from std_srvs.srv import SetBool, Trigger

from reachy_mini.core.media import alsa, xvf3800

from conftest import wait_for
from ros_probe import RosProbe
from test_media import diag, start_node, stop_node, vals

pytestmark = pytest.mark.skipif(not shutil.which("arecord") or not shutil.which("aplay"),
                                reason="alsa-utils (arecord/aplay) not installed (tools/sysdeps.sh test)")
pytest.importorskip("usb.core")
MIC = "audio_node: microphone"


def tone(seconds, hz, amp=0.3, rate=16000, channels=2):
    t = np.arange(int(seconds * rate)) / rate
    x = (amp * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16)
    return np.repeat(x[:, None], channels, axis=1)


def dominant_hz(x, rate=16000):
    spec = np.abs(np.fft.rfft(x.astype(np.float64)))
    return float(np.argmax(spec[1:]) + 1) * rate / len(x)


class Stand:
    """The test stand-in for the board: HOME with the asoundrc, the mic's raw
    file, the speaker's output files, the simulated USB board's state."""

    def __init__(self, root):
        self.home = root
        self.mic, self.board, self.speaker = root / "mic.raw", str(root / "board.json"), root / "speaker.raw"
        tone(2.0, 440).astype("<i2").tofile(self.mic)
        (root / ".asoundrc").write_text(alsa.sim_asoundrc(str(self.mic), str(self.speaker)))
        xvf3800.write_state(self.board, present=True, angle=math.pi / 2, speech=False)

    def played_at_least(self, n: int, timeout: float = 20) -> np.ndarray:
        return wait_for(lambda: len(o := self.played()) >= n and [o], timeout=timeout)[0]

    def played(self) -> np.ndarray:
        return alsa.sim_played(str(self.speaker))


@pytest.fixture
def stand(tmp_path):
    return Stand(tmp_path)


@pytest.fixture
def probe(ros_env):
    p = RosProbe("audio_test")
    p.listen(DiagnosticArray, "/diagnostics")
    p.listen(Int16MultiArray, "/audio/chunk", best_effort=True)
    p.listen(Vector3Stamped, "/audio/direction")
    p.listen(Bool, "/audio/speech")
    yield p
    p.close()


@pytest.fixture
def node(ros_env, stand, probe):
    n = start_node(dict(ros_env, HOME=str(stand.home)), "audio_node", pcm_clock="false", board=f"sim:{stand.board}",
                   stall_timeout_s=2.0)
    yield n
    out = stop_node(n)
    print(out)   # shown with a failure
    assert "Traceback" not in out, out


def ok_mic(probe, since=0.0, timeout=60):   # generous: a loaded shared machine starts nodes slowly
    return wait_for(lambda: (s := diag(probe, MIC, since)) and s.level[0] == 0 and s, timeout=timeout)


def publish_out(probe, pcm):
    pub = getattr(probe, "audio_out", None)
    if pub is None:     # one publisher per probe: a new one each time is a new discovery race
        pub = probe.audio_out = probe.node.create_publisher(Int16MultiArray, "/audio/out", 10)
    wait_for(lambda: pub.get_subscription_count() > 0, timeout=15)
    for i in range(0, len(pcm), 1600):
        part = pcm[i:i + 1600]
        m = Int16MultiArray()
        m.layout.dim = [MultiArrayDimension(label="samples", size=len(part), stride=part.size),
                        MultiArrayDimension(label="channels", size=part.shape[1], stride=part.shape[1])]
        m.data = part.astype(np.int16).ravel().tolist()
        pub.publish(m)
    return pub


def speak(probe, stand, pcm, start: int = 0) -> np.ndarray:
    """Publish pcm on audio/out until it is played whole, and return what was
    played from its first sound on. The first messages after discovery may
    reach a subscriber that has not matched the publisher yet: a sound that
    came out short (its head lost; aplay pads the tail with silence, so the
    length alone does not tell) is published again."""
    for _ in range(3):
        publish_out(probe, pcm)
        try:
            out = stand.played_at_least(start + len(pcm), timeout=8)[start:]
        except AssertionError:
            start = len(stand.played())
            continue
        sound = np.flatnonzero(np.abs(out).max(axis=1) > 0)
        if len(sound) and sound[-1] - sound[0] + 1 >= len(pcm) - 16:
            return out[sound[0]:]
        start = len(stand.played())
    raise AssertionError(f"{len(pcm)} frames published on audio/out three times, never played whole")


def set_param(probe, name, value):
    p = Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value))
    r = probe.call(SetParameters, "/audio_node/set_parameters", SetParameters.Request(parameters=[p]), timeout=10)
    assert r.results[0].successful, r.results[0].reason


def test_shared_capture_keeps_publishing_beside_another_client_and_speaker_plays(stand, probe, node):
    s = ok_mic(probe)
    v = vals(s)
    assert v["shared_pcm"] == "true" and v["device"] == "ALSA PCM reachymini_audio_src", v
    chunks = wait_for(lambda: len(c := probe.get("/audio/chunk")) > 3 and c, timeout=15)
    pcm = np.array(chunks[-1][1].data, dtype=np.int16)
    assert dominant_hz(pcm) == pytest.approx(440, abs=15) and np.abs(pcm).max() > 9000
    # another program records from the same PCM meanwhile: both get the signal
    rec = stand.home / "app.raw"
    app = subprocess.run(["arecord", "-q", "-D", alsa.SRC, "-t", "raw", "-f", "S16_LE", "-r", "16000", "-c", "2",
                          "-d", "1", str(rec)], env=dict(os.environ, HOME=str(stand.home)), timeout=30,
                         capture_output=True, text=True)
    assert app.returncode == 0, app.stderr
    assert np.abs(np.fromfile(rec, "<i2")).max() > 9000
    t1 = time.monotonic()
    wait_for(lambda: len(probe.get("/audio/chunk", t1)) > 3, timeout=15)
    # the speaker: a 1 kHz tone on audio/out, mono at 16 kHz, arrives in the PCM's output
    out = speak(probe, stand, tone(1.0, 1000.0, channels=1))
    assert dominant_hz(out[:16000, 0]) == pytest.approx(1000, abs=15)
    assert np.abs(out[:16000]).max() == pytest.approx(0.3 * 32767, rel=0.02)
    # speaker volume is a runtime parameter: 25 % plays a quarter of the amplitude
    set_param(probe, "speaker_volume", 25)
    out = speak(probe, stand, tone(0.5, 1000.0, channels=1), len(stand.played()))
    assert np.abs(out[:8000]).max() == pytest.approx(0.3 * 32767 * 0.25, rel=0.03)
    t2 = time.monotonic()
    s = wait_for(lambda: (s := diag(probe, MIC, t2)) and float(vals(s)["played (s)"]) >= 1.5 and s, timeout=10)
    assert vals(s)["speaker volume (%)"] == "25" and vals(s)["playback underruns"] == "0"


def test_play_file_plays_and_refuses_unreadable_files(stand, probe, node):
    import soundfile

    ok_mic(probe)
    wav = stand.home / "beep.wav"
    soundfile.write(wav, tone(0.5, 660.0, channels=1)[:, 0], 16000, subtype="PCM_16")
    pub = probe.node.create_publisher(String, "/audio/play_file", 10)
    wait_for(lambda: pub.get_subscription_count() > 0, timeout=15)
    pub.publish(String(data=str(wav)))
    out = stand.played_at_least(8000)
    assert dominant_hz(out[:8000, 0]) == pytest.approx(660, abs=15)
    bad = stand.home / "broken.ogg"
    bad.write_bytes(b"OggS garbage")
    for path in (str(stand.home / "missing.wav"), str(bad)):
        t = time.monotonic()
        pub.publish(String(data=path))
        s = wait_for(lambda: (s := diag(probe, MIC, t)) and path in vals(s)["last refused file"] and s, timeout=10)
        assert s.level[0] == 0   # a refused request is not a device fault
    t = time.monotonic()
    pub.publish(String(data=str(wav)))
    wait_for(lambda: (s := diag(probe, MIC, t)) and vals(s)["files played"] == "2", timeout=10)


def test_direction_and_speech_follow_the_board_unplug_and_replug(stand, probe, node):
    def latest_dir(since):
        d = probe.get("/audio/direction", since)
        return d[-1][1] if d else None

    m = wait_for(lambda: latest_dir(0.0), timeout=20)
    assert m.header.frame_id == "mic_array"
    assert (m.vector.x, m.vector.y, m.vector.z) == pytest.approx((1, 0, 0), abs=1e-6)   # pi/2: front
    xvf3800.write_state(stand.board, angle=0.0, speech=True)                           # left, speaking
    t = time.monotonic()
    m = wait_for(lambda: (m := latest_dir(t)) and m.vector.y > 0.99 and m, timeout=10)
    assert m.vector.x == pytest.approx(0, abs=1e-6)
    wait_for(lambda: (sp := probe.get("/audio/speech", t)) and sp[-1][1].data is True, timeout=10)
    # unplugged: a WARN on the audio item, the node keeps capturing
    xvf3800.write_state(stand.board, present=False)
    t = time.monotonic()
    s = wait_for(lambda: (s := diag(probe, MIC, t)) and s.level[0] == 1 and s, timeout=15)
    assert "direction of arrival unavailable" in s.message
    assert "No such device" in s.message or "board not found (USB 38fb:1001)" in s.message
    assert vals(s)["device present"] == "true" and node.poll() is None
    # plugged back: readings resume, the item is OK again
    xvf3800.write_state(stand.board, present=True, angle=math.pi, speech=False)
    t = time.monotonic()
    m = wait_for(lambda: (m := latest_dir(t)) and m.vector.y < -0.99 and m, timeout=20)
    s = ok_mic(probe, time.monotonic())
    assert vals(s)["doa board"] == "present" and vals(s)["speech"] == "false"


def test_release_gives_the_devices_up_until_acquire(stand, probe, node):
    ok_mic(probe)
    r = probe.call(SetBool, "/audio/release", SetBool.Request(data=True), timeout=10)
    assert r.success, r.message
    t = time.monotonic()
    s = wait_for(lambda: (s := diag(probe, MIC, t)) and s.message == "released for apps" and s, timeout=10)
    assert s.level[0] == 0 and vals(s)["released"] == "true" and vals(s)["shared_pcm"] == "false"
    time.sleep(0.5)   # chunks in flight when the release answered
    t = time.monotonic()
    time.sleep(1.5)
    assert probe.get("/audio/chunk", t) == []
    r = probe.call(SetBool, "/audio/release", SetBool.Request(data=False), timeout=10)
    assert r.success
    t = time.monotonic()
    wait_for(lambda: len(probe.get("/audio/chunk", t)) > 3, timeout=15)
    s = ok_mic(probe, t)
    assert vals(s)["released"] == "false" and vals(s)["shared_pcm"] == "true"
    r = probe.call(Trigger, "/audio/stop", Trigger.Request(), timeout=10)
    assert r.success and "dropped" in r.message


def test_capture_pcm_unavailable_is_reported_and_recovered(stand, probe, node):
    ok_mic(probe)
    os.rename(stand.mic, str(stand.mic) + ".away")   # the PCM cannot open (as a busy or vanished device)
    r = probe.call(SetBool, "/audio/release", SetBool.Request(data=True), timeout=10)
    r = probe.call(SetBool, "/audio/release", SetBool.Request(data=False), timeout=10)
    t = time.monotonic()
    s = wait_for(lambda: (s := diag(probe, MIC, t)) and s.level[0] == 2 and s, timeout=15)
    # arecord on the file PCM delivers nothing (ALSA prints no reason): a stalled device, reopened with backoff
    assert "no audio for" in s.message or "not available" in s.message, s.message
    os.rename(str(stand.mic) + ".away", stand.mic)
    s = ok_mic(probe, time.monotonic(), timeout=30)
    assert vals(s)["shared_pcm"] == "true" and node.poll() is None
