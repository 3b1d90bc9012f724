"""Real clients of the vendor daemon's HTTP API against the whole simulated
stack (motor_node on the simulated bus, health_node, web_bridge):

- reachy-mini-mcp 0.3.0 (PyPI, unmodified, in its own venv .venv-mcp made
  by tools/mcp_venv.sh): its MCP server is started over stdio by the MCP
  SDK's own client, and every one of its 18 tools is called through its
  `operate_robot` tool; each must have its effect on the robot (the head at
  the asked angle within 2 deg on head/pose, torque switched on the bus,
  the state it reports equal to joint_states);
- the vendor's own models (PyPI reachy-mini 1.13.0, .venv-sdk) validate our
  answers: DaemonStatus, FullState, the poses, MotorStatus; and the SDK's own
  REST calls (media release / acquire) get an answer it understands;
- bad input over HTTP moves nothing on the bus.
Skips with the reason when a venv could not be made."""
from __future__ import annotations

import json
import math
import os
import subprocess
import textwrap
import time

import httpx
import pytest

from reachy_mini.sim.bus import send_command

from conftest import REPO, SDK_SKIP, venv_skip_reason, wait_for, whole_stack

MCP_PY = os.path.join(REPO, ".venv-mcp", "bin", "python")
SDK_PY = os.path.join(REPO, ".venv-sdk", "bin", "python")


MCP_SKIP = venv_skip_reason(".venv-mcp", "`make mcp-venv` (tools/mcp_venv.sh)")

# The MCP SDK's stdio client drives `python -m reachy_mini_mcp serve`: one
# JSON line in (tool, parameters), one JSON line out (the tool's answer).
DRIVER = textwrap.dedent("""
    import asyncio, json, os, sys
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    async def main():
        params = StdioServerParameters(command=sys.executable, args=["-m", "reachy_mini_mcp", "serve"],
                                       env={"REACHY_BASE_URL": os.environ["REACHY_BASE_URL"],
                                            "PATH": os.environ.get("PATH", ""), "HOME": os.environ["HOME"]})
        async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            tools = [t.name for t in (await s.list_tools()).tools]
            print(json.dumps({"tools": tools}), flush=True)
            loop = asyncio.get_running_loop()
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    return
                req = json.loads(line)
                res = await s.call_tool("operate_robot", {"tool_name": req["tool"],
                                                          "parameters": req.get("parameters", {})})
                text = "".join(getattr(c, "text", "") for c in res.content)
                try:
                    out = json.loads(text)
                except ValueError:
                    out = {"raw": text}
                err = getattr(res, "is_error", getattr(res, "isError", None))
                print(json.dumps({"is_error": err, "answer": out}), flush=True)

    asyncio.run(main())
""")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("vendor_http"))
    with whole_stack(tmp, 2) as st:   # beside test_vendor_sdk's (the last id of the block)
        st.tmp = tmp
        yield st


@pytest.fixture(scope="module")
def probe(stack):
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import JointState

    from ros_probe import RosProbe
    p = RosProbe("vendor_http_probe")
    p.listen(JointState, "/joint_states", depth=10)
    p.listen(PoseStamped, "/head/pose", depth=10)
    wait_for(lambda: latest(p, "/joint_states") and latest(p, "/head/pose"), timeout=15)
    yield p
    p.close()


def _get(st, path):
    try:
        r = httpx.get(st.url + path, timeout=5)
        return r.status_code, r.json()
    except httpx.HTTPError as e:
        return 0, {"error": str(e)}


def healthy(stack):
    """Waits for a healthy robot (a loaded machine can make the simulated bus miss
    replies long enough for an ERROR; the tests below need a robot that runs)."""
    wait_for(lambda: _get(stack, "/api/health")[0] == 200, timeout=60, period=0.5)


def latest(probe, topic):
    with probe.lock:
        msgs = probe.msgs.get(topic)
        if msgs and len(msgs) > 4000:   # bounded: the last 20 s or so are kept (since() reads them)
            del msgs[:-2000]
        return msgs[-1][1] if msgs else None


def since(probe, topic, t0):
    with probe.lock:
        return [m for t, m in probe.msgs.get(topic, []) if t >= t0]


def within(probe, t0, name, value, tol=0.01) -> bool:
    """`value` (read over HTTP since t0) matches joint_states over the same
    time (the joint may still be settling): within tol of the range seen."""
    seen = [dict(zip(m.name, m.position))[name] for m in since(probe, "/joint_states", t0 - 0.05)]
    assert seen, "no joint_states"
    return min(seen) - tol <= value <= max(seen) + tol


def rpy_deg(msg):
    from reachy_mini.core.head import quaternion_to_rpy

    o = msg.pose.orientation
    return [math.degrees(a) for a in quaternion_to_rpy(o.x, o.y, o.z, o.w)]


def joints(probe) -> dict:
    js = latest(probe, "/joint_states")
    return dict(zip(js.name, js.position))


def torques(stack) -> set:
    return {m["torque"] for m in send_command(stack.ctl, {"cmd": "state"})["motors"].values()}


def head_at(probe, roll=0.0, pitch=0.0, yaw=0.0, timeout=8.0):
    """Waits until head/pose is at the angles (deg) within 2 deg."""
    return wait_for(lambda: all(abs(a - b) < 2.0 for a, b in zip(rpy_deg(latest(probe, "/head/pose")),
                                                                   (roll, pitch, yaw))), timeout=timeout)


class Mcp:
    def __init__(self, stack) -> None:
        path = os.path.join(stack.tmp, "mcp_driver.py")
        with open(path, "w") as f:
            f.write(DRIVER)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["REACHY_BASE_URL"] = self.url = stack.url
        self.p = subprocess.Popen([MCP_PY, path], cwd=stack.tmp, env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=open(os.path.join(stack.tmp, "mcp.err"), "w"),
                                  text=True)
        self.err = os.path.join(stack.tmp, "mcp.err")
        self.tools = self._read(60)["tools"]
        self.log: list[tuple[str, dict, dict]] = []

    def _read(self, timeout: float) -> dict:
        import select

        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        line = self.p.stdout.readline() if r else ""
        if not line:
            with open(self.err) as f:
                raise AssertionError(f"MCP driver gave no answer within {timeout} s: {f.read()[-3000:]}")
        return json.loads(line)

    def call(self, tool: str, **parameters) -> dict:
        self.p.stdin.write(json.dumps({"tool": tool, "parameters": parameters}) + "\n")
        self.p.stdin.flush()
        got = self._read(60)
        assert not got["is_error"], got
        a = got["answer"]
        assert a.get("status") == "success", a
        if isinstance(a["result"], dict) and a["result"].get("status") == "failed":   # an HTTP error: why
            tree = httpx.get(self.url + "/api/status", timeout=5).json()["tree"]
            sdk_item = next(i for i in tree if i["name"].endswith("/sdk"))["values"]
            a["result"]["vendor API last refusal"] = sdk_item.get("vendor API last refusal")
        self.log.append((tool, parameters, a))
        return a["result"]

    def close(self) -> None:
        self.p.stdin.close()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)


def _no_http_error(result) -> None:
    """make_request() turns an HTTP error into {"error", "status": "failed"}."""
    assert not (isinstance(result, dict) and result.get("status") == "failed"), result


@pytest.mark.skipif(MCP_SKIP is not None, reason=str(MCP_SKIP))
def test_reachy_mini_mcp_every_tool_has_its_effect(stack, probe):
    mcp = Mcp(stack)
    done: dict[str, str] = {}
    try:
        assert mcp.tools == ["operate_robot"]
        r = mcp.call("get_health_status")
        assert r["state"] == "running" and r["version"] == "1.13.0" and r["backend_status"]["ready"] is True
        assert r["backend_status"]["control_loop_stats"]["mean_control_loop_frequency"] > 0
        hz = r["backend_status"]["control_loop_stats"]["mean_control_loop_frequency"]
        done["get_health_status"] = f"state {r['state']}, version 1.13.0, motor loop {hz:.0f} Hz"
        assert mcp.call("get_power_state") == {"mode": "enabled"}
        done["get_power_state"] = "mode enabled"

        r = mcp.call("move_head", pitch=10, duration=1.0)
        _no_http_error(r)
        head_at(probe, pitch=10)
        done["move_head"] = "head/pose pitch 10 deg (within 2)"
        t0 = time.monotonic()
        st = mcp.call("get_robot_state")
        assert within(probe, t0, "body_rotation", st["body_yaw"])
        assert within(probe, t0, "right_antenna", st["antennas_position"][0])
        assert within(probe, t0, "left_antenna", st["antennas_position"][1])
        assert abs(math.degrees(st["head_pose"]["pitch"]) - 10) < 2
        done["get_robot_state"] = "body yaw, antennas = joint_states; head pitch 10 deg"
        hs = mcp.call("get_head_state")["head_pose"]
        assert abs(math.degrees(hs["pitch"]) - rpy_deg(latest(probe, "/head/pose"))[1]) < 1
        done["get_head_state"] = "pitch = head/pose"

        _no_http_error(mcp.call("reset_head"))
        head_at(probe)
        done["reset_head"] = "head back to 0 deg"
        _no_http_error(mcp.call("tilt_head", direction="left", angle=15, duration=1.0))
        head_at(probe, roll=15)
        done["tilt_head"] = "roll 15 deg"
        _no_http_error(mcp.call("look_at_direction", direction="up", duration=1.0))
        head_at(probe, pitch=-30)
        done["look_at_direction"] = "up: pitch -30 deg"

        t0 = time.monotonic()
        _no_http_error(mcp.call("nod_head", duration=0.8, angle=15))
        head_at(probe)
        pitches = [rpy_deg(m)[1] for m in since(probe, "/head/pose", t0)]
        assert max(pitches) > 13, max(pitches)
        done["nod_head"] = f"pitch down to {max(pitches):.1f} deg and back to 0"
        t0 = time.monotonic()
        _no_http_error(mcp.call("shake_head", duration=0.8, angle=20))
        head_at(probe)
        yaws = [rpy_deg(m)[2] for m in since(probe, "/head/pose", t0)]
        assert min(yaws) < -18 and max(yaws) > 18, (min(yaws), max(yaws))
        done["shake_head"] = f"yaw {min(yaws):.1f} .. {max(yaws):.1f} deg, back to 0"

        # the tool sends [radians(left), radians(right)] as the vendor's `antennas`, whose
        # first element is the right antenna on the vendor's daemon as here
        _no_http_error(mcp.call("move_antennas", left=30, right=-30, duration=1.0))
        wait_for(lambda: abs(joints(probe)["right_antenna"] - math.radians(30)) < 0.03
                 and abs(joints(probe)["left_antenna"] + math.radians(30)) < 0.03, timeout=8)
        t0 = time.monotonic()
        a = mcp.call("get_antennas_state")["antennas_position"]
        assert within(probe, t0, "right_antenna", a[0]) and within(probe, t0, "left_antenna", a[1])
        done["move_antennas"] = "antennas at +30 / -30 deg on joint_states"
        done["get_antennas_state"] = "= joint_states"
        _no_http_error(mcp.call("reset_antennas"))
        wait_for(lambda: abs(joints(probe)["right_antenna"]) < 0.03 and abs(joints(probe)["left_antenna"]) < 0.03,
                 timeout=8)
        done["reset_antennas"] = "antennas at 0"

        assert mcp.call("express_emotion", emotion="happy") == {"status": "success", "emotion": "happy"}
        head_at(probe, pitch=-5)
        wait_for(lambda: abs(joints(probe)["left_antenna"] - math.radians(30)) < 0.03, timeout=8)
        done["express_emotion"] = "happy: pitch -5 deg, antennas 30 deg"
        t0 = time.monotonic()
        _no_http_error(mcp.call("perform_gesture", gesture="yes"))
        head_at(probe)
        assert max(rpy_deg(m)[1] for m in since(probe, "/head/pose", t0)) > 18
        done["perform_gesture"] = "yes: nod to 20 deg and back"

        assert mcp.call("turn_off_robot") == {"status": "motors changed to disabled mode"}
        wait_for(lambda: torques(stack) == {False}, timeout=5)
        assert mcp.call("get_power_state") == {"mode": "disabled"} or \
            wait_for(lambda: _get(stack, "/api/motors/status")[1] == {"mode": "disabled"}, timeout=5)
        done["turn_off_robot"] = "torque off on all 9 motors on the bus"
        assert mcp.call("turn_on_robot") == {"status": "motors changed to enabled mode"}
        wait_for(lambda: torques(stack) == {True}, timeout=5)
        done["turn_on_robot"] = "torque on on all 9 motors on the bus"
        wait_for(lambda: _get(stack, "/api/motors/status")[1] == {"mode": "enabled"}, timeout=5)

        _no_http_error(mcp.call("move_head", pitch=20, duration=3.0))       # a long move, then stop
        time.sleep(0.3)
        assert mcp.call("stop_all_movements") == {"status": "motors changed to disabled mode"}
        wait_for(lambda: torques(stack) == {False}, timeout=5)
        done["stop_all_movements"] = "torque off during a 3 s move"
        mcp.call("turn_on_robot")
        wait_for(lambda: torques(stack) == {True}, timeout=5)
    finally:
        mcp.close()
        print(f"reachy-mini-mcp tools with their effect: {len(done)} of 18")
        for k, v in done.items():
            print(f"  {k}: {v}")
    assert len(done) == 18, sorted(set(t for t, _, _ in mcp.log) - set(done))


VALIDATE = textwrap.dedent("""
    import json, sys, requests
    from reachy_mini.io.protocol import DaemonStatus, DoaSnapshot, ImuData, MotorControlMode
    from reachy_mini.daemon.app.models import FullState, XYZRPYPose, Matrix4x4Pose
    url = sys.argv[1]
    def get(path, **params):
        r = requests.get(url + path, params=params, timeout=10)
        r.raise_for_status()
        return r.json()
    out = {}
    s = DaemonStatus.model_validate(get("/api/daemon/status"))
    out["status"] = [s.state.value, s.version, s.backend_status.motor_control_mode.value]
    f = FullState.model_validate(get("/api/state/full", with_head_joints=True, with_doa=True, with_imu=True,
                                     with_passive_joints=True))
    out["full"] = [f.control_mode.value, type(f.head_pose).__name__, len(f.head_joints), f.doa, f.imu]
    f = FullState.model_validate(get("/api/state/full", use_pose_matrix=True))
    out["full_matrix"] = type(f.head_pose).__name__
    XYZRPYPose.model_validate(get("/api/state/present_head_pose"))
    Matrix4x4Pose.model_validate(get("/api/state/present_head_pose", use_pose_matrix=True))
    out["mode"] = MotorControlMode(get("/api/motors/status")["mode"]).value
    out["doa"] = get("/api/state/doa")
    out["imu"] = get("/api/state/imu")
    # the SDK's own REST calls (media release / acquire, served by the audio work; else 501 with the reason)
    from reachy_mini import ReachyMini
    port = int(url.rsplit(":", 1)[1])
    with ReachyMini(port=port, media_backend="no_media") as r:
        ok = r.client.release_media()
        again = requests.post(url + "/api/media/release", timeout=10)
        out["media"] = [ok, again.status_code, again.json().get("detail", "")]
        r.client.acquire_media()
    print(json.dumps(out))
""")


@pytest.mark.skipif(SDK_SKIP is not None, reason=str(SDK_SKIP))
def test_the_vendors_own_models_accept_our_answers(stack, probe, tmp_path):
    healthy(stack)
    path = tmp_path / "validate.py"
    path.write_text(VALIDATE)
    p = subprocess.run([SDK_PY, str(path), stack.url], cwd=str(tmp_path), capture_output=True, text=True,
                       timeout=60, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.splitlines()[-1])
    assert out["status"] == ["running", "1.13.0", "enabled"]
    assert out["full"] == ["enabled", "XYZRPYPose", 7, None, None]
    assert out["full_matrix"] == "Matrix4x4Pose" and out["mode"] == "enabled"
    assert out["doa"] is None and out["imu"] is None
    ok, code, detail = out["media"]
    assert (ok and code == 200) or (not ok and code == 501 and "not served" in detail), out["media"]


def test_kinematics_serve_motor_nodes_robot_description(stack):
    r = httpx.get(stack.url + "/api/kinematics/urdf", timeout=10)
    assert r.status_code == 200 and "<robot" in r.json()["urdf"] and "body_rotation" in r.json()["urdf"]
    assert httpx.get(stack.url + "/api/kinematics/info", timeout=10).json()["info"]["engine"]


def test_bad_input_moves_nothing_on_the_bus(stack, probe):
    before = send_command(stack.ctl, {"cmd": "state"})["motors"]
    goals = {k: m.get("goal") for k, m in before.items()}
    for body in ({"duration": 1, "head_pose": {"pitch": 1e300}}, {"duration": -1},
                 {"antennas": [1, 2, 3], "duration": 1},
                 {"duration": 1, "head_pose": {"m": [1] * 16}}, {"duration": 1, "interpolation": "warp"}):
        r = httpx.post(stack.url + "/api/move/goto", json=body, timeout=10)
        assert r.status_code == 422 and r.json()["detail"], r.text
    r = httpx.post(stack.url + "/api/move/goto", content='{"duration": 1, "body_yaw": NaN}',
                   headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 422
    r = httpx.post(stack.url + "/api/motors/set_mode/gravity_compensation", timeout=10)
    assert r.status_code == 409 and "position control" in r.json()["detail"]
    assert torques(stack) == {True}
    time.sleep(0.5)
    after = send_command(stack.ctl, {"cmd": "state"})["motors"]
    assert {k: m.get("goal") for k, m in after.items()} == goals


def test_daemon_status_follows_our_health(stack):
    healthy(stack)
    code, st = _get(stack, "/api/daemon/status")
    assert code == 200 and st["state"] == "running" and st["version"] == "1.13.0", st["error"]
    stats = st["backend_status"]["control_loop_stats"]
    assert stats["mean_control_loop_frequency"] > 10 and "nb_error" in stats
    # an ERROR robot is not "running": a motor that stops answering
    send_command(stack.ctl, {"cmd": "mute", "id": 13})
    try:
        st = wait_for(lambda: (s := _get(stack, "/api/daemon/status")[1]).get("state") == "error" and s,
                      timeout=40, period=0.5)
        assert st["error"] and st["backend_status"]["ready"] is False
    finally:
        send_command(stack.ctl, {"cmd": "unmute", "id": 13})
    wait_for(lambda: _get(stack, "/api/daemon/status")[1].get("state") == "running", timeout=40, period=0.5)


def _sdk_values(stack) -> dict:
    tree = httpx.get(stack.url + "/api/status", timeout=5).json()["tree"]
    return next(i for i in tree if i["name"].endswith("/sdk"))["values"]


def test_move_stop_holds_the_head_where_it_is(stack, probe):
    healthy(stack)
    c = httpx.Client(base_url=stack.url, timeout=10)
    assert c.post("/api/motors/set_mode/enabled").status_code == 200
    wait_for(lambda: torques(stack) == {True}, timeout=5)
    uid = c.post("/api/move/goto", json={"head_pose": {"pitch": math.radians(25)}, "duration": 4.0}).json()["uuid"]
    assert c.get("/api/move/running").json() == [{"uuid": uid}]
    wait_for(lambda: rpy_deg(latest(probe, "/head/pose"))[1] > 5, timeout=5)
    assert c.post("/api/move/stop", json={"uuid": uid}).json() == {"message": f"Stopped move with UUID: {uid}"}
    at = rpy_deg(latest(probe, "/head/pose"))[1]
    time.sleep(1.5)   # the move would have gone on to 25 deg
    now = rpy_deg(latest(probe, "/head/pose"))[1]
    assert now < 22 and abs(now - at) < 4, (at, now)
    assert c.get("/api/move/running").json() == []
    c.post("/api/move/goto", json={"head_pose": {}, "duration": 1.0})
    head_at(probe)


def test_goto_sleep_then_wake_up(stack, probe):
    healthy(stack)
    c = httpx.Client(base_url=stack.url, timeout=10)
    assert c.post("/api/motors/set_mode/enabled").status_code == 200
    wait_for(lambda: torques(stack) == {True}, timeout=5)
    wait_for(lambda: c.get("/api/move/running").json() == [], timeout=10, period=0.2)   # earlier moves over
    time.sleep(1.2)   # and counted on the diagnostic (1 Hz)
    failed = int(_sdk_values(stack)["vendor API moves failed"])
    c.post("/api/move/play/goto_sleep").raise_for_status()
    wait_for(lambda: c.get("/api/move/running").json() == [], timeout=20, period=0.2)
    j = joints(probe)
    assert abs(j["right_antenna"] + 3.05) < 0.1 and abs(j["left_antenna"] - 3.05) < 0.1, j
    assert rpy_deg(latest(probe, "/head/pose"))[1] > 15          # head down (the vendor's sleep pose: ~24 deg)
    time.sleep(1.2)   # the diagnostic comes at 1 Hz
    assert int(_sdk_values(stack)["vendor API moves failed"]) == failed, _sdk_values(stack)["vendor API last refusal"]
    wait_for(lambda: torques(stack) == {False}, timeout=5)        # and limp, as the vendor's
    assert c.post("/api/move/play/wake_up").status_code == 409    # torque off: refused with the reason
    assert c.post("/api/motors/set_mode/enabled").status_code == 200
    c.post("/api/move/play/wake_up").raise_for_status()
    wait_for(lambda: c.get("/api/move/running").json() == [], timeout=20, period=0.2)
    time.sleep(1.2)   # the diagnostic comes at 1 Hz
    assert int(_sdk_values(stack)["vendor API moves failed"]) == failed, _sdk_values(stack)["vendor API last refusal"]
    head_at(probe)
    j = joints(probe)
    assert abs(j["right_antenna"] + 0.1745) < 0.05 and abs(j["left_antenna"] - 0.1745) < 0.05, \
        (j, _sdk_values(stack)["vendor API last refusal"])
