"""Aggregation rules (no ROS): every analyzer key, levels, config errors."""
from __future__ import annotations

import pytest
import yaml

from reachy_mini.core.levels import ERROR, OK, STALE, WARN, Level
from reachy_mini.core.health.aggregator import (Aggregator, ConfigError, analyzer_params, combine, load_aggregator,
                                               remove_chaff, shown_message)
from reachy_mini.core.health.nodes import NodeWatch, node_status
from reachy_mini.common.paths import config_path
from reachy_mini.core.health.system import ProcInfo

EVERY_KEY = """
analyzers:
  ros__parameters:
    path: Robot
    pub_rate: 1.0
    motors:
      type: diagnostic_aggregator/GenericAnalyzer
      path: Motors
      find_and_remove_prefix: ['motor_node: ']
      num_items: 3
      timeout: 2.0
    sensors:
      type: diagnostic_aggregator/AnalyzerGroup
      path: Sensors
      analyzers:
        cams:
          type: diagnostic_aggregator/GenericAnalyzer
          path: Cameras
          startswith: ['cam']
          remove_prefix: ['cam_driver']
        lidar:
          type: diagnostic_aggregator/GenericAnalyzer
          path: Lidar
          contains: ['lidar']
          discard_stale: true
          timeout: 1.0
    power:
      type: diagnostic_aggregator/GenericAnalyzer
      path: Power
      regex: ['battery_[0-9]+: .*']
      expected: ['charger: state']
    dropped:
      type: diagnostic_aggregator/DiscardAnalyzer
      path: Dropped
      name: ['noise: chatter']
"""


def agg_from(text: str) -> Aggregator:
    return Aggregator(analyzer_params(yaml.safe_load(text)))


def by_name(outs):
    return {o.name: o for o in outs}


def test_every_key_routes_and_renames():
    a = agg_from(EVERY_KEY)
    t = 100.0
    for n in ["motor_node: bus", "motor_node: m1", "motor_node: m2", "cam_driver: frames", "front/lidar: scan",
              "battery_1: voltage", "battery_x: voltage", "charger: state", "noise: chatter"]:
        a.update(n, OK, "fine", "hw", [("k", "v")], t)
    outs, top = a.report(t + 0.5)
    o = by_name(outs)
    # find_and_remove_prefix: matched by prefix, prefix removed
    assert {"/Robot/Motors/bus", "/Robot/Motors/m1", "/Robot/Motors/m2"} <= set(o)
    # startswith + remove_prefix (leading ':' and spaces go too)
    assert "/Robot/Sensors/Cameras/frames" in o
    # contains; '/' in a name becomes ' ' (diagnostic_aggregator's output name)
    assert "/Robot/Sensors/Lidar/front lidar: scan" in o
    # regex is a whole-name match: battery_x does not match and lands in Other
    assert "/Robot/Power/battery_1: voltage" in o and "/Robot/Other/battery_x: voltage" in o
    # expected item that arrived
    assert o["/Robot/Power/charger: state"].level == OK
    # DiscardAnalyzer: matched and dropped, not in Other either
    assert not [n for n in o if "chatter" in n]
    # AnalyzerGroup and top-level path produce headers
    assert o["/Robot/Sensors"].level == OK and o["/Robot"].level == OK and top.level == OK
    assert o["/Robot/Motors/m1"].values == [("k", "v")] and o["/Robot/Motors/m1"].hardware_id == "hw"


def test_num_items_mismatch_is_error():
    a = agg_from(EVERY_KEY)
    a.update("motor_node: bus", OK, "fine", "", [], 0.0)
    a.update("motor_node: m1", OK, "fine", "", [], 0.0)
    outs, top = a.report(0.1)
    m = by_name(outs)["/Robot/Motors"]
    assert m.level == ERROR and m.message.startswith("expected 3, found 2")
    assert top.level == ERROR


def test_expected_item_missing_is_stale_then_arrives():
    a = agg_from(EVERY_KEY)
    a.update("battery_1: voltage", OK, "fine", "", [], 0.0)
    o = by_name(a.report(0.1)[0])
    assert o["/Robot/Power/charger: state"].level == STALE
    assert o["/Robot/Power/charger: state"].message == "Missing"
    assert o["/Robot/Power"].level == ERROR  # a mix of stale and fresh


def test_timeout_stale_and_group_rule():
    a = agg_from(EVERY_KEY)
    for n in ["motor_node: bus", "motor_node: m1", "motor_node: m2"]:
        a.update(n, OK, "fine", "", [], 0.0)
    a.update("motor_node: m1", OK, "fine", "", [], 1.5)
    o = by_name(a.report(2.5)[0])   # timeout 2.0: bus and m2 stale, m1 fresh
    assert o["/Robot/Motors/bus"].level == STALE and "no update for 2.5 s" in o["/Robot/Motors/bus"].message
    assert o["/Robot/Motors/m1"].level == OK
    assert o["/Robot/Motors"].level == ERROR  # some stale -> ERROR
    o = by_name(a.report(10.0)[0])
    assert o["/Robot/Motors"].level == STALE  # all stale -> STALE


def test_discard_stale_removes_items():
    a = agg_from(EVERY_KEY)
    a.update("lidar: scan", WARN, "slow", "", [], 0.0)
    assert "/Robot/Sensors/Lidar/lidar: scan" in by_name(a.report(0.5)[0])
    o = by_name(a.report(2.0)[0])
    assert "/Robot/Sensors/Lidar/lidar: scan" not in o and o["/Robot/Sensors/Lidar"].level == OK
    a.update("lidar: scan", ERROR, "dead", "", [], 3.0)   # comes back when it publishes again
    assert by_name(a.report(3.1)[0])["/Robot/Sensors/Lidar/lidar: scan"].level == ERROR


def test_levels_propagate_with_reason():
    a = agg_from(EVERY_KEY)
    for n in ["motor_node: bus", "motor_node: m1", "motor_node: m2"]:
        a.update(n, OK, "fine", "", [], 0.0)
    a.update("motor_node: m2", ERROR, "overheating", "", [], 0.0)
    a.update("cam_driver: frames", WARN, "low fps", "", [], 0.0)
    outs, top = a.report(0.1)
    o = by_name(outs)
    assert o["/Robot/Motors"].level == ERROR and o["/Robot/Motors"].message == "Error"
    assert dict(o["/Robot/Motors"].values)["cause"] == "Error: m2: overheating"
    assert shown_message(o["/Robot/Motors"].message, o["/Robot/Motors"].values) == "Error: m2: overheating"
    assert o["/Robot/Sensors"].level == WARN and o["/Robot"].level == ERROR
    assert "Motors: Error: m2: overheating" in shown_message(o["/Robot"].message, o["/Robot"].values)
    assert top.level == ERROR and "m2: overheating" in top.message


def _rqt_listed(statuses) -> list[str]:
    """rqt_robot_monitor's error and warning lists (robot_monitor.py,
    _update_flat_tree / _add_statitem): every status whose level is not OK,
    except those whose message is exactly 'Warning' or 'Error', which is how
    diagnostic_aggregator's group rows read (valToMsg)."""
    return [s.name for s in statuses if s.level != OK and s.message not in ("Warning", "Error")]


def test_a_fault_is_listed_once_by_rqt_robot_monitor():
    """One overheat is one row in rqt_robot_monitor's error list, not one per
    ancestor: group rows carry the bare level word, like diagnostic_aggregator
    (generic_analyzer_base.hpp: header message = valToMsg(level); OK,
    Warning, Error, Stale), and the cause in their 'cause' value."""
    a = agg_from(EVERY_KEY)
    for n in ["motor_node: bus", "motor_node: m1", "motor_node: m2"]:
        a.update(n, OK, "fine", "", [], 0.0)
    a.update("cam_driver: frames", OK, "30 fps", "", [], 0.0)
    a.update("charger: state", OK, "charging", "", [], 0.0)
    outs, _ = a.report(0.1)
    assert {o.message for o in outs if o.name in ("/Robot", "/Robot/Motors", "/Robot/Sensors")} == {"OK"}
    assert _rqt_listed(outs) == []
    a.update("motor_node: m2", ERROR, "temperature 70 C", "", [], 0.2)
    a.update("cam_driver: frames", WARN, "low fps", "", [], 0.2)
    a.update("charger: state", OK, "charging", "", [], 0.2)
    outs, top = a.report(0.3)
    assert _rqt_listed(outs) == ["/Robot/Motors/m2", "/Robot/Sensors/Cameras/frames"], [(o.name, o.message) for o in outs]
    for o in outs:
        if o.name in ("/Robot", "/Robot/Motors", "/Robot/Sensors", "/Robot/Sensors/Cameras"):
            assert o.message == Level(o.level).text and dict(o.values)["cause"], o
    # every group with a level other than OK says why in its 'cause' value; the top level keeps the summary
    assert dict(by_name(outs)["/Robot/Sensors/Cameras"].values)["cause"] == "Warning: frames: low fps"
    assert "m2: temperature 70 C" in top.message
    # stale: the aggregator's word is 'Stale'
    outs, _ = a.report(100.0)
    assert by_name(outs)["/Robot"].message in ("Error", "Stale")


def test_combine_rule():
    assert combine([]) == OK
    assert combine([OK, WARN]) == WARN
    assert combine([STALE, STALE]) == STALE
    assert combine([STALE, OK]) == ERROR
    assert combine([STALE, WARN]) == ERROR


def test_remove_chaff_like_diagnostic_aggregator():
    assert remove_chaff("/Hokuyo/Tilt HK/tilt_node: Connection", "tilt_node") == "/Hokuyo/Tilt HK/Connection"
    assert remove_chaff("/A/motor_node: bus", "motor_node: ") == "/A/bus"
    assert remove_chaff("/A/other: x", "motor_node") == "/A/other: x"


def test_flattened_keys_and_other_param_scopes():
    flat = {"/**": {"ros__parameters": {"path": "R", "m.type": "diagnostic_aggregator/GenericAnalyzer",
                                          "m.path": "M", "m.startswith": ["x"]}}}
    a = Aggregator(analyzer_params(flat))
    a.update("x: y", OK, "", "", [], 0.0)
    assert "/R/M/x: y" in by_name(a.report(0.0)[0])


def test_upstream_example_file_loads_unchanged(tmp_path):
    # diagnostic_aggregator/example/example_analyzers.yaml, as shipped upstream
    text = """analyzers:
  ros__parameters:
    path: Aggregation
    arms:
      type: diagnostic_aggregator/GenericAnalyzer
      path: Arms
      startswith: [ '/arms' ]
    motors:
      type: diagnostic_aggregator/GenericAnalyzer
      path: Motors
      contains: [ '/motor' ]
    topology:
      type: 'diagnostic_aggregator/AnalyzerGroup'
      path: Topology
      analyzers:
        left:
          type: diagnostic_aggregator/GenericAnalyzer
          path: Left
          contains: [ '/left' ]
"""
    f = tmp_path / "example.yaml"
    f.write_text(text)
    a = load_aggregator(str(f))
    a.update("/arms/left/motor", OK, "ok", "", [], 0.0)
    names = set(by_name(a.report(0.0)[0]))
    # one status may feed several analyzers, as in the aggregator
    assert {"/Aggregation/Arms/ arms left motor", "/Aggregation/Motors/ arms left motor",
            "/Aggregation/Topology/Left/ arms left motor"} <= names


@pytest.mark.parametrize("text, needle", [
    ("a: {ros__parameters: {x: {type: diagnostic_aggregator/GenericAnalyzer, startswith: [a]}}}", "'path'"),
    ("a: {ros__parameters: {x: {type: diagnostic_aggregator/GenericAnalyzer, path: X, startwith: [a]}}}",
     "unknown key"),
    ("a: {ros__parameters: {x: {type: diagnostic_aggregator/GenericAnalyzer, path: X, regex: ['(']}}}",
     "regex"),
    ("a: {ros__parameters: {x: {type: diagnostic_aggregator/Nope, path: X}}}", "not supported"),
    ("a: {ros__parameters: {x: {type: diagnostic_aggregator/GenericAnalyzer, path: X}}}", "at least one"),
    ("a: {ros__parameters: {x: {type: diagnostic_aggregator/AnalyzerGroup, path: X}}}", "'analyzers'"),
    ("a: {ros__parameters: {x: {type: diagnostic_aggregator/GenericAnalyzer, path: X, startswith: a,"
     " num_items: many}}}", "num_items"),
])
def test_config_errors_name_the_analyzer(text, needle):
    with pytest.raises(ConfigError) as e:
        agg_from(text)
    assert "'x'" in str(e.value) and needle in str(e.value)


def test_shipped_config_groups_the_stack():
    a = load_aggregator(config_path("analyzers.yaml"))
    for n in ["motor_node: bus", "motor_node: recovery"] + [f"motor_node: m{i}" for i in range(9)]:
        a.update(n, OK, "ok", "", [], 0.0)
    for n in ["camera_node: camera", "audio_node: microphone", "web_bridge: http", "health_node: system",
              "health_node: incidents", "health_node: notify", "health_node: shared memory"] + [
                  f"health_node: node {x}" for x in
                                          ["motor_node", "camera_node", "audio_node", "health_node", "web_bridge"]]:
        a.update(n, OK, "ok", "", [], 0.0)
    outs, top = a.report(0.5)
    o = by_name(outs)
    assert top.level == OK, top.message
    assert "/Reachy Mini/Motors/m3" in o and "/Reachy Mini/System/Nodes/camera_node" in o
    assert "/Reachy Mini/System/Host/system" in o and "/Reachy Mini/Other" not in o
    assert "/Reachy Mini/System/Host/notify" in o and "/Reachy Mini/System/Host/shared memory" in o


def test_node_watch_and_hang_rule():
    """Silence on /diagnostics is STALE; a hang is a live process whose
    spin-loop heartbeat is older than the hang timeout (the one hang signal)."""
    w = NodeWatch({"camera_node": 5.0}, started=0.0)
    live = ProcInfo("camera_node", pid=42, alive=True, status="stopped", age_s=100.0, beat_age_s=0.5)
    lv, msg, hung = node_status("camera_node", live, w, 4.0, 10.0)
    assert lv == OK and not hung
    lv, msg, hung = node_status("camera_node", live, w, 6.0, 10.0)
    assert lv == STALE and msg.startswith("no diagnostics from camera_node for 6.0 s") and not hung
    w.seen("/ns/camera_node: frames", 7.0)
    assert node_status("camera_node", live, w, 8.0, 10.0)[0] == OK
    live.beat_age_s = 10.5
    lv, msg, hung = node_status("camera_node", live, w, 17.5, 10.0)
    assert lv == ERROR and hung and "hung" in msg
    dead = ProcInfo("camera_node")
    lv, msg, hung = node_status("camera_node", dead, w, 30.0, 10.0)
    assert lv == STALE and not hung and "process not running" in msg
    young = ProcInfo("camera_node", pid=43, alive=True, status="sleeping", age_s=3.0)
    assert not node_status("camera_node", young, w, 30.0, 10.0)[2]  # just restarted: give it time
    never = ProcInfo("camera_node", pid=44, alive=True, status="sleeping", age_s=12.0)
    assert node_status("camera_node", never, w, 7.5, 10.0)[2], "alive 12 s and never beat: hung"


def test_prune_forgets_names_gone_for_an_hour():
    a = agg_from(EVERY_KEY)
    for i in range(100):
        a.update(f"stray_{i}: x", OK, "", "", [], 0.0)
    a.update("motor_node: bus", OK, "", "", [], 3500.0)
    assert a.prune(3700.0) == 100
    names = set(by_name(a.report(3700.0)[0]))
    assert "/Robot/Motors/bus" in names and not any("stray" in n for n in names)
    assert len(a.items) == 1 and len(a.routes) == 1


def test_process_scan_finds_the_monitor_itself_and_its_siblings():
    """Under ros2 launch the monitor finds the nodes among its launch's
    children by command line, its own process (health_node) included."""
    import json
    import subprocess
    import sys

    nodes = {n: f"reachy_mini.nodes.{n}" for n in ("health_node", "motor_node", "web_bridge")}
    other_ns = [sys.executable, "-c", "import time; time.sleep(30)", nodes["web_bridge"], "--ros-args", "-r",
                "__ns:=/robot2"]   # another robot's node on the same machine
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", nodes["motor_node"]])
    other = subprocess.Popen(other_ns)
    code = ("import json, sys; from reachy_mini.core.health.system import ProcessMonitor; "
            f"m = ProcessMonitor({nodes!r}, None); "
            "print(json.dumps({n: [i.pid, i.alive] for n, i in m.sample().items()}))")
    try:
        me = subprocess.run([sys.executable, "-c", code, nodes["health_node"]], capture_output=True, text=True,
                            timeout=30)
        got = json.loads(me.stdout)
    finally:
        for p in (sibling, other):
            p.kill()
            p.wait()
    assert got["motor_node"] == [sibling.pid, True]
    assert got["health_node"][1] is True and got["health_node"][0] not in (None, sibling.pid, other.pid)
    assert got["web_bridge"] == [None, False], "another namespace's node is not ours"


def test_a_process_running_several_nodes_is_measured_once_per_sample():
    """--one-process: three nodes share a pid; each sample measures the
    process once and gives every node the same figures (psutil's
    cpu_percent measures since its previous call: three calls in a row would
    report noise for the second and third)."""
    import subprocess
    import sys
    import time

    from reachy_mini.core.health.system import ProcessMonitor

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        nodes = {n: f"reachy_mini.nodes.{n}" for n in ("motor_node", "health_node", "web_bridge")}
        mon = ProcessMonitor(nodes, None)
        mon._scan_pids = lambda: {n: busy.pid for n in nodes}   # as a scan finds the shared process
        mon.sample()
        time.sleep(1.0)
        infos = mon.sample()
        cpu = {n: i.cpu_pct for n, i in infos.items()}
        assert len(set(cpu.values())) == 1, cpu
        assert 10.0 < cpu["motor_node"] <= 105.0, cpu   # one busy thread: at most one core
        assert len({(i.rss_mb, i.threads, i.age_s) for i in infos.values()}) == 1
    finally:
        busy.kill()
        busy.wait()


def test_a_newly_seen_process_is_not_given_a_cpu_figure_before_it_has_an_interval():
    """The first sample of a process primes psutil's counter: a figure taken
    at that instant is clock-tick noise (a loaded run saw a false "CPU 228 %
    (average)" WARN), so it reports 0 and leaves the average unseeded; the
    next sample measures the interval between the two, at most every core."""
    import subprocess
    import sys
    import time

    import psutil

    from reachy_mini.core.health.system import ProcessMonitor

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        mon = ProcessMonitor({"motor_node": "reachy_mini.nodes.motor_node"}, None)
        mon._scan_pids = lambda: {"motor_node": busy.pid}
        first = mon.sample()["motor_node"]
        assert first.alive and first.cpu_pct == 0.0 and first.cpu_avg_pct == 0.0
        assert busy.pid not in mon._ema, "the average must not start from the priming instant"
        time.sleep(1.0)
        second = mon.sample()["motor_node"]
        assert 10.0 < second.cpu_pct <= 100.0 * (psutil.cpu_count() or 1)
        assert second.cpu_avg_pct == second.cpu_pct   # the average starts from a real interval
    finally:
        busy.kill()
        busy.wait()
