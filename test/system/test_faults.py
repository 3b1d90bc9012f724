"""Table-driven: kill or SIGSTOP each node in turn, health_node and
web_bridge included. With respawn off, /api/health must turn 503 naming
the part that broke within 10 s (for web_bridge itself: no answer at all).
With respawn on, it must come back to 200."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import wait_for
from reachy_mini.common.paths import config_path
from test_health_truth import _free_port, _health

# node -> what the 503 names (a top-level group, or the silent monitor)
NAMES = {"motor_node": "Motors", "camera_node": "Camera", "audio_node": "Audio",
         "health_node": "health monitor silent", "web_bridge": None}
TABLE = [("motor_node", signal.SIGKILL), ("camera_node", signal.SIGSTOP), ("audio_node", signal.SIGKILL),
         ("health_node", signal.SIGSTOP), ("web_bridge", signal.SIGKILL)]


class Stack:
    def __init__(self, tmp_path, env, respawn: bool):
        self.port, self.state = _free_port(), str(tmp_path / "state.json")
        argv = [sys.executable, "-m", "reachy_mini.ops.supervisor", "--use-sim",
                "--params-file", config_path("reachy_mini.yaml"), "--state-file", self.state,
                "--data-dir", str(tmp_path / "data"), "--web-port", str(self.port)] + ([] if respawn else ["--no-respawn"])
        self.proc = subprocess.Popen(argv, env=dict(env, XDG_RUNTIME_DIR=str(tmp_path)), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.stopped: list[int] = []

    def pid(self, node):
        with open(self.state) as f:
            return json.load(f)["nodes"][node]["pid"]

    def healthy(self, timeout=60):
        return wait_for(lambda: (h := _health(self.port))[0] == 200 and h[1], timeout=timeout, period=0.3)

    def hit(self, node, sig):
        pid = self.pid(node)
        os.kill(pid, sig)
        if sig == signal.SIGSTOP:
            self.stopped.append(pid)
        return pid

    def close(self):
        for pid in self.stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("node,sig", TABLE, ids=[f"{n}-{s.name}" for n, s in TABLE])
def test_respawn_off_health_names_the_broken_part(tmp_path, ros_env, node, sig):
    st = Stack(tmp_path, ros_env, respawn=False)
    try:
        st.healthy()
        time.sleep(1.0)
        st.hit(node, sig)
        t0 = time.monotonic()
        if NAMES[node] is None:   # the web server itself: nothing answers
            wait_for(lambda: _health(st.port)[0] is None, timeout=10, period=0.2)
            return
        code, body = wait_for(lambda: (h := _health(st.port))[0] == 503 and h, timeout=10, period=0.2)
        print(f"{node} {sig.name} -> 503 in {time.monotonic() - t0:.1f} s: {body['message']}")
        assert NAMES[node] in body["message"], body
    finally:
        st.close()


def test_respawn_on_health_comes_back(tmp_path, ros_env):
    """The same faults with the other signal, on one stack with respawn: a
    new process each time, and /api/health back to 200 (a stopped node
    first makes it leave 200)."""
    st = Stack(tmp_path, ros_env, respawn=True)
    try:
        st.healthy()
        for node, sig in TABLE:
            other = signal.SIGSTOP if sig == signal.SIGKILL else signal.SIGKILL
            old = st.hit(node, other)
            t0 = time.monotonic()
            if other == signal.SIGSTOP:   # a kill may be respawned before anything goes stale
                wait_for(lambda: _health(st.port)[0] != 200, timeout=15, period=0.1)
            wait_for(lambda: st.pid(node) not in (None, old), timeout=40, period=0.2)
            body = st.healthy(timeout=60)
            print(f"{node} {other.name} -> 200 again in {time.monotonic() - t0:.1f} s ({body['message']})")
    finally:
        st.close()
