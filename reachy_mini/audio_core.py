"""Audio without ROS: a synthetic 16 kHz source (tone plus noise) and level
metering in dBFS."""
from __future__ import annotations

import math

import numpy as np


class SyntheticAudio:
    def __init__(self, sample_rate: int, channels: int, tone_hz: float = 440.0, seed: int = 0) -> None:
        self.sr, self.ch, self.tone = sample_rate, channels, tone_hz
        self.n = 0
        self.rng = np.random.default_rng(seed)

    def read(self, frames: int) -> np.ndarray:
        t = (np.arange(frames) + self.n) / self.sr
        self.n += frames
        sig = 0.2 * np.sin(2 * math.pi * self.tone * t) + 0.02 * self.rng.standard_normal(frames)
        pcm = np.clip(sig * 32767, -32768, 32767).astype(np.int16)
        return np.repeat(pcm[:, None], self.ch, axis=1)


def level_dbfs(pcm: np.ndarray) -> float:
    """RMS level in dBFS of int16 samples; -inf for digital silence."""
    if pcm.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(pcm.astype(np.float64) ** 2))) / 32768.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def clipped_fraction(pcm: np.ndarray) -> float:
    return float(np.mean((pcm >= 32767) | (pcm <= -32768))) if pcm.size else 0.0
