"""reachy-mini-bringup: respawn with backoff, clean stop on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from reachy_mini.common.node_table import NODES
from reachy_mini.ops.supervisor import Child

from conftest import wait_for


def read_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def test_backoff_doubles_and_caps():
    c = Child(NODES[0], [])
    now = 1000.0
    delays = []
    for i in range(8):
        c.crashes.append(now + i)
        delays.append(c.backoff(now + i))
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0] and max(delays) == 10.0
    assert c.backoff(now + 500) == 0.5  # old crashes are forgotten


def test_killed_node_respawned_and_clean_stop(tmp_path, ros_env):
    state = str(tmp_path / "state.json")
    argv = [sys.executable, "-m", "reachy_mini.ops.supervisor", "--use-sim", "--state-file", state,
            "--only", "motor_node", "camera_node"]
    env = dict(ros_env, XDG_RUNTIME_DIR=str(tmp_path))
    sup = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        s = wait_for(lambda: (st := read_state(state)) and all(n["pid"] for n in st["nodes"].values()) and st,
                     timeout=10)
        old = s["nodes"]["camera_node"]["pid"]
        os.kill(old, signal.SIGKILL)
        t0 = time.monotonic()
        s = wait_for(lambda: (st := read_state(state)) and st["nodes"]["camera_node"]["pid"] not in (None, old) and st,
                     timeout=5, period=0.02)
        assert time.monotonic() - t0 < 3.0
        assert s["nodes"]["camera_node"]["restarts"] == 1 and s["nodes"]["camera_node"]["last_exit"] == -9
        pids = [n["pid"] for n in s["nodes"].values()]
        time.sleep(1.0)
        t0 = time.monotonic()
        sup.send_signal(signal.SIGTERM)
        out, _ = sup.communicate(timeout=10)
        assert time.monotonic() - t0 < 5.0
        assert sup.returncode == 0 and "all nodes stopped" in out
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
        assert "did not stop" not in out
    finally:
        if sup.poll() is None:
            sup.kill()


def test_invalid_parameter_not_respawned(tmp_path, ros_env):
    params = tmp_path / "bad.yaml"
    params.write_text("/**/camera_node:\n  ros__parameters:\n    fps: -3.0\n")
    argv = [sys.executable, "-m", "reachy_mini.ops.supervisor", "--use-sim", "--params-file", str(params),
            "--state-file", str(tmp_path / "s.json"), "--only", "camera_node"]
    out = subprocess.run(argv, env=ros_env, capture_output=True, text=True, timeout=30)
    assert "invalid parameter" in out.stderr and "fps" in out.stderr
    assert "not respawning" in out.stdout


def _start(tmp_path, ros_env, *extra, env_extra=None):
    state = str(tmp_path / "state.json")
    argv = [sys.executable, "-m", "reachy_mini.ops.supervisor", "--use-sim", "--state-file", state,
            "--data-dir", str(tmp_path / "data"), *extra]
    env = dict(ros_env, XDG_RUNTIME_DIR=str(tmp_path), **(env_extra or {}))
    sup = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    s = wait_for(lambda: (st := read_state(state)) and all(n["pid"] for n in st["nodes"].values()) and st,
                 timeout=15)
    return sup, state, s


def _stop(sup):
    if sup.poll() is None:
        sup.send_signal(signal.SIGTERM)
        try:
            return sup.communicate(timeout=15)[0]
        except subprocess.TimeoutExpired:
            sup.kill()
    return sup.communicate()[0]


def test_hung_node_killed_by_the_supervisor_and_reported_by_the_health_node(tmp_path, ros_env):
    """SIGSTOP: the process is alive but its spin loop is stopped. The
    supervisor (the owner of restarts) sees its heartbeat older than the hang
    timeout (10 s), kills and respawns it; the health node records the hang
    and the restart as incidents."""
    from reachy_mini.core.health.incidents import db_path, query

    sup, state, s = _start(tmp_path, ros_env, "--only", "camera_node", "health_node")
    try:
        time.sleep(3.0)  # both up and publishing
        old = s["nodes"]["camera_node"]["pid"]
        os.kill(old, signal.SIGSTOP)
        t0 = time.monotonic()
        s = wait_for(lambda: (st := read_state(state)) and st["nodes"]["camera_node"]["pid"] not in (None, old)
                     and st, timeout=25, period=0.1)
        took = time.monotonic() - t0
        print(f"SIGSTOP to respawn: {took:.1f} s")
        assert 9.0 < took < 16.0
        assert s["nodes"]["camera_node"]["restarts"] == 1 and s["nodes"]["camera_node"]["hang_restarts"] == 1
        db = db_path(str(tmp_path / "data"))
        hang = wait_for(lambda: query(db, kind="hang"), timeout=5)
        assert hang[0]["name"] == "/Reachy Mini/System/Nodes/camera_node" and f"pid {old}" in hang[0]["message"]
        assert wait_for(lambda: query(db, kind="restart"), timeout=5)
        # and it is back: its item returns from STALE/ERROR
        assert wait_for(lambda: [r for r in query(db, name_prefix="/Reachy Mini/Camera/")
                                 if (r["prev_level"] or 0) >= 2 and r["level"] <= 1], timeout=60, period=0.5)
    finally:
        out = _stop(sup)
    assert "camera_node exited with -9" in out and "restarting camera_node: no heartbeat" in out


def test_supervisor_watchdog_restarts_a_stopped_health_node(tmp_path, ros_env):
    sup, state, s = _start(tmp_path, ros_env, "--only", "health_node", "--hang-timeout", "5")
    try:
        time.sleep(6.0)  # past the start-up grace
        old = s["nodes"]["health_node"]["pid"]
        os.kill(old, signal.SIGSTOP)
        t0 = time.monotonic()
        s = wait_for(lambda: (st := read_state(state)) and st["nodes"]["health_node"]["pid"] not in (None, old)
                     and st, timeout=15, period=0.1)
        assert time.monotonic() - t0 < 8.0
        assert s["nodes"]["health_node"]["hang_restarts"] == 1
    finally:
        out = _stop(sup)
    assert "no heartbeat" in out


def test_health_node_expects_only_the_started_nodes(tmp_path):
    import yaml

    from reachy_mini.common.node_table import BY_NAME
    from reachy_mini.common.paths import config_path
    from reachy_mini.ops.supervisor import node_argv

    argv = node_argv(BY_NAME["health_node"], config_path("reachy_mini.yaml"), True, "", "info", None, str(tmp_path),
                     started=["motor_node", "health_node"])
    override = argv[argv.index("--params-file", argv.index("--params-file") + 1) + 1]
    params = yaml.safe_load(open(override))["/**/health_node"]["ros__parameters"]
    assert params["expected_nodes"] == ["motor_node", "health_node"]


def test_node_argv_namespace_remaps_and_log_level(tmp_path):
    """Same rules as the launch file: a namespace remaps the diagnostics and TF
    topics into it; log_level is our node logger's, not rcl's."""
    from reachy_mini.common.node_table import BY_NAME, logger_name, remappings
    from reachy_mini.ops.supervisor import node_argv

    spec = BY_NAME["motor_node"]
    plain = node_argv(spec, "p.yaml", True, "", "debug", None, str(tmp_path))
    assert "--log-level" in plain and plain[plain.index("--log-level") + 1] == "motor_node:=debug"
    assert not any(a.startswith("__ns:=") or a.startswith("/diagnostics") for a in plain)
    ns = node_argv(spec, "p.yaml", True, "/robot1/", "warn", None, str(tmp_path))
    assert ns[ns.index("--log-level") + 1] == "robot1.motor_node:=warn"
    rules = [ns[i + 1] for i, a in enumerate(ns) if a == "-r"]
    assert rules == ["__ns:=/robot1", "/diagnostics:=/robot1/diagnostics",
                     "/diagnostics_agg:=/robot1/diagnostics_agg",
                     "/diagnostics_toplevel_state:=/robot1/diagnostics_toplevel_state",
                     "/tf:=/robot1/tf", "/tf_static:=/robot1/tf_static"]
    assert remappings("/") == [] and logger_name("lab/robot2", "web_bridge") == "lab.robot2.web_bridge"


def test_log_level_reaches_our_logger_not_rcl(tmp_path, ros_env):
    """`--log-level motor_node:=debug` as the supervisor passes it: our debug
    lines appear, rcl's do not."""
    from reachy_mini.common.node_table import BY_NAME
    from reachy_mini.ops.supervisor import node_argv

    argv = node_argv(BY_NAME["health_node"], os.path.join(os.path.dirname(__file__), "..", "..", "config",
                                                          "reachy_mini.yaml"),
                     False, "ns_log", "debug", None, str(tmp_path), data_dir=str(tmp_path / "d"),
                     state_file=str(tmp_path / "s.json"))
    log = tmp_path / "out.log"
    p = subprocess.Popen(argv, env=ros_env, stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True)
    try:   # its first debug line (the node publishing), however long a loaded machine takes to get there
        wait_for(lambda: "[DEBUG]" in log.read_text(), timeout=60, period=0.2)
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(30)
    out = log.read_text()
    assert "[DEBUG]" in out and "[ns_log.health_node]" in out, out[-1500:]
    assert "[rcl]" not in out and "[rcl." not in out


def test_systemd_notify_ready_and_watchdog(tmp_path, ros_env):
    """sd_notify for real, over a datagram socket given as NOTIFY_SOCKET:
    READY=1 arrives once the nodes run; WATCHDOG=1 pings stop while the
    health node is stopped and resume when it runs again."""
    import socket

    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    got: list[tuple[float, str]] = []

    def drain(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                got.append((time.monotonic(), sock.recv(4096).decode()))
            except socket.timeout:
                pass

    sup, state, s = _start(tmp_path, ros_env, "--only", "camera_node", "health_node", "--hang-timeout", "30",
                           env_extra={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not any("READY=1" in m for _, m in got):
            drain(0.5)
        assert any("READY=1" in m for _, m in got), got
        drain(3.0)
        assert sum("WATCHDOG=1" in m for t, m in got if t > time.monotonic() - 3.0) >= 2, got
        hpid = read_state(state)["nodes"]["health_node"]["pid"]
        os.kill(hpid, signal.SIGSTOP)
        t0 = time.monotonic()
        drain(9.0)
        late = [t - t0 for t, m in got if "WATCHDOG=1" in m and t > t0 + 5.0]
        assert not late, f"pings while the health node is stopped: {late}"
        os.kill(hpid, signal.SIGCONT)
        t1 = time.monotonic()
        drain(5.0)
        assert any("WATCHDOG=1" in m for t, m in got if t > t1), "pings resume"
    finally:
        try:
            os.kill(hpid, signal.SIGCONT)
        except (ProcessLookupError, NameError, UnboundLocalError):
            pass
        _stop(sup)
        sock.close()


def test_params_files_are_layered_in_order(tmp_path, ros_env):
    """`--params-file A --params-file B`: both apply, in order, B overriding A,
    as `--ros-args --params-file` does; the nodes and the supervisor's own
    reader (the status page's URL it prints) see the same merged result."""
    import httpx
    import yaml

    from reachy_mini.ops.supervisor import parse_args
    from reachy_mini.web.config import WebBridgeConfig
    from tools.bench.stack import free_port

    pa, pb = free_port(), free_port()
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"robot_name": "alpha"}},
                                 "/**/web_bridge": {"ros__parameters": {"port": pa, "history_minutes": 45.0}}}))
    b.write_text(yaml.safe_dump({"/**/web_bridge": {"ros__parameters": {"port": pb}}}))
    assert parse_args(["--params-file", str(a), "--params-file", str(b)]).params_files == [str(a), str(b)]
    assert len(parse_args([]).params_files) == 1, "the package's file when none is given"
    merged = WebBridgeConfig.from_params_file([str(a), str(b)], "web_bridge")
    assert (merged.port, merged.robot_name, merged.history_minutes) == (pb, "alpha", 45.0)
    assert WebBridgeConfig.from_params_file([str(b), str(a)], "web_bridge").port == pa, "order matters"
    p = subprocess.Popen([sys.executable, "-m", "reachy_mini.ops.supervisor", "--only", "web_bridge", "--state-file",
                          str(tmp_path / "s.json"), "--params-file", str(a), "--params-file", str(b)],
                         env=ros_env, stdout=open(tmp_path / "out.log", "w"), stderr=subprocess.STDOUT, text=True)
    try:
        line = wait_for(lambda: next((ln for ln in (tmp_path / "out.log").read_text().splitlines()
                                      if "web status page" in ln), None), timeout=60, period=0.2)
        assert f":{pb}" in line, line
        body = wait_for(lambda: _get_json(f"http://127.0.0.1:{pb}/api/health"), timeout=60, period=0.5)
        assert body["robot"] == "alpha", body
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{pa}/api/health", timeout=2)
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=30)


def _get_json(url):
    import httpx

    try:
        return httpx.get(url, timeout=3).json()
    except (httpx.HTTPError, ValueError):
        return None
