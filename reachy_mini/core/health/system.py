"""System and per-process probes for the health node (plain Python, psutil).

Where the pids come from:
- under `reachy-mini-bringup` (make run): its JSON state file, which also
  gives restart counts;
- under `ros2 launch` (no state file): the health node's sibling processes
  (children of the same launch process) running the node's executable
  (`.../lib/reachy_mini/camera_node`) or `-m reachy_mini.nodes.camera_node`
  in this robot's namespace (`__ns:=/robot1`). Processes of another launch,
  another robot or another stack of the same user are never considered.

Each node's spin-loop heartbeat age (the hang signal, core/health/nodes.py)
comes from the path the supervisor gave it, else the default path.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import psutil

from reachy_mini.core.health.alarm import Alarm, Band
from reachy_mini.core.levels import ERROR, OK, WARN
from reachy_mini.common.node_table import hosted_nodes, namespace_of
from reachy_mini.common.paths import UnsafeRuntimeDir, check_private

SUPERVISOR_MARKS = ("reachy_mini.ops.supervisor", "reachy-mini-bringup")


def is_our_process(pid: int, marks: tuple[str, ...] = (), started: float | None = None,
                   match=None) -> str | None:
    """None when `pid` is a process of this user whose command line contains
    one of `marks` (or satisfies match(cmdline)) and, when `started` is
    given, that started then (a recycled pid does not); else why not."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            uid, cmd, created = p.uids().real, p.cmdline(), p.create_time()
    except psutil.Error:
        return f"pid {pid} is not running"
    if uid != os.getuid():
        return f"pid {pid} belongs to uid {uid}, not to you"
    if marks and not any(m in a for a in cmd for m in marks):
        return f"pid {pid} is not a reachy_mini process ({' '.join(cmd)[:80]})"
    if match is not None and not match(cmd):
        return f"pid {pid} is another program ({' '.join(cmd)[:80]})"
    if started is not None and abs(created - started) > 2.0:
        return f"pid {pid} started at another time than the state file says (pid reused)"
    return None


@dataclass
class Thresholds:
    cpu_warn_pct: float = 90.0
    cpu_error_pct: float = 98.0     # ERROR only with a symptom (motor loop or camera below rate)
    cpu_clear_pct: float = 80.0
    cpu_sustain_s: float = 30.0
    mem_warn_pct: float = 85.0
    mem_error_pct: float = 95.0
    mem_clear_pct: float = 80.0
    mem_sustain_s: float = 30.0
    disk_warn_pct: float = 85.0
    disk_error_pct: float = 95.0
    temp_warn_c: float = 75.0
    temp_error_c: float = 85.0
    temp_clear_c: float = 70.0
    temp_sustain_s: float = 30.0
    node_rss_warn_mb: float = 500.0
    node_rss_error_mb: float = 1500.0
    node_cpu_warn_pct: float = 80.0
    node_fds_warn: int = 500

    def validate(self) -> list[str]:
        """clear < warn < error for every alarm."""
        out = []
        for k in ("cpu", "mem", "disk", "temp", "node_rss"):
            unit = "_c" if k == "temp" else "_mb" if k == "node_rss" else "_pct"
            w, e = f"{k}_warn{unit}", f"{k}_error{unit}"
            if getattr(self, w) >= getattr(self, e):
                out.append(f"need {w} < {e} ({getattr(self, w)} >= {getattr(self, e)})")
            c = f"{k}_clear{unit}"
            if hasattr(self, c) and getattr(self, c) >= getattr(self, w):
                out.append(f"need {c} < {w} ({getattr(self, c)} >= {getattr(self, w)})")
        return out


# Keys of the health node's system and per-node diagnostics (ros/tasks.py
# writes them) that web_bridge's /metrics reads: key -> (metric, scale).
HOST_KEYS = {"cpu (%)": ("reachy_mini_host_cpu_usage_ratio", 0.01),
             "memory (%)": ("reachy_mini_host_memory_usage_ratio", 0.01),
             "disk (%)": ("reachy_mini_host_disk_usage_ratio", 0.01),
             "disk free (GB)": ("reachy_mini_host_disk_free_bytes", 1e9)}
NODE_KEYS = {"rss (MB)": ("reachy_mini_node_resident_memory_bytes", 1e6),
             "cpu (%)": ("reachy_mini_node_cpu_usage_ratio", 0.01),
             "open fds": ("reachy_mini_node_open_fds", 1),
             "restarts": ("reachy_mini_node_restarts", 1),
             "hang restarts": ("reachy_mini_node_hang_kills", 1)}


def system_snapshot(data_dir: str) -> dict:
    os.makedirs(data_dir, exist_ok=True)
    du = psutil.disk_usage(data_dir)
    temps = {}
    try:
        for chip, entries in (psutil.sensors_temperatures() or {}).items():
            for e in entries:
                temps[f"{chip}/{e.label or 'temp'}"] = e.current
    except (AttributeError, OSError):
        pass
    return {"cpu_pct": psutil.cpu_percent(None), "load": os.getloadavg(), "cpus": psutil.cpu_count() or 1,
            "mem_pct": psutil.virtual_memory().percent, "disk_pct": du.percent, "disk_free_gb": du.free / 1e9,
            "temps": temps, "uptime_s": time.time() - psutil.boot_time()}


def _bands(th: Thresholds, key: str, unit: str, error: bool = True) -> list[Band]:
    warn, clear, sustain = (getattr(th, f"{key}_{x}") for x in (f"warn{unit}", f"clear{unit}", "sustain_s"))
    bands = [Band(WARN, warn, clear, sustain)]
    if error:
        bands.append(Band(ERROR, getattr(th, f"{key}_error{unit}"), warn, sustain))
    return bands


def rate_symptoms(items: dict) -> list[str]:
    """What shows that the robot cannot keep up: the motor loop or the camera
    below 90 % of its rate (a camera closed for want of a reader, released or
    lost has no rate to keep: value `device open` false), read from the latest statuses health_node
    aggregated (raw status name -> object with .values as (key, value) pairs
    or KeyValue messages)."""
    out = []
    for suffix, target_key, measured_key, what in (
            ("motor_node: bus", "target rate (Hz)", "achieved rate (Hz)", "motor loop"),
            ("camera_node: camera", "target fps", "measured fps", "camera")):
        for name, it in items.items():
            if not name.endswith(suffix):
                continue
            vals = dict(v if isinstance(v, tuple) else (v.key, v.value) for v in (it.values or ()))
            if vals.get("device open") == "false":   # closed (no reader, released, lost): no rate to keep up
                continue
            try:
                target, measured = float(vals[target_key]), float(vals[measured_key])
            except (KeyError, ValueError):
                continue
            if target > 0 and measured < 0.9 * target:
                out.append(f"{what} at {measured:.0f} of {target:.0f} Hz")
    return out


class HostAlarms:
    """The host checks with hysteresis and sustain (core/health/alarm.py):
    CPU, memory and the hottest sensor enter WARN after `<x>_sustain_s` at or
    above `<x>_warn`, and clear below `<x>_clear`. Host CPU alone is never
    ERROR: only with a symptom (rate_symptoms), since a busy host that still
    does its job needs no person. Memory and temperature reach ERROR at
    `<x>_error` held as long; the data disk is judged on each sample (it does
    not flap)."""

    def __init__(self) -> None:
        self.cpu, self.mem, self.temp = Alarm([]), Alarm([]), Alarm([])

    def evaluate(self, s: dict, th: Thresholds, now: float, symptoms: list[str] | None = None) -> tuple[int, str]:
        self.cpu.configure(_bands(th, "cpu", "_pct"))
        self.mem.configure(_bands(th, "mem", "_pct"))
        self.temp.configure(_bands(th, "temp", "_c"))
        level, msgs = OK, []
        cpu = self.cpu.update(s["cpu_pct"], now)
        if cpu >= WARN:
            if cpu >= ERROR and symptoms:
                level = ERROR
                msgs.append(f"CPU {s['cpu_pct']:.0f} % (>= {th.cpu_error_pct:g} for {th.cpu_sustain_s:g} s) "
                            f"and {', '.join(symptoms)}")
            else:
                level = WARN
                msgs.append(f"CPU {s['cpu_pct']:.0f} % (>= {th.cpu_warn_pct:g} for {th.cpu_sustain_s:g} s, "
                            f"clears below {th.cpu_clear_pct:g})")
        mem = self.mem.update(s["mem_pct"], now)
        if mem >= WARN:
            level = max(level, mem)
            lim = th.mem_error_pct if mem >= ERROR else th.mem_warn_pct
            msgs.append(f"memory {s['mem_pct']:.0f} % (>= {lim:g} for {th.mem_sustain_s:g} s, "
                        f"clears below {th.mem_clear_pct if mem == WARN else th.mem_warn_pct:g})")
        if s["disk_pct"] >= th.disk_error_pct:
            level = max(level, ERROR)
            msgs.append(f"disk {s['disk_pct']:.0f} % (>= {th.disk_error_pct:g})")
        elif s["disk_pct"] >= th.disk_warn_pct:
            level = max(level, WARN)
            msgs.append(f"disk {s['disk_pct']:.0f} % (>= {th.disk_warn_pct:g})")
        hottest = max(s["temps"], key=s["temps"].get) if s["temps"] else None
        temp = self.temp.update(s["temps"][hottest] if hottest else None, now)
        if temp >= WARN:
            level = max(level, temp)
            lim = th.temp_error_c if temp >= ERROR else th.temp_warn_c
            msgs.append(f"{hottest} {s['temps'][hottest]:.0f} C (>= {lim:g} for {th.temp_sustain_s:g} s)")
        return level, "; ".join(msgs) if msgs else "OK"


@dataclass
class ProcInfo:
    name: str
    pid: int | None = None
    alive: bool = False
    status: str = "not running"
    rss_mb: float = 0.0
    cpu_pct: float = 0.0
    cpu_avg_pct: float = 0.0   # exponential average, ~5 samples (start-up spikes do not warn)
    fds: int = 0
    threads: int = 0
    age_s: float | None = None
    starts: int = 0
    restarts: int = 0
    last_exit: int | None = None
    source: str = "none"     # supervisor | scan | none
    hang_kills: int = 0      # by the supervisor (state file)
    beat_age_s: float | None = None   # spin-loop heartbeat age; None: never beat


# The figures of a process (ProcInfo fields), the same for every node it runs.
PROC_FIGURES = ("status", "alive", "rss_mb", "cpu_pct", "cpu_avg_pct", "fds", "threads", "age_s")


def siblings() -> list[psutil.Process]:
    """The other children of this process's parent (the launch process, or
    the shell of a `ros2 run`)."""
    try:
        me = os.getpid()
        return [p for p in psutil.Process(os.getppid()).children() if p.pid != me]
    except psutil.Error:
        return []


def _matches(cmdline: list[str], name: str, module: str, namespace: str = "/") -> bool:
    """Is this the process of node `name` of the robot in `namespace`? (A
    second robot on the same machine runs the same executables.)"""
    if not cmdline:
        return False
    if not (any(os.path.basename(a) == name for a in cmdline[:3]) or module in cmdline[:4]
            or name in hosted_nodes(cmdline)):   # the robot's shared process (--one-process)
        return False
    return namespace_of(cmdline) == "/" + namespace.strip("/")


class ProcessMonitor:
    def __init__(self, nodes: dict[str, str], state_file: str | None, namespace: str = "/",
                 heartbeat_of=None) -> None:
        """nodes: node name -> python module (node table); only processes of
        this stack (siblings, in this namespace) are considered.
        heartbeat_of(node) -> default heartbeat path."""
        self.nodes = nodes
        self.namespace = namespace
        self.heartbeat_of = heartbeat_of or (lambda node: None)
        self.manager = "none"    # supervisor | launch: who restarts the nodes
        self.state_file = state_file
        self._procs: dict[int, psutil.Process] = {}
        self._ema: dict[int, float] = {}
        self._cpus = psutil.cpu_count() or 1
        self._scan_at = 0.0
        self._scan: dict[str, int] = {}
        self.refused = ""     # why the state file or one of its pids was not trusted (last sample)

    def _supervisor_state(self) -> dict | None:
        """The supervisor's state file, if it is ours and its supervisor
        still runs: owned by this user, and its supervisor_pid a
        reachy-mini-bringup process of this user started when it says."""
        if not self.state_file:
            return None
        try:
            check_private(self.state_file, "state file", False)
            with open(self.state_file) as f:
                st = json.load(f)
        except UnsafeRuntimeDir as e:
            self.refused = str(e)
            return None
        except (OSError, ValueError):
            return None
        sup = st.get("supervisor_pid") if isinstance(st, dict) else None
        if not isinstance(sup, int) or sup <= 0:
            return None
        why = is_our_process(sup, SUPERVISOR_MARKS, st.get("supervisor_started"))
        if why is not None:
            if psutil.pid_exists(sup):
                self.refused = f"state file {self.state_file}: {why}; ignored"
            return None  # left over from an earlier run, or not ours
        nodes = st.get("nodes", {})
        return nodes if isinstance(nodes, dict) else {}

    def _trusted(self, name: str, pid) -> int | None:
        """A node pid from the state file, only if it is this stack's node."""
        if not isinstance(pid, int) or pid <= 0:
            return None
        if not psutil.pid_exists(pid):
            return pid     # gone (being respawned): reported as such, nothing to act on
        module = self.nodes[name]
        why = is_our_process(pid, match=lambda cmd: _matches(cmd, name, module, self.namespace))
        if why is not None:
            self.refused = f"state file: {name}: {why}; ignored"
            return None
        return pid

    def _scan_pids(self) -> dict[str, int]:
        now = time.monotonic()
        if now - self._scan_at < 5.0:
            return self._scan
        self._scan_at = now
        found: dict[str, int] = {}
        for p in [psutil.Process()] + siblings():   # the monitor's own node too (health_node)
            try:
                cmd = p.cmdline()
                for name, module in self.nodes.items():
                    if name not in found and _matches(cmd, name, module, self.namespace):
                        found[name] = p.pid
            except psutil.Error:
                continue
        self._scan = found
        return found

    def _proc(self, pid: int) -> tuple[psutil.Process, bool]:
        """The pid's psutil handle, and whether it was primed just now (no CPU interval yet)."""
        p = self._procs.get(pid)
        if p is not None:
            return p, False
        p = self._procs[pid] = psutil.Process(pid)
        p.cpu_percent(None)  # primes the CPU counter
        return p, True

    def sample(self) -> dict[str, ProcInfo]:
        self.refused = ""
        sup = self._supervisor_state()
        scan = None if sup is not None else self._scan_pids()
        self.manager = "supervisor" if sup is not None else "launch"
        out: dict[str, ProcInfo] = {}
        shared: dict[int, ProcInfo] = {}
        live = set()
        wall = time.time()
        for name in self.nodes:
            info = ProcInfo(name)
            beat = self.heartbeat_of(name)
            if sup is not None:
                n = sup.get(name, {})
                info.pid, info.source = self._trusted(name, n.get("pid")), "supervisor"
                info.starts, info.restarts, info.last_exit = n.get("starts", 0), n.get("restarts", 0), n.get("last_exit")
                info.hang_kills = n.get("hang_restarts", 0)
                beat = n.get("heartbeat") or beat
            else:
                info.pid = scan.get(name)
                info.source = "scan" if info.pid else "none"
            if beat:
                try:
                    info.beat_age_s = max(0.0, wall - os.stat(beat).st_mtime)
                except OSError:
                    info.beat_age_s = None
            if info.pid and info.pid in shared:   # a process running several nodes (--one-process): measured once
                for k in PROC_FIGURES:
                    setattr(info, k, getattr(shared[info.pid], k))
            elif info.pid:
                try:
                    p, primed = self._proc(info.pid)
                    with p.oneshot():
                        info.status = p.status()
                        info.alive = info.status != psutil.STATUS_ZOMBIE
                        info.rss_mb = p.memory_info().rss / 1e6
                        # A process primed just now has no interval yet: psutil's figure would be clock-tick
                        # noise over microseconds (hundreds of %), and it would seed the average with it
                        # (a false "CPU 228 % (average)" WARN under load). Measured from the next sample on;
                        # never above what the machine's cores can give.
                        if not primed:
                            info.cpu_pct = min(p.cpu_percent(None), 100.0 * self._cpus)
                            prev = self._ema.get(info.pid)
                            info.cpu_avg_pct = self._ema[info.pid] = (
                                info.cpu_pct if prev is None else 0.8 * prev + 0.2 * info.cpu_pct)
                        info.fds = p.num_fds()
                        info.threads = p.num_threads()
                        info.age_s = time.time() - p.create_time()
                    live.add(info.pid)
                except psutil.Error:
                    info.alive, info.status = False, "gone"
                    if scan is not None:
                        self._scan_at = 0.0
                shared[info.pid] = info
            out[name] = info
        for pid in list(self._procs):
            if pid not in live:
                del self._procs[pid]
                self._ema.pop(pid, None)
        return out


def evaluate_process(info: ProcInfo, th: Thresholds) -> tuple[int, list[str]]:
    level, msgs = OK, []
    if not info.alive:
        return level, msgs
    if info.rss_mb >= th.node_rss_error_mb:
        level = ERROR
        msgs.append(f"RSS {info.rss_mb:.0f} MB")
    elif info.rss_mb >= th.node_rss_warn_mb:
        level = WARN
        msgs.append(f"RSS {info.rss_mb:.0f} MB")
    if info.cpu_avg_pct >= th.node_cpu_warn_pct and (info.age_s or 0) > 15:
        level = max(level, WARN)
        msgs.append(f"CPU {info.cpu_avg_pct:.0f} % (average)")
    if info.fds >= th.node_fds_warn:
        level = max(level, WARN)
        msgs.append(f"{info.fds} open files")
    return level, msgs
