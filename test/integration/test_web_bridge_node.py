"""web_bridge as a real process: runtime parameters (`ros2 param set`) for
the write rate limit and the service timeout."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx

from conftest import wait_for
from ros_probe import RosProbe

TOKEN = "web-bridge-node-test-token-0001"


def test_runtime_rate_limit_and_service_timeout(ros_env, tmp_path):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(ros_env, REACHY_MINI_WEB_TOKEN=TOKEN)
    # `-r __node:=web_bridge` for the whole process, as ros2 launch passes it
    proc = subprocess.Popen([sys.executable, "-m", "reachy_mini.nodes.web_bridge", "--ros-args", "-r",
                             "__node:=web_bridge", "-p", f"port:={port}", "-p", f"data_dir:={tmp_path}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    probe = RosProbe("web_param_test")
    url = f"http://127.0.0.1:{port}/api/motors/torque"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        wait_for(lambda: _ok(f"http://127.0.0.1:{port}/api/system/info"), timeout=20, period=0.2)
        names = wait_for(lambda: (n := [x for x, _ in probe.node.get_node_names_and_namespaces()
                                        if x.startswith("web_bridge")]) and len(n) >= 2 and n, timeout=10)
        assert sorted(names) == ["web_bridge", "web_bridge_reader"], "one node of each name, none renamed by launch"

        def set_(**values):
            req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
            return probe.call(SetParameters, "/web_bridge/set_parameters", req).results[0]
        r = set_(write_rate=1, write_window_s=60.0, service_timeout_s=0.3)
        assert r.successful, r.reason
        # no motor_node: the write waits service_timeout_s (0.3 s), then 5xx with the reason
        first = httpx.post(url, json={"enabled": True}, headers=auth, timeout=10)
        assert first.status_code in (502, 503, 504) and "motor_node" in first.text, first.text
        second = httpx.post(url, json={"enabled": True}, headers=auth, timeout=10)
        assert second.status_code == 429 and "at most 1 per 60 s" in second.text, second.text
        r = set_(write_rate=0)
        assert not r.successful                 # outside [1, 1000]
        r = set_(port=9999)
        assert not r.successful and "read-only" in r.reason.lower()
    finally:
        probe.close()
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=15)[0]
    assert "parameters set: write_rate=1" in out


def _ok(url):
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_dead_worker_thread_makes_the_node_exit_to_be_restarted(ros_env, tmp_path):
    """Alive but broken: the HTTP server thread dies (its port is taken), so
    web_bridge exits with status 3 (restart me) instead of reporting ERROR
    forever; the process manager's respawn then retries."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    port = held.getsockname()[1]
    try:
        proc = subprocess.Popen([sys.executable, "-m", "reachy_mini.nodes.web_bridge", "--ros-args", "-p",
                                 f"port:={port}", "-p", f"data_dir:={tmp_path}"], env=ros_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = proc.communicate(timeout=30)[0]
    finally:
        held.close()
    assert proc.returncode == 3, out
    assert "worker thread uvicorn died" in out and "Traceback" not in out.split("worker thread")[-1]
