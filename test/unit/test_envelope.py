"""The safety envelope's pure rules (core/motors/envelope.py) and the joint
limits as data (core/motors/map.py)."""
from __future__ import annotations

import math

import pytest

from reachy_mini.core.head import HEAD_JOINTS, HeadKinematics, Target, load_geometry
from reachy_mini.core.motors.envelope import MechanismRules, PerMotorThrottle, check_command, check_names, \
    eeprom_wider, stamp_text
from reachy_mini.core.motors.map import MotorMap
from reachy_mini.core.motors.reading import MotorReading

MAP = MotorMap.load()
GEOMETRY = load_geometry()
IK = HeadKinematics(GEOMETRY)


def rules() -> MechanismRules:
    return MechanismRules(HeadKinematics(GEOMETRY), MAP)


def test_the_vendor_ranges_are_the_configured_limits():
    want = {"body_rotation": (-2.793, 2.793), "stewart_1": (-0.838, 1.396), "stewart_2": (-1.396, 1.222),
            "stewart_3": (-0.838, 1.396), "stewart_4": (-1.396, 0.838), "stewart_5": (-1.222, 1.396),
            "stewart_6": (-1.396, 0.838), "right_antenna": (-3.05, 3.05), "left_antenna": (-3.05, 3.05)}
    assert {m.name: (m.min_rad, m.max_rad) for m in MAP.motors} == want
    s1 = MAP.by_name["stewart_1"]
    lo, hi, vmax = s1.raw_limits()
    assert (lo, hi) == (1502, 2958)
    assert s1.min_rad <= s1.raw_to_rad(lo) and s1.raw_to_rad(hi) <= s1.max_rad, "raw range within the rad range"
    assert vmax == pytest.approx(18.0 * 4096 / (2 * math.pi))
    assert all(m.max_velocity_rad_s > 0 for m in MAP.motors)


def test_the_speed_limits_are_the_servos_own_speed_at_the_robots_supply():
    """Never slower than the servo could (issue 34): each limit is the e-manual's
    no-load speed of its model at the robot's 7.6 V, plus the 10 % margin."""
    from reachy_mini.core.motors.map import SPEED_MARGIN, no_load_rad_s

    assert no_load_rad_s("XL330-M288", 5.0) == pytest.approx(103 * 2 * math.pi / 60, rel=0.005)   # on the line
    assert no_load_rad_s("XL330-M288") == pytest.approx(16.3, abs=0.05)
    assert no_load_rad_s("XC330-M288") == pytest.approx(12.95, abs=0.01)
    assert no_load_rad_s("XL330-M077") == pytest.approx(60.9, abs=0.05)
    for m in MAP.motors:
        servo = no_load_rad_s(m.model)
        assert servo <= m.max_velocity_rad_s == pytest.approx(SPEED_MARGIN * servo, abs=0.1), m.name


@pytest.mark.parametrize("entry, why", [
    ({"min_rad": 0.5}, "both min_rad and max_rad"),
    ({"min_rad": 1.0, "max_rad": 0.5}, "must be < max_rad"),
    ({"min_rad": "a", "max_rad": 0.5}, "must be numbers"),
    ({"max_velocity_rad_s": -1}, "max_velocity_rad_s must be >= 0"),
])
def test_bad_limits_in_the_motor_map_are_named(entry, why):
    with pytest.raises(ValueError, match=why):
        MotorMap.from_dict({"motors": [{"id": 1, "name": "a", **entry}]})


@pytest.mark.parametrize("names, positions, why", [
    (["stewart_1"], [0.1, 0.2], "1 names but 2 positions"),
    (["stewart_1", "stewart_1"], [0.1, 0.2], "more than once: ['stewart_1']"),
    (["neck"], [0.1], "unknown joint names ['neck']"),
    (["stewart_1"], [float("nan")], "position of stewart_1 is not a finite number"),
    (["stewart_1"], [float("inf")], "position of stewart_1 is not a finite number"),
    (["body_rotation"], [1e12], "position of body_rotation (1e+12 rad) is out of any servo's range"),
])
def test_malformed_commands_are_refused_with_the_reason(names, positions, why):
    assert why in check_command(names, positions, MAP)


def test_well_formed_commands_pass():
    assert check_command(["stewart_1", "left_antenna"], [0.1, 5.0], MAP) is None   # range: the driver's job
    assert check_command([], [], MAP) is None, "an empty goal feeds the command watchdog"
    assert check_names(["stewart_1"], MAP) is None and check_names([], MAP) == "no joint named"
    assert "point 3: " in check_command(["a"], [1.0], MAP, "point 3")


def test_head_pitch_and_roll_limits_apply_to_raw_stewart_goals():
    joints = IK.ik(Target(pitch=math.radians(46)))   # IK alone does not limit the pose (stewart_3 at 76 deg)
    why = rules().check(joints, lambda n: 0.0)
    assert why == "head pitch would be 46.0 deg, beyond the limit +/-40 deg"
    assert rules().check(IK.ik(Target(pitch=math.radians(30))), lambda n: 0.0) is None


def test_goals_without_forward_kinematics_solution_are_refused():
    why = rules().check({n: 1.2 for n in HEAD_JOINTS}, lambda n: 0.0)
    assert "no forward kinematics solution" in why and "stewart_1" in why


def test_head_yaw_relative_to_the_body_applies_to_raw_goals():
    joints = IK.ik(Target(yaw=math.radians(30), body_yaw=math.radians(-40)))   # 70 deg apart
    why = rules().check(joints, lambda n: 0.0)
    assert why is not None and why.startswith("head yaw minus body yaw would be"), why
    ok = IK.ik(Target(yaw=math.radians(30), body_yaw=math.radians(-20)))
    assert rules().check(ok, lambda n: 0.0) is None


def test_a_body_goal_is_judged_with_the_present_head_joints():
    head = IK.ik(Target(yaw=0.3, body_yaw=0.3))
    present = head.get
    r = rules()
    assert r.check({"body_rotation": 0.3}, present) is None
    # the body yaw is taken within its joint range, as the driver writes it
    assert r.check({"body_rotation": 9.0}, present) is None
    assert "present position unknown" in r.check({"body_rotation": 0.3}, lambda n: None)
    assert not r.applies(["left_antenna"]) and r.check({"left_antenna": 9.0}, lambda n: None) is None


def test_streamed_goals_start_from_the_last_pose():
    r = rules()
    j = IK.ik(Target(pitch=0.2, yaw=0.4))
    assert r.check(j, lambda n: 0.0) is None
    for k in range(20):   # a stream of small steps: each near the last
        j = dict(j, stewart_1=j["stewart_1"] + 0.002)
        assert r.check(j, lambda n: 0.0) is None
    assert r.last is not None and abs(r.last[1].pitch - 0.2) < 0.05


def test_clamp_reports_are_throttled_per_motor():
    t = PerMotorThrottle(1.0)
    assert t.due(["a", "b"], 10.0) == ["a", "b"]
    assert t.due(["a", "b", "c"], 10.5) == ["c"]
    assert t.due(["a"], 11.0) == ["a"]


def _reading(name, eeprom):
    m = MAP.by_name[name]
    return MotorReading(m.id, name, True, 0.0, 2048, 0.0, None, None, None, None, True, 0, [], False, 0.0, 0, 0, 0,
                        None, eeprom_limits_raw=eeprom)


def test_servo_limits_wider_than_the_configured_ones_are_listed():
    rs = [_reading("stewart_1", (0, 4095)), _reading("stewart_2", (1138, 2844)), _reading("stewart_3", None),
          _reading("left_antenna", (50, 4000))]
    assert eeprom_wider(rs, MAP) == ["stewart_1 [0, 4095]", "left_antenna [50, 4000]"]


def test_stamp_text():
    assert stamp_text(12, 5) == "12.000000005"
