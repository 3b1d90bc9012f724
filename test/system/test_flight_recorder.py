"""The flight recorder on the full simulated stack: an injected overheat
leaves an MCAP snapshot that an independent reader (rosbags) opens, with
the expected topics over 30 s before and 10 s after the incident, linked
from the incident row and served by the web bridge; snapshots on request
(~/snapshot) keep within the disk quota; a full disk (a small tmpfs) is a
WARN on "health_node: recorder" and nothing else breaks."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, wait_for
from reachy_mini.core.health.incidents import db_path, query
from reachy_mini.core.health.recorder import list_snapshots
from reachy_mini.sim.bus import send_command
from tools.bench.stack import Stack

S = 1_000_000_000


def _params(tmp_path, **health) -> str:
    from reachy_mini.common.paths import config_path

    with open(config_path("reachy_mini.yaml")) as f:
        p = yaml.safe_load(f)
    p.setdefault("/**/health_node", {}).setdefault("ros__parameters", {}).update(health)
    path = str(tmp_path / "params.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(p, f)
    return path


def _stack(tmp_path, ros_env, **health) -> Stack:
    st = Stack(str(tmp_path), extra=["--params-file", _params(tmp_path, **health)], domain=ros_env["ROS_DOMAIN_ID"])
    st.pids(timeout=40)
    return st


def _get(port, path, timeout=5.0):
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout)


def _healthy(port) -> bool:
    import httpx

    try:
        return _get(port, "/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _recorder_status(port) -> dict:
    """health_node's recorder item once the recorder has reported; {} before
    (a task's first status is the updater's "Node starting up", without
    values, and a loaded machine can delay its first real one)."""
    tree = _get(port, "/api/status").json()["tree"]
    s = next((s for s in tree if s["name"].endswith("/recorder")), {})
    return s if "written" in s.get("values", {}) else {}


def test_overheat_snapshot_read_by_rosbags(tmp_path, ros_env):
    from rosbags.highlevel import AnyReader

    st = _stack(tmp_path, ros_env)
    try:
        data = tmp_path / "data"
        wait_for(lambda: _healthy(st.port), timeout=60, period=0.5)
        time.sleep(32.0)   # a full 30 s of history behind the fault
        # (start-up may have had its own ERROR incidents, with their snapshots)
        before = {f[0] for f in list_snapshots(str(data / "snapshots"))}
        t_fault = time.time_ns()
        send_command(os.path.join(st.tmp, "reachy_mini_sim", "ttyDXL.ctl"), {"cmd": "overheat", "id": 12})
        # the file of the motor's ERROR incident (the row links it; usually the only new file, unless another
        # ERROR of a loaded machine opened one just before, which the overheat then joined)
        row = wait_for(lambda: next((r for r in query(db_path(str(data)), min_level=2)
                                     if r["name"] == "/Reachy Mini/Motors/stewart_2" and r["snapshot"]
                                     and r["t"] >= t_fault / 1e9), None),
                       timeout=10, period=0.3)
        name = row["snapshot"]
        size = wait_for(lambda: {f[0]: f[1] for f in list_snapshots(str(data / "snapshots"))}.get(name),
                        timeout=25, period=0.5)
        assert name not in before
        path = data / "snapshots" / name
        linked = [r for r in query(db_path(str(data)), min_level=2) if r["snapshot"] == name]
        assert {"/Reachy Mini/Motors", "/Reachy Mini"} <= {r["name"] for r in linked}, linked
        # an independent reader: topics, time range, the fault inside
        with AnyReader([path]) as r:
            counts = {c.topic: c.msgcount for c in r.connections}
            start, end = r.start_time, r.end_time
            print(f"rosbags: {name} {size} bytes, {(end - start) / 1e9:.1f} s, {counts}")
            hot = []
            for c, t, raw in r.messages(connections=[c for c in r.connections if c.topic == "/diagnostics_agg"]):
                for s in r.deserialize(raw, c.msgtype).status:
                    if s.name == "/Reachy Mini/Motors/stewart_2" and s.level == 2:
                        hot.append(t)
        for topic in ("/diagnostics_agg", "/diagnostics_toplevel_state", "/joint_states", "/head/pose"):
            assert counts.get(topic, 0) > 0, (topic, counts)
        assert counts["/joint_states"] > 30 * 50, "joint states at ~100 Hz over the window"
        assert counts["/diagnostics_agg"] >= 30
        # 30 s before the ERROR incident and 10 s after (the incident follows the fault by < 2 s); a file
        # opened by an earlier ERROR starts earlier, and spans at most 60 s
        t_inc = int(row["t"] * 1e9)
        assert start <= t_inc - 29 * S and end >= t_inc + 9 * S, ((start - t_inc) / 1e9, (end - t_inc) / 1e9)
        assert end - start <= 61 * S
        if "stewart_2" in name:   # opened by this incident: exactly its window
            assert t_inc - 31 * S <= start and end <= t_inc + 12 * S, ((start - t_inc) / 1e9, (end - t_inc) / 1e9)
        assert hot and t_fault <= hot[0] <= t_fault + 3 * S
        os.makedirs(os.path.join(REPO, "test-artifacts"), exist_ok=True)   # for a look with ros2 bag info, Foxglove
        shutil.copy(path, os.path.join(REPO, "test-artifacts", "overheat_snapshot.mcap"))
        # the web bridge serves it, and refuses what is not a snapshot
        got = _get(st.port, f"/api/snapshots/{name}")
        assert got.status_code == 200 and got.content == path.read_bytes()
        assert got.headers["content-type"] == "application/octet-stream"
        for bad in ("..%2F..%2Fincidents.sqlite3", "nope.mcap", "x.txt"):
            r = _get(st.port, f"/api/snapshots/{bad}")
            assert r.status_code == 404 and r.json()["detail"], (bad, r.text)
        plot = _get(st.port, f"/api/snapshots/{name}/plot?item=/Reachy%20Mini/Motors/stewart_2").json()
        assert plot["key"] == "temperature (C)" and len(plot["value"]) >= 30 and len(plot["top_level"]) >= 30
        assert max(v for _, v in plot["value"]) > min(v for _, v in plot["value"])
        assert any(r["snapshot"] == name for r in _get(st.port, "/api/incidents").json())
    finally:
        st.stop()


def _probe_call_snapshot(st_domain, goals: int = 0):
    """Calls health_node's snapshot service; first publishes `goals` goals on
    motors/goal (recorded like any goal)."""
    from sensor_msgs.msg import JointState
    from std_srvs.srv import Trigger

    from ros_probe import RosProbe

    p = RosProbe("snapshot_caller")
    try:
        if goals:
            pub = p.node.create_publisher(JointState, "/motors/goal", 10)
            wait_for(lambda: pub.get_subscription_count() >= 2, timeout=10, period=0.1)   # motor_node, recorder
            for _ in range(goals):
                pub.publish(JointState(name=["left_antenna"], position=[0.1]))
                time.sleep(0.05)
        return p.call(Trigger, "/health_node/snapshot", Trigger.Request(), timeout=10.0)
    finally:
        p.close()


def test_snapshots_on_request_keep_the_quota(tmp_path, ros_env):
    st = _stack(tmp_path, ros_env, snapshot_before_s=4.0, snapshot_after_s=1.0, snapshot_quota_mb=0.12)
    snaps = str(tmp_path / "data" / "snapshots")
    try:
        wait_for(lambda: _healthy(st.port), timeout=60, period=0.5)
        time.sleep(5.0)
        names = []
        for i in range(6):
            resp = _probe_call_snapshot(ros_env["ROS_DOMAIN_ID"], goals=5 if i == 0 else 0)
            assert resp.success and resp.message.startswith("snapshot_"), resp.message
            names.append(resp.message.split()[0])
            wait_for(lambda: names[-1] in [f[0] for f in list_snapshots(snaps)], timeout=15, period=0.2)
            if i == 0:   # the goals are in it
                from rosbags.highlevel import AnyReader

                with AnyReader([Path(snaps) / names[0]]) as r:
                    counts = {c.topic: c.msgcount for c in r.connections}
                assert counts["/motors/goal"] == 5 and counts["/joint_states"] > 0, counts
            files = list_snapshots(snaps)
            assert sum(f[1] for f in files) <= 0.12e6, files
        assert len(files) < 6 and names[-1] in [f[0] for f in files], "the oldest went first"
        assert names[0] not in [f[0] for f in files]
        # the item is published once a second: wait for the one that counts the sixth file
        rec = wait_for(lambda: (s := _recorder_status(st.port)) and int(s["values"]["written"]) >= 6 and s,
                       timeout=5, period=0.2)
        assert rec["level"] == 0 and int(rec["values"]["written"]) == 6 and int(rec["values"]["deleted"]) > 0, rec
    finally:
        st.stop()


def test_a_burst_of_goals_under_load_is_recorded_whole(tmp_path, ros_env, cpu_hogs):
    """Adaptive QoS (as rosbag2): the goals' publishers are RELIABLE, so the
    recorder subscribes RELIABLE and a burst sent while two CPU hogs run is
    in the snapshot, every goal; a BEST_EFFORT publisher appearing makes it
    re-adapt (BEST_EFFORT matches both), and that publisher is recorded too."""
    from rclpy.duration import Duration
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.highlevel import AnyReader
    from sensor_msgs.msg import JointState
    from std_srvs.srv import Trigger

    from ros_probe import RosProbe

    st = _stack(tmp_path, ros_env, snapshot_before_s=90.0, snapshot_after_s=1.0)
    snaps = str(tmp_path / "data" / "snapshots")
    burst = 200
    try:
        wait_for(lambda: _healthy(st.port), timeout=90, period=0.5)
        p = RosProbe("goal_burst")
        try:
            # a sender that keeps its whole burst until acknowledged (KEEP_LAST deep enough), as a client must
            rel = p.node.create_publisher(JointState, "/motors/goal", QoSProfile(
                depth=burst, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE))
            wait_for(lambda: rel.get_subscription_count() >= 2, timeout=30, period=0.1)   # motor_node, recorder
            for i in range(burst):
                rel.publish(JointState(name=["left_antenna"], position=[0.001 * i]))
            assert rel.wait_for_all_acked(timeout=Duration(seconds=30))
            rec = wait_for(lambda: _recorder_status(st.port), timeout=30, period=0.3)
            assert rec["values"]["qos re-adapted"] == "0", rec
            # a BEST_EFFORT publisher appears: the recorder re-adapts (a RELIABLE reader would not match it)
            be = p.node.create_publisher(JointState, "/motors/goal", QoSProfile(
                depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
            wait_for(lambda: int(_recorder_status(st.port).get("values", {}).get("qos re-adapted", 0)) >= 1, timeout=30, period=0.3)
            wait_for(lambda: be.get_subscription_count() >= 1, timeout=30, period=0.1)
            for _ in range(20):   # best effort under load: some, not all, are guaranteed
                be.publish(JointState(name=["right_antenna"], position=[0.2]))
                time.sleep(0.05)
            resp = p.call(Trigger, "/health_node/snapshot", Trigger.Request(), timeout=30.0)
        finally:
            p.close()
        assert resp.success, resp.message
        name = resp.message.split()[0]
        wait_for(lambda: name in [f[0] for f in list_snapshots(snaps)], timeout=60, period=0.3)
        with AnyReader([Path(snaps) / name]) as r:
            goals = [r.deserialize(raw, c.msgtype) for c, _, raw in
                     r.messages(connections=[c for c in r.connections if c.topic == "/motors/goal"])]
        left = [g.position[0] for g in goals if g.name == ["left_antenna"]]
        assert len(left) == burst and sorted(left) == [0.001 * i for i in range(burst)], len(left)
        assert any(g.name == ["right_antenna"] for g in goals), "the BEST_EFFORT publisher is recorded"
    finally:
        st.stop()


def test_disk_full_is_a_warn_and_nothing_else_breaks(tmp_path, ros_env):
    snaps = tmp_path / "data" / "snapshots"
    snaps.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(snaps)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    st = None
    try:
        st = _stack(tmp_path, ros_env, snapshot_before_s=5.0, snapshot_after_s=1.0)
        wait_for(lambda: _healthy(st.port), timeout=60, period=0.5)
        time.sleep(6.0)
        pid = st.nodes()["health_node"]["pid"]
        resp = _probe_call_snapshot(ros_env["ROS_DOMAIN_ID"])
        assert resp.success
        rec = wait_for(lambda: (s := _recorder_status(st.port)) and s["level"] == 1 and s, timeout=20, period=0.3)
        print("recorder on a full disk:", rec["message"])
        assert "No space left on device" in rec["message"] and rec["values"]["failed"] != "0"
        assert os.listdir(snaps) == [], "no partial file left behind"
        # nothing else broke: the robot is healthy (a WARN is healthy), the health node the same process,
        # incidents still recorded
        h = _get(st.port, "/api/health")
        assert h.status_code == 200 and h.json()["level"] <= 1, h.json()
        assert st.nodes()["health_node"]["pid"] == pid
        send_command(os.path.join(st.tmp, "reachy_mini_sim", "ttyDXL.ctl"), {"cmd": "overheat", "id": 12})
        wait_for(lambda: any(r["name"] == "/Reachy Mini/Motors/stewart_2" and r["level"] == 2
                             for r in query(db_path(str(tmp_path / "data")), min_level=2)), timeout=10, period=0.3)
    finally:
        if st is not None:
            st.stop()
        subprocess.run(["umount", "-l", str(snaps)], capture_output=True)
