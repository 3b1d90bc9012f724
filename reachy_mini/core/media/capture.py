"""A capture loop shared by the camera and audio nodes (plain Python).

It owns a source (open/read/close), runs it on its own thread, paces sources
that have no clock of their own (files, synthetic), and treats a source that
fails to open, raises on read, or delivers nothing for `stall_s` as lost:
it is closed (on a helper thread, so a driver stuck in a read cannot block
us) and reopened with backoff 0.5 s -> 5 s, without restarting the node.

want(False) closes the device while nobody reads (core/media/demand.py):
the thread then sleeps, waking only every `probe_s` to check that the device
is still there (the source's probe(): a path that exists, a sysfs lookup; no
capture), so a device unplugged while idle is still reported.

Rate statistics follow diagnostic_updater's FrequencyStatus: the measured
rate over a window is compared with the target within a tolerance.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Protocol

from reachy_mini.core.levels import ERROR, OK, WARN, Level
from reachy_mini.core.media.demand import IDLE_MESSAGE


class SourceError(Exception):
    """The device is missing, cannot be opened, or was lost; the message says which."""


class Source(Protocol):
    paced: bool          # True: read() blocks until the device has data (its own clock)
    description: str

    def open(self) -> None: ...
    def read(self, timeout: float) -> Any: ...   # returns None on timeout
    def close(self) -> None: ...
    # optional: probe() -> None when the device is there, else why not (cheap: no open, no capture)


class RateWindow:
    """Event times over the last `window_s`; rate() in events per second."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self.t: collections.deque[float] = collections.deque()

    def tick(self, now: float) -> None:
        self.t.append(now)
        while self.t and now - self.t[0] > self.window_s:
            self.t.popleft()

    def rate(self, now: float) -> float:
        while self.t and now - self.t[0] > self.window_s:
            self.t.popleft()
        if len(self.t) < 2:
            return 0.0
        span = max(now - self.t[0], (self.t[-1] - self.t[0]))
        return (len(self.t) - 1) / span if span > 0 else 0.0


def rate_status(measured: float, target: float, tolerance: float = 0.1) -> tuple[Level, str]:
    """FrequencyStatus semantics: OK 'Desired frequency met', WARN 'Frequency
    too low' / 'Frequency too high' outside target*(1±tolerance)."""
    if measured < target * (1 - tolerance):
        return WARN, f"frequency too low: {measured:.1f} Hz (target {target:.1f})"
    if measured > target * (1 + tolerance):
        return WARN, f"frequency too high: {measured:.1f} Hz (target {target:.1f})"
    return OK, f"desired frequency met: {measured:.1f} Hz"


def capture_health(s: dict, target_hz: float, stall_s: float, what: str) -> tuple[Level, str]:
    """A capture loop's state (SourceLoop.snapshot()) against its target rate:
    an absent device or no data for `stall_s` is ERROR, a rate off target WARN;
    closed for want of a reader (idle): OK if the presence probe finds it."""
    if s.get("idle"):
        if not s["present"]:
            return ERROR, f"device not available: {s['last_error']} (idle: no reader; probed every " \
                          f"{s.get('probe_s', 0):g} s)"
        return OK, IDLE_MESSAGE
    if not s["present"]:
        return ERROR, f"device not available: {s['last_error']}; retrying"
    if s["age"] > stall_s:
        return ERROR, f"no {what} for {s['age']:.1f} s"
    return rate_status(s["rate"], target_hz)


def trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's malloc_trim;
    nothing elsewhere). The capture thread's frames (6 MB at 1080p) come from
    a glibc thread arena once its mmap threshold has risen past a frame, and
    that arena keeps two frames' worth resident after capture stops: 12 MB of
    an idle camera_node (measured: the process' anonymous memory 32 -> 20 MB)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


class SourceLoop:
    def __init__(self, make_source: Callable[[], Source], on_data: Callable[[Any, float], None],
                 rate_hz: float, stall_s: float = 1.0, backoff: tuple[float, float] = (0.5, 5.0),
                 probe_s: float = 3.0) -> None:
        self.make_source = make_source
        self.on_data = on_data
        self.period = 1.0 / rate_hz
        self.stall_s = max(stall_s, 3 * self.period)
        self.backoff_min, self.backoff_max = backoff
        self.lock = threading.Lock()
        self.rate = RateWindow()
        self.count = 0
        self.dropped = 0
        self.opens = 0
        self.losses = 0
        self.present = False
        self.description = ""
        self.last_error = ""
        self.last_data = 0.0
        self.callback_errors = 0
        self.held = False                       # hold(True): the device is given up (released for apps)
        self.wanted = True                      # want(False): nobody reads, the device is closed (idle)
        self.idle = False                       # closed for want of a reader (the thread sleeps)
        self.probe_s = probe_s
        self.probes = 0
        self._prober: Source | None = None
        self._wake = threading.Event()          # hold/want/stop changed: the sleeping thread looks again
        self._hold = threading.Event()
        self._closed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    @property
    def thread(self):
        """The capture thread (alive until stop())."""
        return self._thread

    def start(self) -> "SourceLoop":
        self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def want(self, on: bool) -> None:
        """on: someone reads, capture (open the device); off: close it and sleep (probing presence)."""
        if on != self.wanted:
            with self.lock:
                self.wanted = on
            self._wake.set()

    def _probe(self) -> None:
        """While idle: is the device still there? (no capture)"""
        if self._prober is None:
            self._prober = self.make_source()
        probe = getattr(self._prober, "probe", None)
        try:
            why = probe() if probe else None
        except Exception as e:  # noqa: BLE001 - a probe failure is a finding, not a crash
            why = f"presence probe failed: {e}"
        with self.lock:
            self.probes += 1
            self.present = why is None
            if why is not None:
                self.last_error = why

    def hold(self, on: bool, timeout: float = 5.0) -> bool:
        """on: close the device and keep it closed until hold(False) (another program may
        open it meanwhile). Returns True once the device is closed (on) / reopening (off)."""
        with self.lock:
            self.held = on
        if not on:
            self._hold.clear()
            self._wake.set()
            return True
        self._closed.clear()
        self._hold.set()
        self._wake.set()
        return self._closed.wait(timeout)

    def _lost(self, src: Source, why: str) -> None:
        with self.lock:
            self.present = False
            self.last_error = why
            self.losses += 1
        closer = threading.Thread(target=src.close, name="capture-close", daemon=True)
        closer.start()
        closer.join(1.0)   # a driver stuck in read() must not block the loop

    def _run(self) -> None:
        backoff = self.backoff_min
        next_probe = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            if self._hold.is_set():
                with self.lock:
                    self.present, self.idle = False, False
                self._closed.set()
                self._wake.wait()        # until hold(False) or stop()
                continue
            if not self.wanted:          # nobody reads: closed; wake only to probe presence
                with self.lock:
                    self.idle = True
                now = time.monotonic()
                if now >= next_probe:
                    self._probe()
                    next_probe = now + self.probe_s
                self._wake.wait(max(0.0, next_probe - time.monotonic()))
                continue
            with self.lock:
                self.idle = False
            next_probe = 0.0             # probe at once when the next idle period begins
            src = self.make_source()
            try:
                src.open()
            except SourceError as e:
                with self.lock:
                    self.present, self.last_error = False, str(e)
                self._wake.wait(backoff)     # hold/want/stop cut the backoff short
                backoff = min(backoff * 2, self.backoff_max)
                continue
            with self.lock:
                self.present, self.opens, self.description = True, self.opens + 1, src.description
                self.rate = RateWindow()   # this session's rate (an idle gap or an outage is no slow rate)
            backoff = self.backoff_min
            opened = time.monotonic()
            nxt = time.monotonic()
            while not self._stop.is_set() and not self._hold.is_set() and self.wanted:
                try:
                    data = src.read(timeout=min(0.2, self.stall_s))
                except SourceError as e:
                    self._lost(src, str(e))
                    break
                now = time.monotonic()
                if data is None:
                    if now - max(self.last_data, opened) > self.stall_s:
                        self._lost(src, f"no data from {src.description} for {now - max(self.last_data, opened):.1f} s")
                        break
                    continue
                if not src.paced:  # files and synthetic sources: we are the clock
                    nxt += self.period
                    wait = nxt - time.monotonic()
                    if wait > 0:
                        self._stop.wait(wait)
                    elif wait < -self.period:  # fell behind: skip the missed slots, count them
                        missed = int(-wait / self.period)
                        self.dropped += missed
                        nxt += missed * self.period
                    now = time.monotonic()
                elif self.last_data > opened and now - self.last_data > 1.5 * self.period:
                    self.dropped += int((now - self.last_data) / self.period + 0.5) - 1
                with self.lock:
                    self.count += 1
                    self.last_data = now
                    self.rate.tick(now)
                try:
                    self.on_data(data, now)
                except Exception:  # noqa: BLE001 - a publishing error must not kill capture
                    self.callback_errors += 1
            else:
                src.close()
            data = src = None   # an idle camera keeps no frame (a 1080p one is 6 MB) nor its source
            if not self.wanted or self._hold.is_set():
                trim_heap()

    def snapshot(self) -> dict:
        now = time.monotonic()
        with self.lock:
            return {"present": self.present, "count": self.count, "dropped": self.dropped, "opens": self.opens,
                    "losses": self.losses, "rate": self.rate.rate(now), "last_error": self.last_error,
                    "age": now - self.last_data if self.last_data else float("inf"),
                    "description": self.description, "callback_errors": self.callback_errors, "held": self.held,
                    "idle": self.idle and not self.held, "probes": self.probes, "probe_s": self.probe_s}
