"""Benchmarks of the nodes (part of `make bench`):

- media: camera_node CPU % and achieved fps at 640x480, 30 fps, decoding an
  MJPEG video file through OpenCV (the V4L2 path minus the kernel) and with
  the synthetic source; audio_node CPU % at 16 kHz through real ALSA capture
  (file-plugin PCM fed by sim.fifo_mic) and with the synthetic source;

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

from tools.harness.diag_listener import DiagnosticsListener

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

    from reachy_mini.core.health.aggregator import load_aggregator
    from reachy_mini.core.levels import Level
    from reachy_mini.common.paths import config_path

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one core
    tmp = tempfile.mkdtemp(prefix="reachy_bench_health_")
    os.environ.setdefault("ROS_DOMAIN_ID", "97")
    rclpy.init(args=["bench", "--ros-args", "-p", f"data_dir:={tmp}", "-p", f"state_file:={tmp}/none.json"])
    from reachy_mini.nodes.health_node import HealthNode

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
        print("# one core; /diagnostics callback of health_node on DiagnosticArray messages of 50 statuses "
              "(5 values each, ~1 % level changes, recorded to SQLite); goal >= 20000", flush=True)
        node.db.flush()
        out("health_incident_records_written", node.db.written, "records")
        out("health_incident_records_dropped", node.db.dropped, "records")
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.shutdown()
    agg = load_aggregator(config_path("analyzers.yaml"))
    flat = [(s.name, Level.of(s.level), s.message, s.hardware_id, s.values) for a in arrays for s in a.status]
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The full stack under reachy-mini-bringup, as `make run` starts it:
    on the simulated robot (use_sim), or with whatever `extra` arguments
    (e.g. --params-file) choose. `env` adds environment variables; `python`
    runs another checkout's stack (its venv's interpreter), for before/after."""

    def __init__(self, tmp: str, extra: list[str] | None = None, domain: str = "96", use_sim: bool = True,
                 env: dict | None = None, port: int | None = None, python: str | None = None) -> None:
        self.tmp = tmp
        self.state = os.path.join(tmp, "state.json")
        self.port = port or free_port()
        # the camera's SDK socket in the stack's own directory: another stack or a test on this machine
        # serving the default /tmp/reachymini_camera_socket must not change what this one does
        self.env = env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                          "XDG_RUNTIME_DIR": tmp, "REACHY_MINI_SDK_CAMERA_SOCKET": os.path.join(tmp, "camera.sock"),
                          **(env or {})}
        argv = [python or sys.executable, "-m", "reachy_mini.ops.supervisor", "--state-file", self.state,
                "--data-dir", os.path.join(tmp, "data"), "--web-port", str(self.port)] + \
            (["--use-sim"] if use_sim else []) + (extra or [])
        self.log = open(os.path.join(tmp, "stack.log"), "w")
        # cwd: its own directory. `python -m` puts the working directory first on sys.path, so from
        # this checkout's root a `python` of another checkout would import this checkout's code.
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp)

    def nodes(self) -> dict:
        """The supervisor's view: node -> {pid, starts, restarts, last_exit, hang_restarts}."""
        try:
            with open(self.state) as f:
                return json.load(f)["nodes"]
        except (OSError, ValueError, KeyError):
            return {}

    def pids(self, timeout: float = 20.0) -> dict[str, int]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            nodes = self.nodes()
            if nodes and all(n["pid"] for n in nodes.values()):
                return {k: n["pid"] for k, n in nodes.items()}
            time.sleep(0.2)
        raise RuntimeError(f"stack did not start; see {self.log.name}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
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


def _sim_pid(tmp: str) -> int | None:
    import psutil

    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if "reachy_mini.sim.cli" in cmd and any(tmp in a for a in cmd):
            return p.info["pid"]
    return None


def bench_stack() -> None:
    """CPU of every process of the simulated stack with the page closed, then
    web_bridge with 5 page clients (SSE) connected."""
    import threading

    import httpx

    tmp = tempfile.mkdtemp(prefix="reachy_bench_stack_")
    st = Stack(tmp)
    stop = threading.Event()
    try:
        pids = st.pids()
        time.sleep(8.0)  # past start-up
        sim = _sim_pid(tmp)
        if sim:
            pids = dict(pids, sim=sim)
        cpu = cpu_of(pids, STACK_S)
        print(f"# full stack on the simulated robot, defaults (motors 100 Hz, camera 640x480 at 30 fps, "
              f"audio 16 kHz), page closed, CPU % of one core over {STACK_S:.0f} s", flush=True)
        for k, v in cpu.items():
            out(f"stack_{k}_cpu", v, "%")
        out("stack_total_cpu", sum(cpu.values()), "%")
        print("# goals: whole stack <= 25 %, web_bridge <= 2 %, motor_node <= 8 %, health_node < 3 %", flush=True)
        _tf_cost(st, pids)

        def client():
            while not stop.is_set():
                try:
                    with httpx.stream("GET", f"http://127.0.0.1:{st.port}/api/stream", timeout=None) as r:
                        for _ in r.iter_lines():
                            if stop.is_set():
                                return
                except httpx.HTTPError:
                    time.sleep(0.5)
        for _ in range(5):
            threading.Thread(target=client, daemon=True).start()
        time.sleep(3.0)
        web = cpu_of({"web_bridge": pids["web_bridge"]}, STACK_S / 2)["web_bridge"]
        out("stack_web_bridge_cpu_5_clients", web, "%")
        print("# goal: web_bridge <= 10 % with 5 page clients", flush=True)
    finally:
        stop.set()
        st.stop()
    bench_recorder()


def bench_recorder() -> None:
    """The flight recorder's cost: two idle stacks side by side (own domains,
    own simulated robots), one with recorder:=false, their health_node CPU
    sampled over the same window, so that the load of the machine falls on
    both alike; reported as the difference and the ratio."""
    import yaml

    from reachy_mini.common.paths import config_path

    with open(config_path("reachy_mini.yaml")) as f:
        params = yaml.safe_load(f)
    stacks = {}
    domains = os.environ.get("BENCH_RECORDER_DOMAINS", "93,92").split(",")   # runs side by side: pick others
    try:
        for label, domain, on in (("on", domains[0], True), ("off", domains[1], False)):
            tmp = tempfile.mkdtemp(prefix=f"reachy_bench_recorder_{label}_")
            p = dict(params)
            p.setdefault("/**/health_node", {}).setdefault("ros__parameters", {})["recorder"] = on
            pf = os.path.join(tmp, "params.yaml")
            with open(pf, "w") as f:
                yaml.safe_dump(p, f)
            stacks[label] = Stack(tmp, extra=["--params-file", pf], domain=domain)
        pids = {label: st.pids()["health_node"] for label, st in stacks.items()}
        time.sleep(45.0)   # past start-up, and the ring buffer full (its steady state)
        cpu = cpu_of(pids, STACK_S)
        print(f"# flight recorder: health_node CPU % of one core, two idle stacks side by side over the same "
              f"{STACK_S:.0f} s, recorder on vs recorder:=false; goal: difference <= 3 %", flush=True)
        out("stack_health_node_cpu_recorder_on", cpu["on"], "%")
        out("stack_health_node_cpu_recorder_off", cpu["off"], "%")
        out("stack_recorder_cpu_difference", cpu["on"] - cpu["off"], "%")
        out("stack_recorder_cpu_ratio_on_over_off", cpu["on"] / cpu["off"] if cpu["off"] else float("nan"), "x")
    finally:
        for st in stacks.values():
            st.stop()


def _tf_cost(st: "Stack", pids: dict[str, int]) -> None:
    """What /tf costs: motor_node's CPU with a /tf subscriber (RViz, a tf2
    listener) beside its CPU without one (above), and the CPU of a separate
    process that only receives joint_states, the least a separate TF node
    would spend before any kinematics."""
    secs = STACK_S / 2
    env = dict(os.environ, ROS_DOMAIN_ID=st.env["ROS_DOMAIN_ID"], ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    print(f"# /tf: motor_node publishes it from its per-sample thread (same FK as head/pose), {secs:.0f} s each",
          flush=True)
    for kind in ("tf", "joint_states"):
        sub = subprocess.Popen([sys.executable, "-m", "tools.bench.topic_sub", kind, str(secs + 1)], env=env,
                               stdout=subprocess.PIPE, text=True)
        time.sleep(3.0)   # start-up and discovery
        cpu = cpu_of({"motor_node": pids["motor_node"], "sub": sub.pid}, secs)
        rate = json.loads(sub.communicate(timeout=secs + 60)[0].strip().splitlines()[-1])["rate"]
        if kind == "tf":
            out("stack_motor_node_cpu_tf_subscribed", cpu["motor_node"], "%")
            out("stack_tf_rate", rate, "Hz")
        else:
            out("separate_joint_states_subscriber_cpu", cpu["sub"], "%")


def _node(module: str, env: dict, **params) -> subprocess.Popen:
    argv = [sys.executable, "-m", f"reachy_mini.nodes.{module}", "--ros-args"]
    for k, v in params.items():
        argv += ["-p", f"{k}:={v}"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _measure(proc: subprocess.Popen, warmup: float, seconds: float) -> float:
    time.sleep(warmup)
    if proc.poll() is not None:
        raise RuntimeError(f"node exited with {proc.returncode}")
    return cpu_of({"n": proc.pid}, seconds)["n"]


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def bench_media() -> None:
    import cv2
    import numpy as np

    from tools.harness.fifo_mic import ASOUNDRC, FifoMic

    tmp = tempfile.mkdtemp(prefix="reachy_bench_media_")
    env = dict(os.environ, ROS_DOMAIN_ID="95", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", HOME=tmp)
    video = os.path.join(tmp, "clip.avi")
    w = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    base = np.stack([(xx // 3) % 256, (yy // 2) % 256, ((xx + yy) // 4) % 256], -1).astype(np.int16)
    for i in range(90):   # gradients, a moving box, sensor-like noise: a camera-ish picture
        f = base + rng.integers(-6, 7, base.shape)
        f[100:220, 20 + i * 6:140 + i * 6] = (40, 200, 240)
        w.write(np.clip(f, 0, 255).astype(np.uint8))
    w.release()
    diag = DiagnosticsListener(95, "/diagnostics", "bench_fps")
    secs = min(STACK_S, 15.0)
    print(f"# camera_node at 640x480, target 30 fps, {secs:.0f} s; goal < 15 % of a core", flush=True)
    for label, params in (("file_mjpeg", {"device": video}), ("synthetic", {"use_sim": "true"})):
        p = _node("camera_node", env, fps=30.0, width=640, height=480, **params)
        try:
            cpu = _measure(p, 4.0, secs)
            achieved = float(diag.value("camera_node: camera", "measured fps") or 0.0)
        finally:
            _stop(p)
        out(f"camera_node_cpu_{label}", cpu, "%")
        out(f"camera_node_fps_{label}", achieved, "fps")
    diag.close()
    with open(os.path.join(tmp, ".asoundrc"), "w") as f:
        f.write(ASOUNDRC.format(name="bench_mic", fifo=os.path.join(tmp, "mic.fifo")))
    mic = FifoMic(os.path.join(tmp, "mic.fifo"))
    print(f"# audio_node at 16 kHz mono, 100 ms chunks, {secs:.0f} s; goal < 3 % of a core", flush=True)
    try:
        for label, params in (("alsa", {"device": "bench_mic"}), ("synthetic", {"use_sim": "true"})):
            p = _node("audio_node", env, **params)
            try:
                out(f"audio_node_cpu_{label}", _measure(p, 4.0, secs), "%")
            finally:
                _stop(p)
    finally:
        mic.close()


async def _open_loop(host: str, port: int, path: str, rate: float, seconds: float,
                     conns: int = 32, warmup_s: float = 1.0) -> list[float]:
    """Requests released on a fixed schedule (no coordinated omission) to a
    pool of keep-alive HTTP/1.1 connections; latency counts from the
    scheduled time, so queueing in the client or server is included. A
    minimal client (asyncio streams, pre-built request) so that the load
    generator is not what is measured. The first `warmup_s` at the same rate
    are not recorded: the first request on each fresh connection costs up to
    70 ms (measured), which is start-up, not the steady state."""
    import asyncio

    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    q: asyncio.Queue = asyncio.Queue()
    lat: list[float] = []
    errors = 0

    t0 = 0.0

    async def worker() -> None:
        nonlocal errors
        r, w = await asyncio.open_connection(host, port)
        while True:
            t_sched = await q.get()
            if t_sched is None:
                w.close()
                return
            w.write(req)
            head = await r.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            await r.readexactly(n)
            if not (head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.1 503")):
                errors += 1
            if t_sched >= t0 + warmup_s:
                lat.append(time.perf_counter() - t_sched)
    workers = [asyncio.create_task(worker()) for _ in range(conns)]
    await asyncio.sleep(0.2)
    t0 = time.perf_counter()
    for i in range(int(rate * (warmup_s + seconds))):
        t_sched = t0 + i / rate
        d = t_sched - time.perf_counter()
        if d > 0:
            await asyncio.sleep(d)
        q.put_nowait(t_sched)
    for _ in workers:
        q.put_nowait(None)
    await asyncio.gather(*workers)
    if errors:
        print(f"# {errors} unexpected responses", flush=True)
    return lat


def _sse_clients(port: int, n: int, stop) -> list[int]:
    """n live page connections to /api/stream, read by one asyncio thread with
    raw sockets (a light client: what is measured is the server's cost, not
    the load generator's). Returns per-client update counts (filled live)."""
    import asyncio
    import threading

    counts = [0] * n

    async def one(i: int) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /api/stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        while not stop.is_set():
            try:
                chunk = await asyncio.wait_for(r.read(65536), 0.5)
            except asyncio.TimeoutError:
                continue
            if not chunk:
                return
            counts[i] += chunk.count(b"\ndata: ") + chunk.startswith(b"data: ")
        w.close()

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
    return counts


def bench_web() -> None:
    import asyncio
    import threading

    tmp = tempfile.mkdtemp(prefix="reachy_bench_web_")
    st = Stack(tmp, domain="94")
    try:
        st.pids()
        time.sleep(6.0)
        lat = sorted(asyncio.run(_open_loop("127.0.0.1", st.port, "/api/health", 500.0, 10.0)))
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
        print("# /api/health, open loop at 500 req/s for 10 s after 1 s of warm-up on loopback, full stack running; goal p99 < 10 ms",
              flush=True)
        out("web_health_p50_at_500rps", p(0.50), "ms")
        out("web_health_p99_at_500rps", p(0.99), "ms")
        out("web_health_max_at_500rps", lat[-1] * 1000, "ms")
        diag = DiagnosticsListener(94, "/diagnostics", "bench_loop")
        time.sleep(12.0)   # the loop statistics cover the last 10 s
        quiet = diag.values("motor_node: bus")
        stop = threading.Event()
        counts = _sse_clients(st.port, 100, stop)
        time.sleep(12.0)
        loaded = diag.values("motor_node: bus")
        stop.set()
        diag.close()
        print(f"# motor loop with 0 vs 100 live page clients (SSE), last 10 s each; the 100 clients received "
              f"{sum(counts)} updates", flush=True)
        for key, name in (("cycle p99 (us)", "cycle_p99"), ("jitter p99 (us)", "jitter_p99")):
            a, b = float(quiet.get(key, "nan")), float(loaded.get(key, "nan"))
            out(f"motor_loop_{name}_0_clients", a / 1000, "ms")
            out(f"motor_loop_{name}_100_clients", b / 1000, "ms")
            out(f"motor_loop_{name}_ratio_100_over_0", b / a if a else float("nan"), "x")
        out("motor_loop_rate_100_clients", float(loaded.get("achieved rate (Hz)", "nan")), "Hz")
    finally:
        st.stop()
