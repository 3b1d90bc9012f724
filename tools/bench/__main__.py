"""`make bench`: figures as `name: value unit` lines. Sections (all by
default; `make bench BENCH="motors health"` picks some): motors, health,
media, web, stack (see bench_stack.py).

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


def bench_goal_latency(port: str, control: str, sdk_ok: bool, n: int = 300) -> None:
    """A goal call to its bytes on the wire, at 100 Hz: ours (the loop wakes
    and writes in the next free bus slot), with dynamixel-sdk (a direct sync
    write, no loop) and the vendor's control loop as baselines."""
    import random

    from reachy_mini.sim.bus import send_command

    rng = random.Random(3)
    mm = MotorMap.load()
    m = mm.by_name["stewart_1"]
    drv = Driver(port, mm, loop_rate_hz=100.0, status_rate_hz=2.0)
    drv.start()
    try:
        drv.set_torque(True)
        time.sleep(0.3)
        send_command(control, {"cmd": "goals"})   # clears the log
        sent = []
        for k in range(n):
            time.sleep(rng.uniform(0.003, 0.013))   # any phase of the 10 ms cycle
            raw = 1000 + k
            t = time.monotonic()
            drv.set_goals_raw({m.id: raw})
            sent.append((t, raw))
        time.sleep(0.1)
        merged = drv.stats().get("goals_merged", 0)
    finally:
        drv.stop()
    ours = _latencies(control, sent, m.id)
    print(f"# goal call -> sync write on the wire, 100 Hz loop, {len(ours)}/{n} goals; wire limit: one sync "
          "write (59 B = 0.59 ms) after the transaction in progress (<= 1.6 ms)")
    out("goal_to_wire_p50", ours[len(ours) // 2], "ms")
    out("goal_to_wire_p99", ours[int(0.99 * (len(ours) - 1))], "ms")
    out("goals_merged", merged, "goals")
    if sdk_ok:
        sdk_goal_latency(port, control, n)
    vendor_goal_latency(port, control, n)


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


def _sched_fifo_all_threads(pid: int, priority: int) -> str:
    """Every thread of `pid` to SCHED_FIFO `priority` (0: back to normal)."""
    policy = os.SCHED_FIFO if priority > 0 else os.SCHED_OTHER
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setscheduler(int(tid), policy, os.sched_param(priority))
    except OSError as e:
        return f"normal scheduler (SCHED_FIFO refused: {e})"
    return f"SCHED_FIFO {priority}" if priority > 0 else "normal scheduler"


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
    sim_rt = _sched_fifo_all_threads(sim_pid, 30)
    hogs = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", str(int(4 * JITTER_S + 30)), "--quiet"])
    try:
        time.sleep(1.0)
        normal = ours_jitter(port)
        rt = ours_jitter(port, realtime_priority=20)
    finally:
        hogs.terminate()
        hogs.wait()
        _sched_fifo_all_threads(sim_pid, 0)
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
        send_command(link + ".ctl", {"cmd": "goals"})
        sent = []
        for k in range(n):
            time.sleep(rng.uniform(0.003, 0.013))
            raw = 1200 + k
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
    from tools.bench.sdk import bench_sdk

    sections = {"motors": bench_motors, "goal": bench_ros_goal, "health": bench_stack.bench_health,
                "media": bench_stack.bench_media,
                "web": bench_stack.bench_web, "stack": bench_stack.bench_stack, "sdk": bench_sdk}
    which = (argv if argv is not None else sys.argv[1:]) or list(sections)
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
