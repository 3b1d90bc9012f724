"""health_node as a real process, fed and read over real rclpy."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from reachy_mini.core.health.incidents import db_path, query

from conftest import wait_for
from ros_probe import RosProbe
from test_health_core import EVERY_KEY


class HealthProc:
    def __init__(self, env, tmp_path, analyzers=None, **params):
        params.setdefault("state_file", str(tmp_path / "no-supervisor.json"))
        params.setdefault("data_dir", str(tmp_path / "data"))
        if analyzers is not None:
            f = tmp_path / "analyzers.yaml"
            f.write_text(analyzers)
            params["analyzers_file"] = str(f)
        argv = [sys.executable, "-m", "reachy_mini.nodes.health_node", "--ros-args"]
        for k, v in params.items():
            argv += ["-p", f"{k}:={v}"]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.communicate(timeout=10)[0]
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.communicate()[0]


@pytest.fixture
def probe(ros_env):
    p = RosProbe("health_test")
    p.listen(DiagnosticArray, "/diagnostics_agg")
    p.listen(DiagnosticStatus, "/diagnostics_toplevel_state")
    p.pub = p.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
    yield p
    p.close()


def publish(probe, statuses):
    arr = DiagnosticArray()
    arr.status = [DiagnosticStatus(level=bytes([lv]), name=n, message=m, hardware_id="hw",
                                   values=[KeyValue(key="k", value="v")]) for n, lv, m in statuses]
    probe.pub.publish(arr)


def latest(probe, since=0.0):
    msgs = probe.get("/diagnostics_agg", since)
    return {s.name: s for s in msgs[-1][1].status} if msgs else {}


def test_aggregates_every_analyzer_key(ros_env, tmp_path, probe):
    h = HealthProc(ros_env, tmp_path, EVERY_KEY, pub_rate=2.0)
    try:
        feed = [("motor_node: bus", 0, "ok"), ("motor_node: m1", 0, "ok"), ("motor_node: m2", 2, "overheating"),
                ("cam_driver: frames", 1, "low fps"), ("lidar: scan", 0, "ok"), ("battery_1: voltage", 0, "ok"),
                ("charger: state", 0, "ok"), ("noise: chatter", 2, "dropped"), ("stray: thing", 0, "ok")]

        def seen():
            publish(probe, feed)
            d = latest(probe)
            return d if "/Robot/Sensors/Lidar/lidar: scan" in d and "/Robot/Power/charger: state" in d else None
        d = wait_for(seen, timeout=15, period=0.3)
        lv = {n: s.level[0] for n, s in d.items()}
        assert lv["/Robot/Motors/m2"] == 2 and d["/Robot/Motors/m2"].message == "overheating"
        assert lv["/Robot/Motors"] == 2 and "expected 3, found 3" not in d["/Robot/Motors"].message
        assert lv["/Robot/Sensors/Cameras/frames"] == 1 and lv["/Robot/Sensors"] == 1
        assert "/Robot/Other/stray: thing" in d and not any("chatter" in n for n in d)
        assert d["/Robot/Motors/m1"].values[0].key == "k" and d["/Robot/Motors/m1"].hardware_id == "hw"
        top = probe.get("/diagnostics_toplevel_state")[-1][1]
        assert top.level[0] == 2 and "m2: overheating" in top.message
        # num_items: stop sending m1 and m2 -> after the 2 s timeout they go stale, then
        # discard... motors have no discard_stale, so count stays 3; send a 4th motor instead
        publish(probe, feed + [("motor_node: m3", 0, "ok")])
        d = wait_for(lambda: (x := latest(probe)) and "/Robot/Motors/m3" in x and x, timeout=5)
        assert d["/Robot/Motors"].level[0] == 2 and d["/Robot/Motors"].message.startswith("expected 3, found 4")
        # missing nodes of the node table: STALE with the reason, after their 5 s timeout
        d = wait_for(lambda: (x := latest(probe)) and (s := x.get("/Robot/Other/health_node: node camera_node"))
                     and s.level[0] == 3 and s, timeout=10)
        assert d.message.startswith("no diagnostics from camera_node for ")
        assert float(d.message.split(" for ")[1].split(" s")[0]) >= 5.0
    finally:
        h.stop()


def test_missing_node_stale_in_shipped_tree(ros_env, tmp_path, probe):
    h = HealthProc(ros_env, tmp_path, pub_rate=1.0)
    try:
        s = wait_for(lambda: (x := latest(probe)) and (s := x.get("/Reachy Mini/System/Nodes/camera_node"))
                     and s.level[0] == 3 and s, timeout=15, period=0.2)
        assert s.message.startswith("no diagnostics from camera_node for 5.")
        publish(probe, [("camera_node: frames", 0, "ok")])
        s = wait_for(lambda: (x := latest(probe)) and (s := x.get("/Reachy Mini/System/Nodes/camera_node"))
                     and s.level[0] == 0 and s, timeout=5, period=0.1)
        assert s.message.startswith("publishing")
    finally:
        h.stop()


def test_error_is_published_immediately(ros_env, tmp_path, probe):
    """pub_rate 0.2 Hz: without the immediate path an ERROR would wait up to 5 s."""
    h = HealthProc(ros_env, tmp_path, EVERY_KEY, pub_rate=0.2)
    try:
        wait_for(lambda: (publish(probe, [("motor_node: m1", 0, "ok")]), latest(probe).get("/Robot/Motors/m1"))[1],
                 timeout=15, period=0.5)
        lat = []
        for _ in range(5):
            publish(probe, [("motor_node: m1", 0, "ok")])
            time.sleep(0.3)
            t0 = time.monotonic()
            publish(probe, [("motor_node: m1", 2, "overheating")])
            wait_for(lambda: (s := latest(probe, t0).get("/Robot/Motors/m1")) and s.level[0] == 2, timeout=3,
                     period=0.002)
            lat.append(probe.get("/diagnostics_agg", t0)[0][0] - t0)
        print(f"immediate ERROR publish latency: max {max(lat) * 1000:.1f} ms, "
              f"mean {sum(lat) / len(lat) * 1000:.1f} ms")
        assert max(lat) < 0.5
    finally:
        h.stop()


def test_incident_history_survives_restart(ros_env, tmp_path, probe):
    name = "/Reachy Mini/Motors/stewart_2"
    path = db_path(str(tmp_path / "data"))
    h = HealthProc(ros_env, tmp_path)
    try:
        wait_for(lambda: (publish(probe, [("motor_node: stewart_2", 2, "overheating")]),
                          latest(probe).get(name))[1], timeout=15, period=0.3)
        publish(probe, [("motor_node: stewart_2", 0, "OK")])
        wait_for(lambda: (s := latest(probe).get(name)) and s.level[0] == 0, timeout=5)
    finally:
        out = h.stop()
    assert h.proc.returncode == 0, out
    rows = [(r["prev_level"], r["level"]) for r in reversed(query(path, name_prefix=name))]
    assert rows == [(None, 2), (2, 0)]
    t1 = time.monotonic()
    h = HealthProc(ros_env, tmp_path)
    try:
        wait_for(lambda: (publish(probe, [("motor_node: stewart_2", 0, "OK")]), latest(probe, t1).get(name))[1],
                 timeout=15, period=0.3)
        publish(probe, [("motor_node: stewart_2", 1, "warm")])
        wait_for(lambda: (s := latest(probe, t1).get(name)) and s.level[0] == 1, timeout=5)
    finally:
        h.stop()
    rows = [(r["prev_level"], r["level"]) for r in reversed(query(path, name_prefix=name))]
    assert rows == [(None, 2), (2, 0), (0, 1)]   # no "new" entry after the restart
    top = [r for r in query(path, name_prefix="toplevel_state")]
    assert top, "top-level changes are recorded too"


def test_flapping_item_is_one_incident_until_it_settles(ros_env, tmp_path, probe):
    """More than flap_max_changes level changes within flap_window_s: one
    incident "flapping (k changes in M min)" at the worst level, none for the
    further changes, one more when it has been stable for flap_settle_s."""
    name = "/Reachy Mini/Motors/stewart_3"
    path = db_path(str(tmp_path / "data"))
    h = HealthProc(ros_env, tmp_path, flap_max_changes=3, flap_window_s=60.0, flap_settle_s=4.0, pub_rate=2.0)
    try:
        wait_for(lambda: (publish(probe, [("motor_node: stewart_3", 0, "OK")]), latest(probe).get(name))[1],
                 timeout=15, period=0.3)
        for i in range(8):       # 8 changes OK <-> WARN/ERROR
            lv = (1, 2)[i % 4 == 2] if i % 2 == 0 else 0
            publish(probe, [("motor_node: stewart_3", lv, f"step {i}")])
            wait_for(lambda lv=lv: (s := latest(probe).get(name)) and s.level[0] == lv, timeout=5, period=0.05)
        rows = wait_for(lambda: [r for r in query(path, name_prefix=name) if "flapping" in r["message"]],
                        timeout=5)
        assert len(rows) == 1 and rows[0]["level"] == 2, rows
        assert rows[0]["message"].startswith("flapping (4 changes in 1 min)"), rows[0]["message"]
        settled = wait_for(lambda: [r for r in query(path, name_prefix=name) if "settled" in r["message"]],
                           timeout=15, period=0.3)
        assert settled[0]["level"] == 0 and settled[0]["prev_level"] == 2
        assert "4 changes not recorded" in settled[0]["message"], settled[0]["message"]
        all_rows = query(path, name_prefix=name)
        assert len(all_rows) == 1 + 3 + 1 + 1, [(r["level"], r["message"]) for r in all_rows]
        publish(probe, [("motor_node: stewart_3", 2, "hot again")])   # after settling: reported at once
        wait_for(lambda: any(r["message"] == "hot again" for r in query(path, name_prefix=name)), timeout=5)
    finally:
        h.stop()


def test_invalid_analyzer_file_fails_fast(ros_env, tmp_path):
    h = HealthProc(ros_env, tmp_path, "a: {ros__parameters: {m: {type: diagnostic_aggregator/GenericAnalyzer,"
                                      " path: M, startswith: x, regexp: y}}}")
    out = h.proc.communicate(timeout=30)[0]
    assert h.proc.returncode == 2
    assert "analyzers_file" in out and "'m'" in out and "regexp" in out and "Traceback" not in out


def test_unknown_expected_node_fails_fast(ros_env, tmp_path):
    h = HealthProc(ros_env, tmp_path, **{"expected_nodes": "['motor_node', 'lidar_node']"})
    out = h.proc.communicate(timeout=30)[0]
    assert h.proc.returncode == 2 and "expected_nodes" in out and "lidar_node" in out


def test_runtime_parameters(ros_env, tmp_path, probe):
    """pub_rate and thresholds change on the running node, by the start-up rules."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    def set_(**values):
        req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return probe.call(SetParameters, "/health_node/set_parameters", req).results[0]

    h = HealthProc(ros_env, tmp_path, pub_rate=1.0)
    try:
        wait_for(lambda: probe.get("/diagnostics_agg"), timeout=15)
        r = set_(pub_rate=5.0)
        assert r.successful, r.reason
        time.sleep(0.5)
        t0 = time.monotonic()
        time.sleep(5.0)                   # a window long enough for a loaded machine's timer jitter
        rate = len(probe.get("/diagnostics_agg", t0)) / (time.monotonic() - t0)
        assert rate >= 3.0, rate          # 5 Hz (1 Hz before)
        r = set_(cpu_warn_pct=99.5)       # above cpu_error_pct (98)
        assert not r.successful and "cpu_warn_pct < cpu_error_pct" in r.reason
        r = set_(cpu_clear_pct=95.0)      # the alarm must clear below where it enters (90)
        assert not r.successful and "cpu_clear_pct < cpu_warn_pct" in r.reason
        assert set_(cpu_sustain_s=5.0, flap_max_changes=10).successful
        r = set_(analyzers_file="/etc/passwd")
        assert not r.successful and "read-only" in r.reason.lower()
        assert set_(hang_timeout_s=30.0).successful
    finally:
        out = h.stop()
    assert "parameters set: pub_rate=5.0" in out


def test_under_launch_only_a_hung_sibling_is_killed(tmp_path, ros_env):
    """Without a supervisor (ros2 launch), the health node kills a hung node
    of its own launch (a sibling process: this test process is the
    "launch"), and never the same node started by anyone else, although it
    runs in the same namespace and is hung too."""
    env = dict(ros_env, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    cam = [sys.executable, "-m", "reachy_mini.nodes.camera_node", "--ros-args", "-p", "use_sim:=true",
           "-p", "fps:=5.0", "-p", "compressed_fps:=0.0"]
    health = HealthProc(env, tmp_path, hang_timeout_s=3.0, expected_nodes="[camera_node]")
    sibling = subprocess.Popen(cam, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the outsider is a grandchild (its parent is a shell): another stack's process (its own runtime
    # directory, as another user's would be: in the same one its instance lock would stop it at start)
    (tmp_path / "run2").mkdir(mode=0o700)
    outsider_sh = subprocess.Popen(["sh", "-c", " ".join(f"'{a}'" for a in cam) + " & echo $!; wait"],
                                   env=dict(env, XDG_RUNTIME_DIR=str(tmp_path / "run2")),
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    outsider = int(outsider_sh.stdout.readline())
    try:
        time.sleep(5.0)   # all older than the hang timeout
        assert sibling.poll() is None and health.proc.poll() is None
        os.kill(sibling.pid, signal.SIGSTOP)
        os.kill(outsider, signal.SIGSTOP)
        t0 = time.monotonic()
        wait_for(lambda: sibling.poll() is not None, timeout=20, period=0.1)
        print(f"SIGSTOP to kill: {time.monotonic() - t0:.1f} s")
        assert sibling.returncode == -signal.SIGKILL
        time.sleep(4.0)
        assert os.path.exists(f"/proc/{outsider}") and open(f"/proc/{outsider}/stat").read().split()[2] == "T", \
            "the outsider is still there, still stopped: not ours to kill"
        hang = wait_for(lambda: query(db_path(str(tmp_path / "data")), kind="hang"), timeout=5)
        assert f"killed pid {sibling.pid}" in hang[0]["message"] and len(hang) == 1
    finally:
        for pid in (outsider,):
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        outsider_sh.wait(5)
        if sibling.poll() is None:
            sibling.kill()
        out = health.stop()
    assert "killing pid" in out and str(outsider) not in out


def test_under_launch_a_new_pid_is_a_restart(tmp_path, ros_env):
    """ros2 launch keeps no restart counts: the health node counts a node's
    new process (a sibling in its namespace) as a restart and records it."""
    env = dict(ros_env, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    cam = [sys.executable, "-m", "reachy_mini.nodes.camera_node", "--ros-args", "-p", "use_sim:=true",
           "-p", "fps:=5.0", "-p", "compressed_fps:=0.0"]
    health = HealthProc(env, tmp_path, expected_nodes="[camera_node]")
    first = subprocess.Popen(cam, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = None
    try:
        time.sleep(7.0)   # the health node has seen the first process (it scans every 5 s)
        first.kill()
        first.wait(5)
        second = subprocess.Popen(cam, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        db = db_path(str(tmp_path / "data"))
        rec = wait_for(lambda: query(db, kind="restart"), timeout=20, period=0.5)
        assert rec[0]["name"].endswith("camera_node") and "restart #1" in rec[0]["message"], rec
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
        health.stop()


def test_damaged_database_at_start_is_moved_aside_with_a_warn(ros_env, tmp_path, probe):
    """A damaged incident database: health_node moves it aside, says so (a
    WARN on its incidents item and in its log) and records into a fresh one;
    it does not exit (no crash loop under the supervisor or launch's respawn)."""
    data = tmp_path / "data"
    data.mkdir()
    with open(db_path(str(data)), "wb") as f:
        f.write(b"SQLite format 3\x00" + os.urandom(20000))
    h = HealthProc(ros_env, tmp_path, pub_rate=2.0)
    try:
        name = "/Reachy Mini/System/Host/incidents"
        s = wait_for(lambda: (x := latest(probe)) and (s := x.get(name)) and s.level[0] == 1 and s, timeout=20,
                     period=0.3)
        assert "moved aside" in s.message, s.message
        aside = [p for p in os.listdir(data) if ".damaged-" in p]
        assert aside and open(data / aside[0], "rb").read(16) == b"SQLite format 3\x00"
        wait_for(lambda: (publish(probe, [("motor_node: stewart_2", 2, "overheating")]),
                          any(r["name"] == "/Reachy Mini/Motors/stewart_2" for r in query(db_path(str(data)))))[1],
                 timeout=15, period=0.3)
        assert h.proc.poll() is None
    finally:
        out = h.stop()
    assert "incident database damaged; moved aside" in out


def test_unwritable_snapshot_directory_is_a_warn_on_the_recorder(ros_env, tmp_path, probe):
    """The snapshot directory cannot be created (a file is in its way, as an
    unwritable or read-only disk would refuse it even to root): a snapshot on
    request is answered, its failure is a WARN on the recorder item with the
    cause, and health_node carries on."""
    from std_srvs.srv import Trigger

    data = tmp_path / "data"
    data.mkdir()
    (data / "snapshots").write_text("in the way")
    h = HealthProc(ros_env, tmp_path, pub_rate=2.0, snapshot_before_s=2.0, snapshot_after_s=1.0)
    try:
        name = "/Reachy Mini/System/Host/recorder"
        wait_for(lambda: (x := latest(probe)) and name in x, timeout=20, period=0.3)
        resp = probe.call(Trigger, "/health_node/snapshot", Trigger.Request(), timeout=10.0)
        assert resp.success and resp.message.startswith("snapshot_")   # (may join an open one: nodes missing)
        s = wait_for(lambda: (x := latest(probe)) and (s := x.get(name)) and s.level[0] == 1 and s, timeout=15,
                     period=0.3)
        assert "snapshots failing" in s.message and "File exists" in s.message, s.message
        assert h.proc.poll() is None
    finally:
        h.stop()


def test_a_killed_nodes_shared_memory_is_freed_and_reported(ros_env, tmp_path, probe):
    """A node killed with SIGKILL (as a hang restart or a crash ends it) leaves
    its Fast DDS segment in /dev/shm, which is RAM; health_node removes it on
    its next sweep once it is MIN_AGE_S old, says so, and keeps the live ones."""
    from reachy_mini.core.health import shm

    def segments():
        return {f for f in os.listdir(shm.SHM_DIR) if shm._LOCK.match(f)}

    before = segments()
    code = "import rclpy, time; rclpy.init(); n = rclpy.create_node('doomed'); print('up', flush=True); time.sleep(60)"
    doomed = subprocess.Popen([sys.executable, "-c", code], env=ros_env, stdout=subprocess.PIPE, text=True)
    assert doomed.stdout.readline().strip() == "up"
    mine = wait_for(lambda: segments() - before, timeout=10)
    doomed.kill()
    doomed.wait()
    assert all(os.path.exists(os.path.join(shm.SHM_DIR, f[:-3])) for f in mine)   # left behind
    h = HealthProc(ros_env, tmp_path, pub_rate=1.0, shm_sweep_s=1.0)
    try:
        key = "/Reachy Mini/System/Host/shared memory"
        s = wait_for(lambda: (x := latest(probe)) and (s := x.get(key)) and s, timeout=20, period=0.2)
        assert s.level[0] == 0, (s.message, list(s.values))
        # removed once MIN_AGE_S old (a sweep at start-up may already have freed older zombies)
        wait_for(lambda: not any(os.path.exists(os.path.join(shm.SHM_DIR, f)) for f in mine),
                 timeout=shm.MIN_AGE_S + 30, period=0.5)
        t = time.monotonic()
        s = wait_for(lambda: (s := latest(probe, t).get(key)) and s, timeout=10, period=0.2)
        vals = dict((v.key, v.value) for v in s.values)
        assert s.level[0] == 0 and int(vals["stale segments removed"]) >= 1 and float(vals["freed (MB)"]) >= 0.5
        assert int(vals["segments in use"]) >= 2, vals
        live = wait_for(lambda: segments() - before - mine, timeout=5)   # health_node's and the probe's own
        assert all(os.path.exists(os.path.join(shm.SHM_DIR, f[:-3])) for f in live)
    finally:
        out = h.stop()
    assert "Fast DDS shared-memory segment(s) left by killed processes" in out, out
