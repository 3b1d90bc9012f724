"""Capture on demand (core/media/demand.py, capture.SourceLoop.want, the SDK
socket's standby): the rules without rclpy."""
from __future__ import annotations

import os
import platform
import time

import pytest

from reachy_mini.core.levels import ERROR, OK
from reachy_mini.core.media.capture import SourceError, SourceLoop, capture_health
from reachy_mini.core.media.demand import IDLE_MESSAGE, Demand, demand_values
from reachy_mini.core.media.unixfd import FrameServer

from test_unixfd import Reader, feed, frame, wait_for


def test_demand_captures_while_read_and_closes_idle_close_s_after_the_last_reader():
    d = Demand(5.0, now=100.0)
    assert d.update(0, 100.0) and d.update(0, 104.9)     # start-up grace: the device is verified first
    assert not d.update(0, 105.0)                        # nobody came: closed
    assert d.snapshot(105.0)["stops"] == 1 and demand_values(d.snapshot(105.0))[0] == ("capture", IDLE_MESSAGE)
    assert d.update(1, 200.0)                            # a reader: open at once
    assert d.snapshot(200.0)["starts"] == 1
    assert d.update(2, 201.0) and d.update(0, 202.0)     # they left: still open for idle_close_s
    snap = d.snapshot(204.0)
    assert snap["closes_in_s"] == 2.0 and dict(demand_values(snap))["capture"] == "no reader: closing in 2.0 s"
    assert d.update(0, 205.9) and not d.update(0, 206.0)  # 5 s after the last one was counted (201)
    assert d.snapshot(206.0)["stops"] == 2


def test_demand_zero_captures_always_and_the_setting_is_read_live():
    v = [0.0]
    d = Demand(lambda: v[0], now=0.0)
    assert d.update(0, 1e6)                              # 0: always (the behaviour before)
    assert dict(demand_values(d.snapshot(1e6)))["capture"] == "always (idle_close_s = 0)"
    v[0] = 2.0                                           # ros2 param set idle_close_s 2
    assert d.update(0, 1e6 + 1.0) and not d.update(0, 1e6 + 2.5)


class Counting:
    """A source that counts opens, reads and probes; `there` is the device's presence."""
    paced = False
    description = "counting"

    def __init__(self, state):
        self.s = state

    def open(self):
        if not self.s["there"]:
            raise SourceError("counting: no such device")
        self.s["opens"] += 1

    def read(self, timeout):
        if not self.s["there"]:
            raise SourceError("counting: read failed")
        self.s["reads"] += 1
        return self.s["reads"]

    def close(self):
        self.s["closes"] += 1

    def probe(self):
        self.s["probes"] += 1
        return None if self.s["there"] else "counting: no such device"


def test_idle_loop_closes_the_device_reads_nothing_and_reopens_on_demand():
    st = {"there": True, "opens": 0, "reads": 0, "closes": 0, "probes": 0}
    got = []
    loop = SourceLoop(lambda: Counting(st), lambda d, t: got.append(d), 50.0, probe_s=0.2).start()
    try:
        wait_for(lambda: len(got) > 5)
        loop.want(False)
        wait_for(lambda: loop.snapshot()["idle"] and st["closes"] == 1)
        reads = st["reads"]
        wait_for(lambda: st["probes"] >= 3)              # probed every probe_s, never read
        assert st["reads"] == reads and st["opens"] == 1
        s = loop.snapshot()
        assert capture_health(s, 50.0, 1.0, "frame") == (OK, IDLE_MESSAGE) and s["present"]
        loop.want(True)
        wait_for(lambda: st["reads"] > reads + 5)
        s = loop.snapshot()
        assert st["opens"] == 2 and not s["idle"] and s["dropped"] == 0   # an idle gap is no dropped frame
        assert capture_health(s, 50.0, 1.0, "frame")[0] == OK or s["rate"] > 0
    finally:
        loop.stop()


def test_a_device_missing_while_idle_is_reported_and_its_return_seen():
    st = {"there": True, "opens": 0, "reads": 0, "closes": 0, "probes": 0}
    loop = SourceLoop(lambda: Counting(st), lambda d, t: None, 50.0, probe_s=0.1).start()
    try:
        wait_for(lambda: st["reads"] > 3)
        loop.want(False)
        wait_for(lambda: loop.snapshot()["idle"])
        st["there"] = False                              # unplugged while nobody reads
        s = wait_for(lambda: (s := loop.snapshot()) and not s["present"] and s)
        lv, msg = capture_health(s, 50.0, 1.0, "frame")
        assert lv == ERROR and "no such device" in msg and "idle" in msg
        assert st["opens"] == 1                          # found by the probe, not by opening it
        st["there"] = True                               # plugged back
        s = wait_for(lambda: (s := loop.snapshot()) and s["present"] and s)
        assert capture_health(s, 50.0, 1.0, "frame") == (OK, IDLE_MESSAGE)
        loop.want(True)
        wait_for(lambda: st["opens"] == 2 and st["reads"] > 10)
    finally:
        loop.stop()


def test_want_and_hold_cut_an_open_backoff_short():
    st = {"there": False, "opens": 0, "reads": 0, "closes": 0, "probes": 0}
    loop = SourceLoop(lambda: Counting(st), lambda d, t: None, 50.0, probe_s=0.1, backoff=(30.0, 30.0)).start()
    try:
        wait_for(lambda: loop.snapshot()["last_error"])  # first open failed: a 30 s backoff begins
        loop.want(False)
        wait_for(lambda: loop.snapshot()["idle"], timeout=5.0)
        assert loop.hold(True) and not loop.snapshot()["idle"]
    finally:
        loop.stop()


def test_sdk_socket_listens_in_standby_and_a_client_connecting_is_counted(tmp_path):
    path = str(tmp_path / "cam.sock")
    srv = FrameServer(path, 64, 48, fps=200.0, idle_s=0.3, retry_s=0.1)
    try:
        assert not os.path.exists(path)                  # no camera yet: no socket (apps would wait forever)
        srv.set_standby(True)                            # camera closed for want of a reader, but present
        wait_for(lambda: os.path.exists(path))
        time.sleep(0.6)                                  # > idle_s without a frame: still listening
        assert os.path.exists(path) and srv.snapshot()["standby"]
        r = Reader(path)
        wait_for(lambda: len(srv.clients) == 1)          # the node counts it as a reader: capture starts
        feed(srv, 0, lambda: srv.snapshot()["frames"] > 0)
        _, _, img = r.frame()
        assert img.shape == (48, 64, 3) and tuple(img[0, 0]) == (1, 2, 3)
        srv.set_standby(False)                           # camera gone: the usual rule, no frame for idle_s
        wait_for(lambda: not os.path.exists(path))
        srv.set_standby(True)
        srv.pause(True)                                  # released for apps: no socket even in standby
        time.sleep(0.3)
        assert not os.path.exists(path)
        r.close()
    finally:
        srv.close()


IDLE_MEMORY = r"""
import sys, time
import numpy as np
from reachy_mini.core.media import capture
from reachy_mini.core.media.camera import SyntheticCamera

if sys.argv[1] == "off":
    capture.trim_heap = lambda: None

def anon_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

frames = []
loop = capture.SourceLoop(lambda: SyntheticCamera(1920, 1080), lambda d, t: frames.append(d.shape), 30.0, 2.0).start()
while len(frames) < 30:
    time.sleep(0.05)
busy = anon_mb()
loop.want(False)
while not loop.snapshot()["idle"]:
    time.sleep(0.05)
time.sleep(0.2)
print(busy, anon_mb())
loop.stop()
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's arenas and malloc_trim")
def test_an_idle_camera_gives_its_frames_memory_back():
    """The capture thread's 1080p frames come from a glibc thread arena that
    keeps two of them (12 MB) resident after capture stops, unless the heap is
    trimmed when the loop goes idle (SourceLoop does). Measured in a fresh
    process, with the trim and without."""
    import subprocess
    import sys

    got = {}
    for mode in ("on", "off"):
        r = subprocess.run([sys.executable, "-c", IDLE_MEMORY, mode], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        got[mode] = [float(x) for x in r.stdout.split()]
    (busy_on, idle_on), (busy_off, idle_off) = got["on"], got["off"]
    print(f"anonymous memory capturing -> idle: trimmed {busy_on:.0f} -> {idle_on:.0f} MB, "
          f"not trimmed {busy_off:.0f} -> {idle_off:.0f} MB")
    assert idle_off - idle_on > 8.0   # more than one 6 MB frame given back
