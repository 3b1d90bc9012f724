"""Shared ALSA devices of the XVF3800 board, without ROS.

Sharing. A sound card's hw PCM has one owner; ALSA shares it in user space
with `dsnoop` (capture) and `dmix` (playback), which need a hw slave. The
vendor's SDK (1.13) opens `reachymini_audio_src` / `reachymini_audio_sink`
through GStreamer's alsasrc/alsasink when ~/.asoundrc defines both (its
daemon writes them: dsnoop/dmix, 16 kHz, 2 channels, period 256, buffer 1024,
ipc_key 4242/4241). `asoundrc_entries()` renders the same entries (the card is
named, not numbered, so a replug that renumbers cards keeps working) and
`merge_asoundrc()` adds them to an existing file between markers, keeping
everything else (a previous copy of our block is replaced, the vendor's own
entries are left alone when present).

audio_node captures from `reachymini_audio_src` and plays to
`reachymini_audio_sink`, as the apps do, through alsa-utils' arecord/aplay
(the same libasound the apps use; a process per stream, so a driver stuck in
a read never blocks the node and every ALSA error arrives as text).

Tests: no kernel card exists, so dmix/dsnoop cannot be built; the test
asoundrc (`sim_asoundrc()`) defines the same two names as `file` PCMs over
the `null` PCM: capture reads a raw file (rewound at its end), playback
writes a raw file per opening (sim_played() reads them all). Any number of
clients may open them at once, like the shared PCMs, but they have no
clock: the reader paces (`pcm_clock` false).
"""
from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time

import numpy as np

from reachy_mini.core.media.capture import SourceError

SRC, SINK = "reachymini_audio_src", "reachymini_audio_sink"
CARD = "ReachyMiniAudio"         # the board's ALSA card id (USB 38fb:1001)
PCM_RATE, PCM_CHANNELS = 16000, 2   # the vendor's shared PCM format
BEGIN, END = "# >>> reachy_mini shared audio (managed) >>>", "# <<< reachy_mini shared audio (managed) <<<"


def shared_pcms_defined(home: str | None = None) -> bool:
    """~/.asoundrc (of `home`) defines both shared PCM names, as the SDK checks."""
    path = os.path.join(home or os.path.expanduser("~"), ".asoundrc")
    try:
        with open(path, errors="ignore") as f:
            return defines_shared(f.read())
    except OSError:
        return False


def asoundrc_entries(card: str = CARD) -> str:
    """The vendor's dmix/dsnoop entries for the board's card (by id)."""
    slave = f"""        pcm "hw:{card},0"
        channels {PCM_CHANNELS}
        rate {PCM_RATE}
        period_size 256
        buffer_size 1024"""
    return f"""{BEGIN}
# Written by reachy_mini (audio_node and apps share the board: dsnoop/dmix).
pcm.{SINK} {{
    type dmix
    ipc_key 4241
    ipc_perm 0660
    slave {{
{slave}
    }}
    bindings {{
        0 0
        1 1
    }}
}}

pcm.{SRC} {{
    type dsnoop
    ipc_key 4242
    ipc_perm 0660
    slave {{
{slave}
    }}
}}
{END}
"""


def defines_shared(text: str) -> bool:
    """The vendor SDK's own test (has_reachymini_asoundrc): both names appear."""
    return SINK in text and SRC in text


def merge_asoundrc(existing: str, block: str) -> str:
    """`existing` with our block: replaced between the markers, else left
    alone when it already defines both names itself (the vendor daemon's
    file), else appended. Nothing else is changed."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)
    if pattern.search(existing):
        return pattern.sub(lambda _m: block, existing, count=1)
    if defines_shared(existing):
        return existing
    sep = "" if not existing or existing.endswith("\n\n") else ("\n" if existing.endswith("\n") else "\n\n")
    return existing + sep + block


def install_asoundrc(home: str | None = None, card: str = CARD) -> tuple[str, str]:
    """Writes (merges) ~/.asoundrc of `home`; returns (path, what was done:
    'created' | 'updated' | 'unchanged'). Atomic, keeps the file's mode."""
    path = os.path.join(home or os.path.expanduser("~"), ".asoundrc")
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = None
    new = merge_asoundrc(old or "", asoundrc_entries(card))
    if new == old:
        return path, "unchanged"
    tmp = path + ".reachy_mini.tmp"
    with open(tmp, "w") as f:
        f.write(new)
    if old is not None:
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)
    os.replace(tmp, path)
    return path, "created" if old is None else "updated"


def sim_asoundrc(mic_raw: str, speaker_raw: str) -> str:
    """The test stand-in for the board (see the module doc): same names,
    file PCMs over null behind `plug` (any client gets the board's S16_LE
    16 kHz stereo). mic_raw: a raw file read by every client (rewound at its
    end) or a FIFO fed in real time (then the FIFO is the clock);
    speaker_raw: what is played, one file per opening (the file PCM with
    `truncate false` writes speaker_raw, then speaker_raw.0001, ...: read them
    with sim_played()), or a FIFO drained in real time (the clock)."""
    fifo_out = os.path.exists(speaker_raw) and not os.path.isfile(speaker_raw)
    return f"""pcm.{SRC} {{
    type plug
    slave {{ pcm "reachymini_sim_src"; format S16_LE; channels {PCM_CHANNELS}; rate {PCM_RATE} }}
}}

pcm.reachymini_sim_src {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{mic_raw}"
    format "raw"
}}

pcm.{SINK} {{
    type plug
    slave {{ pcm "reachymini_sim_sink"; format S16_LE; channels {PCM_CHANNELS}; rate {PCM_RATE} }}
}}

pcm.reachymini_sim_sink {{
    type file
    slave.pcm "null"
    file "{speaker_raw}"
    format "raw"
    perm 0600
    truncate {"true" if fifo_out else "false"}
}}
"""


def sim_played(speaker_raw: str) -> np.ndarray:
    """Everything played on the test sink, in opening order, (frames, 2) int16."""
    import glob

    files = [speaker_raw] + sorted(glob.glob(glob.escape(speaker_raw) + ".[0-9][0-9][0-9][0-9]"))
    parts = []
    for f in files:
        try:
            b = open(f, "rb").read()
        except OSError:
            continue
        parts.append(np.frombuffer(b[:len(b) // 4 * 4], "<i2").reshape(-1, 2))
    return np.concatenate(parts) if parts else np.zeros((0, 2), np.int16)


def to_channels(pcm: np.ndarray, channels: int) -> np.ndarray:
    """(frames, c) int16 -> (frames, channels): the first channels kept, a
    mono signal copied to every channel."""
    if pcm.shape[1] == channels:
        return pcm
    if pcm.shape[1] == 1:
        return np.repeat(pcm, channels, axis=1)
    return np.ascontiguousarray(pcm[:, :channels]) if pcm.shape[1] > channels else \
        np.concatenate([pcm, np.repeat(pcm[:, -1:], channels - pcm.shape[1], axis=1)], axis=1)


def apply_gain(pcm: np.ndarray, percent: float) -> np.ndarray:
    """Volume 0-100 % as an amplitude factor (100 = unchanged), saturating."""
    if percent >= 100:
        return pcm
    return np.clip(pcm.astype(np.float32) * (percent / 100.0), -32768, 32767).astype(np.int16)


def _stderr_reader(proc, sink: list, on_line=None) -> threading.Thread:
    def run():
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                sink.append(line)
                del sink[:-20]
                if on_line:
                    on_line(line)
    t = threading.Thread(target=run, name="alsa-stderr", daemon=True)
    t.start()
    return t


def _why(lines: list, rc) -> str:
    errs = [ln for ln in lines if not ln.startswith(("Recording", "Playing"))]
    return (errs[-1] if errs else f"exited with status {rc}")


class PcmSource:
    """Capture from an ALSA PCM through `arecord` (SourceLoop source): 16 kHz
    stereo S16_LE from the PCM, `channels` delivered. paced: the PCM has a
    clock (a card); false for clockless test PCMs (the loop paces)."""

    def __init__(self, pcm: str, channels: int, chunk_frames: int, paced: bool = True,
                 arecord: str = "arecord") -> None:
        self.pcm, self.ch, self.chunk, self.paced = pcm, channels, chunk_frames, paced
        self.description = f"ALSA PCM {pcm}"
        self.arecord = arecord
        self.proc: subprocess.Popen | None = None
        self.errors: list[str] = []
        self.overflows = 0

    def _line(self, line: str) -> None:
        if "overrun" in line:
            self.overflows += 1

    def open(self) -> None:
        cmd = [self.arecord, "-q", "-D", self.pcm, "-t", "raw", "-f", "S16_LE", "-r", str(PCM_RATE),
               "-c", str(PCM_CHANNELS), "--period-size=256", "--buffer-size=1024"]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0)
        except OSError as e:
            raise SourceError(f"cannot run {self.arecord} (alsa-utils missing?): {e}") from None
        _stderr_reader(self.proc, self.errors, self._line)
        self.nbytes = self.chunk * PCM_CHANNELS * 2

    def read(self, timeout: float = 0.2):
        p = self.proc
        if p is None:
            raise SourceError(f"{self.description}: not open")
        buf = bytearray()
        while len(buf) < self.nbytes:   # arecord writes whole periods; a dead one gives EOF
            got = p.stdout.read(self.nbytes - len(buf))
            if not got:
                rc = p.wait(timeout=2)
                time.sleep(0.05)   # let the stderr reader take arecord's last words
                raise SourceError(f"{self.description}: {_why(self.errors, rc)}")
            buf += got
        pcm = np.frombuffer(bytes(buf), dtype="<i2").reshape(-1, PCM_CHANNELS)
        return to_channels(pcm, self.ch)

    def close(self) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(2)


def parse_underrun(line: str) -> bool:
    """aplay's stderr line for a playback underrun ("underrun!!! (at least
    12.3 ms long)")."""
    return "underrun" in line.lower()


class Player:
    """Plays int16 chunks to an ALSA PCM through `aplay` on its own thread.
    play(pcm, rate, channels) queues; stop() drops what is queued (the vendor's
    stop_sound / clear_incoming_audio). aplay is started on demand and ended
    after `idle_s` of silence, so the PCM is held only while sound plays.
    Underruns reported by ALSA are counted; a failure to open the PCM is kept
    in last_error and the sound dropped (reported, never raised)."""

    def __init__(self, pcm: str, volume=lambda: 100.0, idle_s: float = 1.0, max_queue_s: float = 30.0,
                 aplay: str = "aplay") -> None:
        self.pcm, self.volume, self.idle_s, self.aplay = pcm, volume, idle_s, aplay
        self.q: queue.Queue = queue.Queue()
        self.max_frames = int(max_queue_s * PCM_RATE)
        self.queued_frames = 0
        self.lock = threading.Lock()
        self.underruns = 0
        self.played_frames = 0
        self.dropped_frames = 0
        self.errors = 0
        self.last_error = ""
        self.failing = False     # the last session failed; cleared by the next clean one
        self.opens = 0
        self.proc: subprocess.Popen | None = None
        self.stderr: list[str] = []
        self.generation = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="playback", daemon=True)
        self.thread.start()

    @property
    def playing(self) -> bool:
        return self.proc is not None

    def play(self, pcm: np.ndarray, rate: int = PCM_RATE) -> bool:
        """Queue (frames, channels) int16 at `rate`; False when the queue is full."""
        pcm = resample(to_channels(pcm, PCM_CHANNELS), rate, PCM_RATE)
        with self.lock:
            if self.queued_frames + len(pcm) > self.max_frames:
                self.dropped_frames += len(pcm)
                return False
            self.queued_frames += len(pcm)
            self.q.put((self.generation, pcm))
        return True

    def stop(self) -> int:
        """Drop everything queued; returns the frames dropped."""
        with self.lock:
            self.generation += 1
            n = self.queued_frames
            self.queued_frames = 0
        return n

    def _line(self, line: str) -> None:
        if parse_underrun(line):
            self.underruns += 1

    def _open(self) -> bool:
        cmd = [self.aplay, "-q", "-D", self.pcm, "-t", "raw", "-f", "S16_LE", "-r", str(PCM_RATE),
               "-c", str(PCM_CHANNELS)]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, bufsize=0)
        except OSError as e:
            self.errors += 1
            self.failing = True
            self.last_error = f"cannot run {self.aplay} (alsa-utils missing?): {e}"
            return False
        self.stderr = []
        _stderr_reader(self.proc, self.stderr, self._line)
        self.opens += 1
        return True

    def _close(self) -> None:
        p = self.proc
        if p is None:
            return
        try:
            p.stdin.close()
            p.wait(3)          # aplay plays what it was given, then exits
        except (OSError, subprocess.TimeoutExpired):
            p.kill()
            p.wait(2)
        self.proc = None       # `playing` until the PCM has taken everything
        if p.returncode:
            time.sleep(0.05)
            self.errors += 1
            self.failing = True
            self.last_error = f"{self.pcm}: {_why(self.stderr, p.returncode)}"
        else:
            self.failing = False

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                gen, pcm = self.q.get(timeout=self.idle_s if self.proc is not None else 0.5)
            except queue.Empty:
                self._close()
                continue
            with self.lock:
                self.queued_frames = max(0, self.queued_frames - len(pcm))
                stale = gen != self.generation
            if stale:
                self.dropped_frames += len(pcm)
                continue
            if self.proc is None and not self._open():
                self.dropped_frames += len(pcm)
                continue
            data = apply_gain(pcm, self.volume()).astype("<i2", copy=False).tobytes()
            try:
                self.proc.stdin.write(data)
                self.played_frames += len(pcm)
            except (BrokenPipeError, OSError):
                self.dropped_frames += len(pcm)
                self._close()
                self.failing = True
                if not self.last_error:
                    self.last_error = f"{self.pcm}: playback process ended"
        self._close()

    def close(self) -> None:
        self.stop()
        self._stop.set()
        self.thread.join(5)


def resample(pcm: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Linear-interpolation resampling of int16 (frames, ch) (sound files at
    another rate; enough for prompts and tones, not for music)."""
    if rate == target or len(pcm) == 0:
        return pcm
    n = max(1, int(round(len(pcm) * target / rate)))
    x = np.linspace(0, len(pcm) - 1, n)
    src = np.arange(len(pcm))
    out = np.stack([np.interp(x, src, pcm[:, c].astype(np.float64)) for c in range(pcm.shape[1])], axis=1)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def read_sound_file(path: str) -> tuple[np.ndarray, int]:
    """(int16 (frames, channels), rate) of a WAV/OGG/FLAC file; ValueError
    with the reason when it cannot be read."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{path}: not readable (permission denied)")
    try:
        import soundfile
    except (ImportError, OSError) as e:
        raise ValueError(f"soundfile (libsndfile) not available: {e}") from None
    try:
        # as float, scaled: libsndfile reads a float file as int16 without scaling (all zeros)
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - libsndfile's errors (format, truncation)
        raise ValueError(f"{path}: not a readable sound file ({e})") from None
    if len(data) == 0:
        raise ValueError(f"{path}: contains no samples")
    return np.clip(np.round(data * 32768.0), -32768, 32767).astype(np.int16), int(rate)
