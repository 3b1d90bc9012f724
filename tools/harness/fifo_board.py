"""A clocked stand-in for the sound board's PCMs, for clients that need a
device clock (GStreamer's alsasrc/alsasink in the vendor SDK): the test
asoundrc (core/media/alsa.sim_asoundrc) points reachymini_audio_src at a FIFO
that FifoFeed fills with a stereo tone in real time, and
reachymini_audio_sink at a FIFO that FifoDrain empties in real time (a
blocked writer is a device whose buffer is full: the FIFO is the clock).
Without them, file PCMs over null run as fast as the CPU allows."""
from __future__ import annotations

import fcntl
import math
import os
import threading
import time

import numpy as np

RATE, CHANNELS, FRAME_BYTES = 16000, 2, 4


class FifoFeed:
    """Writes `hz` (amplitude `amp`) as S16_LE stereo into `path` (created),
    `chunk_ms` every `chunk_ms` (10 ms for GStreamer's alsasrc, which takes
    burstier delivery for overruns and drops). Held O_RDWR so that neither
    side blocks alone."""

    def __init__(self, path: str, hz: float = 440.0, amp: float = 0.3, chunk_ms: int = 100) -> None:
        self.path, self.hz, self.amp = path, hz, amp
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        # A small pipe (4 KiB = 64 ms): a reader that opens late must not find a
        # second of backlog, which a clock-providing source (alsasrc) would read
        # at once and run ahead of real time.
        fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, 4096)
        self.frames, self.period = RATE * chunk_ms // 1000, chunk_ms / 1000
        self.n = 0
        self._stop = False
        self.t = threading.Thread(target=self._run, name="fifo-feed", daemon=True)
        self.t.start()

    def _chunk(self) -> bytes:
        t = (np.arange(self.frames) + self.n) / RATE
        self.n += self.frames
        x = (self.amp * 32767 * np.sin(2 * math.pi * self.hz * t)).astype("<i2")
        return np.repeat(x[:, None], CHANNELS, axis=1).tobytes()

    def _run(self) -> None:
        nxt = time.monotonic()
        while not self._stop:
            try:
                os.write(self.fd, self._chunk())
            except BlockingIOError:
                pass   # nobody reading: the pipe is full, like a device overflow
            nxt += self.period
            time.sleep(max(0.0, nxt - time.monotonic()))

    def close(self) -> None:
        self._stop = True
        self.t.join(2)
        os.close(self.fd)


class FifoDrain:
    """Reads `path` (created) at RATE frames per second into a buffer."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        # A small pipe: what the writer has handed over but the "device" has not
        # played is invisible to ALSA's delay (null has none), so keep it short
        # (4 KiB = 64 ms), or a clock-slaved sink (alsasink) sees its samples late.
        fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, 4096)
        self.buf = bytearray()
        self.lock = threading.Lock()
        self._stop = False
        self.t = threading.Thread(target=self._run, name="fifo-drain", daemon=True)
        self.t.start()

    def _run(self) -> None:
        start, taken = time.monotonic(), 0
        while not self._stop:
            allowed = int((time.monotonic() - start) * RATE) * FRAME_BYTES - taken
            got = b""
            if allowed > 0:
                try:
                    got = os.read(self.fd, min(allowed, 65536))
                except BlockingIOError:
                    got = b""
            if got:
                taken += len(got)
                with self.lock:
                    self.buf += got
            else:
                if allowed > RATE * FRAME_BYTES // 20:   # idle writer: bank no credit (50 ms) for a burst later
                    start, taken = time.monotonic(), 0
                time.sleep(0.01)

    def frames(self) -> np.ndarray:
        with self.lock:
            b = bytes(self.buf[:len(self.buf) // FRAME_BYTES * FRAME_BYTES])
        return np.frombuffer(b, "<i2").reshape(-1, CHANNELS)

    def close(self) -> None:
        self._stop = True
        self.t.join(2)
        os.close(self.fd)
