"""Benchmarks of the nodes (part of `make bench`):

- health: aggregator throughput on one core, through health_node's real
  /diagnostics callback (DiagnosticArray messages, level bytes, routing,
  stale watch, incident recording) and for the core alone;
- stack: CPU % of every node with the full stack running on the simulated
  robot (reachy-mini-bringup --use-sim), sampled with psutil.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

STACK_S = float(os.environ.get("BENCH_STACK_S", "30"))


def out(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.3f} {unit}", flush=True)


def _arrays(n_msgs: int = 100, per_msg: int = 50):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    names = (["motor_node: bus"] + [f"motor_node: m{i}" for i in range(9)] + ["camera_node: camera",
             "audio_node: microphone", "web_bridge: http", "health_node: system"]
             + [f"health_node: node n{i}" for i in range(5)] + [f"other_{i}: task" for i in range(31)])
    arrays = []
    for k in range(n_msgs):
        arr = DiagnosticArray()
        for j in range(per_msg):
            lv = 2 if (k * per_msg + j) % 97 == 0 else 0   # ~1 % of entries change level
            arr.status.append(DiagnosticStatus(level=bytes([lv]), name=names[j % len(names)], message="OK",
                                               hardware_id="hw", values=[KeyValue(key=f"k{x}", value="1.0")
                                                                         for x in range(5)]))
        arrays.append(arr)
    return arrays


def bench_health() -> None:
    import rclpy

    from .health_core import load_aggregator
    from .paths import config_path

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one core
    tmp = tempfile.mkdtemp(prefix="reachy_bench_health_")
    os.environ.setdefault("ROS_DOMAIN_ID", "97")
    rclpy.init(args=["bench", "--ros-args", "-p", f"data_dir:={tmp}", "-p", f"state_file:={tmp}/none.json"])
    from .nodes.health_node import HealthNode

    node = HealthNode()
    arrays = _arrays()
    try:
        for a in arrays[:20]:
            node._on_diag(a)
        n_entries = 0
        t0 = last_pub = time.perf_counter()
        while time.perf_counter() - t0 < 5.0:
            for a in arrays:
                node._on_diag(a)
                n_entries += len(a.status)
            if time.perf_counter() - last_pub >= 1.0:  # the 1 Hz report, publish and recording
                last_pub = time.perf_counter()
                node._publish()
        dt = time.perf_counter() - t0
        out("health_aggregator_callback_throughput", n_entries / dt, "entries/s")
        print(f"# one core; /diagnostics callback of health_node on DiagnosticArray messages of 50 statuses "
              f"(5 values each, ~1 % level changes, recorded to SQLite); goal >= 20000", flush=True)
        node.db.flush()
        out("health_incident_records_written", node.db.written, "records")
        out("health_incident_records_dropped", node.db.dropped, "records")
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.shutdown()
    agg = load_aggregator(config_path("analyzers.yaml"))
    flat = [(s.name, s.level[0], s.message, s.hardware_id, s.values) for a in arrays for s in a.status]
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        now = time.monotonic()
        for name, lv, msg, hw, vals in flat:
            agg.update(name, lv, msg, hw, vals, now)
        n += len(flat)
    out("health_aggregator_core_throughput", n / (time.perf_counter() - t0), "entries/s")
    t0 = time.perf_counter()
    for _ in range(200):
        agg.report(time.monotonic())
    out("health_report_time", (time.perf_counter() - t0) / 200 * 1000, "ms")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The full stack on the simulated robot, as `make run` starts it."""

    def __init__(self, tmp: str, extra: list[str] | None = None, domain: str = "96") -> None:
        import psutil  # noqa: F401

        self.tmp = tmp
        self.state = os.path.join(tmp, "state.json")
        self.port = _free_port()
        env = dict(os.environ, ROS_DOMAIN_ID=domain, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                   XDG_RUNTIME_DIR=tmp)
        argv = [sys.executable, "-m", "reachy_mini.supervisor", "--use-sim", "--state-file", self.state,
                "--data-dir", os.path.join(tmp, "data"), "--web-port", str(self.port)] + (extra or [])
        self.log = open(os.path.join(tmp, "stack.log"), "w")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def pids(self, timeout: float = 20.0) -> dict[str, int]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with open(self.state) as f:
                    nodes = json.load(f)["nodes"]
                if all(n["pid"] for n in nodes.values()):
                    return {k: n["pid"] for k, n in nodes.items()}
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"stack did not start; see {self.log.name}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def cpu_of(pids: dict[str, int], seconds: float) -> dict[str, float]:
    import psutil

    procs = {k: psutil.Process(p) for k, p in pids.items()}
    for p in procs.values():
        p.cpu_percent(None)
    time.sleep(seconds)
    return {k: p.cpu_percent(None) for k, p in procs.items()}


def bench_stack() -> None:
    tmp = tempfile.mkdtemp(prefix="reachy_bench_stack_")
    st = Stack(tmp)
    try:
        pids = st.pids()
        time.sleep(8.0)  # past start-up
        cpu = cpu_of(pids, STACK_S)
        print(f"# full stack on the simulated robot, defaults (motors 100 Hz, camera 640x480 at 30 fps, "
              f"audio 16 kHz), CPU % of one core over {STACK_S:.0f} s", flush=True)
        for k, v in cpu.items():
            out(f"stack_{k}_cpu", v, "%")
        print("# goal: health_node < 3 %", flush=True)
    finally:
        st.stop()
