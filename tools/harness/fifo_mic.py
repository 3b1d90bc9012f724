"""A stand-in microphone for real ALSA capture without sound hardware: a
`file`-plugin PCM (see ASOUNDRC, for ~/.asoundrc) whose infile is a FIFO that
FifoMic feeds with 16 kHz mono int16 in real time. The FIFO is the device
clock; mode "pause" is a stalled device, "silence" digital silence, "clip"
a full-scale square wave. Used by tests and benchmarks."""
from __future__ import annotations

import math
import os
import threading
import time

import numpy as np

ASOUNDRC = """pcm.{name} {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{fifo}"
    format "raw"
}}
"""


class FifoMic:
    """Writes 100 ms of signal every 100 ms into `fifo` (created). Holding it
    O_RDWR keeps ALSA's open and our writes from blocking when the other side
    is absent."""

    def __init__(self, fifo: str, rate: int = 16000, chunk_ms: int = 100) -> None:
        self.fifo = fifo
        os.mkfifo(self.fifo)
        self.fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        self.rate, self.frames, self.period = rate, rate * chunk_ms // 1000, chunk_ms / 1000
        self.mode = "tone"
        self.n = 0
        self._stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def chunk(self) -> np.ndarray:
        t = (np.arange(self.frames) + self.n) / self.rate
        self.n += self.frames
        if self.mode == "silence":
            return np.zeros(self.frames, "<i2")
        if self.mode == "clip":
            return np.where(np.sin(2 * math.pi * 440 * t) >= 0, 32767, -32768).astype("<i2")
        return (0.3 * 32767 * np.sin(2 * math.pi * 440 * t)).astype("<i2")

    def _run(self) -> None:
        nxt = time.monotonic()
        while not self._stop:
            if self.mode != "pause":
                try:
                    os.write(self.fd, self.chunk().tobytes())
                except BlockingIOError:
                    pass   # nobody reading: the pipe is full, like a device overflow
            nxt += self.period
            time.sleep(max(0.0, nxt - time.monotonic()))

    def close(self) -> None:
        self._stop = True
        self.t.join(1)
        os.close(self.fd)
        try:
            os.unlink(self.fifo)
        except OSError:
            pass
