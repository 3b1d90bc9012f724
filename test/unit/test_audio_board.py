"""The XVF3800 control protocol through pyusb (simulated board behind pyusb's
backend API), and the shared ALSA devices: ~/.asoundrc merge, arecord/aplay
capture and playback on the test PCMs (file PCMs over null)."""
from __future__ import annotations

import math
import os
import shutil
import struct
import time

import numpy as np
import pytest

from reachy_mini.core.media import alsa, xvf3800
from reachy_mini.core.media.capture import SourceError

usb = pytest.importorskip("usb.core")


@pytest.fixture
def board_state(tmp_path):
    path = str(tmp_path / "board.json")
    xvf3800.write_state(path, present=True, angle=math.pi / 2, speech=False)
    return path


def test_doa_read_through_pyusb_follows_the_simulated_board(board_state):
    backend = xvf3800.simulated_backend(board_state)
    board = xvf3800.find_board(backend)
    assert board.dev.idVendor == 0x38FB and board.dev.idProduct == 0x1001
    angle, speech = board.doa()
    assert angle == pytest.approx(math.pi / 2) and speech is False
    xvf3800.write_state(board_state, angle=0.25, speech=True)
    angle, speech = board.doa()
    assert angle == pytest.approx(0.25) and speech is True
    assert board.read("VERSION") == (2, 1, 0)


def test_busy_servicer_is_retried_as_the_vendor_does(board_state):
    xvf3800.write_state(board_state, retries=3, angle=1.0)
    board = xvf3800.find_board(xvf3800.simulated_backend(board_state))
    board.sleep = lambda s: None
    assert board.doa()[0] == pytest.approx(1.0)
    assert xvf3800.read_state(board_state)["retries"] == 0


def test_write_then_read_back_the_mic_gain(board_state):
    board = xvf3800.find_board(xvf3800.simulated_backend(board_state))
    board.write("AUDIO_MGR_MIC_GAIN", [12.5])
    assert board.read("AUDIO_MGR_MIC_GAIN")[0] == pytest.approx(12.5)
    with pytest.raises(ValueError, match="read-only"):
        board.write("DOA_VALUE_RADIANS", [0, 0])


def test_a_board_that_stays_busy_is_a_board_error(board_state):
    xvf3800.write_state(board_state, retries=1000)
    board = xvf3800.find_board(xvf3800.simulated_backend(board_state))
    board.sleep = lambda s: None
    with pytest.raises(xvf3800.BoardError, match="still busy after 100 attempts"):
        board.doa()


def test_unplugged_board_is_a_board_error_then_found_again(board_state):
    backend = xvf3800.simulated_backend(board_state)
    board = xvf3800.find_board(backend)
    xvf3800.write_state(board_state, present=False)
    with pytest.raises(xvf3800.BoardError, match="No such device"):
        board.doa()
    with pytest.raises(xvf3800.BoardError, match="not found"):
        xvf3800.find_board(backend)
    xvf3800.write_state(board_state, present=True, angle=2.0)
    assert xvf3800.find_board(backend).doa()[0] == pytest.approx(2.0)


def test_doa_vector_in_the_mic_array_frame():
    assert xvf3800.doa_vector(0.0) == pytest.approx((0, 1, 0))           # left = +y
    assert xvf3800.doa_vector(math.pi / 2) == pytest.approx((1, 0, 0))   # front = +x
    assert xvf3800.doa_vector(math.pi) == pytest.approx((0, -1, 0), abs=1e-12)   # right = -y


def test_protocol_encoding_matches_the_vendor_layout():
    assert xvf3800.encode("float", [1.5]) == struct.pack("<f", 1.5)
    assert xvf3800.decode("radians", 2, struct.pack("<ff", 0.5, 1.0)) == pytest.approx((0.5, 1.0))
    assert xvf3800.decode("uint32", 2, struct.pack("<II", 3, 4)) == (3, 4)


# ------------------------------------------------------------------ asoundrc
def test_asoundrc_entries_are_the_vendors_shape():
    text = alsa.asoundrc_entries()
    assert alsa.defines_shared(text)
    for want in ("type dmix", "type dsnoop", "ipc_key 4241", "ipc_key 4242", "rate 16000", "channels 2",
                 "period_size 256", "buffer_size 1024", 'pcm "hw:ReachyMiniAudio,0"'):
        assert want in text


def test_install_asoundrc_keeps_an_existing_file_and_is_idempotent(tmp_path):
    rc = tmp_path / ".asoundrc"
    rc.write_text("pcm.mine {\n    type hw\n    card 3\n}\n")
    os.chmod(rc, 0o640)
    assert alsa.install_asoundrc(str(tmp_path))[1] == "updated"
    text = rc.read_text()
    assert text.startswith("pcm.mine {\n    type hw\n    card 3\n}\n") and alsa.defines_shared(text)
    assert oct(os.stat(rc).st_mode & 0o777) == oct(0o640)
    assert alsa.install_asoundrc(str(tmp_path))[1] == "unchanged"
    assert rc.read_text() == text
    # a new card id replaces our block only
    alsa.install_asoundrc(str(tmp_path), card="Other")
    assert rc.read_text().count(alsa.BEGIN) == 1 and "hw:Other,0" in rc.read_text()
    assert "pcm.mine" in rc.read_text()


def test_install_asoundrc_creates_and_leaves_the_vendors_own_entries(tmp_path):
    assert alsa.install_asoundrc(str(tmp_path))[1] == "created"
    vendor_home = tmp_path / "v"
    vendor_home.mkdir()
    vendor = "pcm.reachymini_audio_sink {\n type dmix\n}\npcm.reachymini_audio_src {\n type dsnoop\n}\n"
    (vendor_home / ".asoundrc").write_text(vendor)
    assert alsa.install_asoundrc(str(vendor_home))[1] == "unchanged"
    assert (vendor_home / ".asoundrc").read_text() == vendor


# ------------------------------------------------------------------ PCMs (alsa-utils, no kernel card)
needs_alsa = pytest.mark.skipif(not shutil.which("arecord") or not shutil.which("aplay"),
                                reason="alsa-utils (arecord/aplay) not installed (tools/sysdeps.sh test)")


def tone(seconds: float, hz: float = 440.0, amp: float = 0.3, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (amp * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16)
    return np.repeat(x[:, None], 2, axis=1)


@pytest.fixture
def pcms(tmp_path, monkeypatch):
    mic, spk = tmp_path / "mic.raw", tmp_path / "speaker.raw"
    tone(1.0).astype("<i2").tofile(mic)
    (tmp_path / ".asoundrc").write_text(alsa.sim_asoundrc(str(mic), str(spk)))
    monkeypatch.setenv("HOME", str(tmp_path))
    return mic, spk


def dominant_hz(x: np.ndarray, rate: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64)))
    return float(np.argmax(spec[1:]) + 1) * rate / len(x)


@needs_alsa
def test_two_captures_share_the_source_pcm(pcms):
    a = alsa.PcmSource(alsa.SRC, 1, 1600, paced=False)
    b = alsa.PcmSource(alsa.SRC, 2, 1600, paced=False)
    a.open()
    b.open()
    try:
        xa, xb = a.read(), b.read()
        assert xa.shape == (1600, 1) and xb.shape == (1600, 2)
        assert np.abs(xa).max() > 5000 and dominant_hz(xa[:, 0]) == pytest.approx(440, abs=15)
    finally:
        a.close()
        b.close()


@needs_alsa
def test_capture_failure_is_a_source_error_with_alsas_reason(pcms):
    src = alsa.PcmSource("no_such_pcm", 1, 1600)
    src.open()
    with pytest.raises(SourceError, match="no_such_pcm|Unknown PCM"):
        src.read()
    src.close()


@needs_alsa
def test_player_plays_a_tone_into_the_sink_and_stop_drops_the_queue(pcms):
    _, spk = pcms
    p = alsa.Player(alsa.SINK, volume=lambda: 50.0, idle_s=0.3)
    try:
        p.play(tone(0.5, 1000.0)[:, :1], 16000)
        end = time.monotonic() + 20
        while (p.played_frames < 8000 or p.playing) and time.monotonic() < end:
            time.sleep(0.05)
        out = alsa.sim_played(str(spk))
        assert len(out) >= 8000
        assert dominant_hz(out[:8000, 0]) == pytest.approx(1000, abs=15)
        assert np.abs(out[:, 0]).max() == pytest.approx(0.3 * 32767 * 0.5, rel=0.02)   # volume 50 %
        assert p.last_error == "" and p.errors == 0
    finally:
        p.close()


@needs_alsa
def test_player_reports_an_unopenable_pcm_and_recovers(pcms, tmp_path):
    p = alsa.Player("no_such_sink", idle_s=0.2)
    try:
        p.play(tone(0.1), 16000)
        end = time.monotonic() + 20
        while not p.last_error and time.monotonic() < end:
            time.sleep(0.05)
        assert "no_such_sink" in p.last_error and p.errors >= 1 and p.failing
        p.pcm = alsa.SINK
        before = p.played_frames
        p.play(tone(0.1), 16000)
        while (p.played_frames == before or p.failing) and time.monotonic() < end:
            time.sleep(0.05)
        assert p.played_frames > before and not p.failing
    finally:
        p.close()


def test_sound_file_reading_and_its_refusals(tmp_path):
    import soundfile

    wav = tmp_path / "t.wav"
    soundfile.write(wav, tone(0.2)[:, 0], 22050, subtype="PCM_16")
    data, rate = alsa.read_sound_file(str(wav))
    assert rate == 22050 and data.shape == (3200, 1)
    assert len(alsa.resample(data, 22050, 16000)) == round(3200 * 16000 / 22050)
    ogg = tmp_path / "t.ogg"
    soundfile.write(ogg, tone(0.2)[:, 0] / 32768.0, 16000, format="OGG")
    assert alsa.read_sound_file(str(ogg))[0].shape[0] == 3200
    flt = tmp_path / "f.wav"                        # 32-bit float, as the vendor's save_audio_to_wav writes
    soundfile.write(flt, tone(0.2)[:, 0] / 32768.0, 16000, subtype="FLOAT")
    assert np.abs(alsa.read_sound_file(str(flt))[0]).max() == pytest.approx(0.3 * 32767, abs=2)
    with pytest.raises(ValueError, match="no such file"):
        alsa.read_sound_file(str(tmp_path / "missing.wav"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not a wav")
    with pytest.raises(ValueError, match="not a readable sound file"):
        alsa.read_sound_file(str(bad))


def test_underrun_lines_are_recognised():
    assert alsa.parse_underrun("underrun!!! (at least 12.345 ms long)")
    assert not alsa.parse_underrun("Playing raw data 'stdin'")


def test_service_install_merges_the_users_asoundrc(tmp_path):
    import pwd

    from reachy_mini.ops.systemd import install_asoundrc

    me = pwd.getpwuid(os.getuid())
    home = tmp_path / me.pw_dir.lstrip("/")
    home.mkdir(parents=True)
    (home / ".asoundrc").write_text("# mine\n")
    assert install_asoundrc(me.pw_name, str(tmp_path)).startswith("updated ")
    text = (home / ".asoundrc").read_text()
    assert text.startswith("# mine\n") and alsa.defines_shared(text)
    assert install_asoundrc(me.pw_name, str(tmp_path)).startswith("unchanged ")
    assert "no user" in install_asoundrc("reachy-mini-no-such-user", str(tmp_path))


def test_udev_rule_grants_the_board_to_dialout():
    from reachy_mini.ops.systemd import render_rules

    rules = render_rules()
    assert 'SUBSYSTEM=="usb", ATTRS{idVendor}=="38fb", ATTRS{idProduct}=="1001", GROUP="dialout", MODE="0660"' in rules


def test_doa_reader_polls_reports_an_unplugged_board_and_recovers(board_state):
    got = []
    r = xvf3800.DoaReader(f"sim:{board_state}", 50.0, lambda a, s: got.append((a, s))).start()
    try:
        end = time.monotonic() + 20
        while len(got) < 3 and time.monotonic() < end:
            time.sleep(0.01)
        assert got[-1] == (pytest.approx(math.pi / 2), False) and r.present
        xvf3800.write_state(board_state, present=False)
        while r.present and time.monotonic() < end:
            time.sleep(0.01)
        assert not r.present and r.failures >= 1 and ("No such device" in r.error or "not found" in r.error)
        xvf3800.write_state(board_state, present=True, angle=0.5, speech=True)
        while not (r.present and got[-1][0] == pytest.approx(0.5)) and time.monotonic() < end:
            time.sleep(0.01)
        assert got[-1] == (pytest.approx(0.5), True)
        r.hold(True)                                  # released for apps: the board is closed
        while r.board is not None and time.monotonic() < end:
            time.sleep(0.01)
        assert r.board is None
    finally:
        r.stop()
    assert not r.thread.is_alive()
