"""One process for the robot (issue 33): `reachy-mini-bringup --one-process`
runs motor_node, health_node and web_bridge in one process (nodes/robot.py).
Each node keeps its name, topics and diagnostics; the supervisor restarts
the process when it hangs or dies; a dead worker thread in any node ends the
process only after motor_node's clean exit (torque off), and the process
comes back."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import SimProcess, wait_for
from test_supervisor import read_state as _state

CORE = ("motor_node", "health_node", "web_bridge")
MEDIA = ("camera_node", "audio_node")


def _port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _get(port: int, path: str):
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None


class Stack:
    def __init__(self, tmp_path, ros_env, *extra, sim: bool = True, port: int | None = None, nodes=CORE):
        self.state = str(tmp_path / "state.json")
        self.port = port or _port()
        self.env = dict(ros_env, XDG_RUNTIME_DIR=str(tmp_path / "run"))
        os.makedirs(self.env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
        self.argv = [sys.executable, "-m", "reachy_mini.ops.supervisor", "--one-process", "--only", *nodes,
                     "--state-file", self.state, "--data-dir", str(tmp_path / "data"), "--web-port",
                     str(self.port), *(["--use-sim"] if sim else []), *extra]
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)

    def nodes(self) -> dict:
        return (_state(self.state) or {}).get("nodes", {})

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.communicate(timeout=20)[0]
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.communicate()[0]


def _one_pid(st: Stack, nodes=CORE) -> int | None:
    pids = {st.nodes().get(n, {}).get("pid") for n in nodes}
    return pids.pop() if len(pids) == 1 and None not in pids else None


def test_the_robots_nodes_run_in_one_process_and_a_hang_is_restarted(tmp_path, ros_env):
    import psutil

    from reachy_mini.core.health.incidents import db_path, query

    st = Stack(tmp_path, ros_env)
    try:
        pid = wait_for(lambda: _one_pid(st), timeout=30, period=0.2)
        cmd = psutil.Process(pid).cmdline()
        assert "reachy_mini.nodes.robot" in cmd and all(n in cmd for n in CORE), cmd
        assert {c.pid for c in psutil.Process(st.proc.pid).children()} >= {pid}
        # the whole robot is healthy, every node reporting under its own name
        wait_for(lambda: (h := _get(st.port, "/api/health")) and h["level"] <= 1 and h["groups"].get("Motors") == "OK",
                 timeout=90, period=0.5)
        def node_items():   # once the health node has sampled the processes (not "Node starting up")
            items = {i["name"].rsplit("/", 1)[-1]: i for i in (_get(st.port, "/api/status") or {}).get("tree", [])
                     if "/Nodes/" in i["name"]}
            return items if all(items.get(n, {}).get("values", {}).get("pid") for n in CORE) else None
        by_node = wait_for(node_items, timeout=30, period=0.5)
        for n in CORE:
            assert by_node[n]["level"] == 0, by_node[n]
            assert by_node[n]["values"].get("pid") == str(pid), by_node[n]
        # a second stack of this robot is refused while the process runs
        again = subprocess.run(st.argv, env=st.env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 4, again.stdout + again.stderr
        # hung (SIGSTOP stops every thread): the supervisor sees the heartbeat age, kills and respawns it
        os.kill(pid, signal.SIGSTOP)
        new = wait_for(lambda: (p := _one_pid(st)) not in (None, pid) and p, timeout=40, period=0.2)
        assert all(st.nodes()[n]["hang_restarts"] == 1 for n in CORE), st.nodes()
        wait_for(lambda: (h := _get(st.port, "/api/health")) and h["level"] <= 1 and h["groups"].get("Motors") == "OK",
                 timeout=90, period=0.5)
        # the new health node records the hang it was part of, for each node of the process
        hang = wait_for(lambda: (h := query(db_path(str(tmp_path / "data")), kind="hang")) and len(h) >= 3 and h,
                        timeout=30, period=0.5)
        assert {r["name"].rsplit("/", 1)[-1] for r in hang} == set(CORE), hang
        assert all("hung" in r["message"] for r in hang), hang
        assert psutil.Process(new).cmdline()[2] == "reachy_mini.nodes.robot"
    finally:
        out = st.stop()
    assert "restarting robot: no heartbeat" in out, out[-3000:]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_dead_worker_ends_the_process_with_the_torque_off_then_it_comes_back(tmp_path, ros_env):
    """web_bridge's HTTP thread dies (its port is taken): the shared process
    exits with status 3 naming the thread, after motor_node turned every
    motor's torque off (nothing stays powered without its controller); the
    supervisor respawns it, and once the port is free the robot is whole."""
    from reachy_mini.common.paths import config_path

    sim = SimProcess(tmp_path)   # outlives the process: its servos tell what the process left them in
    params = tmp_path / "bus.yaml"
    params.write_text(f"/**/motor_node:\n  ros__parameters:\n    serial_port: {sim.link}\n")
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    st = None
    try:
        st = Stack(tmp_path, ros_env, "--params-file", config_path("reachy_mini.yaml"), "--params-file", str(params),
                   sim=False, port=held.getsockname()[1])
        # up (the motors powered), then the process ends (status 3) with every torque off
        wait_for(lambda: all(m["torque"] for m in sim.state()["motors"].values()), timeout=60, period=0.05)
        motors = wait_for(lambda: (m := sim.state()["motors"]) and not any(s["torque"] for s in m.values()) and m,
                          timeout=60, period=0.05)   # before the respawn (backoff, start) powers them again
        assert len(motors) == 9
        wait_for(lambda: st.nodes().get("motor_node", {}).get("last_exit") == 3, timeout=30, period=0.1)
        held.close()   # the port is free: the respawned process stays up, the robot is whole
        wait_for(lambda: (h := _get(st.port, "/api/health")) and h["groups"].get("Motors") == "OK",
                 timeout=90, period=0.5)
        assert all(m["torque"] for m in sim.state()["motors"].values())
    finally:
        held.close()
        out = st.stop() if st is not None else ""
        sim.close()
    assert "worker thread uvicorn of web_bridge died" in out, out[-3000:]
    assert "robot exited with 3; respawning" in out, out[-3000:]


def test_process_groups_and_the_shared_process_arguments():
    from reachy_mini.common.node_table import hosted_nodes, process_groups, process_name
    from reachy_mini.nodes.robot import parse

    every = ["web_bridge", "audio_node", "motor_node", "camera_node", "health_node"]
    assert process_groups(every, False) == [(n,) for n in
                                            ("motor_node", "camera_node", "audio_node", "health_node", "web_bridge")]
    assert process_groups(every, True) == [CORE, MEDIA]
    assert [process_name(g) for g in process_groups(every, True)] == ["robot", "media"]
    assert process_groups(["motor_node", "camera_node"], True) == [("motor_node",), ("camera_node",)]   # one alone
    assert process_groups(["audio_node", "health_node", "web_bridge"], True) == [("health_node", "web_bridge"),
                                                                                ("audio_node",)]
    assert hosted_nodes([sys.executable, "-m", "reachy_mini.nodes.robot", "motor_node", "web_bridge", "--ros-args",
                         "-p", "x:=health_node"]) == ["motor_node", "web_bridge"]
    assert hosted_nodes(["/usr/bin/python3", "/opt/ros/lib/reachy_mini/robot", "health_node"]) == ["health_node"]
    assert hosted_nodes([sys.executable, "-m", "reachy_mini.nodes.motor_node"]) == []
    assert parse(["motor_node", "health_node", "--ros-args", "-p", "a:=1"]) == (["motor_node", "health_node"], "")
    for bad, why in ((["motor_node", "nope"], "unknown node(s) ['nope']"), ([], "usage:"),
                     (["motor_node", "motor_node"], "named twice")):
        assert why in parse(bad)[1]


def test_the_shared_process_refuses_an_unknown_node(ros_env):
    r = subprocess.run([sys.executable, "-m", "reachy_mini.nodes.robot", "motor_node", "camera", "--ros-args"],
                       env=ros_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown node(s) ['camera']" in r.stderr, r.stderr


def test_the_hang_watch_fires_once_past_the_timeout():
    from reachy_mini.ros.runner import HangWatch

    ages = iter([0.5, 3.0, 9.9, 10.5, 50.0])
    fired = []
    HangWatch(lambda: next(ages), 10.0, fired.append, period=0.0).run()
    assert fired == [10.5]


@pytest.mark.parametrize("sig", [signal.SIGKILL])
def test_a_killed_shared_process_is_respawned_whole(tmp_path, ros_env, sig):
    st = Stack(tmp_path, ros_env)
    try:
        pid = wait_for(lambda: _one_pid(st), timeout=30, period=0.2)
        wait_for(lambda: (h := _get(st.port, "/api/health")) and h["groups"].get("Motors") == "OK",
                 timeout=90, period=0.5)
        os.kill(pid, sig)
        wait_for(lambda: (p := _one_pid(st)) not in (None, pid) and p, timeout=30, period=0.2)
        assert all(st.nodes()[n]["restarts"] == 1 and st.nodes()[n]["last_exit"] == -sig for n in CORE)
        t0 = time.monotonic()
        wait_for(lambda: (h := _get(st.port, "/api/health")) and h["groups"].get("Motors") == "OK",
                 timeout=90, period=0.5)
        print(f"robot back {time.monotonic() - t0:.1f} s after the respawn")
    finally:
        st.stop()


def test_camera_and_audio_share_a_process_whose_crash_leaves_the_motors_alone(tmp_path, ros_env):
    """--one-process with the whole node table: the robot's three nodes in
    one process, camera_node and audio_node in another ("media"). The media
    process killed (a driver crash): it is respawned whole, and the motors'
    process is untouched (same pid, no restart)."""
    import psutil

    st = Stack(tmp_path, ros_env, nodes=CORE + MEDIA)
    try:
        robot = wait_for(lambda: _one_pid(st), timeout=30, period=0.2)
        media = wait_for(lambda: _one_pid(st, MEDIA), timeout=30, period=0.2)
        assert media != robot
        cmd = psutil.Process(media).cmdline()
        assert "reachy_mini.nodes.robot" in cmd and all(n in cmd for n in MEDIA), cmd
        assert not any(n in cmd for n in CORE), cmd
        wait_for(lambda: (h := _get(st.port, "/api/health")) and h["groups"].get("Motors") == "OK"
                 and h["groups"].get("Camera") == "OK" and h["groups"].get("Audio") == "OK", timeout=90, period=0.5)
        os.kill(media, signal.SIGKILL)
        new = wait_for(lambda: (p := _one_pid(st, MEDIA)) not in (None, media) and p, timeout=30, period=0.2)
        assert all(st.nodes()[n]["restarts"] == 1 and st.nodes()[n]["last_exit"] == -signal.SIGKILL for n in MEDIA)
        assert _one_pid(st) == robot and all(st.nodes()[n]["restarts"] == 0 for n in CORE), st.nodes()

        def back():   # the health node sees both media nodes in the new process, the restart reported
            items = {i["name"].rsplit("/", 1)[-1]: i for i in (_get(st.port, "/api/status") or {}).get("tree", [])
                     if "/Nodes/" in i["name"]}
            return all(items.get(n, {}).get("values", {}).get("pid") == str(new) and items[n]["level"] == 1
                       and "restarted 1x" in items[n]["message"] and "last exit -9" in items[n]["message"]
                       for n in MEDIA) and all(items[n]["level"] == 0 for n in CORE)
        wait_for(back, timeout=90, period=0.5)
        wait_for(lambda: (h := _get(st.port, "/api/health")) and h["groups"].get("Camera") == "OK"
                 and h["groups"].get("Audio") == "OK" and h["groups"].get("Motors") == "OK", timeout=90, period=0.5)
        assert _one_pid(st) == robot and psutil.Process(robot).status() != psutil.STATUS_ZOMBIE
    finally:
        out = st.stop()
    assert "media exited with -9; respawning" in out, out[-3000:]


def test_sdk_state_stream_stays_50_hz_and_fresh_while_motor_node_publishes_in_bursts(tmp_path, ros_env):
    """An SDK client on /ws/sdk (web_bridge's polling reader on joint_states
    and head/pose) no longer makes motor_node publish each sample at once:
    it publishes every 0.02 s (core/motors/sampling.py, POLL_PERIOD_S), and
    the state stream still carries a new antenna position in most of its
    50 Hz messages while the antenna moves (with the old 0.1 s bursts, at
    most one in five could be new)."""
    import asyncio

    import websockets

    from reachy_mini.core.motors.sampling import POLL_PERIOD_S

    st = Stack(tmp_path, ros_env)

    def bus_item():
        tree = (_get(st.port, "/api/status") or {}).get("tree", [])
        return next((i for i in tree if i["name"].endswith("/Motors/bus")), None)

    def publishing() -> str:
        return ((bus_item() or {}).get("values") or {}).get("joint_states publishing", "")

    async def client(seconds: float) -> tuple[list, list]:
        """Streams set_antennas at 50 Hz (a triangle) and keeps every
        joint_positions message (arrival time, right antenna)."""
        got, modes = [], []
        async with websockets.connect(f"ws://127.0.0.1:{st.port}/ws/sdk") as ws:
            async def send():
                k = 0
                while True:
                    i = k % 100
                    v = 0.01 * (i if i < 50 else 100 - i)   # 0 .. 0.5 rad and back, 2 s per period
                    await ws.send(json.dumps({"type": "set_antennas", "antennas": [v, v]}))
                    k += 1
                    await asyncio.sleep(0.02)

            async def receive():
                while True:
                    m = json.loads(await ws.recv())
                    if m.get("type") == "joint_positions":
                        got.append((time.monotonic(), m["antennas_joint_positions"][0]))
            tasks = [asyncio.create_task(send()), asyncio.create_task(receive())]
            # the mode is reported on motor_node's 1 Hz bus diagnostics
            end = time.monotonic() + 60
            while time.monotonic() < end and "every 0.02 s" not in (mode := await asyncio.to_thread(publishing)):
                await asyncio.sleep(0.5)
            modes.append(mode)
            got.clear()
            await asyncio.sleep(seconds)
            modes.append(await asyncio.to_thread(publishing))
            for t in tasks:
                t.cancel()
        return got, modes

    try:
        wait_for(lambda: (h := _get(st.port, "/api/health")) and h["groups"].get("Motors") == "OK", timeout=90,
                 period=0.5)
        assert publishing().startswith("in bursts every 0.1 s"), "no SDK client: the flight recorder alone reads"
        got, modes = asyncio.run(client(6.0))
        assert all(m.startswith(f"in bursts every {POLL_PERIOD_S:g} s") for m in modes), modes
        t = [a for a, _ in got]
        rate = (len(t) - 1) / (t[-1] - t[0])
        assert rate > 40, f"state stream at {rate:.1f} Hz (50 Hz expected)"
        vals = [v for _, v in got]
        new = sum(1 for a, b in zip(vals, vals[1:]) if a != b) / (len(vals) - 1)
        # 0.1 s bursts would give <= 0.2; at once ~1.0; a loaded machine loses some
        assert new > 0.5, f"only {new:.0%} of the stream's messages carried a new antenna position"
        assert max(vals) - min(vals) > 0.3, "the antenna followed the goals"
        wait_for(lambda: publishing().startswith("in bursts every 0.1 s"), timeout=30, period=0.5)
    finally:
        st.stop()
