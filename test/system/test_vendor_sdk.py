"""The vendor's own SDK (PyPI reachy-mini 1.13.0, unmodified) drives the whole
simulated stack through web_bridge's /ws/sdk. The SDK imports as
`reachy_mini` like this package, so it lives in its own venv (.venv-sdk,
made by tools/sdk_venv.sh / `make sdk-venv`) and its scripts run as
subprocesses from a directory outside our tree. Skips with the reason when
that venv could not be made."""
from __future__ import annotations

import json
import math
import os
import subprocess
import textwrap
import threading
import time

import httpx
import numpy as np
import pytest

from reachy_mini.sim.bus import send_command
from tools.bench.stack import free_port

from conftest import REPO, SDK_SKIP, wait_for, whole_stack

SDK_PY = os.path.join(REPO, ".venv-sdk", "bin", "python")
# a free port, not a fixed one: several suites run on one machine (a fixed port let the SDK
# reach another suite's stack, with its e-stop); the SDK takes port= explicitly
PORT = free_port()


pytestmark = pytest.mark.skipif(SDK_SKIP is not None, reason=str(SDK_SKIP))

PRELUDE = textwrap.dedent(f"""
    import json, math, sys, time
    import numpy as np
    from reachy_mini import ReachyMini
    from reachy_mini.utils import create_head_pose
    def out(**kw):
        print(json.dumps(kw, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)), flush=True)
    def connect():
        return ReachyMini(port={PORT}, media_backend="no_media")
""")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with whole_stack(str(tmp_path_factory.mktemp("sdk")), 1, port=PORT) as st:   # the last id of the block
        st.sdk_dir = tmp_path_factory.mktemp("sdk_scripts")   # outside our tree: no `reachy_mini` clash
        yield st


@pytest.fixture(scope="module")
def probe(stack):
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import JointState

    from ros_probe import RosProbe
    p = RosProbe("sdk_probe")
    p.listen(JointState, "/joint_states", depth=10)
    p.listen(PoseStamped, "/head/pose", depth=10)
    yield p
    p.close()


def _health(st) -> tuple[int, dict]:
    try:
        r = httpx.get(f"http://127.0.0.1:{st.port}/api/health", timeout=3)
        return r.status_code, r.json()
    except httpx.HTTPError as e:
        return 0, {"error": str(e)}


def _sdk_item(st) -> dict:
    tree = httpx.get(f"http://127.0.0.1:{st.port}/api/status", timeout=3).json()["tree"]
    return next(i for i in tree if i["name"].endswith("/sdk"))


def run_sdk(stack, body: str, timeout: float = 60.0) -> list[dict]:
    """Runs an SDK script (PRELUDE + body) in the SDK's venv, from a directory
    outside our tree; returns its JSON lines."""
    path = os.path.join(stack.sdk_dir, "app.py")
    with open(path, "w") as f:
        f.write(PRELUDE + textwrap.dedent(body))
    p = subprocess.run([SDK_PY, path], cwd=stack.sdk_dir, capture_output=True, text=True, timeout=timeout,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert p.returncode == 0, p.stderr[-3000:]
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def latest(probe, topic):
    with probe.lock:
        return probe.msgs[topic][-1][1] if probe.msgs.get(topic) else None


def pose_pitch(msg) -> float:
    from reachy_mini.core.head import quaternion_to_rpy

    o = msg.pose.orientation
    return quaternion_to_rpy(o.x, o.y, o.z, o.w)[1]


def test_connects_and_streams_our_joints_and_head_pose(stack, probe):
    wait_for(lambda: latest(probe, "/joint_states") and latest(probe, "/head/pose"), timeout=10)
    got = run_sdk(stack, """
        t0 = time.monotonic()
        with connect() as r:
            dt = time.monotonic() - t0
            head, ant = r.get_current_joint_positions()
            out(connect_s=dt, head=head, antennas=ant, pose=r.get_current_head_pose(),
                status=r.client.get_status().model_dump(mode="json"))
    """)[0]
    js = latest(probe, "/joint_states")
    joints = dict(zip(js.name, js.position))
    want = [joints[n] for n in ["body_rotation"] + [f"stewart_{i}" for i in range(1, 7)]]
    assert np.allclose(got["head"], want, atol=0.01)
    assert np.allclose(got["antennas"], [joints["right_antenna"], joints["left_antenna"]], atol=0.01)
    p = latest(probe, "/head/pose").pose.position
    assert np.allclose(np.array(got["pose"])[:3, 3], [p.x, p.y, p.z], atol=0.002)
    s = got["status"]
    assert s["state"] == "running" and s["no_media"] is True and s["error"] is None
    assert s["backend_status"]["motor_control_mode"] == "enabled"
    assert s["version"] and s["robot_name"]
    print(f"ReachyMini() connected in {got['connect_s']:.2f} s")


def test_connect_warns_of_no_version_mismatch(stack):
    """The SDK compares its own version with the daemon's on connect and warns
    when they differ: the daemon version is the protocol we serve (1.13.0),
    our own version a field of its own (test_sdk_protocol.py)."""
    got = run_sdk(stack, """
        import warnings
        from importlib.metadata import version
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with connect() as r:
                status = r.client.get_status().model_dump(mode="json")
        out(sdk=version("reachy_mini"), warnings=[str(w.message) for w in caught], status=status)
    """)[0]
    assert got["status"]["version"] == got["sdk"] == "1.13.0", got
    assert not [w for w in got["warnings"] if "versions do not match" in w], got["warnings"]


def test_set_target_moves_the_head_within_2_degrees(stack, probe):
    run_sdk(stack, """
        with connect() as r:
            r.set_target(head=create_head_pose(pitch=10, degrees=True))
            time.sleep(1.0)
    """)
    wait_for(lambda: abs(math.degrees(pose_pitch(latest(probe, "/head/pose"))) - 10) < 2, timeout=5)
    run_sdk(stack, """
        with connect() as r:
            r.set_target(head=create_head_pose())
            time.sleep(0.5)
    """)
    wait_for(lambda: abs(math.degrees(pose_pitch(latest(probe, "/head/pose")))) < 2, timeout=5)


def test_a_10_degree_pitch_on_the_wire_reads_10_degrees_through_the_vendors_fk(stack):
    """The bar-style check (issue 34): the SDK asks for 10 deg of pitch; the
    goals our stack writes on the bus, read through the vendor's own forward
    kinematics (AnalyticalKinematics, reachy-mini 1.13.0), are that pose."""
    from reachy_mini.core.motors.map import MotorMap

    mm = MotorMap.load()
    send_command(stack.ctl, {"cmd": "goals"})         # forget older writes
    run_sdk(stack, """
        with connect() as r:
            r.set_target(head=create_head_pose(pitch=10, degrees=True))
            time.sleep(1.0)
    """)
    last = {}
    for _, i, raw in send_command(stack.ctl, {"cmd": "goals"})["goals"]:
        last[int(i)] = raw
    joints = [mm.by_id[i].raw_to_rad(last[i]) if i in last else None for i in range(10, 17)]
    assert None not in joints, last
    got = run_sdk(stack, f"""
        from reachy_mini.kinematics import AnalyticalKinematics
        k = AnalyticalKinematics(automatic_body_yaw=False)
        for _ in range(5):          # Newton, from the vendor's start (its sleep pose)
            m = k.fk(np.array({joints!r}))
        out(pose=m)
    """)[0]
    m = np.array(got["pose"])
    pitch = -math.degrees(math.asin(max(-1.0, min(1.0, m[2, 0]))))
    roll = math.degrees(math.atan2(m[2, 1], m[2, 2]))
    print(f"10 deg pitch on the wire, through the vendor's FK: pitch {pitch:.3f} deg, roll {roll:.3f} deg, "
          f"position {np.round(m[:3, 3] * 1000, 2).tolist()} mm")
    assert abs(pitch - 10) < 0.2 and abs(roll) < 0.2 and np.abs(m[:3, 3]).max() < 0.0005
    run_sdk(stack, """
        with connect() as r:
            r.set_target(head=create_head_pose())
            time.sleep(0.3)
    """)


def test_goto_target_each_method_returns_in_time_and_ends_at_target(stack, probe):
    got = run_sdk(stack, """
        with connect() as r:
            for m in ("linear", "minjerk", "ease_in_out", "cartoon"):
                target = create_head_pose(roll=8, pitch=-5, degrees=True)
                t0 = time.monotonic()
                r.goto_target(head=target, antennas=[0.4, -0.4], duration=1.0, method=m)
                dt = time.monotonic() - t0
                time.sleep(0.1)
                head, ant = r.get_current_joint_positions()
                out(method=m, s=dt, pose=r.get_current_head_pose(), target=target, antennas=ant)
                r.goto_target(head=create_head_pose(), antennas=[0, 0], duration=0.5, method=m)
    """)
    assert [g["method"] for g in got] == ["linear", "minjerk", "ease_in_out", "cartoon"]
    for g in got:
        assert 1.0 <= g["s"] <= 1.5, g
        pose, target = np.array(g["pose"]), np.array(g["target"])
        assert np.abs(pose[:3, :3] - target[:3, :3]).max() < math.radians(2), g["method"]
        assert np.abs(pose[:3, 3] - target[:3, 3]).max() < 0.002, g["method"]
        assert np.allclose(g["antennas"], [0.4, -0.4], atol=0.03), g["method"]
        print(f"goto_target 1.0 s {g['method']}: returned in {g['s']:.3f} s")


def _torques(stack) -> set:
    return {m["torque"] for m in send_command(stack.ctl, {"cmd": "state"})["motors"].values()}


def test_disable_and_enable_motors_switch_torque_on_the_bus(stack):
    assert _torques(stack) == {True}
    path = os.path.join(stack.sdk_dir, "torque.py")
    with open(path, "w") as f:
        f.write(PRELUDE + textwrap.dedent("""
            with connect() as r:
                r.disable_motors()
                out(step="off")
                sys.stdin.readline()
                st = r.client.get_status().model_dump(mode="json")
                r.enable_motors()
                out(step="on", mode=st["backend_status"]["motor_control_mode"])
                sys.stdin.readline()
        """))
    p = subprocess.Popen([SDK_PY, path], cwd=stack.sdk_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert json.loads(p.stdout.readline())["step"] == "off"
        wait_for(lambda: _torques(stack) == {False}, timeout=5, period=0.05)
        time.sleep(2.5)   # daemon_status follows the torque read back from the bus (1 Hz diagnostics)
        p.stdin.write("\n")
        p.stdin.flush()
        on = json.loads(p.stdout.readline())
        assert on["mode"] == "disabled"
        wait_for(lambda: _torques(stack) == {True}, timeout=5, period=0.05)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.wait(20) == 0
    finally:
        p.kill()


def test_recording_round_trip(stack):
    got = run_sdk(stack, """
        with connect() as r:
            r.start_recording()
            for i in range(5):
                r.set_target(head=create_head_pose(pitch=i, degrees=True), antennas=[0.0, 0.1 * i])
                time.sleep(0.02)
            data = r.stop_recording()
            out(n=len(data), first=data[0], last=data[-1])
    """)[0]
    assert got["n"] == 5
    assert got["last"]["antennas"] == [0.0, pytest.approx(0.4)]
    assert np.array(got["first"]["head"]).shape == (4, 4)


def test_dance_move_keeps_health_ok_without_command_timeout(stack):
    seen: list[tuple[int, dict]] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(_health(stack))
            time.sleep(0.2)
    w = threading.Thread(target=watch, daemon=True)
    w.start()
    try:
        got = run_sdk(stack, """
            from reachy_mini_dances_library import DanceMove
            with connect() as r:
                t0 = time.monotonic()
                n = 0
                while time.monotonic() - t0 < 4.0:
                    r.play_move(DanceMove("head_tilt_roll"))
                    n += 1
                out(s=time.monotonic() - t0, moves=n)
        """)[0]
    finally:
        stop.set()
        w.join()
    assert got["s"] >= 4.0
    levels = {b.get("level_name") for code, b in seen}
    assert levels <= {"OK", "WARN"} and all(code == 200 for code, _ in seen), \
        [(b.get("message"), b.get("groups")) for _, b in seen if b.get("level_name") not in ("OK", "WARN")][:3]
    tree = httpx.get(f"http://127.0.0.1:{stack.port}/api/status", timeout=3).json()["tree"]
    assert not [i for i in tree if "timeout" in i["message"].lower() and i["level"] >= 2]
    incidents = httpx.get(f"http://127.0.0.1:{stack.port}/api/incidents", timeout=3).json()
    assert not [i for i in incidents if "command timeout" in json.dumps(i).lower()]


def test_our_health_error_shows_in_get_status(stack):
    send_command(stack.ctl, {"cmd": "overheat", "id": 12})
    try:
        wait_for(lambda: _health(stack)[0] == 503, timeout=15, period=0.2)
        got = run_sdk(stack, """
            with connect() as r:
                t0 = time.monotonic()
                while time.monotonic() - t0 < 10:
                    s = r.client.get_status()
                    if s.state.value == "error":
                        break
                out(state=s.state.value, error=s.error)
        """)[0]
        assert got["state"] == "error" and "ERROR" in got["error"]
        assert "overheat" in got["error"].lower() or "temperature" in got["error"].lower() \
            or "stewart_2" in got["error"], got
    finally:
        send_command(stack.ctl, {"cmd": "clear", "id": 12})
    wait_for(lambda: _health(stack)[0] == 200, timeout=20, period=0.3)


def test_hostile_client_leaves_the_stack_healthy(stack):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{stack.port}/ws/sdk"
    before = _sdk_item(stack)["values"]
    with connect(url, max_size=None, max_queue=None) as ws:
        ws.send("{this is not json")
        ws.send(json.dumps({"type": "make_coffee"}))
        ws.send(json.dumps({"type": "set_body_yaw", "body_yaw": float("nan")}).replace("NaN", "NaN"))
        ws.send(json.dumps({"type": "set_wobbling", "enabled": True}))
        ws.recv(timeout=2)                          # still served
    with connect(url, max_size=None, max_queue=None) as ws:         # a 2 MB frame: that client is closed (1009)
        with pytest.raises(ConnectionClosed):
            ws.send("[" + " " * (2 * 1024 * 1024) + "]")
            for _ in range(200):
                ws.recv(timeout=2)
    flood = json.dumps({"type": "set_antennas", "antennas": [0.0, 0.0]})
    sent, t0 = 0, time.monotonic()
    with connect(url, max_size=None, max_queue=None) as ws:         # 10 000 commands/s: dropped, then the client is closed
        with pytest.raises(ConnectionClosed):
            while time.monotonic() - t0 < 5:
                for _ in range(100):
                    ws.send(flood)
                sent += 100
                time.sleep(max(0.0, sent / 10000 - (time.monotonic() - t0)))
    # the page, the API and other SDK clients keep serving
    assert httpx.get(f"http://127.0.0.1:{stack.port}/", timeout=3).status_code == 200
    wait_for(lambda: _health(stack)[0] == 200, timeout=10, period=0.2)
    v = wait_for(lambda: (i := _sdk_item(stack)) and int(i["values"]["closed for flooding"]) >
                 int(before["closed for flooding"]) and i["values"], timeout=5, period=0.3)
    for k in ("malformed", "unknown", "invalid", "oversized", "flood dropped"):
        assert int(v[k]) > int(before[k]), k
    assert "set_wobbling" in " ".join(v)
    got = run_sdk(stack, """
        with connect() as r:
            out(state=r.client.get_status().state.value)
    """)[0]
    assert got["state"] == "running"


GOTO_ERROR = """
    with connect() as r:
        {before}
        t0 = time.monotonic()
        try:
            r.goto_target(head=create_head_pose(pitch=10, degrees=True), duration=1.0)
            err = None
        except Exception as e:
            err = str(e)
        out(error=err, s=time.monotonic() - t0)
        {after}
"""


def test_goto_refused_by_motor_node_answers_with_its_reason(stack, probe):
    """motor_node's refusal on motors/safety_events (issue 21's interface),
    matched to the task by the trajectory's header stamp."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
    from trajectory_msgs.msg import JointTrajectory

    probe.listen(JointTrajectory, "/motors/trajectory", depth=10)
    from reachy_mini.ros import qos
    pub = probe.node.create_publisher(DiagnosticStatus, "/motors/safety_events", qos.GOALS)
    since = time.monotonic()
    done = threading.Event()

    def refuse():   # as motor_node would: ERROR = refused whole, with the command's stamp
        got = wait_for(lambda: probe.get("/motors/trajectory", since), timeout=30, period=0.005)
        st = got[0][1].header.stamp
        pub.publish(DiagnosticStatus(level=DiagnosticStatus.ERROR, name="motors/trajectory",
                                     message="stewart_1 3.0 rad beyond its limit [-0.838, 1.396]",
                                     values=[KeyValue(key="command_stamp", value=f"{st.sec}.{st.nanosec:09d}"),
                                             KeyValue(key="motors", value="stewart_1")]))
        done.set()
    t = threading.Thread(target=refuse, daemon=True)
    t.start()
    got = run_sdk(stack, GOTO_ERROR.format(before="", after="r.goto_target(head=create_head_pose(), duration=0.3)"))[0]
    t.join(5)
    assert done.is_set()
    assert "refused by motor_node" in got["error"] and "beyond its limit" in got["error"], got
    assert got["s"] < 1.5


def test_goto_with_torque_off_or_estop_answers_with_the_reason(stack, probe):
    from std_srvs.srv import Trigger

    got = run_sdk(stack, GOTO_ERROR.format(before="r.disable_motors(); time.sleep(2.5)",
                                           after="r.enable_motors()"))[0]
    assert got["error"] and "torque off" in got["error"], got
    wait_for(lambda: _torques(stack) == {True}, timeout=5, period=0.05)
    assert probe.call(Trigger, "/motor_node/emergency_stop", Trigger.Request()).success
    try:
        got = run_sdk(stack, GOTO_ERROR.format(before="time.sleep(2.5)", after="r.enable_motors()"))[0]
        assert got["error"] and "emergency stop" in got["error"], got
    finally:
        wait_for(lambda: _torques(stack) == {True}, timeout=10, period=0.05)
