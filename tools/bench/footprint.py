"""`make bench BENCH=footprint`: our stack beside the vendor's daemon
(PyPI reachy-mini 1.13.0, full install in .venv-vendor, made by
tools/vendor_daemon_venv.sh), one after the other in one run, each on a fresh
simulated bus (the same XL330 simulator, 1 Mbaud wire timing), alone:

- vendor daemon (`--no-media --headless`), idle, then with one SDK client
  streaming set_target at 50 Hz; it runs in its own network namespace with
  only loopback (it announces itself by mDNS on every interface), telemetry off;
- ours, motor_node + health_node + web_bridge under reachy-mini-bringup with
  our shipped settings (config/reachy_mini.yaml: 100 Hz loop, every health
  check, the flight recorder on), idle, then with the same client;
- ours, the full stack (every node of the node table, camera and audio on
  their simulated sources), idle;
- the same two (core idle and with the client, full idle) with
  `--one-process` (motor_node, health_node, web_bridge in one process).

Per configuration: CPU of the whole process tree (the simulator left out) in
% of one core, from /proc CPU ticks (time the processes ran, so that other
load on the machine distorts it little), PSS (smaps_rollup) and RSS summed
over the processes, processes / threads, open fds; after FOOTPRINT_WARMUP_S
(20 s) of warm-up, FOOTPRINT_WINDOWS (3) windows of FOOTPRINT_WINDOW_S (20 s):
the median window is reported. With the client: goal -> wire latency of the
SDK's set_target (the right antenna's goal, matched on the simulator's wire
log, same monotonic clock), and the RSS / fd slope over the client phase.
Then the ratios ours / vendor as `footprint_ratio_*` lines.
FOOTPRINT_OURS_PYTHON=<another checkout>/.venv/bin/python measures that
checkout's stack instead; `BENCH=footprint_ab` (bench_footprint_ab) measures
a change before/after with both stacks side by side.
FOOTPRINT_ONLY=vendor,core,full,core1,full1 picks configurations (core1,
full1: --one-process); the footprint_ratio_* lines are the separate
processes' (the default), footprint_ratio_*_one_process the one-process
mode's.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

from tools.bench.stack import Stack, free_port, out

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SDK_PY = os.path.join(REPO, ".venv-sdk", "bin", "python")
VENDOR_VENV = os.path.join(REPO, os.environ.get("VENDOR_VENV", ".venv-vendor"))
WARMUP_S = float(os.environ.get("FOOTPRINT_WARMUP_S", "20"))
WINDOW_S = float(os.environ.get("FOOTPRINT_WINDOW_S", "20"))
WINDOWS = int(os.environ.get("FOOTPRINT_WINDOWS", "3"))
CLIENT_HZ = 50.0
# The robot's core: what the vendor's daemon does (motors, state, the SDK's
# server) plus our health checks. The full stack is the whole node table.
CORE = ("motor_node", "health_node", "web_bridge")
ANTENNA_ID = 17          # right_antenna, both stacks
CLK_TCK = os.sysconf("SC_CLK_TCK")
TICKS_PER_RAD = 4096 / (2 * math.pi)

CLIENT = textwrap.dedent("""
    import json, math, sys, time
    from reachy_mini import ReachyMini
    from reachy_mini.utils import create_head_pose
    port, hz, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    with ReachyMini(port=port, media_backend="no_media") as r:
        print("ready", flush=True)
        sys.stdin.readline()
        sent, t_next, k, end = [], time.monotonic(), 0, time.monotonic() + seconds
        while time.monotonic() < end:
            t_next += 1.0 / hz
            time.sleep(max(0.0, t_next - time.monotonic()))
            i = k % 300
            raw = 1748 + 4 * (i if i < 150 else 300 - i)     # a triangle: each goal differs from the last
            v = (raw - 2048) * 2 * math.pi / 4096
            head = create_head_pose(pitch=5 * math.sin(k / 50), degrees=True)
            t = time.monotonic()
            r.set_target(head=head, antennas=[v, v])
            sent.append((t, v))
            k += 1
        print(json.dumps(sent), flush=True)
""")


# ---- /proc
def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def tree(root: int) -> list[int]:
    """root and its descendants, without the simulated bus (the servos)."""
    kids, out_, todo = _children(), [], [root]
    while todo:
        p = todo.pop()
        if "reachy_mini.sim.cli" in _cmdline(p).split(" "):   # python -m reachy_mini.sim.cli
            continue
        out_.append(p)
        todo += kids.get(p, [])
    return out_


def _ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])       # utime + stime (fields 14, 15)


def _status(pid: int) -> tuple[int, float]:
    threads, rss = 0, 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return threads, rss


def _pss(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return 0.0


def snapshot(root: int) -> dict:
    """Per process of the tree: name, ticks, threads, RSS, PSS, fds."""
    procs = {}
    for pid in tree(root):
        try:
            threads, rss = _status(pid)
            procs[pid] = {"name": _name(pid), "ticks": _ticks(pid), "threads": threads, "rss": rss,
                          "pss": _pss(pid), "fds": len(os.listdir(f"/proc/{pid}/fd"))}
        except (OSError, ValueError):
            continue
    return {"t": time.monotonic(), "procs": procs}


def _name(pid: int) -> str:
    from reachy_mini.common.node_table import hosted_nodes, process_name

    cmd = _cmdline(pid)
    hosted = hosted_nodes(cmd.split())
    if hosted:
        return process_name(hosted)   # a shared process (--one-process): "robot", "media"
    for part in cmd.split():
        if part.startswith("reachy_mini.nodes."):
            return part.rsplit(".", 1)[1]
        if part.endswith("reachy_mini.ops.supervisor") or part.endswith("reachy-mini-bringup"):
            return "supervisor"
        if part.endswith("reachy-mini-daemon"):
            return "vendor_daemon"
    return cmd.split(" ", 1)[0].rsplit("/", 1)[-1] or str(pid)


def window(a: dict, b: dict) -> dict:
    """CPU % of one core per process name between two snapshots (processes
    alive at both), and the memory figures of the second."""
    dt = b["t"] - a["t"]
    cpu: dict[str, float] = {}
    for pid, p in b["procs"].items():
        if pid in a["procs"]:
            cpu[p["name"]] = cpu.get(p["name"], 0.0) + (p["ticks"] - a["procs"][pid]["ticks"]) / CLK_TCK / dt * 100
    ps = b["procs"].values()
    pss_by: dict[str, float] = {}
    for p in ps:
        pss_by[p["name"]] = pss_by.get(p["name"], 0.0) + p["pss"]
    return {"cpu": sum(cpu.values()), "cpu_by": cpu, "pss": sum(p["pss"] for p in ps),
            "rss": sum(p["rss"] for p in ps), "threads": sum(p["threads"] for p in ps),
            "procs": len(b["procs"]), "fds": sum(p["fds"] for p in ps), "pss_by": pss_by}


def measure(root: int, label: str, alive=lambda: True, on_window=None) -> dict:
    """FOOTPRINT_WINDOWS windows; the window with the median CPU is the figure."""
    snaps = [snapshot(root)]
    wins = []
    for _ in range(WINDOWS):
        time.sleep(WINDOW_S)
        if not alive():
            raise RuntimeError(f"{label}: a process of the configuration exited")
        snaps.append(snapshot(root))
        wins.append(window(snaps[-2], snaps[-1]))
        if on_window:
            on_window()
    cpus = [w["cpu"] for w in wins]
    med = sorted(wins, key=lambda w: w["cpu"])[len(wins) // 2]
    med = dict(med, cpu_windows=cpus, snaps=snaps)
    print(f"# {label}: CPU % per window {', '.join(f'{c:.1f}' for c in cpus)}; median window: "
          + ", ".join(f"{k} {v:.1f}" for k, v in sorted(med["cpu_by"].items())) + " (% CPU); PSS MB "
          + ", ".join(f"{k} {v:.0f}" for k, v in sorted(med["pss_by"].items())), flush=True)
    return med


def report(key: str, m: dict) -> None:
    out(f"footprint_{key}_cpu", m["cpu"], "% of one core")
    out(f"footprint_{key}_pss", m["pss"], "MB")
    out(f"footprint_{key}_rss", m["rss"], "MB")
    out(f"footprint_{key}_processes", m["procs"], "processes")
    out(f"footprint_{key}_threads", m["threads"], "threads")


def slopes(key: str, m: dict) -> None:
    """RSS (MB/min) and fds (per min) over the windows: a least-squares slope."""
    snaps = m["snaps"]
    if len(snaps) < 3:
        return
    ts = [(s["t"] - snaps[0]["t"]) / 60 for s in snaps]
    for what, unit in (("rss", "MB/min"), ("fds", "fds/min")):
        ys = [sum(p[what] for p in s["procs"].values()) for s in snaps]
        tm, ym = statistics.fmean(ts), statistics.fmean(ys)
        den = sum((t - tm) ** 2 for t in ts)
        out(f"footprint_{key}_{what}_slope", sum((t - tm) * (y - ym) for t, y in zip(ts, ys)) / den if den else 0.0, unit)


# ---- latency: set_target -> its goal on the wire
def latencies(sent: list[tuple[float, float]], log: list) -> tuple[list[float], int]:
    """ms from each set_target call to the first write of its antenna goal
    (within 1 s), with the rad -> raw convention (sign) that matches most."""
    writes = sorted((t, raw) for t, i, raw in log if i == ANTENNA_ID)
    best: list[float] = []
    for sign in (1, -1):
        lat, j = [], 0
        for t_call, v in sent:
            raw = round(2048 + sign * v * TICKS_PER_RAD)
            while j < len(writes) and writes[j][0] < t_call:
                j += 1
            for t, r in writes[j:]:
                if t - t_call > 1.0:
                    break
                if abs(r - raw) <= 1:
                    lat.append((t - t_call) * 1000)
                    break
        if len(lat) > len(best):
            best = lat
    return sorted(best), len(sent) - len(best)


class Goals:
    """Drains the simulator's wire log of goal writes (it holds 100 000)."""

    def __init__(self, control: str) -> None:
        from reachy_mini.sim.bus import send_command

        self.send, self.control, self.log = send_command, control, []
        self.send(control, {"cmd": "goals"})

    def drain(self) -> None:
        self.log += self.send(self.control, {"cmd": "goals"})["goals"]


def with_client(port: int, root: int, label: str, control: str, alive, netns_pid: int | None = None,
                attempts: int = 2) -> tuple[dict, list[float], int]:
    """with_client_once(), once more if the client lost its connection (seen
    with the vendor's daemon on a starved machine)."""
    for attempt in range(1, attempts + 1):
        try:
            return with_client_once(port, root, label, control, alive, netns_pid)
        except ClientLost as e:
            print(f"# {label}: attempt {attempt}: {e}", flush=True)
    raise RuntimeError(f"{label}: the SDK client lost its connection {attempts} times")


class ClientLost(RuntimeError):
    pass


def with_client_once(port: int, root: int, label: str, control: str, alive,
                     netns_pid: int | None = None) -> tuple[dict, list[float], int]:
    """One SDK client streaming set_target at 50 Hz during the windows."""
    seconds = 5.0 + WINDOWS * WINDOW_S + 1.0
    argv = [SDK_PY, "-c", CLIENT, str(port), str(CLIENT_HZ), str(seconds)]
    if netns_pid is not None:
        argv = ["nsenter", f"--net=/proc/{netns_pid}/ns/net", "--"] + argv
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(REACHY_MINI_TELEMETRY="0", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1")
    p = subprocess.Popen(argv, cwd=tempfile.gettempdir(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env=env)
    try:
        line = p.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"{label}: the SDK client did not connect ({line!r})")
        goals = Goals(control)
        p.stdin.write("\n")
        p.stdin.flush()
        time.sleep(5.0)     # the stream settles
        goals.drain()
        goals.log.clear()
        def both_alive() -> bool:
            if p.poll() is not None:
                raise ClientLost(f"the SDK client exited with {p.returncode} during the windows: not measured")
            return alive()
        m = measure(root, label, both_alive, goals.drain)
        line = p.stdout.readline()
        if not line.strip():
            raise ClientLost(f"the SDK client stopped before the end (exit {p.wait(30)}): not measured")
        sent = json.loads(line)
        p.wait(30)
        goals.drain()
        t_from = m["snaps"][0]["t"]
        lat, missed = latencies([s for s in sent if t_from <= s[0] <= m["snaps"][-1]["t"] - 1.0], goals.log)
        return m, lat, missed
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _pct(xs: list[float], q: float) -> float:
    return xs[int(q * (len(xs) - 1))] if xs else float("nan")


def _wait_http(port: int, netns_pid: int | None, timeout: float = 60.0) -> None:
    """Until the daemon answers on its port (inside its namespace)."""
    probe = ["python3", "-c", "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()",
             str(port)]
    if netns_pid is not None:
        probe = ["nsenter", f"--net=/proc/{netns_pid}/ns/net", "--"] + probe
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if subprocess.run(probe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"nothing answers on port {port} after {timeout:.0f} s")


def _daemon_status(port: int, netns_pid: int) -> dict:
    """The vendor daemon's GET /api/daemon/status, from inside its namespace ({} if none)."""
    probe = ["nsenter", f"--net=/proc/{netns_pid}/ns/net", "--", "python3", "-c",
             "import sys, urllib.request; print(urllib.request.urlopen("
             "f'http://127.0.0.1:{sys.argv[1]}/api/daemon/status', timeout=5).read().decode())", str(port)]
    r = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {}


def _start_vendor(tmp: str, pty: str, port: int, env: dict, daemon: str, log) -> subprocess.Popen:
    """The daemon, its control loop running (state "running", backend ready);
    RuntimeError with its own reason otherwise (e.g. motors not found at
    start on a starved machine)."""
    argv = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", daemon,
            "--serialport", pty, "--fastapi-host", "127.0.0.1", "--fastapi-port", str(port), "--no-media",
            "--headless", "--no-preload-datasets", "--dataset-update-interval", "0"]
    d = subprocess.Popen(argv, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(port, d.pid)
        end, st = time.monotonic() + 60, {}
        while time.monotonic() < end and d.poll() is None:
            st = _daemon_status(port, d.pid)
            if st.get("state") == "running" and (st.get("backend_status") or {}).get("ready"):
                return d
            if st.get("state") == "error":
                break
            time.sleep(1.0)
        raise RuntimeError(f"the daemon's loop is not running (state {st.get('state')!r}, "
                           f"error {st.get('error')!r})")
    except Exception:
        _stop_vendor(d)
        raise


def _stop_vendor(d: subprocess.Popen) -> None:
    d.terminate()
    try:
        d.wait(20)
    except subprocess.TimeoutExpired:
        d.kill()
        d.wait()


def vendor(results: dict) -> None:
    from reachy_mini.sim.child import start_sim, stop_sim

    daemon = os.path.join(VENDOR_VENV, "bin", "reachy-mini-daemon")
    if not os.path.exists(os.path.join(VENDOR_VENV, ".installed")):
        why = open(VENDOR_VENV + ".failed").read().strip() if os.path.exists(VENDOR_VENV + ".failed") else \
            "run tools/vendor_daemon_venv.sh"
        print(f"# footprint: vendor daemon not installed ({why}): its side skipped", flush=True)
        return
    if not shutil.which("unshare") or os.geteuid() != 0:
        print("# footprint: the vendor daemon runs in its own network namespace (unshare --net): needs root; "
              "its side skipped", flush=True)
        return
    port = 8000   # its own namespace: the SDK's default port, nothing else there
    d = sim = None
    for attempt in (1, 2):   # a start on a starved machine can miss motors: once more, on a fresh bus
        tmp = tempfile.mkdtemp(prefix="reachy_bench_fp_vendor_")
        sim, pty, control = start_sim(os.path.join(tmp, "tty"), wire_timing=True)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(REACHY_MINI_TELEMETRY="0", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", HOME=tmp,
                   HF_HOME=os.path.join(tmp, "hf"), XDG_CONFIG_HOME=os.path.join(tmp, "config"),
                   XDG_CACHE_HOME=os.path.join(tmp, "cache"))
        log = open(os.path.join(tmp, "daemon.log"), "w")
        try:
            d = _start_vendor(tmp, pty, port, env, daemon, log)
            break
        except Exception as e:  # noqa: BLE001 - said, then retried or reported
            print(f"# footprint: vendor daemon start {attempt} failed: {e}; log {log.name}", flush=True)
            log.close()
            stop_sim(sim)
            sim = None
    if d is None:
        print("# footprint: the vendor daemon did not start: its side not measured", flush=True)
        return
    try:
        time.sleep(WARMUP_S)
        alive = lambda: d.poll() is None and _daemon_status(port, d.pid).get("state") == "running"   # noqa: E731
        results["vendor_idle"] = measure(d.pid, "vendor daemon 1.13.0 --no-media --headless, idle", alive)
        m, lat, missed = with_client(port, d.pid, "vendor daemon + SDK client at 50 Hz", control, alive, d.pid)
        results["vendor_client"], results["vendor_latency"] = m, lat
        print(f"# vendor: set_target -> wire, {len(lat)} goals matched, {missed} not seen within 1 s", flush=True)
    except Exception as e:  # noqa: BLE001 - the bench reports a baseline's failure and goes on
        print(f"# footprint: vendor daemon failed: {e}; log {log.name}", flush=True)
    finally:
        _stop_vendor(d)
        log.close()
        stop_sim(sim)


def ours(results: dict, key: str, nodes: tuple[str, ...], client: bool, label: str, extra: list[str] | None = None) -> None:
    from reachy_mini.common.node_table import NODES

    tmp = tempfile.mkdtemp(prefix=f"reachy_bench_fp_{key}_")
    only = ["--only", *nodes] if set(nodes) != {n.name for n in NODES} else []
    st = Stack(tmp, extra=only + (extra or []), domain=os.environ.get("ROS_DOMAIN_ID", "96"),
               port=int(os.environ.get("BENCH_FOOTPRINT_PORT", "0")) or free_port(),
               python=os.environ.get("FOOTPRINT_OURS_PYTHON") or None)
    try:
        st.pids()
        _wait_http(st.port, None)
        time.sleep(WARMUP_S)
        alive = lambda: st.proc.poll() is None and all(n["pid"] for n in st.nodes().values())  # noqa: E731
        results[f"{key}_idle"] = measure(st.proc.pid, f"{label}, idle", alive)
        if client:
            ctl = os.path.join(tmp, "reachy_mini_sim", "ttyDXL.ctl")
            m, lat, missed = with_client(st.port, st.proc.pid, f"{label} + SDK client at 50 Hz", ctl, alive)
            results[f"{key}_client"], results[f"{key}_latency"] = m, lat
            print(f"# {key}: set_target -> wire, {len(lat)} goals matched, {missed} not seen within 1 s", flush=True)
    finally:
        st.stop()


def _ratio(name: str, a: float | None, b: float | None, goal: float) -> None:
    if a is None or b is None or not b:
        print(f"# {name}: not measured", flush=True)
        return
    r = a / b
    out(name, r, f"x (goal <= {goal}: {'met' if r <= goal else 'NOT met'})")


def bench_footprint() -> None:
    from reachy_mini.common.node_table import NODES

    if not os.path.exists(os.path.join(REPO, ".venv-sdk", ".installed")):
        print("# footprint: no .venv-sdk (make sdk-venv): the SDK client cannot run; skipped", flush=True)
        return
    full = tuple(n.name for n in NODES)
    print(f"# footprint: {WARMUP_S:.0f} s warm-up, {WINDOWS} windows of {WINDOW_S:.0f} s each (the median window), "
          f"CPU of the process tree from /proc ticks in % of one core, simulator excluded; full stack = {', '.join(full)}",
          flush=True)
    r: dict = {}
    only = os.environ.get("FOOTPRINT_ONLY", "vendor,core,full,core1,full1").split(",")
    if "vendor" in only:
        vendor(r)
    if "core" in only:
        ours(r, "core", CORE, True, "ours: " + " + ".join(CORE))
    if "full" in only:
        ours(r, "full", full, False, "ours: full stack")
    if "core1" in only:
        ours(r, "core1", CORE, True, "ours, --one-process: " + " + ".join(CORE), ["--one-process"])
    if "full1" in only:
        ours(r, "full1", full, False, "ours, --one-process: full stack", ["--one-process"])
    for key in ("vendor_idle", "vendor_client", "core_idle", "core_client", "full_idle", "core1_idle", "core1_client",
                "full1_idle"):
        if key in r:
            report(key, r[key])
    for key in ("vendor_client", "core_client", "core1_client"):
        if key in r:
            slopes(key, r[key])
    for key in ("vendor", "core", "core1"):
        lat = r.get(f"{key}_latency")
        if lat:
            out(f"footprint_{key}_latency_p50", _pct(lat, 0.5), "ms")
            out(f"footprint_{key}_latency_p99", _pct(lat, 0.99), "ms")
    g = lambda k, f: r[k][f] if k in r else None   # noqa: E731
    lv = r.get("vendor_latency")
    for core, full, tail in (("core", "full", ""), ("core1", "full1", "_one_process")):
        if f"{core}_idle" not in r and f"{full}_idle" not in r:
            continue
        _ratio(f"footprint_ratio_cpu_idle_core{tail}", g(f"{core}_idle", "cpu"), g("vendor_idle", "cpu"), 1.0)
        _ratio(f"footprint_ratio_cpu_client{tail}", g(f"{core}_client", "cpu"), g("vendor_client", "cpu"), 1.0)
        _ratio(f"footprint_ratio_cpu_idle_full{tail}", g(f"{full}_idle", "cpu"), g("vendor_idle", "cpu"), 1.5)
        _ratio(f"footprint_ratio_pss_full{tail}", g(f"{full}_idle", "pss"), g("vendor_idle", "pss"), 1.2)
        lo = r.get(f"{core}_latency")
        _ratio(f"footprint_ratio_latency_median{tail}", _pct(lo, 0.5) if lo else None,
               _pct(lv, 0.5) if lv else None, 0.5)


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    bench_footprint()


def bench_footprint_ab() -> None:
    """`make bench BENCH=footprint_ab FOOTPRINT_BEFORE_PYTHON=<checkout>/.venv/bin/python`:
    a change measured before/after on a busy machine. Two core stacks side
    by side (the other checkout's and this one, own domains and simulators),
    their CPU over the same FOOTPRINT_WINDOWS windows, so that the machine's
    load falls on both alike; FOOTPRINT_AB_CLIENT=1 adds one SDK client at
    50 Hz to each; FOOTPRINT_AB_ONE_PROCESS=1 runs both with --one-process.
    With the client, each side's goal -> wire latency median is printed too."""
    before = os.environ.get("FOOTPRINT_BEFORE_PYTHON")
    if not before:
        print("# footprint_ab: set FOOTPRINT_BEFORE_PYTHON to the other checkout's .venv/bin/python", flush=True)
        return
    client = os.environ.get("FOOTPRINT_AB_CLIENT") == "1"
    one = ["--one-process"] if os.environ.get("FOOTPRINT_AB_ONE_PROCESS") == "1" else []
    base = int(os.environ.get("ROS_DOMAIN_ID", "96"))
    stacks, clients = {}, []
    try:
        for i, (label, py) in enumerate((("before", before), ("after", None))):
            tmp = tempfile.mkdtemp(prefix=f"reachy_bench_fp_ab_{label}_")
            stacks[label] = Stack(tmp, extra=["--only", *CORE, *one], domain=str(base + i), port=free_port(), python=py)
        for st in stacks.values():
            st.pids()
            _wait_http(st.port, None)
        if client:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            seconds = 10 + WARMUP_S + WINDOWS * WINDOW_S
            for st in stacks.values():
                c = subprocess.Popen([SDK_PY, "-c", CLIENT, str(st.port), str(CLIENT_HZ), str(seconds)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, cwd=tempfile.gettempdir(), env=env)
                clients.append(c)
                if c.stdout.readline().strip() != "ready":
                    raise RuntimeError("the SDK client did not connect")
            for c in clients:
                c.stdin.write("\n")
                c.stdin.flush()
        time.sleep(WARMUP_S)
        goals = {k: Goals(os.path.join(st.tmp, "reachy_mini_sim", "ttyDXL.ctl")) for k, st in stacks.items()} \
            if client else {}
        t_from = time.monotonic()
        cpu: dict[str, list[float]] = {k: [] for k in stacks}
        for _ in range(WINDOWS):
            a = {k: snapshot(st.proc.pid) for k, st in stacks.items()}
            time.sleep(WINDOW_S)
            for k, st in stacks.items():
                w = window(a[k], snapshot(st.proc.pid))
                cpu[k].append(w["cpu"])
                print(f"# {k}: {w['cpu']:.2f} % ("
                      + ", ".join(f"{n} {v:.2f}" for n, v in sorted(w["cpu_by"].items())) + ")", flush=True)
            for g in goals.values():
                g.drain()
        t_to = time.monotonic()
        what = "with an SDK client at 50 Hz" if client else "idle"
        print(f"# core stacks side by side, {what}, {WINDOWS} windows of {WINDOW_S:.0f} s"
              + (", one process each" if one else ""), flush=True)
        for k, v in cpu.items():
            out(f"footprint_ab_{k}_cpu", statistics.median(v), "% of one core")
        for (k, g), c in zip(goals.items(), clients):   # the clients end ~10 s after the windows
            sent = json.loads(c.stdout.readline() or "[]")
            g.drain()
            lat, missed = latencies([x for x in sent if t_from <= x[0] <= t_to - 1.0], g.log)
            print(f"# {k}: set_target -> wire, {len(lat)} goals matched, {missed} not seen within 1 s", flush=True)
            if lat:
                out(f"footprint_ab_{k}_latency_p50", _pct(lat, 0.5), "ms")
        out("footprint_ab_ratio_after_over_before", statistics.median(cpu["after"]) / statistics.median(cpu["before"]),
            "x")
    finally:
        for c in clients:
            c.kill()
            c.wait()
        for st in stacks.values():
            st.stop()
