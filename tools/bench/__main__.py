"""`make bench`: figures as `name: value unit` lines. Sections (all by
default; `make bench BENCH="motors health"` picks some): motors, health,
media, camera_qos (camera_qos.py), camera_sdk (camera_sdk.py: the SDK camera socket's cost), web, stack (see bench_stack.py), envelope (the
safety envelope: goal -> wire latency with the joint limits on and off, and the
speed limit: driver vs the servo's Profile Velocity register), sdk (sdk.py),
dance (dance.py: a vendor dance through the stack against the vendor's IK),
footprint (footprint.py: our stack's CPU, memory and latency beside the
vendor's daemon on the same simulator), footprint_ab (a change before/after:
two stacks side by side; not in the default set).

Motors: ours and the baseline measured in the same run against the same
simulator (1 Mbaud wire timing).

Baselines: ROBOTIS's dynamixel-sdk (PyPI), GroupSyncWrite + GroupSyncRead,
the same transactions as our cycle; and for the goal latency the vendor's
control loop, reachy-mini-motor-controller (PyPI), at 100 Hz.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

from reachy_mini import _driver
from reachy_mini.driver import Driver
from reachy_mini.core.motors.map import MotorMap
from tools.bench.stack import out
from tools.harness.sched import sched_fifo_all_threads
from reachy_mini.sim.child import start_sim, stop_sim

IDS = list(range(10, 19))
CYCLES = int(os.environ.get("BENCH_CYCLES", "2000"))
JITTER_S = float(os.environ.get("BENCH_JITTER_S", "10"))


def ours_full_cycle(port: str) -> float:
    bus = _driver.Bus(port, 1_000_000, 5.0)
    goals = [(i, (2048).to_bytes(4, "little", signed=True)) for i in IDS]
    for _ in range(50):
        bus.sync_write(116, 4, goals)
        bus.sync_read(IDS, 132, 4)
    t0 = time.perf_counter()
    bad = 0
    for _ in range(CYCLES):
        bus.sync_write(116, 4, goals)
        r = bus.sync_read(IDS, 132, 4)
        bad += sum(1 for v in r.values() if not isinstance(v, bytes))
    dt = time.perf_counter() - t0
    if bad:
        print(f"# ours: {bad} failed reads", file=sys.stderr)
    return CYCLES / dt


def sdk_full_cycle(port: str) -> tuple[float, object]:
    from dynamixel_sdk import COMM_SUCCESS, GroupSyncRead, GroupSyncWrite, PacketHandler, PortHandler

    ph = PortHandler(port)
    if not ph.openPort() or not ph.setBaudRate(1_000_000):
        raise RuntimeError(f"dynamixel-sdk cannot open {port}")
    pk = PacketHandler(2.0)
    gr = GroupSyncRead(ph, pk, 132, 4)
    gw = GroupSyncWrite(ph, pk, 116, 4)
    for i in IDS:
        gr.addParam(i)
        gw.addParam(i, list((2048).to_bytes(4, "little")))

    def cycle() -> bool:
        gw.txPacket()
        return gr.txRxPacket() == COMM_SUCCESS

    for _ in range(50):
        cycle()
    t0 = time.perf_counter()
    bad = sum(0 if cycle() else 1 for _ in range(CYCLES))
    dt = time.perf_counter() - t0
    if bad:
        print(f"# dynamixel-sdk: {bad} failed cycles", file=sys.stderr)
    return CYCLES / dt, (ph, cycle)


def ours_jitter(port: str, realtime_priority: int = 0) -> dict:
    drv = Driver(port, MotorMap.load(), loop_rate_hz=100.0, status_rate_hz=2.0, realtime_priority=realtime_priority)
    drv.start()
    try:
        drv.set_torque(True)
        time.sleep(0.5)
        drv.reset_timing()
        end = time.monotonic() + JITTER_S
        k = 0
        while time.monotonic() < end:  # stream goals as a client would
            drv.set_goals({"stewart_1": 0.2 * ((k % 20) - 10) / 10})
            k += 1
            time.sleep(0.01)
        return drv.stats()
    finally:
        drv.stop()


def sdk_jitter(cycle) -> float:
    period = 0.01
    n = int(JITTER_S / period)
    nxt = time.perf_counter() + period
    lat = []
    for _ in range(n):
        d = nxt - time.perf_counter()
        if d > 0:
            time.sleep(d)
        lat.append(max(0.0, time.perf_counter() - nxt) * 1e6)
        cycle()
        nxt += period
    lat.sort()
    return lat[int(0.99 * (len(lat) - 1))]


def bench_motors() -> None:
    tmp = tempfile.mkdtemp(prefix="reachy_bench_")
    proc, port, control = start_sim(os.path.join(tmp, "tty"), wire_timing=True)
    try:
        print(f"# simulator: 9 servos, 1 Mbaud wire timing, {CYCLES} cycles; jitter over {JITTER_S:.0f} s at 100 Hz")
        # sync write 9x4 B (59 B) + sync read instruction (23 B) + 9 status packets (15 B each)
        wire = 1_000_000 / 10 / (59 + 23 + 9 * 15)
        out("wire_limit_full_cycle_rate", wire, "Hz")
        ours = ours_full_cycle(port)
        out("ours_full_cycle_rate", ours, "Hz")
        try:
            sdk, (ph, cycle) = sdk_full_cycle(port)
            out("dynamixel_sdk_full_cycle_rate", sdk, "Hz")
            out("full_cycle_rate_ratio_ours_over_sdk", ours / sdk, "x")
        except Exception as e:  # noqa: BLE001 - report, don't hide, a baseline failure
            print(f"# dynamixel-sdk baseline failed: {e}")
            ph = cycle = None
        if cycle is not None:
            sdk_j = sdk_jitter(cycle)
            ph.closePort()
        st = ours_jitter(port)
        out("ours_loop_rate_at_100hz", st["achieved_rate_hz"], "Hz")
        out("ours_jitter_p99_at_100hz", st["jitter_p99_us"] / 1000, "ms")
        out("ours_jitter_max_at_100hz", st["jitter_max_us"] / 1000, "ms")
        out("ours_cycle_p99_at_100hz", st["cycle_p99_us"] / 1000, "ms")
        if cycle is not None:
            out("dynamixel_sdk_jitter_p99_at_100hz", sdk_j / 1000, "ms")
            out("jitter_p99_ratio_sdk_over_ours", sdk_j / max(st["jitter_p99_us"], 1e-3), "x")
        bench_goal_latency(port, control, sdk_ok=cycle is not None)
        bench_realtime(port, proc.pid)
    finally:
        stop_sim(proc)


def _latencies(control: str, sent: list[tuple[float, int]], motor_id: int) -> list[float]:
    """Goal call -> its sync write arriving at the simulator (same monotonic clock), ms."""
    from reachy_mini.sim.bus import send_command

    log = [(t, v) for t, i, v in send_command(control, {"cmd": "goals"})["goals"] if i == motor_id]
    out = []
    for t_call, raw in sent:
        hit = next((t for t, v in log if v == raw and t >= t_call), None)
        if hit is not None:
            out.append((hit - t_call) * 1000)
    return sorted(out)


def _ours_goal_latency(port: str, control: str, n: int, enforce_limits: bool = True,
                       seed: int = 3) -> tuple[list[float], int]:
    """Goal calls at ~100 Hz, any phase of the cycle -> their sync write on
    the wire (ms, sorted), and goals merged. The goals stay within
    stewart_1's joint range and well under its maximum velocity, so that
    every one is written as given (with the limits enforced or not)."""
    import random

    from reachy_mini.sim.bus import send_command

    rng = random.Random(seed)
    mm = MotorMap.load()
    m = mm.by_name["stewart_1"]
    drv = Driver(port, mm, loop_rate_hz=100.0, status_rate_hz=2.0, enforce_limits=enforce_limits)
    drv.start()
    try:
        drv.set_torque(True)
        drv.set_goals_raw({m.id: 1600})
        time.sleep(0.5)   # there, at its maximum velocity
        send_command(control, {"cmd": "goals"})   # clears the log
        sent = []
        for k in range(n):
            time.sleep(rng.uniform(0.003, 0.013))   # any phase of the 10 ms cycle
            raw = 1600 + k
            t = time.monotonic()
            drv.set_goals_raw({m.id: raw})
            sent.append((t, raw))
        time.sleep(0.1)
        merged = drv.stats().get("goals_merged", 0)
    finally:
        drv.stop()
    return _latencies(control, sent, m.id), merged


def bench_goal_latency(port: str, control: str, sdk_ok: bool, n: int = 300) -> None:
    """A goal call to its bytes on the wire, at 100 Hz: ours (the loop wakes
    and writes in the next free bus slot), with dynamixel-sdk (a direct sync
    write, no loop) and the vendor's control loop as baselines."""
    ours, merged = _ours_goal_latency(port, control, n)
    print(f"# goal call -> sync write on the wire, 100 Hz loop, {len(ours)}/{n} goals; wire limit: one sync "
          "write (59 B = 0.59 ms) after the transaction in progress (<= 1.6 ms)")
    out("goal_to_wire_p50", ours[len(ours) // 2], "ms")
    out("goal_to_wire_p99", ours[int(0.99 * (len(ours) - 1))], "ms")
    out("goals_merged", merged, "goals")
    if sdk_ok:
        sdk_goal_latency(port, control, n)
    vendor_goal_latency(port, control, n)


def bench_envelope(n: int = 300, rounds: int = 2) -> None:
    """The safety envelope's cost and its speed limit, on one simulator:
    goal -> wire latency with the joint limits enforced in the driver and
    without (alternating rounds, one run), and a far goal's peak speed with
    the driver's velocity limit vs the servo's Profile Velocity register
    (112), before and after a reboot of the servo."""
    tmp = tempfile.mkdtemp(prefix="reachy_bench_env_")
    proc, port, control = start_sim(os.path.join(tmp, "tty"), wire_timing=True)
    try:
        lat = {True: [], False: []}
        for r in range(rounds):
            for on in (True, False) if r % 2 == 0 else (False, True):
                lat[on] += _ours_goal_latency(port, control, n, enforce_limits=on, seed=10 * r + on)[0]
        p = {on: (sorted(v)[len(v) // 2], sorted(v)[int(0.99 * (len(v) - 1))]) for on, v in lat.items()}
        print(f"# goal call -> sync write, 100 Hz loop, {rounds} alternating rounds of {n} goals each way; "
              "goal: unchanged by the limits (ratio ~1)")
        out("goal_to_wire_p50_limits_on", p[True][0], "ms")
        out("goal_to_wire_p50_limits_off", p[False][0], "ms")
        out("goal_to_wire_p99_limits_on", p[True][1], "ms")
        out("goal_to_wire_p99_limits_off", p[False][1], "ms")
        out("goal_to_wire_p50_ratio_on_over_off", p[True][0] / max(p[False][0], 1e-6), "x")
        out("goal_to_wire_p99_ratio_on_over_off", p[True][1] / max(p[False][1], 1e-6), "x")
        _speed_limit_choice(port, control)
    finally:
        stop_sim(proc)
    _mechanism_rules_accuracy()


def _mechanism_rules_accuracy(n: int = 1500, seed: int = 7) -> None:
    """How often the mechanism rules judge raw Stewart goals right: random
    head poses (roll, pitch +/-46 deg, yaw +/-74 deg, body +/-143 deg)
    turned into joints by inverse kinematics, kept when every joint is
    within its range; each judged from a cold start (the far-goal path)."""
    import math
    import random

    from reachy_mini.core.head import HeadKinematics, Target, load_geometry
    from reachy_mini.core.motors.envelope import MechanismRules

    geometry = load_geometry()
    ik, mm = HeadKinematics(geometry), MotorMap.load()
    rng = random.Random(seed)
    total = right = 0
    spent = 0.0
    for _ in range(n):
        t = Target(x=rng.uniform(-.01, .01), z=rng.uniform(-.01, .01), roll=rng.uniform(-.8, .8),
                   pitch=rng.uniform(-.8, .8), yaw=rng.uniform(-1.3, 1.3), body_yaw=rng.uniform(-2.5, 2.5))
        try:
            joints = ik.ik(t)
        except ValueError:
            continue
        if not all(mm.by_name[k].min_rad <= v <= mm.by_name[k].max_rad for k, v in joints.items()):
            continue
        legal = abs(math.degrees(t.roll)) <= 40.5 and abs(math.degrees(t.pitch)) <= 40.5 and \
            abs(math.degrees(t.yaw - t.body_yaw)) <= 65.5
        rules = MechanismRules(HeadKinematics(geometry), mm)
        t0 = time.perf_counter()
        ok = rules.check(joints, lambda name: 0.0) is None
        spent += time.perf_counter() - t0
        total += 1
        right += ok == legal
    print(f"# mechanism rules on raw Stewart goals: {total} random poses within the joint ranges, judged from a "
          "cold start (a far goal)")
    out("mechanism_rules_judged_right", right / max(total, 1) * 100, "%")
    out("mechanism_rules_far_goal_check", spent / max(total, 1) * 1000, "ms")


def _peak_speed(drv: Driver, control: str, name: str, to_rad: float, watch_s: float = 1.2) -> float:
    """Sends one far goal and returns the motor's peak speed (rad/s) over
    any 50 ms of the move, from the simulator's positions polled at ~100 Hz
    (its physics advance in 10 ms steps: shorter windows only measure that)."""
    from reachy_mini.sim.bus import send_command

    m = drv.map.by_name[name]
    seen = []
    drv.set_goals({name: to_rad})
    end = time.monotonic() + watch_s
    while time.monotonic() < end:
        pos = send_command(control, {"cmd": "state"})["motors"][str(m.id)]["position"]
        seen.append((time.monotonic(), pos))
        time.sleep(0.01)
    peak, j = 0.0, 0
    for t, pos in seen:
        while seen[j][0] < t - 0.05:
            j += 1
        if j and t - seen[j - 1][0] > 0:
            t0, p0 = seen[j - 1]
            peak = max(peak, abs(pos - p0) / (t - t0) * 2 * 3.141592653589793 / m.ticks_per_turn)
    return peak


def _speed_limit_choice(port: str, control: str) -> None:
    mm = MotorMap.load()
    body = mm.by_name["body_rotation"]
    vmax = body.max_velocity_rad_s
    pv = round(vmax * 60 / (2 * 3.141592653589793) / 0.229)   # Profile Velocity units: 0.229 rev/min
    print(f"# a far goal (body_rotation 0 -> 2 rad and back); limit {vmax} rad/s; peak speed seen by the simulator")
    for label, driver_side in (("driver", True), ("profile_register", False)):
        drv = Driver(port, mm, enforce_limits=driver_side)
        drv.start()
        try:
            drv.set_torque(True)
            drv.set_goals({"body_rotation": 0.0})
            time.sleep(1.0)
            if not driver_side:
                drv.write(body.id, 112, pv.to_bytes(4, "little"))
            out(f"far_goal_peak_speed_{label}", _peak_speed(drv, control, "body_rotation", 2.0), "rad/s")
            drv.reboot("body_rotation")          # e.g. an automatic recovery
            drv.set_torque(True)
            out(f"far_goal_peak_speed_{label}_after_reboot", _peak_speed(drv, control, "body_rotation", 0.0),
                "rad/s")
        finally:
            drv.stop()


def sdk_goal_latency(port: str, control: str, n: int) -> None:
    """dynamixel-sdk: a direct sync write, no loop."""
    import random

    rng = random.Random(4)
    m = MotorMap.load().by_name["stewart_1"]
    from dynamixel_sdk import GroupSyncWrite, PacketHandler, PortHandler

    ph = PortHandler(port)
    ph.openPort()
    ph.setBaudRate(1_000_000)
    sw = GroupSyncWrite(ph, PacketHandler(2.0), 116, 4)
    sent = []
    for k in range(n):
        time.sleep(rng.uniform(0.003, 0.013))
        raw = 5000 + k
        t = time.monotonic()
        sw.clearParam()
        sw.addParam(m.id, list(raw.to_bytes(4, "little", signed=True)))
        sw.txPacket()
        sent.append((t, raw))
    ph.closePort()
    sdk = _latencies(control, sent, m.id)
    out("dynamixel_sdk_goal_to_wire_p50", sdk[len(sdk) // 2], "ms")
    out("dynamixel_sdk_goal_to_wire_p99", sdk[int(0.99 * (len(sdk) - 1))], "ms")


def vendor_goal_latency(port: str, control: str, n: int = 300) -> None:
    """The vendor's `reachy-mini-motor-controller` (PyPI, the daemon's Rust
    control loop) at 100 Hz on the same simulator: a goal call to its sync
    write on the wire, the baseline beside ours."""
    import datetime
    import math
    import random

    from reachy_mini.sim.bus import send_command

    try:
        from reachy_mini_motor_controller import ReachyMiniPyControlLoop
    except ImportError:
        print("# reachy-mini-motor-controller not installed (requirements-dev.txt): vendor baseline skipped")
        return
    rng = random.Random(3)
    loop = ReachyMiniPyControlLoop(port, datetime.timedelta(milliseconds=10))
    try:
        loop.enable_torque()
        time.sleep(0.3)
        send_command(control, {"cmd": "goals"})   # clears the log
        sent = []
        for k in range(n):
            time.sleep(rng.uniform(0.003, 0.013))
            raw = 1000 + k
            rad = (raw - 2048 + 0.25) * 2 * math.pi / 4096   # 2048 = 0 rad; rounds or truncates to raw
            t = time.monotonic()
            loop.set_stewart_platform_position([rad, 0.0, 0.0, 0.0, 0.0, 0.0])
            sent.append((t, raw))
        time.sleep(0.1)
    finally:
        loop.close()
    lat = _latencies(control, sent, MotorMap.load().by_name["stewart_1"].id)
    if len(lat) < n // 2:
        print(f"# vendor baseline: only {len(lat)}/{n} goals seen on the wire; not reported")
        return
    out("vendor_goal_to_wire_p50", lat[len(lat) // 2], "ms")
    out("vendor_goal_to_wire_p99", lat[int(0.99 * (len(lat) - 1))], "ms")


def bench_realtime(port: str, sim_pid: int) -> None:
    """Jitter at 100 Hz with two CPU hogs (stress-ng --cpu 2), without and
    with SCHED_FIFO for the control thread, in one run."""
    import shutil
    import subprocess

    if not shutil.which("stress-ng"):
        print("# stress-ng not installed: realtime comparison skipped")
        return
    # The simulator stands in for the servos, which no CPU hog can delay: it
    # runs SCHED_FIFO above the driver for both runs, so that the figures are
    # the driver's own scheduling and not a starved simulator's late replies.
    sim_rt = sched_fifo_all_threads(sim_pid, 30)
    hogs = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", str(int(4 * JITTER_S + 30)), "--quiet"])
    try:
        time.sleep(1.0)
        normal = ours_jitter(port)
        rt = ours_jitter(port, realtime_priority=20)
    finally:
        hogs.terminate()
        hogs.wait()
        sched_fifo_all_threads(sim_pid, 0)
    print(f"# two CPU hogs; simulator: {sim_rt}; driver realtime: {rt.get('realtime')}; "
          "goal: jitter p99 <= 0.5 ms with SCHED_FIFO")
    out("hogs_jitter_p99_normal_scheduler", normal["jitter_p99_us"] / 1000, "ms")
    out("hogs_jitter_p99_sched_fifo", rt["jitter_p99_us"] / 1000, "ms")
    out("hogs_jitter_max_sched_fifo", rt["jitter_max_us"] / 1000, "ms")
    out("hogs_jitter_p99_ratio_normal_over_fifo", normal["jitter_p99_us"] / max(rt["jitter_p99_us"], 1e-3), "x")


def bench_ros_goal(n: int = 300) -> None:
    """A motors/goal message published -> its sync write arriving at the
    simulator, through a real motor_node (100 Hz) and DDS on loopback."""
    import random
    import subprocess

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState

    from reachy_mini.sim.bus import send_command

    tmp = tempfile.mkdtemp(prefix="reachy_bench_goal_")
    link = os.path.join(tmp, "tty")
    env = dict(os.environ, ROS_DOMAIN_ID="97", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    node = subprocess.Popen([sys.executable, "-m", "reachy_mini.nodes.motor_node", "--ros-args", "-p", "use_sim:=true",
                             "-p", f"sim_link:={link}", "-p", "command_timeout_s:=0.0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["ROS_DOMAIN_ID"] = "97"
    rclpy.init()
    pub_node = rclpy.create_node("bench_goal")
    pub = pub_node.create_publisher(JointState, "motors/goal", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end and (pub.get_subscription_count() == 0 or not os.path.exists(link + ".ctl")):
            time.sleep(0.1)
        time.sleep(1.0)
        rng = random.Random(5)
        m = MotorMap.load().by_name["stewart_1"]
        pub.publish(JointState(name=["stewart_1"], position=[m.raw_to_rad(1600)]))
        time.sleep(0.5)   # there, within its joint range, at its maximum velocity
        send_command(link + ".ctl", {"cmd": "goals"})
        sent = []
        for k in range(n):
            time.sleep(rng.uniform(0.003, 0.013))
            raw = 1600 + k
            msg = JointState(name=["stewart_1"], position=[m.raw_to_rad(raw)])
            t = time.monotonic()
            pub.publish(msg)
            sent.append((t, raw))
        time.sleep(0.2)
        lat = _latencies(link + ".ctl", sent, m.id)
        print(f"# motors/goal message -> sync write on the wire, real motor_node at 100 Hz, {len(lat)}/{n} goals; "
              "goal p99 <= 3.5 ms")
        out("ros_goal_to_wire_p50", lat[len(lat) // 2], "ms")
        out("ros_goal_to_wire_p99", lat[int(0.99 * (len(lat) - 1))], "ms")
    finally:
        pub_node.destroy_node()
        rclpy.shutdown()
        node.send_signal(2)
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            node.kill()


def main(argv=None) -> int:
    from tools.bench import stack as bench_stack
    from tools.bench.camera_qos import bench_camera_qos
    from tools.bench.camera_sdk import bench_camera_sdk
    from tools.bench.dance import bench_dance
    from tools.bench.footprint import bench_footprint, bench_footprint_ab
    from tools.bench.sdk import bench_sdk

    sections = {"motors": bench_motors, "goal": bench_ros_goal, "envelope": bench_envelope, "health": bench_stack.bench_health,
                "media": bench_stack.bench_media, "camera_qos": bench_camera_qos,
                "camera_sdk": bench_camera_sdk,
                "web": bench_stack.bench_web, "stack": bench_stack.bench_stack, "sdk": bench_sdk,
                "dance": bench_dance, "footprint": bench_footprint, "footprint_ab": bench_footprint_ab}
    which = (argv if argv is not None else sys.argv[1:]) or [s for s in sections if s != "footprint_ab"]
    unknown = [w for w in which if w not in sections]
    if unknown:
        print(f"unknown bench section(s) {unknown}; known: {list(sections)}", file=sys.stderr)
        return 2
    for w in which:
        print(f"# --- {w} ---", flush=True)
        sections[w]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
