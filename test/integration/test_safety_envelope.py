"""The safety envelope through the real motor_node on the simulated bus: the
simulator logs every goal written on the wire, and nothing beyond the
configured joint limits may be among them, whatever the client sends.
Each rule is checked for its reason (motors/safety_events, the log) and for
what reached the bus. Property-based tests (hypothesis) throw random goal
messages, trajectories and head poses at the node."""
from __future__ import annotations

import math
import os
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from hypothesis import HealthCheck, given, settings, strategies as st
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from reachy_mini.core.head import HeadKinematics, Target, load_geometry, rpy_to_quaternion
from reachy_mini.core.motors.map import MotorMap
from reachy_mini.sim.bus import send_command

from conftest import next_domain, wait_for
from ros_probe import RosProbe
from test_motor_node import start_node, stop

MAP = MotorMap.load()
NAMES = MAP.names
RAW = {m.id: m.raw_limits() for m in MAP.motors}      # id -> (min, max, max ticks/s)
IK = HeadKinematics(load_geometry())
LOOP_PERIOD_S = 0.01                                   # reachy_mini.yaml: loop_rate_hz 100
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Robot:
    """A motor_node on its simulator, a probe, publishers for the three
    motion inputs, and the simulator's wire log."""

    def __init__(self, tmp_path, env, *params):
        self.probe = RosProbe()
        for topic, t in (("/joint_states", JointState), ("/diagnostics", DiagnosticArray),
                         ("/motors/safety_events", DiagnosticStatus)):
            self.probe.listen(t, topic, 10000)
        self.proc, self.ctl = start_node(tmp_path, env, *params)
        node = self.probe.node
        self.goal = node.create_publisher(JointState, "/motors/goal", 10)
        self.traj = node.create_publisher(JointTrajectory, "/motors/trajectory", 10)
        self.head = node.create_publisher(PoseStamped, "/head/target_pose", 10)
        wait_for(lambda: self.probe.get("/joint_states"), timeout=20)
        wait_for(lambda: self.goal.get_subscription_count() and self.traj.get_subscription_count()
                 and self.head.get_subscription_count(), timeout=10)
        wait_for(lambda: self.wire() is not None and self.torque_on(), timeout=10)
        self.stamp = 1000

    def torque_on(self) -> bool:
        return all(m["torque"] for m in send_command(self.ctl, {"cmd": "state"})["motors"].values())

    def wire(self) -> list[tuple[float, int, int]]:
        """Goals written since the last call: (arrival, id, raw)."""
        return [tuple(g) for g in send_command(self.ctl, {"cmd": "goals"})["goals"]]

    def next_stamp(self, msg) -> str:
        self.stamp += 1
        msg.header.stamp.sec, msg.header.stamp.nanosec = self.stamp, 7
        return f"{self.stamp}.000000007"

    def send_goal(self, names, positions) -> str:
        msg = JointState(name=list(names), position=[float(p) for p in positions])
        stamp = self.next_stamp(msg)
        self.goal.publish(msg)
        return stamp

    def send_trajectory(self, names, points) -> str:
        msg = JointTrajectory(joint_names=list(names))
        for t, pos in points:
            p = JointTrajectoryPoint(positions=[float(v) for v in pos])
            p.time_from_start.sec = int(math.floor(t))
            p.time_from_start.nanosec = int(round((t - math.floor(t)) * 1e9)) % 1_000_000_000
            msg.points.append(p)
        stamp = self.next_stamp(msg)
        self.traj.publish(msg)
        return stamp

    def send_head(self, xyz, quat) -> str:
        msg = PoseStamped()
        msg.header.frame_id = "base_link"
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = xyz
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = quat
        stamp = self.next_stamp(msg)
        self.head.publish(msg)
        return stamp

    def event(self, stamp: str, timeout: float = 5.0) -> DiagnosticStatus:
        """The safety event answering the command stamped `stamp`."""
        def find():
            for _, ev in self.probe.get("/motors/safety_events"):
                if dict((kv.key, kv.value) for kv in ev.values).get("command_stamp") == stamp:
                    return ev
            return None
        return wait_for(find, timeout=timeout)

    def no_event(self, stamp: str, wait_s: float = 0.5) -> None:
        time.sleep(wait_s)
        assert not [e for _, e in self.probe.get("/motors/safety_events")
                    if dict((kv.key, kv.value) for kv in e.values).get("command_stamp") == stamp]

    def serving(self, timeout: float = 10.0) -> bool:
        """Still alive and publishing joint states: one received within 0.5 s
        of some moment in the next `timeout` s (a loaded machine may delay one
        beyond 0.5 s; a dead or stuck node sends none)."""
        end = time.monotonic() + timeout
        while self.proc.poll() is None:
            if self.probe.get("/joint_states", time.monotonic() - 0.5):
                return True
            if time.monotonic() > end:
                return False
            time.sleep(0.05)
        return False

    def bus_values(self) -> dict[str, str]:
        for _, arr in reversed(self.probe.get("/diagnostics")):
            for s in arr.status:
                if s.name == "motor_node: bus":
                    return {kv.key: kv.value for kv in s.values}
        return {}

    def close(self) -> str:
        out = stop(self.proc)
        self.probe.close()
        return out


def values(ev: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in ev.values}


def beyond(goals) -> list:
    """Wire goals beyond their motor's configured range."""
    return [(i, v) for _, i, v in goals if not RAW[i][0] <= v <= RAW[i][1]]


def _only_inside_reached_the_wire(r) -> None:
    """After a property run: goals were written, none beyond its motor's range, and the node still serves."""
    time.sleep(1.0)
    goals = r.wire()
    events = [e.message for _, e in r.probe.get("/motors/safety_events")][-5:]
    assert goals and beyond(goals) == [], events
    assert r.serving()


@pytest.fixture(scope="module")
def robot(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", next_domain())
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        # io_timeout_ms 25: the simulator (a Python process) answers late beside CPU hogs; the envelope is
        # not about bus timing, and a torque write that timed out would fail a test for the wrong reason
        r = Robot(tmp_path_factory.mktemp("envelope"), dict(os.environ), "command_timeout_s:=0.0",
                  "io_timeout_ms:=25.0")
        yield r
        r.close()


@pytest.fixture
def fresh(robot):
    """The shared robot, back at rest within its limits, wire log cleared."""
    robot.send_goal(NAMES, [0.0] * len(NAMES))
    time.sleep(0.8)
    robot.wire()
    return robot


# ---------------------------------------------------------------- joint range
def test_a_goal_beyond_the_range_is_clamped_reported_and_never_written(fresh):
    r = fresh
    stamp = r.send_goal(["body_rotation", "left_antenna"], [3.5, -10.0])
    ev = r.event(stamp)
    assert ev.level == DiagnosticStatus.WARN and ev.name == "motors/goal" and ev.hardware_id
    assert "body_rotation 3.500 rad clamped to 2.793 rad" in ev.message, ev.message
    assert "left_antenna -10.000 rad clamped to -3.050 rad" in ev.message, ev.message
    assert set(values(ev)["motors"].split(",")) == {"body_rotation", "left_antenna"}
    body, ant = MAP.by_name["body_rotation"], MAP.by_name["left_antenna"]
    wait_for(lambda: send_command(r.ctl, {"cmd": "state"})["motors"][str(body.id)]["goal"] == RAW[body.id][1],
             timeout=5)
    goals = r.wire()
    assert [g for g in goals if g[1] == ant.id][-1][2] == RAW[ant.id][0]
    assert beyond(goals) == []
    wait_for(lambda: int(r.bus_values().get("goals clamped to joint limits", "0")) >= 2, timeout=5)


def test_the_issues_stewart_goal_of_3_rad_never_reaches_the_bus(fresh):
    r = fresh
    stamp = r.send_goal(["stewart_1"], [3.0])
    ev = r.event(stamp)
    # clamped to 1.396 rad, the head's mechanism then judges the result
    assert ev.name == "motors/goal" and "stewart_1" in values(ev)["motors"]
    time.sleep(0.5)
    assert beyond(r.wire()) == []


def test_a_trajectory_is_limited_at_every_waypoint(fresh):
    r = fresh
    stamp = r.send_trajectory(["right_antenna"], [(0.2, [1.0]), (0.4, [4.0]), (0.6, [-4.0]), (0.8, [0.0])])
    ev = r.event(stamp)
    assert ev.level == DiagnosticStatus.WARN and ev.name == "motors/trajectory"
    assert "right_antenna" in ev.message and "clamped to" in ev.message
    time.sleep(1.2)
    goals = r.wire()
    assert len([g for g in goals if g[1] == 17]) > 10
    assert beyond(goals) == []


def test_the_reject_policy_refuses_the_whole_command(tmp_path, ros_env):
    r = Robot(tmp_path, ros_env, "limit_policy:=reject", "command_timeout_s:=0.0")
    try:
        r.wire()
        stamp = r.send_goal(["left_antenna", "body_rotation"], [0.5, 3.5])
        ev = r.event(stamp)
        assert ev.level == DiagnosticStatus.ERROR and ev.name == "motors/goal"
        assert "body_rotation: goal beyond its joint limits [-2.793, 2.793] rad (limit_policy reject)" in ev.message
        stamp = r.send_trajectory(["left_antenna"], [(0.2, [0.5]), (0.4, [3.2])])
        ev = r.event(stamp)
        assert ev.level == DiagnosticStatus.ERROR and "waypoint 1: left_antenna" in ev.message, ev.message
        time.sleep(0.5)
        ant = MAP.by_name["left_antenna"]
        assert [g for g in r.wire() if g[1] == ant.id] == [], "nothing of a refused command is written"
        wait_for(lambda: r.bus_values().get("commands refused by joint limits") == "2", timeout=5)
        assert r.bus_values()["limit policy"] == "reject"
    finally:
        out = r.close()
    assert "goal rejected: body_rotation: goal beyond its joint limits" in out


# ------------------------------------------------------------ mechanism rules
def _stewart(t: Target) -> dict[str, float]:
    return {k: v for k, v in IK.ik(t).items() if k.startswith("stewart")}


def _refused_and_absent(r, stamp, goals: dict[str, float], reason: str) -> None:
    ev = r.event(stamp)
    assert ev.level == DiagnosticStatus.ERROR and reason in ev.message, ev.message
    time.sleep(0.4)
    wire = r.wire()
    for name, rad in goals.items():
        raw = MAP.by_name[name].rad_to_raw(rad)
        assert not [g for g in wire if g[1] == MAP.by_name[name].id and g[2] == raw], f"{name} goal was written"
    assert beyond(wire) == []


def test_raw_stewart_goals_beyond_the_head_pitch_limit_are_refused(fresh):
    goals = _stewart(Target(pitch=math.radians(46)))
    stamp = fresh.send_goal(list(goals), list(goals.values()))
    _refused_and_absent(fresh, stamp, goals, "head pitch would be 46.0 deg, beyond the limit +/-40 deg")


def test_raw_stewart_goals_without_forward_kinematics_are_refused(fresh):
    goals = {f"stewart_{i}": 1.2 for i in range(1, 7)}
    stamp = fresh.send_goal(list(goals), list(goals.values()))
    _refused_and_absent(fresh, stamp, goals, "no forward kinematics solution")


def test_head_yaw_minus_body_yaw_applies_to_raw_body_goals(fresh):
    # the head's joints of yaw 30 deg with the body at -40 deg: 70 deg apart
    goals = IK.ik(Target(yaw=math.radians(30), body_yaw=math.radians(-40)))
    stamp = fresh.send_goal(list(goals), list(goals.values()))
    _refused_and_absent(fresh, stamp, goals, "head yaw minus body yaw would be")


# --------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kind, reason", [
    ("huge", "position of stewart_1 (1e+12 rad) is out of any servo's range"),
    ("nan", "position of body_rotation is not a finite number"),
    ("duplicate", "joint names given more than once: ['left_antenna']"),
    ("length", "2 names but 1 positions"),
    ("unknown", "unknown joint names ['neck']"),
    ("too_many_points", "10001 waypoints; at most 10000 are accepted"),
    ("too_long", "lasts 121.000 s; at most 120 s are accepted"),
    ("not_increasing", "times must increase"),
    ("traj_length", "point 1: 1 names but 2 positions"),
])
def test_bad_input_gets_a_clear_refusal_and_the_node_keeps_serving(fresh, kind, reason):
    r = fresh
    send = {
        "huge": lambda: r.send_goal(["stewart_1"], [1e12]),
        "nan": lambda: r.send_goal(["body_rotation"], [float("nan")]),
        "duplicate": lambda: r.send_goal(["left_antenna", "left_antenna"], [0.1, 0.2]),
        "length": lambda: r.send_goal(["left_antenna", "right_antenna"], [0.1]),
        "unknown": lambda: r.send_goal(["neck"], [0.1]),
        "too_many_points": lambda: r.send_trajectory(["left_antenna"], [(0.01 * (k + 1), [0.1])
                                                                         for k in range(10_001)]),
        "too_long": lambda: r.send_trajectory(["left_antenna"], [(1.0, [0.1]), (121.0, [0.2])]),
        "not_increasing": lambda: r.send_trajectory(["left_antenna"], [(1.0, [0.1]), (0.5, [0.2])]),
        "traj_length": lambda: r.send_trajectory(["left_antenna"], [(1.0, [0.1]), (2.0, [0.2, 0.3])]),
    }[kind]
    stamp = send()
    ev = r.event(stamp, timeout=15)
    assert ev.level == DiagnosticStatus.ERROR and reason in ev.message, ev.message
    time.sleep(0.3)
    assert r.serving()
    assert [g for g in r.wire() if g[1] in (17, 18)] == [], "nothing of the command was written"


def test_bad_input_does_not_feed_the_command_watchdog(tmp_path, ros_env):
    r = Robot(tmp_path, ros_env, "command_timeout_s:=0.5")
    try:
        r.send_goal(["left_antenna"], [0.3])
        end = time.monotonic() + 1.5
        while time.monotonic() < end:   # only refused commands for 3 command timeouts
            r.send_goal(["left_antenna"], [1e12])
            time.sleep(0.05)
        assert r.serving()
    finally:
        out = r.close()
    assert "[command_timeout] no goal for 0.50 s: holding present positions" in out
    assert "ERROR in callback" not in out and "Traceback" not in out


# -------------------------------------------------------------------- speed
def test_a_far_goal_is_reached_at_the_maximum_velocity(fresh):
    r = fresh
    body = MAP.by_name["body_rotation"]
    t0 = time.monotonic()
    r.send_goal(["body_rotation"], [2.0])
    target = body.rad_to_raw(2.0)
    wait_for(lambda: send_command(r.ctl, {"cmd": "state"})["motors"][str(body.id)]["goal"] == target, timeout=5)
    took = time.monotonic() - t0
    steps = [g[2] for g in r.wire() if g[1] == body.id]
    vmax = RAW[body.id][2]
    assert took >= 0.9 * 2.0 / body.max_velocity_rad_s, took
    assert max(abs(b - a) for a, b in zip(steps, steps[1:])) <= math.ceil(vmax * LOOP_PERIOD_S), steps
    r.send_goal(["body_rotation"], [0.0])


# -------------------------------------------------------- emergency stop, torque
def test_refusals_for_emergency_stop_and_torque_off_go_out_as_safety_events(fresh):
    r = fresh
    try:
        assert r.probe.call(SetBool, "/motor_node/set_torque", SetBool.Request(data=False)).success
        time.sleep(0.5)   # the node sees torque off at its next look at the driver (10 Hz)
        stamp = r.send_goal(["left_antenna"], [0.2])
        ev = r.event(stamp)
        assert ev.level == DiagnosticStatus.WARN and ev.message.startswith("goals ignored: torque off")
        assert "left_antenna" in values(ev)["motors"]
        assert r.probe.call(Trigger, "/motor_node/emergency_stop", Trigger.Request()).success
        stamp = r.send_goal(["left_antenna"], [0.2])
        ev = r.event(stamp)
        assert ev.level == DiagnosticStatus.ERROR and "emergency stop active" in ev.message
    finally:
        assert r.probe.call(SetBool, "/motor_node/set_torque", SetBool.Request(data=True)).success


# -------------------------------------------------------------- EEPROM limits
def test_servo_eeprom_limits_wider_than_configured_are_reported(fresh):
    r = fresh
    wait_for(lambda: "stewart_2 [0, 4095]" in r.bus_values().get("servo position limits wider than configured", ""),
             timeout=5)
    for m in MAP.motors:
        if m.name != "stewart_2":
            lo, hi, _ = m.raw_limits()
            send_command(r.ctl, {"cmd": "position_limits", "id": m.id, "min": lo, "max": hi})
    send_command(r.ctl, {"cmd": "vanish", "duration": 0.5})   # read again at the reconnection
    wait_for(lambda: r.bus_values().get("servo position limits wider than configured") == "stewart_2 [0, 4095]",
             timeout=15)


# ----------------------------------------------------------- property-based
FLOATS = st.one_of(st.floats(-4.0, 4.0), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([1e12, -1e12, 3.0, -3.0, 10.0]))


@st.composite
def goal_messages(draw):
    names = draw(st.lists(st.sampled_from(NAMES + ["neck"]), min_size=1, max_size=9))
    n = draw(st.one_of(st.just(len(names)), st.integers(0, 10)))
    return names, draw(st.lists(FLOATS, min_size=n, max_size=n))


def test_property_no_goal_message_puts_a_value_beyond_the_limits_on_the_wire(fresh):
    r = fresh

    @PROPERTY
    @given(goal_messages())
    def one(msg):
        r.send_goal(*msg)
        time.sleep(0.03)

    one()
    _only_inside_reached_the_wire(r)


@st.composite
def trajectories(draw):
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=9, unique=True))
    n = draw(st.integers(1, 6))
    times = draw(st.lists(st.floats(0.01, 0.15), min_size=n, max_size=n))
    shuffle = draw(st.booleans())
    t = [sum(times[:k + 1]) for k in range(n)]
    if shuffle:
        t = list(reversed(t))
    return names, [(tk, draw(st.lists(FLOATS, min_size=len(names), max_size=len(names)))) for tk in t]


def test_property_no_trajectory_puts_a_value_beyond_the_limits_on_the_wire(fresh):
    r = fresh

    @PROPERTY
    @given(trajectories())
    def one(traj):
        r.send_trajectory(*traj)
        time.sleep(0.05)

    one()
    time.sleep(1.5)
    goals = r.wire()
    assert goals and beyond(goals) == []
    assert r.serving()


POSE = st.one_of(st.floats(-0.02, 0.02), st.just(0.0), st.floats(allow_nan=True, allow_infinity=True))
QUAT = st.one_of(st.floats(-1.0, 1.0), st.sampled_from([0.0, 1.0, float("nan"), 1e300]))
ANGLE = st.floats(-1.6, 1.6)
ORIENTATION = st.one_of(st.tuples(ANGLE, ANGLE, ANGLE).map(lambda a: rpy_to_quaternion(*a)),
                        st.tuples(ANGLE, ANGLE, ANGLE).map(lambda a: rpy_to_quaternion(*a)),
                        st.tuples(QUAT, QUAT, QUAT, QUAT))


def test_property_no_head_pose_puts_a_value_beyond_the_limits_on_the_wire(fresh):
    r = fresh

    @PROPERTY
    @given(st.tuples(POSE, POSE, POSE), ORIENTATION)
    def one(xyz, quat):
        r.send_head(xyz, quat)
        time.sleep(0.03)

    one()
    _only_inside_reached_the_wire(r)
