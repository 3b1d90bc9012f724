"""The flight recorder's rules (core/health/recorder.py): ring buffer bounds,
snapshot windows, quota and retention, MCAP files that an independent reader
(rosbags) opens, the incident plot."""
from __future__ import annotations

import os
import sys
import time

import pytest

from reachy_mini.core.health.recorder import (TOPICS, NAME_RE, RingBuffer, SnapshotPlanner, cleanup, list_snapshots,
                                              message_definition, msg_file_reader, pick_key, read_plot,
                                              snapshot_name, write_mcap)

S = 1_000_000_000


def test_ring_buffer_bounded_by_age_and_bytes():
    r = RingBuffer(max_bytes=10_000, max_age_s=5.0)
    for i in range(1000):                       # 100 Hz for 10 s, 50 bytes each
        r.add("joint_states", i * S // 100, 0, b"x" * 50)
    assert r.covered_s() <= 5.0 and r.items[0][1] >= 5 * S - 1
    assert r.bytes == sum(len(m[3]) for m in r.items) and r.added == 1000 and r.evicted == 1000 - len(r.items)
    r2 = RingBuffer(max_bytes=1000, max_age_s=60.0)
    for i in range(100):
        r2.add("t", i * S, 0, b"y" * 100)
    assert r2.bytes <= 1000 and len(r2.items) == 10 and r2.items[-1][1] == 99 * S
    assert [m[1] for m in r2.window(92 * S, 95 * S)] == [92 * S, 93 * S, 94 * S, 95 * S]


def test_snapshot_window_and_storm_joins_one_file():
    p = SnapshotPlanner(before_s=30, after_s=10, max_span_s=60)
    t = 1_000_000 * S
    name = p.trigger(t, "/Reachy Mini/Motors/stewart_2")
    assert NAME_RE.match(name) and "Motors_stewart_2" in name
    assert (p.pending.start_ns, p.pending.end_ns) == (t - 30 * S, t + 10 * S)
    assert p.trigger(t + 5 * S, "/Reachy Mini") == name          # joins, end moves to +15 s
    assert p.pending.end_ns == t + 15 * S and p.pending.triggers == 2
    assert p.due(t + 15 * S) == []
    done = p.due(t + 15 * S + 1)
    assert [d.name for d in done] == [name] and p.pending is None
    n2 = p.trigger(t + 20 * S, "request")
    assert n2 != name
    for k in range(1, 31):                                        # a storm: capped at max_span
        assert p.trigger(t + 20 * S + k * S, "x") == n2
    assert p.pending.end_ns == p.pending.start_ns + 60 * S == t + 50 * S
    n3 = p.trigger(t + 51 * S, "later")                           # past the cap: the next file
    assert n3 not in (n2, name)
    assert [d.name for d in p.due(t + 52 * S)] == [n2]            # the capped one is written first
    assert [d.name for d in p.due(t + 62 * S)] == [n3]
    assert p.buffer_s() == 65.0                                   # the longest window, and a margin


def test_snapshot_names_are_safe():
    n = snapshot_name(1_764_645_302_250_000_000, "../../etc/passwd; rm -rf /")
    assert n == "snapshot_20251202T031502.250Z_etc_passwd_rm_rf.mcap" and NAME_RE.match(n)
    assert not NAME_RE.match("../x.mcap") and not NAME_RE.match(".x.mcap") and not NAME_RE.match("x.mcap.part")


def test_cleanup_retention_then_quota_oldest_first():
    now = 1e9
    files = [("a", 100, now - 10 * 86400), ("b", 100, now - 300), ("c", 100, now - 200), ("d", 100, now - 100)]
    assert cleanup(files, 10_000, 7 * 86400, now) == ["a"]
    assert cleanup(files, 250, 7 * 86400, now) == ["a", "b"]
    assert cleanup(files, 250, 7 * 86400, now, incoming_bytes=100) == ["a", "b", "c"]
    assert cleanup(files, 50, 30 * 86400, now, incoming_bytes=100) == ["a", "b", "c", "d"]   # too big: caller refuses


def _defs():
    read = msg_file_reader([os.path.join(sys.prefix, "share")])
    return {t: message_definition(t, read) for _, t in TOPICS}


def test_message_definitions_in_ros2msg_form():
    d = _defs()["sensor_msgs/msg/JointState"]
    assert d.startswith("# This is a message that holds data")
    assert "\n" + "=" * 80 + "\nMSG: std_msgs/Header\n" in d and "MSG: builtin_interfaces/Time" in d
    assert d.count("MSG: builtin_interfaces/Time") == 1
    with pytest.raises(FileNotFoundError):
        msg_file_reader([])("nope_msgs/msg/X")


def _bag(tmp_path, n=40, hot_from=30):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import JointState

    t0 = time.time_ns()
    msgs = []
    for i in range(n):
        lv = 2 if i >= hot_from else 0
        st = DiagnosticStatus(level=bytes([lv]), name="/R/Motors/m2", message="overheating" if lv else "OK",
                              values=[KeyValue(key="id", value="12"), KeyValue(key="temperature (C)",
                                                                                value=str(40 + i))])
        msgs.append(("/diagnostics_agg", t0 + i * S, t0 + i * S, serialize_message(DiagnosticArray(status=[st]))))
        msgs.append(("/diagnostics_toplevel_state", t0 + i * S, 0,
                     serialize_message(DiagnosticStatus(level=bytes([lv]), name="toplevel_state"))))
        for k in range(10):
            js = JointState(name=["a", "b"], position=[0.1 * k, 0.2], velocity=[0.0, 0.0], effort=[0.0, 0.0])
            msgs.append(("/joint_states", t0 + i * S + k * S // 10, 0, serialize_message(js)))
    path = str(tmp_path / snapshot_name(t0, "test"))
    topics = {("/" + t).replace("//", "/"): ty for t, ty in TOPICS}
    return path, write_mcap(path, msgs, topics, _defs()), t0


def test_mcap_opens_in_rosbags_with_topics_and_times(tmp_path):
    from pathlib import Path

    from rosbags.highlevel import AnyReader

    path, size, t0 = _bag(tmp_path)
    assert size == os.path.getsize(path) and not os.path.exists(path + ".part")
    with AnyReader([Path(path)]) as r:
        counts = {c.topic: c.msgcount for c in r.connections}
        assert counts["/diagnostics_agg"] == 40 and counts["/joint_states"] == 400
        assert r.start_time == t0 and r.end_time >= t0 + 39 * S
        for c, t, raw in r.messages(connections=[c for c in r.connections if c.topic == "/diagnostics_agg"]):
            last = r.deserialize(raw, c.msgtype)
        assert last.status[0].values[1].value == "79"
    assert list_snapshots(str(tmp_path)) == [(os.path.basename(path), size, pytest.approx(time.time(), abs=60))]
    assert list_snapshots(path) == [] and list_snapshots(str(tmp_path / "none")) == []   # not a directory, none


def test_mcap_write_failure_leaves_no_file(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    os.chmod(d, 0o500)
    if os.access(str(d), os.W_OK):   # root: permissions do not stop it
        pytest.skip("running as root: a read-only directory is writable")
    with pytest.raises(OSError):
        write_mcap(str(d / "x.mcap"), [], {}, {})
    assert os.listdir(d) == []


def test_plot_series_names_the_triggering_value(tmp_path):
    path, _, t0 = _bag(tmp_path)
    p = read_plot(path, "/R/Motors/m2", "overheating")
    assert p["key"] == "temperature (C)"
    assert len(p["value"]) == 40 and p["value"][0] == [t0 / 1e9, 40.0] and p["value"][-1][1] == 79.0
    assert [lv for _, lv in p["level"]].count(2) == 10 and len(p["top_level"]) == 40
    assert p["start"] == t0 / 1e9
    assert read_plot(path, "/R/none")["value"] == []


def test_a_group_incident_is_plotted_through_the_leaf_that_caused_it(tmp_path):
    """A group's (or the top level's) incident plots its cause: the leaf that
    reached the worst level first, with that leaf's own value, not the first
    value of any sibling that happens to vary (a moving joint's position)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from rclpy.serialization import serialize_message

    t0, msgs = time.time_ns(), []
    for i in range(20):
        hot = i >= 12
        sts = [DiagnosticStatus(level=bytes([2 if hot else 0]), name="/R/Motors", message="Error: m2: overheating"
                                if hot else "OK"),
               DiagnosticStatus(level=bytes([1 if i >= 15 else 0]), name="/R/Motors/m1", message="OK",
                                values=[KeyValue(key="position (rad)", value=str(0.1 * i))]),
               DiagnosticStatus(level=bytes([2 if hot else 0]), name="/R/Motors/m2",
                                message="hardware error: overheating" if hot else "OK",
                                values=[KeyValue(key="position (rad)", value=str(-0.1 * i)),
                                        KeyValue(key="temperature (C)", value=str(50 + i))])]
        msgs.append(("/diagnostics_agg", t0 + i * S, t0 + i * S, serialize_message(DiagnosticArray(status=sts))))
    path = str(tmp_path / snapshot_name(t0, "group"))
    write_mcap(path, msgs, {("/" + t).replace("//", "/"): ty for t, ty in TOPICS}, _defs())
    for item in ("/R/Motors", "toplevel_state"):
        p = read_plot(path, item, "Error: m2: overheating")
        assert (p["item"], p["incident_item"], p["key"]) == ("/R/Motors/m2", item, "temperature (C)"), p
        assert p["value"][-1][1] == 69.0
    leaf = read_plot(path, "/R/Motors/m1", "")
    assert (leaf["item"], leaf["key"]) == ("/R/Motors/m1", "position (rad)")


def test_pick_key():
    s = [{"id": "12", "temperature (C)": "40", "voltage (V)": "7.1"}, {"id": "12", "temperature (C)": "41",
                                                                       "voltage (V)": "7.1"}]
    assert pick_key(s, "overheating: 71 C") == "temperature (C)"
    assert pick_key(s, "input voltage out of range") == "voltage (V)"
    assert pick_key(s, "something") == "temperature (C)"        # the one that varies
    assert pick_key([], "x") is None


def test_adaptive_reliability_follows_the_publishers():
    """As rosbag2: RELIABLE only where every publisher offers it; one
    BEST_EFFORT publisher makes it BEST_EFFORT; no publisher keeps the
    current choice (the expected one at the start)."""
    from reachy_mini.core.health.recorder import EXPECTED_RELIABLE, adapt_reliability

    assert adapt_reliability([True, True]) is True
    assert adapt_reliability([True, False]) is False
    assert adapt_reliability([False]) is False
    assert adapt_reliability([]) is EXPECTED_RELIABLE is True
    assert adapt_reliability([], current=False) is False
    assert adapt_reliability([True], current=False) is True
