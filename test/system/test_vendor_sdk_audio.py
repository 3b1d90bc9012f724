"""The vendor's own SDK (PyPI reachy-mini 1.13.0, unmodified, .venv-sdk with
Debian's GStreamer alsasrc/alsasink and python3-gi) records and plays through
the shared PCM names (reachymini_audio_src / reachymini_audio_sink, found in
~/.asoundrc as the SDK looks for them) while audio_node keeps publishing.

No kernel sound card exists here, so the board's PCMs are file PCMs over
null (core/media/alsa.sim_asoundrc). GStreamer needs a device clock: the SDK's
stand-in feeds its capture FIFO and drains its playback FIFO in real time
(tools/harness/fifo_board.py); audio_node reads its own raw tone file
(pcm_clock false). Each client gets its own stand-in files under the same PCM
names: ALSA's mixing (dmix/dsnoop) needs the kernel card, and is exercised on
the robot, not here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Vector3Stamped
from std_msgs.msg import Int16MultiArray

from reachy_mini.core.media import alsa, xvf3800
from tools.harness.fifo_board import FifoDrain, FifoFeed

from conftest import REPO, SDK_SKIP, wait_for
from ros_probe import RosProbe

sys.path.insert(0, os.path.join(REPO, "test", "integration"))   # the audio stand-in of test_audio_node
from test_audio_node import Stand, dominant_hz, ok_mic, speak, vals
from test_media import start_node, stop_node
from test_vendor_sdk import SDK_PY

pytestmark = [pytest.mark.skipif(SDK_SKIP is not None, reason=str(SDK_SKIP)),
              pytest.mark.skipif(not os.path.exists("/usr/bin/arecord"), reason="alsa-utils not installed")]

APP = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from reachy_mini.media.media_manager import MediaBackend, MediaManager
    from reachy_mini.media.audio_utils import has_reachymini_asoundrc, save_audio_to_wav
    wav, seconds = sys.argv[1], float(sys.argv[2])   # argv[3]: the sound to play
    m = MediaManager(backend=MediaBackend.LOCAL)      # the camera is absent here: the SDK goes on without it
    assert m.audio is not None, "Audio system is not initialized"
    m.start_recording()
    got, first = [], time.monotonic() + 60           # the pipeline starts (GStreamer scans its plugins once)
    while not got and time.monotonic() < first:
        s = m.get_audio_sample()
        if s is None:
            time.sleep(0.01)
        else:
            got.append(s)
    rate = m.get_input_audio_samplerate()
    # `seconds` of audio, not of wall time: on a loaded host the stand-in's feed runs late
    want, end = int(seconds * rate), time.monotonic() + 60
    while sum(len(g) for g in got) < want and time.monotonic() < end:
        s = m.get_audio_sample()
        if s is None:
            time.sleep(0.01)
        else:
            got.append(s)
    rec = np.concatenate(got)
    save_audio_to_wav(rec, rate, wav)
    m.play_sound(sys.argv[3])                        # 1 s of 1 kHz (a WAV the test wrote)
    time.sleep(2.5)
    m.close()
    print(json.dumps({"asoundrc": has_reachymini_asoundrc(), "frames": int(len(rec)),
                      "peak": float(np.abs(rec).max()), "rate": rate}),
          flush=True)
""")


@pytest.fixture
def sdk_home(tmp_path):
    home = tmp_path / "app"
    home.mkdir()
    feed = FifoFeed(str(home / "mic.fifo"), hz=523.25, chunk_ms=10)   # steady enough for alsasrc
    drain = FifoDrain(str(home / "speaker.fifo"))
    (home / ".asoundrc").write_text(alsa.sim_asoundrc(feed.path, drain.path))
    yield home, feed, drain
    feed.close()
    drain.close()


def test_sdk_records_and_plays_beside_a_publishing_audio_node(ros_env, tmp_path, sdk_home):
    home, _feed, drain = sdk_home
    node_home = tmp_path / "node"
    node_home.mkdir()
    stand = Stand(node_home)
    probe = RosProbe("sdk_audio_test")
    probe.listen(DiagnosticArray, "/diagnostics")
    probe.listen(Int16MultiArray, "/audio/chunk", best_effort=True)
    probe.listen(Vector3Stamped, "/audio/direction")
    node = start_node(dict(ros_env, HOME=str(node_home)), "audio_node", pcm_clock="false",
                      board=f"sim:{stand.board}", stall_timeout_s=2.0)
    try:
        s = ok_mic(probe, timeout=30)
        assert vals(s)["shared_pcm"] == "true"
        wav = tmp_path / "sdk_recording.wav"
        app_dir = tmp_path / "scripts"            # outside our tree: the SDK imports as `reachy_mini` too
        app_dir.mkdir()
        (app_dir / "app.py").write_text(APP)
        t0 = time.monotonic()
        import soundfile

        beep = tmp_path / "beep_1khz.wav"
        soundfile.write(beep, 0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000), 16000, subtype="PCM_16")
        app = subprocess.Popen([SDK_PY, "app.py", str(wav), "2.0", str(beep)], cwd=app_dir,
                               env=dict(os.environ, HOME=str(home)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # meanwhile audio_node speaks too (its own speaker stand-in) and the board turns
        node_sound = speak(probe, stand, (0.3 * 32767 * np.sin(2 * np.pi * 880 * np.arange(8000) / 16000))
                           .astype(np.int16)[:, None])
        xvf3800.write_state(stand.board, angle=0.0, speech=True)
        out, err = app.communicate(timeout=120)
        t1 = time.monotonic()
        assert app.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        print("SDK app:", result, f"(ran {t1 - t0:.1f} s)")
        # the SDK found the shared PCM names and recorded a non-silent WAV of the board's signal
        assert result["asoundrc"] is True and result["rate"] == 16000
        assert result["frames"] >= 16000 and result["peak"] > 0.2, result
        data, rate = soundfile.read(wav, dtype="float32", always_2d=True)   # the SDK writes 32-bit float
        assert rate == 16000 and len(data) >= 16000 and np.abs(data).max() > 0.2
        assert dominant_hz(data[-8000:, 0]) == pytest.approx(523.25, abs=15)
        # the SDK's tone arrived at its speaker
        played = drain.frames()
        loud = np.flatnonzero(np.abs(played[:, 0]) > 0.25 * 32767)
        assert len(loud) > 8000, f"{len(played)} frames played, {len(loud)} loud"
        seg = played[loud[0]:loud[0] + 8000, 0]
        assert dominant_hz(seg) == pytest.approx(1000, abs=15)
        print(f"SDK speaker: {len(played)} frames, {len(loud)} above -12 dBFS, {dominant_hz(seg):.0f} Hz")
        # audio_node kept publishing the whole time, and played its own sound
        n = len(probe.get("/audio/chunk", t0)) - len(probe.get("/audio/chunk", t1))
        assert n >= 0.7 * 10 * (t1 - t0), f"{n} chunks in {t1 - t0:.1f} s"
        print(f"audio_node meanwhile: {n} chunks on audio/chunk in {t1 - t0:.1f} s")
        assert dominant_hz(node_sound[:8000, 0]) == pytest.approx(880, abs=15)
        # and the direction followed the board
        d = wait_for(lambda: (d := probe.get("/audio/direction", t0)) and d[-1][1].vector.y > 0.99 and d, timeout=10)
        assert d[-1][1].vector.x == pytest.approx(0, abs=1e-6)
        v = d[-1][1].vector
        print(f"audio/direction after the board turned to 0 rad (left): ({v.x:.3f}, {v.y:.3f}, {v.z:.3f})")
        s = ok_mic(probe, time.monotonic())
        assert node.poll() is None and vals(s)["shared_pcm"] == "true"
    finally:
        out = stop_node(node)
        probe.close()
    assert "Traceback" not in out, out
