"""`make soak DURATION=<s>`: the full stack on the simulated robot, with the
real camera (OpenCV decoding a video file) and audio (ALSA through a FIFO
microphone) capture paths, under a fault storm that repeats for the whole run:

    overheat      a head motor (in turn) overheats, then the cause is cleared
    motor_silent  motor 14 stops answering, then answers again
    garbage       random bytes on the bus
    serial_vanish the serial port disappears, then returns
    camera_loss   the camera's device (file) disappears, then returns
    audio_loss    the microphone stalls, then delivers again
    kill          SIGKILL to a random node
    freeze        SIGSTOP to a random node (nobody sends SIGCONT: the stack must act)

Each fault must be *detected* (seen in the health node's /diagnostics_agg)
and *recovered* (the item healthy again) within bounds. Meanwhile every
node's RSS and open fds, the health node's view and /api/health are sampled.
The report gives RSS slopes, fd changes, faults injected/detected, the
fraction of time each node was healthy and the longest recovery per kind.
Availability: the fraction of samples, outside fault windows, with the top
level healthy, OK or WARN (goal 99.5 %). Exit 1 if a fault was missed or never recovered,
availability is below the goal, or RSS / fds grew past the bounds.
`--quiet` injects nothing (a long run for RSS and fd slopes).

    python -m tools.soak --duration 120 [--report soak.json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import psutil
import yaml

from tools.bench.stack import Stack
from tools.harness.diag_listener import DiagnosticsListener
from reachy_mini.core.levels import ERROR, OK, STALE, WARN
from reachy_mini.common.node_table import NODES
from reachy_mini.common.paths import config_path
from reachy_mini.sim.bus import send_command
from tools.harness.fifo_mic import ASOUNDRC, FifoMic

OKISH = (OK, WARN)
RSS_GROWTH_MB = 25.0      # per process, after a 20 s warm-up
RSS_SLOPE_MB_H = 20.0     # per process living >= 10 min
FD_GROWTH = 20            # per process, after warm-up
LOG_MAX_BYTES, LOG_BACKUPS = 200_000, 2
# kind -> ([(motor, id), ...], simulator command that injects, command that clears).
# Overheats rotate over the six head motors: automatic recovery reboots one
# motor at most auto_recover_max (3) times per 10 min, then rightly gives up.
MOTOR_FAULTS = {"overheat": ([(f"stewart_{i}", 10 + i) for i in range(1, 7)], "overheat", "clear"),
                "motor_silent": ([("stewart_4", 14)], "mute", "unmute")}


@dataclass
class FaultRecord:
    kind: str
    target: str
    t: float
    detected_s: float | None = None
    recovered_s: float | None = None
    note: str = ""
    start: float = 0.0           # monotonic: the fault window is [start, end]
    end: float | None = None     # monotonic time the fault window closed (recovered or given up)


@dataclass
class Sample:
    t: float
    nodes: dict = field(default_factory=dict)    # node -> (pid, rss_mb, fds, level)
    top: int | None = None
    http: int | None = None
    not_ok: list = field(default_factory=list)   # leaf items not OK, "name: message"


def _video(path: str) -> None:
    import cv2
    import numpy as np

    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for i in range(60):
        f = np.zeros((480, 640, 3), np.uint8)
        f[:, :, 1] = (i * 4) % 256
        f[200:280, i * 8:i * 8 + 80] = 255
        w.write(f)
    w.release()


class Soak:
    def __init__(self, duration: float, interval: float, domain: int, seed: int, workdir: str | None,
                 quiet: bool = False, availability_goal: float = 0.995) -> None:
        self.quiet, self.availability_goal = quiet, availability_goal
        self.duration, self.interval, self.domain = duration, interval, domain
        self.rng = random.Random(seed)
        self.tmp = workdir or tempfile.mkdtemp(prefix="reachy_soak_")
        os.makedirs(self.tmp, exist_ok=True)
        self.video = os.path.join(self.tmp, "camera.avi")
        self.ctl = os.path.join(self.tmp, "reachy_mini_sim", "ttyDXL.ctl")
        self.logs = os.path.join(self.tmp, "logs")
        self.samples: list[Sample] = []
        self.faults: list[FaultRecord] = []
        self.stop = threading.Event()

    # ---------------------------------------------------------------- stack
    def start(self) -> None:
        _video(self.video)
        with open(config_path("reachy_mini.yaml")) as f:
            params = yaml.safe_load(f)
        params["/**"]["ros__parameters"]["use_sim"] = False
        params.setdefault("/**/motor_node", {"ros__parameters": {}})["ros__parameters"]["serial_port"] = "sim"
        params["/**/camera_node"] = {"ros__parameters": {"device": self.video, "fps": 30.0}}
        params["/**/audio_node"] = {"ros__parameters": {"device": "soak_mic"}}
        pfile = os.path.join(self.tmp, "soak_params.yaml")
        with open(pfile, "w") as f:
            yaml.safe_dump(params, f)
        with open(os.path.join(self.tmp, ".asoundrc"), "w") as f:
            f.write(ASOUNDRC.format(name="soak_mic", fifo=os.path.join(self.tmp, "mic.fifo")))
        self.mic = FifoMic(os.path.join(self.tmp, "mic.fifo"))
        self.stack = Stack(self.tmp, ["--params-file", pfile, "--log-dir", self.logs, "--log-max-bytes",
                                      str(LOG_MAX_BYTES), "--log-backups", str(LOG_BACKUPS)],
                           domain=str(self.domain), use_sim=False, env={"HOME": self.tmp})
        self.port = self.stack.port
        self.view = DiagnosticsListener(self.domain, "/diagnostics_agg", "soak_view")

    def stop_stack(self) -> None:
        self.stack.stop()
        self.view.close()
        self.mic.close()

    def nodes_state(self) -> dict:
        return self.stack.nodes()

    def node_level(self, node: str, since: float = 0.0) -> int | None:
        return self.view.level(f"/Reachy Mini/System/Nodes/{node}", since)

    def healthy(self) -> bool:
        top = self.view.level("/Reachy Mini")
        return top in OKISH

    def wait(self, pred, timeout: float, period: float = 0.1) -> float | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout and not self.stop.is_set():
            if pred():
                return time.monotonic() - t0
            time.sleep(period)
        return None

    # ---------------------------------------------------------------- sampling
    def sampler(self) -> None:
        import urllib.error
        import urllib.request

        procs: dict[int, psutil.Process] = {}
        while not self.stop.is_set():
            s = Sample(time.monotonic())
            for name, n in self.nodes_state().items():
                pid = n.get("pid")
                rss = fds = None
                if pid:
                    try:
                        p = procs.get(pid) or procs.setdefault(pid, psutil.Process(pid))
                        rss, fds = p.memory_info().rss / 1e6, p.num_fds()
                    except psutil.Error:
                        pid = None
                s.nodes[name] = (pid, rss, fds, self.node_level(name))
            s.top = self.view.level("/Reachy Mini")
            if s.top not in (None, OK):
                with self.view.lock:
                    items = dict(self.view.items)
                leaves = [n for n in items if not any(o.startswith(n + "/") for o in items)]
                s.not_ok = [f"{n}: {items[n][1]}" for n in leaves if items[n][0] != OK][:4]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/health", timeout=2) as r:
                    s.http = r.status
            except urllib.error.HTTPError as e:
                s.http = e.code
            except (urllib.error.URLError, OSError):
                s.http = None
            self.samples.append(s)
            self.stop.wait(2.0)

    # ---------------------------------------------------------------- faults
    def sim(self, cmd: str, **kw) -> None:
        try:
            send_command(self.ctl, {"cmd": cmd, **kw})
        except OSError as e:
            print(f"[soak] simulator command {cmd} failed: {e}", flush=True)

    def item(self, path: str):
        return lambda: self.view.level(path) == ERROR

    def item_ok(self, path: str):
        return lambda: self.view.level(path) in OKISH

    def run_fault(self, kind: str) -> FaultRecord:
        M = "/Reachy Mini/Motors/"
        t_inj = time.monotonic()
        rec = FaultRecord(kind, "", time.time(), start=t_inj)
        restore = None
        recovered = None
        if kind in MOTOR_FAULTS:   # a servo fault set and cleared in the simulator
            targets, on, off = MOTOR_FAULTS[kind]
            motor, sid = targets[sum(1 for f in self.faults if f.kind == kind) % len(targets)]
            rec.target = motor
            self.sim(on, id=sid)
            detected = self.item(M + motor)
            restore = lambda: self.sim(off, id=sid)  # noqa: E731
            recovered = self.item_ok(M + motor)
        elif kind == "garbage":
            rec.target = "bus"
            before = int(self.view.value(M + "bus", "garbage bytes") or 0) + \
                int(self.view.value(M + "bus", "crc errors") or 0)
            for _ in range(3):
                self.sim("garbage", count=200)
                time.sleep(0.05)
            detected = lambda: int(self.view.value(M + "bus", "garbage bytes") or 0) + \
                int(self.view.value(M + "bus", "crc errors") or 0) > before  # noqa: E731
            recovered = lambda: self.healthy_motors()  # noqa: E731
        elif kind == "serial_vanish":
            rec.target = "bus"
            self.sim("vanish")
            detected = self.item(M + "bus")
            restore = lambda: self.sim("restore")  # noqa: E731
            recovered = lambda: self.healthy_motors()  # noqa: E731
        elif kind == "camera_loss":
            rec.target = "camera_node"
            os.rename(self.video, self.video + ".away")
            detected = self.item("/Reachy Mini/Camera/camera")
            restore = lambda: os.rename(self.video + ".away", self.video)  # noqa: E731
            recovered = self.item_ok("/Reachy Mini/Camera/camera")
        elif kind == "audio_loss":
            rec.target = "audio_node"
            self.mic.mode = "pause"
            detected = self.item("/Reachy Mini/Audio/microphone")
            restore = lambda: setattr(self.mic, "mode", "tone")  # noqa: E731
            recovered = self.item_ok("/Reachy Mini/Audio/microphone")
        elif kind in ("kill", "freeze"):
            pool = [n.name for n in NODES] if kind == "kill" else \
                [n.name for n in NODES if n.name != "health_node"]
            rec.target = node = self.rng.choice(pool)
            st = self.nodes_state().get(node, {})
            pid, restarts = st.get("pid"), st.get("restarts", 0)
            if not pid:
                rec.note = "node not running at injection"
                return rec
            os.kill(pid, signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
            if kind == "kill":   # the process manager's reaction is the detection
                detected = lambda: self.nodes_state().get(node, {}).get("restarts", 0) > restarts  # noqa: E731
            else:                # the health node must see the hang
                detected = lambda: self.node_level(node) in (ERROR, STALE) or \
                    self.nodes_state().get(node, {}).get("pid") not in (pid, None)  # noqa: E731

            def recovered(node=node, pid=pid):
                """A new process that has itself published diagnostics since it started."""
                new = self.nodes_state().get(node, {}).get("pid")
                item = f"/Reachy Mini/System/Nodes/{node}"
                if new in (None, pid) or self.view.value(item, "pid") != str(new):
                    return False
                try:
                    fresh = float(self.view.value(item, "last diagnostics age (s)")) < \
                        float(self.view.value(item, "process age (s)"))
                except (TypeError, ValueError):
                    return False
                return fresh and self.node_level(node, t_inj) in OKISH and self.healthy_motors()
        else:
            raise ValueError(kind)
        d = self.wait(detected, 25.0 if kind == "freeze" else 15.0, 0.05)
        rec.detected_s = d
        t_fix = time.monotonic()
        if restore is not None:
            restore()
        r = self.wait(recovered, 45.0, 0.1)
        rec.end = time.monotonic()
        # self-healing faults count from the injection, restored ones from the restore
        rec.recovered_s = None if r is None else (r + (t_fix - t_inj if restore is None else 0.0))
        return rec

    def healthy_motors(self) -> bool:
        lv = [self.view.level(f"/Reachy Mini/Motors/{n}") for n in
              ["bus", "body_rotation"] + [f"stewart_{i}" for i in range(1, 7)] + ["right_antenna", "left_antenna"]]
        return all(x in OKISH for x in lv)

    # ---------------------------------------------------------------- run
    def run(self) -> dict:
        self.start()
        try:
            ok = self.wait(lambda: self.healthy() and all(
                self.node_level(n.name) in OKISH for n in NODES), 60.0, 0.2)
            if ok is None:
                raise RuntimeError(f"stack not healthy within 60 s; see {self.tmp}")
            t_start = time.monotonic()
            sampler = threading.Thread(target=self.sampler, daemon=True)
            sampler.start()
            kinds = ["overheat", "motor_silent", "garbage", "serial_vanish", "camera_loss", "audio_loss", "kill",
                     "freeze"]
            order: list[str] = []
            while time.monotonic() - t_start < self.duration:
                if self.quiet:               # no faults: RSS and fd slopes of a stack left alone
                    self.stop.wait(min(5.0, self.duration - (time.monotonic() - t_start)))
                    continue
                if not order:
                    order = kinds[:]
                    self.rng.shuffle(order)
                kind = order.pop()
                rec = self.run_fault(kind)
                self.faults.append(rec)
                print(f"[soak] {time.monotonic() - t_start:6.1f} s  {kind:<13} {rec.target:<12} detected "
                      f"{'MISSED' if rec.detected_s is None else f'{rec.detected_s:.2f} s'}  recovered "
                      f"{'NEVER' if rec.recovered_s is None else f'{rec.recovered_s:.2f} s'} {rec.note}", flush=True)
                self.wait(self.healthy, 30.0, 0.2)   # settle before the next fault
                self.stop.wait(self.interval * self.rng.uniform(0.5, 1.5))
            elapsed = time.monotonic() - t_start
        finally:
            self.stop.set()
            time.sleep(0.5)
            self.stop_stack()
        return self.report(elapsed)

    def report(self, elapsed: float) -> dict:
        nodes = [n.name for n in NODES]
        out: dict = {"duration_s": round(elapsed, 1), "workdir": self.tmp, "nodes": {}, "faults": {},
                     "failures": []}
        for name in nodes:
            segs: dict[int, list] = {}
            for s in self.samples:
                pid, rss, fds, _ = s.nodes.get(name, (None, None, None, None))
                if pid and rss is not None:
                    segs.setdefault(pid, []).append((s.t, rss, fds))
            slopes, growth, dfds = [], 0.0, 0
            for pts in segs.values():
                pts = [p for p in pts if p[0] - pts[0][0] >= 20.0]   # warm-up
                if len(pts) < 5:
                    continue
                n = len(pts)
                mt = sum(p[0] for p in pts) / n
                mr = sum(p[1] for p in pts) / n
                den = sum((p[0] - mt) ** 2 for p in pts)
                slope = sum((p[0] - mt) * (p[1] - mr) for p in pts) / den * 3600 if den else 0.0
                span = pts[-1][0] - pts[0][0]
                slopes.append((slope, span))
                g = max(p[1] for p in pts[-3:]) - min(p[1] for p in pts[:3])
                growth = max(growth, g)
                dfds = max(dfds, pts[-1][2] - pts[0][2])
                if g > RSS_GROWTH_MB:
                    out["failures"].append(f"{name}: RSS grew {g:.1f} MB in one process (bound {RSS_GROWTH_MB})")
                if span >= 600 and slope > RSS_SLOPE_MB_H:
                    out["failures"].append(f"{name}: RSS slope {slope:.1f} MB/h (bound {RSS_SLOPE_MB_H})")
                if pts[-1][2] - pts[0][2] > FD_GROWTH:
                    out["failures"].append(f"{name}: open fds grew by {pts[-1][2] - pts[0][2]} (bound {FD_GROWTH})")
            longest = max(slopes, key=lambda x: x[1]) if slopes else (0.0, 0.0)
            lv = [s.nodes.get(name, (None,) * 4)[3] for s in self.samples]
            out["nodes"][name] = {
                "rss_slope_mb_per_h": round(longest[0], 2), "rss_slope_over_s": round(longest[1], 1),
                "rss_max_growth_mb": round(growth, 2), "fd_change": dfds, "processes": len(segs),
                "healthy_fraction": round(sum(1 for x in lv if x in OKISH) / max(1, len(lv)), 4)}
        for kind in sorted({f.kind for f in self.faults}):
            fs = [f for f in self.faults if f.kind == kind]
            det = [f.detected_s for f in fs if f.detected_s is not None]
            rec = [f.recovered_s for f in fs if f.recovered_s is not None]
            out["faults"][kind] = {"injected": len(fs), "detected": len(det), "recovered": len(rec),
                                   "longest_detection_s": round(max(det), 2) if det else None,
                                   "longest_recovery_s": round(max(rec), 2) if rec else None}
            for f in fs:
                if f.detected_s is None:
                    out["failures"].append(f"{kind} on {f.target} at {time.ctime(f.t)}: not detected")
                if f.recovered_s is None:
                    out["failures"].append(f"{kind} on {f.target} at {time.ctime(f.t)}: never recovered")
        http = [s.http for s in self.samples]
        out["api_health_200_fraction"] = round(sum(1 for h in http if h == 200) / max(1, len(http)), 4)
        out["top_level_okish_fraction"] = round(sum(1 for s in self.samples if s.top in OKISH) /
                                                max(1, len(self.samples)), 4)
        # Availability: the top level healthy (OK or WARN: /api/health answers
        # 200), over the samples outside fault windows (injection to recovery,
        # plus 3 s for the tree to settle). WARN counts as available because a
        # restart stays WARN ("restarted 1x in the last 10 min") for 10 minutes.
        windows = [(f.start, (f.end or f.start) + 3.0) for f in self.faults]
        calm = [smp for smp in self.samples if not any(a <= smp.t <= b for a, b in windows)]
        out["availability_samples"] = len(calm)
        up = [smp for smp in calm if smp.top in OKISH]
        out["availability"] = round(len(up) / len(calm), 4) if calm else None
        out["availability_strict_ok"] = round(sum(1 for smp in calm if smp.top == OK) / len(calm), 4) if calm else None
        if out["availability"] is not None and out["availability"] < self.availability_goal:
            bad = [f"{smp.t - self.samples[0].t:.0f} s: top {smp.top} {smp.not_ok}" for smp in calm
                   if smp.top not in OKISH][:10]
            out["failures"].append(f"availability {out['availability']:.2%} < {self.availability_goal:.1%} "
                                   f"outside fault windows ({', '.join(bad)})")
        out["faults_injected"] = len(self.faults)
        out["faults_detected"] = sum(1 for f in self.faults if f.detected_s is not None)
        out["faults_recovered"] = sum(1 for f in self.faults if f.recovered_s is not None)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(self.logs) for f in fs)
        bound = len(NODES) * (LOG_BACKUPS + 1) * (LOG_MAX_BYTES + 10_000) + (LOG_BACKUPS + 1) * LOG_MAX_BYTES
        out["log_dir_bytes"], out["log_dir_bound_bytes"] = size, bound
        if size > bound:
            out["failures"].append(f"log directory {size} B exceeds its bound {bound} B")
        out["samples"] = len(self.samples)
        return out


def print_report(r: dict) -> None:
    print(f"\n=== soak report: {r['duration_s']:.0f} s, {r['samples']} samples, workdir {r['workdir']} ===")
    print(f"{'node':<12} {'RSS slope MB/h':>15} {'(over s)':>9} {'RSS growth MB':>14} {'fd change':>10} "
          f"{'processes':>10} {'healthy':>8}")
    for n, d in r["nodes"].items():
        print(f"{n:<12} {d['rss_slope_mb_per_h']:>15.2f} {d['rss_slope_over_s']:>9.0f} {d['rss_max_growth_mb']:>14.2f} "
              f"{d['fd_change']:>10} {d['processes']:>10} {d['healthy_fraction']:>8.1%}")
    print(f"\n{'fault':<14} {'injected':>8} {'detected':>8} {'recovered':>9} {'max detect s':>12} {'max recover s':>13}")
    for k, d in r["faults"].items():
        fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        print(f"{k:<14} {d['injected']:>8} {d['detected']:>8} {d['recovered']:>9} {fmt(d['longest_detection_s']):>12} "
              f"{fmt(d['longest_recovery_s']):>13}")
    print(f"\nfaults injected {r['faults_injected']}, detected {r['faults_detected']}, recovered "
          f"{r['faults_recovered']}; /api/health 200 {r['api_health_200_fraction']:.1%} of samples; "
          f"log dir {r['log_dir_bytes'] / 1e6:.2f} MB (bound {r['log_dir_bound_bytes'] / 1e6:.2f} MB)")
    av = r.get("availability")
    print(f"availability (top level OK or WARN outside fault windows): "
          f"{'n/a' if av is None else f'{av:.2%}'} over {r.get('availability_samples', 0)} samples "
          f"(strictly OK: {r.get('availability_strict_ok')})")
    if r["failures"]:
        print("FAILURES:\n  " + "\n  ".join(r["failures"]))
    else:
        print("PASS: every fault detected and recovered; RSS and fds within bounds")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="reachy-mini-soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=120.0, help="seconds of fault storm")
    p.add_argument("--interval", type=float, default=3.0, help="mean pause between faults (s)")
    p.add_argument("--domain", type=int, default=93, help="ROS_DOMAIN_ID of the soak stack")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", default=None)
    p.add_argument("--report", default=None, help="also write the report as JSON here")
    p.add_argument("--quiet", action="store_true", help="no faults: watch RSS and fd slopes of a stack left alone")
    p.add_argument("--availability-goal", type=float, default=0.995,
                   help="fail below this fraction of samples with the top level OK outside fault windows")
    a = p.parse_args(argv)
    if a.duration < 10:
        p.error("--duration must be at least 10 s")
    r = Soak(a.duration, a.interval, a.domain, a.seed, a.workdir, a.quiet, a.availability_goal).run()
    print_report(r)
    if a.report:
        with open(a.report, "w") as f:
            json.dump(r, f, indent=2)
    return 1 if r["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
