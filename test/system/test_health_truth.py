"""The monitor watches itself: with the health node dead and not respawned,
/api/health must not keep answering "healthy"."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx

from conftest import wait_for
from reachy_mini.common.paths import config_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(port):
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
        return r.status_code, r.json()
    except httpx.HTTPError:
        return None, None


def test_dead_health_node_turns_health_503(tmp_path, ros_env):
    port, state = _free_port(), str(tmp_path / "state.json")
    env = dict(ros_env, XDG_RUNTIME_DIR=str(tmp_path))
    sup = subprocess.Popen([sys.executable, "-m", "reachy_mini.ops.supervisor", "--use-sim", "--no-respawn",
                            "--params-file", config_path("reachy_mini.yaml"),
                            "--state-file", state, "--data-dir", str(tmp_path / "data"), "--web-port", str(port),
                            "--only", "motor_node", "health_node", "web_bridge"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: _health(port)[0] == 200, timeout=60, period=0.3)
        code, body = _health(port)
        # (a rate WARN under two CPU hogs is healthy too: what matters here is what follows)
        assert body["groups"].get("Motors") in ("OK", "WARN") and body["age_s"] < 3.0, body
        with open(state) as f:
            pid = json.load(f)["nodes"]["health_node"]["pid"]
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        code, body = wait_for(lambda: (h := _health(port))[0] == 503 and h, timeout=10, period=0.1)
        print(f"health_node killed -> /api/health 503 in {time.monotonic() - t0:.1f} s")
        assert body["level_name"] == "STALE" and body["message"].startswith("health monitor silent for")
        m = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        assert re.search(r"^reachy_mini_up\{robot=\"[^\"]+\"\} 0\.0$", m, re.M), m[:500]
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(sup.pid, signal.SIGKILL)
