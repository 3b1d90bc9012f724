"""Audio without ROS: sources (synthetic tone plus noise; a PortAudio/ALSA
capture device through `sounddevice`) and level metering.

Every source delivers int16 chunks shaped (frames, channels).
"""
from __future__ import annotations

import math
import queue
import time

import numpy as np

from reachy_mini.core.media.capture import SourceError

AUTO_NAMES = ("ReachyMiniAudio", "XVF3800", "reSpeaker", "Reachy Mini Audio")   # the XMOS board, USB 38FB:1001


class SyntheticAudio:
    paced = False
    description = "synthetic 440 Hz tone plus noise"

    def __init__(self, sample_rate: int, channels: int, chunk_frames: int = 1600, tone_hz: float = 440.0,
                 seed: int = 0) -> None:
        self.sr, self.ch, self.tone, self.chunk = sample_rate, channels, tone_hz, chunk_frames
        self.n = 0
        self.rng = np.random.default_rng(seed)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self, timeout: float = 0.0, frames: int | None = None) -> np.ndarray:
        frames = frames or self.chunk
        t = (np.arange(frames) + self.n) / self.sr
        self.n += frames
        sig = 0.2 * np.sin(2 * math.pi * self.tone * t) + 0.02 * self.rng.standard_normal(frames)
        pcm = np.clip(sig * 32767, -32768, 32767).astype(np.int16)
        return np.repeat(pcm[:, None], self.ch, axis=1)


def find_input_device(name: str, devices: list[dict]) -> int:
    """Index of the input device: `auto` = the XVF3800 board; else an exact
    name, then a case-insensitive substring. Raises SourceError listing inputs."""
    inputs = [(i, d["name"]) for i, d in enumerate(devices) if d.get("max_input_channels", 0) > 0]
    wanted = AUTO_NAMES if name == "auto" else (name,)
    for w in wanted:
        for i, n in inputs:
            if n == w:
                return i
        for i, n in inputs:
            if w.lower() in n.lower():
                return i
    what = "the XVF3800 microphone board (USB 38FB:1001)" if name == "auto" else repr(name)
    raise SourceError(f"no capture device {what}; inputs: {[n for _, n in inputs] or 'none'}")


class SoundDeviceSource:
    """Callback-mode capture; chunks go through a bounded queue (drop-oldest,
    counted as overflows, like the device's own input overflows)."""
    paced = True
    live_streams = 0   # streams opened and not yet closed, in this process

    def __init__(self, device: str, sample_rate: int, channels: int, chunk_frames: int, queue_chunks: int = 50):
        self.device, self.sr, self.ch, self.chunk = device, sample_rate, channels, chunk_frames
        self.q: queue.Queue = queue.Queue(maxsize=queue_chunks)
        self.description = device
        self.stream = None
        self.overflows = 0      # device input overflows (xruns)
        self.queue_drops = 0

    def open(self) -> None:
        try:
            import sounddevice as sd
        except OSError as e:   # libportaudio2 missing
            raise SourceError(f"PortAudio not available ({e}); install libportaudio2") from None
        # Re-enumerate (a replugged USB board is a new ALSA card), unless an
        # earlier stream is still being torn down: PortAudio must not be
        # terminated under it.
        if SoundDeviceSource.live_streams == 0:
            sd._terminate()
            sd._initialize()
        idx = find_input_device(self.device, list(sd.query_devices()))
        self.description = sd.query_devices(idx)["name"]
        try:
            stream = sd.InputStream(device=idx, samplerate=self.sr, channels=self.ch, dtype="int16",
                                    blocksize=self.chunk, callback=self._cb)
        except (sd.PortAudioError, ValueError) as e:
            raise SourceError(f"{self.description}: cannot open at {self.sr} Hz x {self.ch}: {e}") from None
        SoundDeviceSource.live_streams += 1
        self.stream = stream
        try:
            stream.start()
        except sd.PortAudioError as e:
            self.close()
            raise SourceError(f"{self.description}: cannot start capture: {e}") from None

    def _cb(self, indata, frames, _time, status) -> None:
        if status.input_overflow:
            self.overflows += 1
        try:
            self.q.put_nowait(indata.copy())
        except queue.Full:
            self.queue_drops += 1
            try:
                self.q.get_nowait()
                self.q.put_nowait(indata.copy())
            except (queue.Empty, queue.Full):
                pass

    def read(self, timeout: float):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            if self.stream is not None and not self.stream.active:
                raise SourceError(f"{self.description}: stream stopped (device lost?)") from None
            return None

    def close(self) -> None:
        s, self.stream = self.stream, None
        if s is not None:
            try:
                s.abort()
                s.close()
            except Exception:  # noqa: BLE001 - closing a vanished device may fail; it is gone anyway
                pass
            SoundDeviceSource.live_streams -= 1


def level_dbfs(pcm: np.ndarray) -> float:
    """RMS level in dBFS of int16 samples; -inf for digital silence."""
    if pcm.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(pcm.astype(np.float64) ** 2))) / 32768.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def clipped_fraction(pcm: np.ndarray) -> float:
    return float(np.mean((pcm >= 32767) | (pcm <= -32768))) if pcm.size else 0.0


class LevelMeter:
    """Level, clipping and digital-silence tracking over the chunks."""

    def __init__(self) -> None:
        self.level = -math.inf
        self.clip = 0.0
        self.clipped_chunks = 0
        self.silent_since: float | None = None

    def update(self, pcm: np.ndarray, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.level = level_dbfs(pcm)
        self.clip = clipped_fraction(pcm)
        if self.clip > 0.001:
            self.clipped_chunks += 1
        if not pcm.any():
            self.silent_since = self.silent_since if self.silent_since is not None else now
        else:
            self.silent_since = None

    def silent_for(self, now: float) -> float:
        return now - self.silent_since if self.silent_since is not None else 0.0
