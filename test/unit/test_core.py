"""The ROS-free core: it imports with rclpy, every message package and the
compiled driver blocked, and its rules are tested directly."""
from __future__ import annotations

import os
import pkgutil
import subprocess
import sys

import pytest

import reachy_mini.core as core
from reachy_mini.core.config import NodeConfig, Param, check_value
from reachy_mini.core.health.config import HealthConfig
from reachy_mini.core.health.nodes import LevelChanges, RestartLog, is_hung
from reachy_mini.core.health.system import ProcInfo
from reachy_mini.core.levels import ERROR, OK, STALE, WARN, Level, combine, worst
from reachy_mini.core.media.capture import capture_health, rate_status
from reachy_mini.core.media.config import AudioConfig, CameraConfig
from reachy_mini.core.motors.config import MotorConfig
from reachy_mini.core.motors.health import Thresholds, bus_health, motor_health, recoverable
from reachy_mini.core.motors.reading import MotorReading
from reachy_mini.core.motors.recovery import AutoRecovery, Escalation
from reachy_mini.web.config import WebBridgeConfig

CORE_MODULES = sorted(m.name for m in pkgutil.walk_packages(core.__path__, "reachy_mini.core."))

BLOCKER = r"""
import importlib.abc, sys
BLOCKED = ("rclpy", "rcl_interfaces", "rosidl_runtime_py", "diagnostic_updater", "launch", "launch_ros",
           "reachy_mini._driver")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.endswith("_msgs") or name.split(".")[0].endswith("_msgs") or name == "std_srvs" \
                or any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Block())
import importlib
for m in sys.argv[1:]:
    importlib.import_module(m)
loaded = [m for m in sys.modules if m.startswith(("rclpy", "reachy_mini._driver", "reachy_mini.ros",
                                                 "reachy_mini.nodes")) or m.endswith("_msgs")]
assert not loaded, loaded
print("ok", len(sys.argv) - 1)
"""


def test_every_core_module_imports_without_ros_or_the_compiled_driver():
    assert len(CORE_MODULES) >= 15, CORE_MODULES
    r = subprocess.run([sys.executable, "-c", BLOCKER, *CORE_MODULES], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-3000:]


def test_the_blocker_blocks():
    """The test above cannot pass vacuously: a ROS module is refused."""
    r = subprocess.run([sys.executable, "-c", BLOCKER, "reachy_mini.ros.qos"], capture_output=True, text=True)
    assert r.returncode != 0 and "blocked: rclpy" in r.stderr



def test_common_is_the_ground_floor():
    """reachy_mini.common (paths, node table) is imported by every layer, so it
    imports no other part of reachy_mini (nor ROS, nor the driver)."""
    code = ("import sys, importlib\n"
            "for m in ('reachy_mini.common.paths', 'reachy_mini.common.node_table'): importlib.import_module(m)\n"
            "ours = sorted(m for m in sys.modules if m.startswith('reachy_mini.') and not m.startswith('reachy_mini.common'))\n"
            "assert not ours, ours\n"
            "assert not [m for m in sys.modules if m.startswith('rclpy')]\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]

# ---------------------------------------------------------------- levels
def test_level_conversions_and_names():
    assert [int(x) for x in Level] == [0, 1, 2, 3]
    assert Level.of(b"\x02") is ERROR and Level.of(3) is STALE and Level.of("warn") is WARN and Level.of(OK) is OK
    assert ERROR.to_bytes() == b"\x02" and Level.of(ERROR.to_bytes()) is ERROR
    assert WARN.text == "Warning" and STALE.name == "STALE" and Level.name_of(7) == "7"
    assert OK.healthy and WARN.healthy and not ERROR.healthy and not STALE.healthy
    for bad in (b"", b"\x00\x01", 4, "broken", None):
        with pytest.raises(ValueError):
            Level.of(bad)


def test_group_rule():
    assert combine([]) is OK and worst([]) is OK
    assert combine([OK, WARN]) is WARN
    assert combine([STALE, STALE]) is STALE
    assert combine([OK, STALE]) is ERROR, "a part that went silent among live ones is a fault"
    assert worst([OK, STALE]) is STALE


# ---------------------------------------------------------------- typed configs
@pytest.mark.parametrize("cls", [MotorConfig, CameraConfig, AudioConfig, HealthConfig, WebBridgeConfig])
def test_configs_declare_every_field_with_a_description(cls):
    specs = cls.specs()
    assert specs and all(isinstance(s, Param) and s.description for s in specs)
    cfg = cls()
    assert cfg.validate() == [], "the defaults are consistent"
    for s in specs:
        assert check_value(s, s.default) is None, s.name
        assert getattr(cfg, s.name) == s.default


def test_config_rules_across_fields_and_in_place_update():
    cfg = MotorConfig()
    assert cfg.replaced({"temperature_warn_c": 70.0}).validate() == \
        ["thresholds: temperature_warn_c must be < temperature_error_c"]
    assert cfg.temperature_warn_c == 55.0, "replaced() leaves the running config alone"
    cfg.update({"loop_rate_hz": 5.0})
    assert cfg.thresholds().stale_after_s == 1.0, "stale after 5 periods"
    h = HealthConfig().replaced({"disk_warn_pct": 99.0})
    assert h.validate() == ["need disk_warn_pct < disk_error_pct (99.0 >= 95.0)"]
    assert check_value(Param("x", 1.0, "", 0.0, 2.0), 3.0) == "parameter 'x' = 3.0 is outside [0.0, 2.0]"
    assert isinstance(cfg, NodeConfig)


def test_web_token_rules(tmp_path, monkeypatch):
    assert WebBridgeConfig().token({}) is None
    with pytest.raises(ValueError, match="at least 16"):
        WebBridgeConfig().token({"REACHY_MINI_WEB_TOKEN": "short"})
    f = tmp_path / "tok"
    f.write_text("x" * 20 + "\n")
    os.chmod(f, 0o644)
    cfg = WebBridgeConfig(token_file=str(f))
    assert cfg.token({}) == "x" * 20 and cfg.token_file_exposed()
    assert "token_file" not in cfg.public() and cfg.public()["token_file_set"]
    with pytest.raises(ValueError, match="token_file"):
        WebBridgeConfig(token_file=str(tmp_path / "missing")).token({})


def test_config_from_a_params_file_and_the_page_url(tmp_path):
    """What the supervisor prints: the page's URL as web_bridge will serve it."""
    import socket

    assert WebBridgeConfig().url() == "http://127.0.0.1:8000"
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    robot_name: r1\n    port: 8100\n"
                 "motor_node:\n  ros__parameters:\n    port: 9999\n"
                 "/**/web_bridge:\n  ros__parameters:\n    host: 0.0.0.0\n    certfile: /etc/c.pem\n"
                 "    not_a_parameter: 1\n")
    cfg = WebBridgeConfig.from_params_file(str(f), "web_bridge")
    assert (cfg.robot_name, cfg.port, cfg.host) == ("r1", 8100, "0.0.0.0"), "later sections win; others' ignored"
    assert cfg.url() == f"https://{socket.gethostname()}:8100"
    assert WebBridgeConfig(host="::1").url() == "http://[::1]:8000"
    f.write_text("/**: [unclosed")
    with pytest.raises(ValueError, match="--params-file"):
        WebBridgeConfig.from_params_file(str(f), "web_bridge")


# ---------------------------------------------------------------- motors
def reading(**kw) -> MotorReading:
    base = dict(id=11, name="stewart_1", responding=True, position_rad=0.0, position_raw=2048, position_stamp=100.0,
                goal_rad=0.0, temperature_c=40.0, voltage_v=5.0, current_ma=10.0, torque_enabled=True,
                hardware_error=0, hardware_error_names=[], alert=False, status_stamp=100.0, comm_errors=0,
                timeouts=0, crc_errors=0, last_error=None)
    return MotorReading(**(base | kw))


@pytest.mark.parametrize("kw,connected,level,text", [
    ({}, True, OK, "OK"),
    ({}, False, ERROR, "bus disconnected"),
    ({"responding": False, "last_error": "timeout"}, True, ERROR, "not answering (timeout)"),
    ({"hardware_error": 0x04, "hardware_error_names": ["overheating"]}, True, ERROR, "hardware error: overheating"),
    ({"temperature_c": 56.0}, True, WARN, "temperature 56 C >= 55 C"),
    ({"temperature_c": 65.0}, True, ERROR, "temperature 65 C >= 65 C"),
    ({"voltage_v": 4.4}, True, WARN, "input voltage 4.4 V out of [4.5, 6.5] V"),
    ({"voltage_v": 7.2}, True, ERROR, "input voltage 7.2 V out of [3.8, 7.0] V"),
    ({"current_ma": -900.0}, True, WARN, "current 900 mA >= 800 mA"),
    ({"current_ma": 1300.0}, True, ERROR, "current 1300 mA >= 1200 mA"),
    ({"position_stamp": 98.0}, True, WARN, "position not updated for 2.0 s"),
])
def test_motor_rule(kw, connected, level, text):
    lv, msg, values = motor_health(reading(**kw), Thresholds(), connected, 100.0)
    assert (lv, msg) == (level, text)
    assert dict(values)["id"] == "11" and len(values) == 14


def test_motor_rule_combines_and_counts_new_comm_errors():
    lv, msg, _ = motor_health(reading(temperature_c=60.0, voltage_v=7.5), Thresholds(), True, 100.0, 3)
    assert lv == ERROR and msg == ("temperature 60 C >= 55 C; input voltage 7.5 V out of [3.8, 7.0] V; "
                                   "3 communication errors since last report")
    assert recoverable(reading(hardware_error=0x20, hardware_error_names=["overload"]), Thresholds())
    assert not recoverable(reading(hardware_error=0x01, voltage_v=7.5), Thresholds()), "voltage still out"
    assert not recoverable(reading(), Thresholds()), "nothing latched"


def test_auto_recovery_decision():
    rec, th = AutoRecovery(), Thresholds()
    hot = reading(hardware_error=0x04, hardware_error_names=["overheating"], temperature_c=70.0)
    assert not rec.due(hot, th, True, 3.0, 0.0), "cause present: no reboot"
    cool = reading(hardware_error=0x04, hardware_error_names=["overheating"], temperature_c=45.0)
    assert not rec.due(cool, th, True, 3.0, 2.0), "within the delay since the fault"
    assert rec.due(cool, th, True, 3.0, 3.5)
    assert not rec.due(cool, th, True, 3.0, 4.0), "next attempt only after another delay"
    assert rec.due(cool, th, True, 3.0, 6.6)
    assert not rec.due(cool, th, False, 3.0, 20.0), "auto_recover off"
    assert not rec.due(reading(), th, True, 3.0, 30.0) and "stewart_1" not in rec.fault_since


def test_auto_recovery_gives_up_after_its_budget():
    rec, th = AutoRecovery(), Thresholds()
    jam = reading(hardware_error=0x20, hardware_error_names=["overload"])
    tries = [t for t in (1.0, 2.0, 3.0, 4.0, 5.0) if rec.due(jam, th, True, 0.5, t, max_tries=3, window_s=600.0)]
    assert tries == [2.0, 3.0, 4.0], "the first after the delay, then one per delay, three in all"
    assert rec.gave_up["stewart_1"].startswith("automatic recovery gave up after 3")
    hot = reading(hardware_error=0x24, hardware_error_names=["overheating", "overload"], temperature_c=80.0)
    assert not rec.due(hot, th, True, 0.5, 9.0, max_tries=3) and "stewart_1" in rec.gave_up, "still given up"
    assert rec.status()[0] == ERROR
    assert rec.may_restore_torque(jam) and not rec.may_restore_torque(jam), "overload: torque back once"
    rec.person_acted()
    assert rec.status()[0] == OK and rec.due(jam, th, True, 0.5, 20.0, max_tries=3), "a person resets it"
    fresh = AutoRecovery()
    assert not any(fresh.due(jam, th, True, 0.5, t, 3, 600.0) for t in (0.0, 0.2)), "the delay first"


def test_escalation_only_on_entering_error():
    e = Escalation()
    assert not e.entered_error("m", OK) and e.entered_error("m", ERROR) and not e.entered_error("m", ERROR)
    assert not e.entered_error("m", WARN) and e.entered_error("m", STALE)


def test_bus_rule():
    stats = {"connected": True, "achieved_rate_hz": 60.0, "port": "p", "baudrate": 1, "cycle_p50_us": 1,
             "cycle_p99_us": 1, "cycle_max_us": 1, "jitter_p99_us": 1, "timeouts": 0, "crc_errors": 0,
             "garbage_bytes": 0, "write_errors": 0, "disconnects": 0, "reconnects": 0}
    assert bus_health(stats, 100.0)[:2] == (WARN, "requested 100 Hz, achieving 60 Hz")
    assert bus_health(stats, 60.0)[0] == OK
    assert bus_health(stats | {"connected": False, "last_error": "gone"}, 60.0)[:2] == \
        (ERROR, "disconnected (gone); reopening")


# ---------------------------------------------------------------- media
def test_capture_rules():
    s = {"present": True, "age": 0.01, "rate": 30.0, "last_error": None}
    assert capture_health(s, 30.0, 1.0, "frame")[0] == OK
    assert capture_health(s | {"rate": 20.0}, 30.0, 1.0, "frame")[0] == WARN
    assert capture_health(s | {"age": 2.0}, 30.0, 1.0, "frame") == (ERROR, "no frame for 2.0 s")
    assert capture_health(s | {"present": False, "last_error": "no /dev/video0"}, 30.0, 1.0, "frame") == \
        (ERROR, "device not available: no /dev/video0; retrying")
    assert rate_status(33.5, 30.0)[0] == WARN and rate_status(32.9, 30.0)[0] == OK


# ---------------------------------------------------------------- health node rules
def test_hang_rule():
    assert not is_hung(0.5, True, 100.0, 10.0)
    assert is_hung(10.5, True, 100.0, 10.0)
    assert not is_hung(50.0, False, 100.0, 10.0), "a dead process is not hung (the manager restarts it)"
    assert not is_hung(None, True, 5.0, 10.0) and is_hung(None, True, 11.0, 10.0)


def test_restart_log_from_supervisor_counters_and_from_pid_changes():
    log = RestartLog(["camera_node", "motor_node"])
    sup = ProcInfo("camera_node", pid=10, alive=True, source="supervisor")
    scan = ProcInfo("motor_node", pid=20, alive=True, source="scan")
    assert log.observe({"camera_node": sup, "motor_node": scan}, 0.0) == []
    sup2 = ProcInfo("camera_node", pid=11, alive=True, source="supervisor", restarts=1, hang_kills=1, last_exit=-9)
    scan2 = ProcInfo("motor_node", pid=21, alive=True, source="scan")
    out = log.observe({"camera_node": sup2, "motor_node": scan2}, 5.0)
    kinds = sorted((n, k) for n, k, _ in out)
    assert kinds == [("camera_node", "hang"), ("camera_node", "restart"), ("motor_node", "restart")]
    assert any("killed pid 10" in m for _, k, m in out if k == "hang")
    assert log.recent("motor_node") == 1 and log.total("motor_node") == 1, "ros2 launch: a new pid is a restart"
    assert log.hang_kills["camera_node"] == 1
    assert log.observe({"camera_node": sup2, "motor_node": scan2}, 6.0) == [], "counted once"
    log.observe({"camera_node": sup2, "motor_node": scan2}, 700.0)
    assert log.recent("motor_node") == 0, "the 10-minute window"


def test_restart_log_records_a_restart_that_took_the_health_node_with_it():
    """--one-process: a new health node finds its process's nodes restarted with
    it (nobody else saw that); an older restart of another process is not
    reported again (the health node before it recorded it)."""
    log = RestartLog(["motor_node", "health_node", "camera_node"])
    infos = {"motor_node": ProcInfo("motor_node", pid=30, alive=True, source="supervisor", restarts=1, hang_kills=1,
                                    last_exit=-9, age_s=3.0),
             "health_node": ProcInfo("health_node", pid=30, alive=True, source="supervisor", restarts=1,
                                     hang_kills=1, last_exit=-9, age_s=3.0),
             "camera_node": ProcInfo("camera_node", pid=31, alive=True, source="supervisor", restarts=2, age_s=400.0)}
    out = log.observe(infos, 0.0)
    assert sorted((n, k) for n, k, _ in out) == [("health_node", "hang"), ("health_node", "restart"),
                                                ("motor_node", "hang"), ("motor_node", "restart")]
    assert log.recent("motor_node") == 1 and log.recent("camera_node") == 0
    assert log.observe(infos, 1.0) == [], "counted once"


def test_level_changes_deduplicate_and_prune():
    ch = LevelChanges({"/a": 0})
    assert ch.change("/a", OK) == (False, 0)
    assert ch.change("/a", ERROR) == (True, 0) and ch.change("/b", WARN) == (True, None)
    ch.prune({"/a"})
    assert ch.levels == {"/a": 2}


# ---------------------------------------------------------------- head
def test_head_limits():
    import math

    from reachy_mini.core.head import Limits, Target, limit

    d = math.radians
    t = limit(Target(roll=d(-50), pitch=d(60)), Limits(), auto_body_yaw=True)
    assert (round(math.degrees(t.roll)), round(math.degrees(t.pitch))) == (-40, 40) and len(t.notes) == 2
    t = limit(Target(yaw=d(170)), Limits(), auto_body_yaw=True)
    assert round(math.degrees(t.body_yaw)) == 105 and round(math.degrees(t.yaw)) == 170 and not t.notes, \
        "the body turns so that the head stays within 65 deg of it"
    t = limit(Target(yaw=d(100)), Limits(), auto_body_yaw=False)
    assert round(math.degrees(t.yaw)) == 65 and "head yaw minus body yaw within +/-65 deg" in t.notes[0]
    t = limit(Target(yaw=d(180), body_yaw=d(170)), Limits(), auto_body_yaw=False)
    assert round(math.degrees(t.body_yaw)) == 160 and any("body yaw" in n for n in t.notes)


def test_head_kinematics_round_trip_and_reach():
    import math

    from reachy_mini.core.head import HeadKinematics, Target, load_geometry, quaternion_to_rpy, rpy_to_quaternion

    k = HeadKinematics(load_geometry())
    for roll, pitch, yaw, body in [(0, 10, 0, 0), (-15, 5, 30, 10), (10, -10, -20, -10)]:
        goals = k.ik(Target(z=0.005, roll=math.radians(roll), pitch=math.radians(pitch), yaw=math.radians(yaw),
                            body_yaw=math.radians(body)))
        assert len(goals) == 7 and goals["body_rotation"] == math.radians(body)
        p = k.fk(goals, iterations=10)
        got = [math.degrees(a) for a in (p.roll, p.pitch, p.yaw)]
        assert all(abs(a - b) < 0.5 for a, b in zip(got, (roll, pitch, yaw))), (got, roll, pitch, yaw)
        assert abs(p.z - 0.005) < 1e-4
    with pytest.raises(ValueError, match="out of reach"):
        k.ik(Target(z=0.2))
    with pytest.raises(ValueError, match="quaternion"):
        quaternion_to_rpy(0, 0, 0, 0)
    assert all(abs(a - b) < 1e-9 for a, b in zip(quaternion_to_rpy(*rpy_to_quaternion(0.1, -0.2, 0.3)),
                                                 (0.1, -0.2, 0.3)))


def test_read_yaml_names_the_file_and_the_fault(tmp_path):
    from reachy_mini.core.config import read_yaml

    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match=r"^motor map: .*bad.yaml is not valid YAML"):
        read_yaml(str(bad), "motor map")
    with pytest.raises(ValueError, match=r"^motor map: cannot read .*missing.yaml: No such file"):
        read_yaml(str(tmp_path / "missing.yaml"), "motor map")


def test_the_head_geometry_is_the_vendors_1_13_file_unchanged():
    """config/kinematics_data.json is reachy-mini 1.13.0's assets/kinematics_data.json,
    byte for byte (test/system/test_vendor_kinematics.py compares it with the
    file the vendor's wheel installs)."""
    import hashlib

    from reachy_mini.common.paths import config_path
    from reachy_mini.core.head import GEOMETRY_FILE, GEOMETRY_SHA256, GEOMETRY_SOURCE, load_geometry

    with open(config_path(GEOMETRY_FILE), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == GEOMETRY_SHA256
    assert "reachy-mini 1.13.0" in GEOMETRY_SOURCE and GEOMETRY_FILE in GEOMETRY_SOURCE
    g = load_geometry()
    # the vendor's model since 1.0 (October 2025), not the obsolete 0.038 / 0.090 m one
    assert (g.motor_arm_length, g.rod_length, g.head_z_offset) == pytest.approx((0.040, 0.085, 0.177))
    assert [b.motor for b in g.branches] == [f"stewart_{i}" for i in range(1, 7)]


def _vendor_data() -> dict:
    import json

    from reachy_mini.common.paths import config_path
    from reachy_mini.core.head import GEOMETRY_FILE

    with open(config_path(GEOMETRY_FILE)) as f:
        return json.load(f)


@pytest.mark.parametrize("change, why", [
    (lambda d: d.pop("rod_length"), r"keys .*expected"),
    (lambda d: d.update(rod_lenght=0.085), r"keys .*expected"),
    (lambda d: d.update(rod_length="85 mm"), "rod_length must be a finite number"),
    (lambda d: d.update(motor_arm_length=-0.04), "motor_arm_length and rod_length must be > 0"),
    (lambda d: d["motors"].pop(), r"'motors' must be \['stewart_1'"),
    (lambda d: d["motors"].reverse(), r"'motors' must be \['stewart_1'"),
    (lambda d: d["motors"][2].pop("branch_position"), r"stewart_3: keys"),
    (lambda d: d["motors"][1].update(T_motor_world=[[1, 0], [0, 1]]), "stewart_2: T_motor_world must be 4x4"),
    (lambda d: d["motors"][4].update(solution=2), "stewart_5: solution must be 0 or 1"),
    (lambda d: d["motors"][0].update(branch_position=[0.02, None, 0.0]), "stewart_1: branch_position must be"),
])
def test_a_geometry_file_of_another_form_is_refused_naming_the_file(tmp_path, change, why):
    import json

    from reachy_mini.core.head import load_geometry

    d = _vendor_data()
    change(d)
    path = tmp_path / "kinematics_data.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"^head kinematics: .*kinematics_data.json: not the vendor's "
                                         r"kinematics_data.json form \(reachy-mini 1.13.0.*\): " + why):
        load_geometry(str(path))


def test_the_old_yaml_geometry_or_a_missing_file_is_refused_naming_the_file(tmp_path):
    from reachy_mini.core.head import load_geometry

    old = tmp_path / "head_kinematics.yaml"
    old.write_text("motor_arm_length: 0.038\nrod_length: 0.09\nhead_z_offset: 0.177\nbranches: []\n")
    with pytest.raises(ValueError, match=r"head_kinematics.yaml is not valid JSON .*kinematics_data.json"):
        load_geometry(str(old))
    with pytest.raises(ValueError, match=r"cannot read .*nope.json: No such file"):
        load_geometry(str(tmp_path / "nope.json"))
