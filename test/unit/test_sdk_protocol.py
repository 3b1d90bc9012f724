"""core/sdk.py: the vendor SDK's protocol as plain Python (parsing with
reasons, joint order, frames, the vendor's interpolation formulas, goto
planning through our IK, daemon_status, flood guard, recording)."""
from __future__ import annotations

import json
import math
import uuid

import numpy as np
import pytest

from reachy_mini.core import sdk
from reachy_mini.core.head import HeadKinematics, load_geometry


def flat(m) -> list[float]:
    return np.asarray(m, dtype=float).flatten().tolist()


def pose(roll=0.0, pitch=0.0, yaw=0.0, x=0.0, y=0.0, z=0.0):
    return sdk.pose_to_matrix(x, y, z, roll, pitch, yaw)


def test_motion_commands_parse_in_the_vendors_shapes():
    c = sdk.parse(json.dumps({"type": "set_full_target", "head": flat(pose(pitch=0.1)), "antennas": [0.1, -0.2],
                              "body_yaw": 0.3}))
    assert c.kind == "motion" and c.antennas == [0.1, -0.2] and c.body_yaw == 0.3
    assert np.allclose(c.head, pose(pitch=0.1))
    c = sdk.parse(json.dumps({"type": "set_full_target", "head": None, "antennas": [0, 0], "body_yaw": None}))
    assert c.head is None and c.body_yaw is None
    assert sdk.parse('{"type": "set_target", "head": %s}' % json.dumps(flat(np.eye(4)))).head.shape == (4, 4)
    assert sdk.parse('{"type": "set_body_yaw", "body_yaw": 0.5}').body_yaw == 0.5
    assert sdk.parse('{"type": "set_head_joints", "joints": [0, 0, 0, 0, 0, 0, 0]}').head_joints == [0.0] * 7
    t = sdk.parse('{"type": "set_torque", "on": false, "ids": null}')
    assert t.kind == "torque" and t.on is False and t.ids is None


@pytest.mark.parametrize("frame, kind, words", [
    ("{not json", "malformed", "not JSON"),
    ('["set_target"]', "malformed", "type"),
    ('{"type": "make_coffee"}', "unknown", "make_coffee"),
    ('{"type": "set_target", "head": [1, 2]}', "invalid", "16 numbers"),
    ('{"type": "set_body_yaw", "body_yaw": "fast"}', "invalid", "number"),
    ('{"type": "set_body_yaw", "body_yaw": NaN}', "invalid", "finite"),
    ('{"type": "set_antennas", "antennas": [1e400, 0]}', "invalid", "finite"),
    ('{"type": "set_full_target"}', "invalid", "none of"),
    ('{"type": "set_torque", "on": "yes"}', "invalid", "true or false"),
    ('{"type": "set_target", "head": [2,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1]}', "invalid", "rigid"),
    ('{"type": "set_target", "head": [1,0,0,5, 0,1,0,0, 0,0,1,0, 0,0,0,1]}', "invalid", "1 m"),
    ('{"type": "task", "uuid": "x", "req": {}}', "invalid", "UUID"),
])
def test_bad_frames_are_refused_with_the_reason(frame, kind, words):
    with pytest.raises(sdk.ProtocolError) as e:
        sdk.parse(frame)
    assert e.value.kind == kind and words in str(e.value)


def test_oversized_frame_is_refused_before_parsing():
    with pytest.raises(sdk.ProtocolError) as e:
        sdk.parse("x" * (sdk.MAX_FRAME_BYTES + 1))
    assert e.value.kind == "oversized"


def test_tasks_parse_and_check_duration_and_method():
    uid = str(uuid.uuid4())
    req = {"head": flat(np.eye(4)), "antennas": None, "duration": 1.0, "method": "cartoon", "body_yaw": 0.0}
    c = sdk.parse(json.dumps({"type": "task", "uuid": uid, "req": req, "timestamp": "2026-01-01T00:00:00"}))
    assert (c.kind, c.uuid, c.method, c.duration, c.body_yaw) == ("task", uid, "cartoon", 1.0, 0.0)
    for bad, words in (({"duration": 0.0}, "duration"), ({"duration": 1e9}, "duration"),
                       ({"method": "teleport"}, "teleport")):
        with pytest.raises(sdk.ProtocolError, match=words):
            sdk.parse(json.dumps({"type": "task", "uuid": uid, "req": req | bad}))
    c = sdk.parse(json.dumps({"type": "task", "uuid": uid, "req": {"move_name": "dance"}}))
    assert c.kind == "unsupported" and c.uuid == uid


def test_unsupported_commands_carry_a_reason():
    for t in ("set_gravity_compensation", "set_wobbling", "set_head_tracking", "set_speech_offsets"):
        c = sdk.parse(json.dumps({"type": t, "enabled": True}))
        assert c.kind == "unsupported" and len(c.reason) > 20


def test_joint_order_and_units_are_the_vendors():
    joints = {"body_rotation": 0.1, **{f"stewart_{i}": i / 10 for i in range(1, 7)}, "right_antenna": -0.5,
              "left_antenna": 0.5}
    m = sdk.joint_positions_msg(joints)
    assert m["head_joint_positions"] == [0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert m["antennas_joint_positions"] == [-0.5, 0.5]
    assert sdk.joint_positions_msg({"body_rotation": 0.0}) is None
    assert sdk.head_pose_msg(np.eye(4))["head_pose"][3] == [0.0, 0.0, 0.0, 1.0]


def test_frame_conversions_round_trip():
    m = pose(roll=0.1, pitch=-0.2, yaw=0.3, x=0.01, y=-0.02, z=0.005)
    (x, y, z), rpy = sdk.matrix_to_pose(m)
    assert np.allclose(sdk.pose_to_matrix(x, y, z, *rpy), m)
    # pitch is about y (nose down positive, as the vendor's create_head_pose): x axis tilts to -z
    assert pose(pitch=0.2)[2, 0] < 0


def test_daemon_status_follows_our_health_and_torque():
    ok = {"level": 0, "level_name": "OK", "message": "all good"}
    s = sdk.daemon_status("rm1", ok, "enabled", "0.1.0")
    assert s["state"] == "running" and s["error"] is None and s["no_media"] is True
    for k in ("robot_name", "state", "wireless_version", "desktop_app_daemon", "simulation_enabled",
              "mockup_sim_enabled", "backend_status"):
        assert k in s
    assert s["backend_status"]["motor_control_mode"] == "enabled"
    # the daemon version an SDK compares with its own is the protocol we serve; ours is a field of its own
    assert s["version"] == sdk.SDK_VERSION == "1.13.0" and s["package_version"] == "0.1.0"
    bad = sdk.daemon_status("rm1", {"level": 2, "level_name": "ERROR", "message": "stewart_2 overheating"},
                            "disabled", "0.1.0")
    assert bad["state"] == "error" and "stewart_2 overheating" in bad["error"]
    assert sdk.daemon_status("rm1", {"level": 3, "level_name": "STALE", "message": "silent"}, None, "x")["state"] \
        == "error"
    assert sdk.daemon_status("rm1", None, None, "x")["state"] == "error"
    assert sdk.motor_mode(["True", "True"]) == "enabled"
    assert sdk.motor_mode(["True", "False"]) == "disabled"
    assert sdk.motor_mode([]) is None


@pytest.mark.parametrize("method", sdk.METHODS)
def test_time_curves_are_the_vendors(method):
    assert sdk.time_trajectory(0.0, method) == pytest.approx(0.0)
    assert sdk.time_trajectory(1.0, method) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        sdk.time_trajectory(1.5, method)


def test_time_curve_values():
    assert sdk.time_trajectory(0.5, "minjerk") == pytest.approx(0.5)
    assert sdk.time_trajectory(0.25, "ease_in_out") == pytest.approx(0.125)
    assert sdk.time_trajectory(0.1, "cartoon") < 0      # anticipation: backs up first
    assert max(sdk.time_trajectory(t / 100, "cartoon") for t in range(101)) > 1.0   # and overshoots


def test_pose_interpolation_takes_yaw_through_the_front():
    a, b = pose(yaw=math.radians(170)), pose(yaw=math.radians(-170))
    mid = sdk.linear_pose_interpolation(a, b, 0.5)
    (_, _, _), (_, _, yaw) = sdk.matrix_to_pose(mid)
    assert abs(yaw) < 1e-6      # 170 -> -170 via 0 (the front), not via 180
    m = sdk.linear_pose_interpolation(pose(pitch=0.0, z=0.0), pose(pitch=0.2, z=0.01), 0.5)
    (x, y, z), (roll, pitch, yaw) = sdk.matrix_to_pose(m)
    assert pitch == pytest.approx(0.1) and z == pytest.approx(0.005)


@pytest.fixture(scope="module")
def kin():
    return HeadKinematics(load_geometry())


def test_goto_plan_is_sampled_at_100_hz_and_ends_at_target(kin):
    home = kin.ik(sdk_target())
    joints = home | {"right_antenna": 0.0, "left_antenna": 0.0}
    cmd = sdk.parse(json.dumps({"type": "task", "uuid": str(uuid.uuid4()), "req": {
        "head": flat(pose(pitch=math.radians(10))), "antennas": [0.5, -0.5], "duration": 1.0,
        "method": "minjerk", "body_yaw": 0.2}}))
    plan = sdk.plan_goto(kin, joints, np.eye(4), cmd)
    assert plan.names == sdk.HEAD_ORDER + sdk.ANTENNAS
    assert len(plan.points) == 100 and plan.points[0][0] == pytest.approx(0.01) and plan.points[-1][0] == 1.0
    end = plan.end
    want = kin.ik(sdk_target(pitch=math.radians(10), body_yaw=0.2))
    assert all(end[n] == pytest.approx(v, abs=1e-9) for n, v in want.items())
    assert end["right_antenna"] == 0.5 and end["left_antenna"] == -0.5
    first = dict(zip(plan.names, plan.points[0][1]))
    assert abs(first["body_rotation"]) < 0.01     # starts where it is (min jerk: slow start)


def test_goto_out_of_reach_names_the_reason(kin):
    joints = kin.ik(sdk_target()) | {"right_antenna": 0.0, "left_antenna": 0.0}
    cmd = sdk.parse(json.dumps({"type": "task", "uuid": str(uuid.uuid4()), "req": {
        "head": flat(pose(z=0.2)), "antennas": None, "duration": 0.5, "method": "linear", "body_yaw": 0.0}}))
    with pytest.raises(ValueError, match="reach"):
        sdk.plan_goto(kin, joints, np.eye(4), cmd)
    with pytest.raises(ValueError, match="no present position"):
        sdk.plan_goto(kin, {}, np.eye(4), cmd)


def sdk_target(**kw):
    from reachy_mini.core.head import Target
    return Target(**kw)


def test_flood_guard_drops_then_kicks():
    t = 1000.0
    g = sdk.FloodGuard(100, now=t)
    assert all(g.allow(t) for _ in range(100))        # one second's burst
    assert not g.allow(t) and g.dropped == 1
    assert g.allow(t + 0.02)                          # refills at the rate
    for i in range(300):
        g.allow(t + 0.02 + i * 1e-5)
    assert g.should_kick(t + 0.1)
    calm = sdk.FloodGuard(100, now=t)
    for i in range(1000):                             # 100/s for 10 s: never dropped
        assert calm.allow(t + i * 0.01)
    assert not calm.should_kick(t + 10)


def test_recording_returns_what_was_appended_and_is_bounded():
    r = sdk.Recording(max_bytes=200)
    assert not r.append({"time": 1})                  # not recording: ignored, as the vendor
    r.start()
    assert r.append({"time": 1.0, "head": [[1, 0], [0, 1]]})
    assert r.append({"time": 2.0})
    assert r.stop() == [{"time": 1.0, "head": [[1, 0], [0, 1]]}, {"time": 2.0}]
    r.start()
    while r.append({"time": 3.0, "pad": "x" * 30}):
        pass
    assert r.dropped == 1 and r.size <= 200


def test_task_outcome():
    end = {"stewart_1": 0.5, "body_rotation": 0.0}
    assert sdk.task_outcome("refused by motor_node: x", False, end, end, False) == "refused by motor_node: x"
    assert sdk.task_outcome(None, True, end, end, False) == "emergency stop active"
    assert sdk.task_outcome(None, False, {"stewart_1": 0.51, "body_rotation": 0.0}, end, False) is None
    far = {"stewart_1": 0.3, "body_rotation": 0.0}
    assert sdk.task_outcome(None, False, far, end, False) is False          # still arriving
    assert "stewart_1 is 0.200 rad away" in sdk.task_outcome(None, False, far, end, True)
    assert "did not reach" in sdk.task_outcome(None, False, {}, end, True)
