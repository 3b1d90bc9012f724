"""`make bench BENCH=dance`: a vendor dance played with the real SDK through
our whole simulated stack, the goals on the wire against what the vendor's
daemon would write for the same commands.

The SDK (PyPI reachy-mini 1.13.0, .venv-sdk) plays `DanceMove(<name>)` from
reachy-mini-dances-library with `play_move` (100 Hz set_target); every
command it sends is recorded with its time (CLOCK_MONOTONIC, as the
simulator's goal log). The reference is the vendor's AnalyticalKinematics
(as its daemon calls it: automatic body yaw) of the commands; its daemon
writes a command at its next 20 ms tick, so at time t any target commanded
within the last 20 ms may be on its wire: the error at t is the distance
from our last goal on the simulated bus to the nearest of those (a latency
under 20 ms costs nothing, a ramp longer than that does). Sampled every 5 ms over the dance; per motor: RMS and
maximum of ours - reference (rad).

BENCH_DANCE names the dance (default grid_snap), BENCH_DANCE_REPEAT how many
times it is played (default 2), BENCH_DANCE_RUNS how many runs the median is
taken over (default 3), BENCH_DANCE_PARAMS a --params-file for the
stack (e.g. a motors_file with other speed limits). `python -m tools.bench.dance` runs it alone;
started with another checkout's python (its package installed), it measures
that checkout's stack (the "before" figure of issue 34).
"""
from __future__ import annotations

import bisect
import json
import math
import os
import statistics
import subprocess
import tempfile
import textwrap
import time

from tools.bench.stack import Stack, free_port, out

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SDK_PY = os.environ.get("BENCH_SDK_PY", os.path.join(REPO, ".venv-sdk", "bin", "python"))
DANCE = os.environ.get("BENCH_DANCE", "grid_snap")
REPEAT = int(os.environ.get("BENCH_DANCE_REPEAT", "2"))
RUNS = int(os.environ.get("BENCH_DANCE_RUNS", "3"))   # figures: the median over the runs (a busy machine)
# a --params-file for the stack (e.g. another motors_file); absolute: the stack runs in its own directory
PARAMS = os.path.abspath(os.environ["BENCH_DANCE_PARAMS"]) if os.environ.get("BENCH_DANCE_PARAMS") else ""
VENDOR_TICK_S = 0.020
JOINTS = ["body_rotation"] + [f"stewart_{i}" for i in range(1, 7)] + ["right_antenna", "left_antenna"]

SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from reachy_mini import ReachyMini
    from reachy_mini.kinematics import AnalyticalKinematics
    from reachy_mini_dances_library import DanceMove
    name, port, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    log = []
    with ReachyMini(port=port, media_backend="no_media") as r:
        r.goto_target(head=np.eye(4), antennas=[0.0, 0.0], body_yaw=0.0, duration=1.0)
        time.sleep(0.5)
        send = r.client.send_command
        def logged(cmd, *a, **kw):
            log.append((time.monotonic(), type(cmd).__name__, cmd.model_dump(mode="json")))
            return send(cmd, *a, **kw)
        r.client.send_command = logged
        t0 = time.monotonic()
        for _ in range(repeat):
            r.play_move(DanceMove(name))
        t1 = time.monotonic()
        r.client.send_command = send
        time.sleep(0.3)
    # the vendor daemon's targets: its state after each command, through its IK
    kin = AnalyticalKinematics()
    head, body, ant = np.eye(4), 0.0, [0.0, 0.0]
    ref = []
    for t, kind, c in log:
        if c.get("head") is not None:
            head = np.array(c["head"]).reshape(4, 4)
        if c.get("body_yaw") is not None:
            body = c["body_yaw"]
        if c.get("antennas") is not None:
            ant = list(c["antennas"])
        j = kin.ik(head, body_yaw=body)
        ref.append([t, j.tolist() + ant])
    print(json.dumps({"t0": t0, "t1": t1, "ref": ref, "kinds": sorted({k for _, k, _ in log})}))
""")


def _servo(ref_t: list[float], ref_v: list[float], vmax: float, dt: float = 0.001) -> tuple[list[float], list[float]]:
    """The vendor's targets as its servo can follow them: slewed at `vmax` (rad/s), every `dt`."""
    ts, vs, p, j, t = [], [], ref_v[0], 0, ref_t[0]
    while t <= ref_t[-1] + 0.5:
        while j + 1 < len(ref_t) and ref_t[j + 1] <= t:
            j += 1
        p += max(-vmax * dt, min(vmax * dt, ref_v[j] - p))
        ts.append(t)
        vs.append(p)
        t += dt
    return ts, vs


def _errors(ts, vs, ref_t, ref_v, t0, t1) -> list[float]:
    """Ours (ts, vs) against the reference on a 5 ms grid: at t, the nearest of the
    reference values of the last 20 ms (what the vendor's daemon may have on its wire)."""
    errs, t = [], t0
    while t < t1:
        i = bisect.bisect_right(ts, t) - 1
        j0 = bisect.bisect_right(ref_t, t - VENDOR_TICK_S) - 1
        j1 = bisect.bisect_right(ref_t, t) - 1
        if i >= 0 and j0 >= 0:
            errs.append(min((vs[i] - ref_v[j] for j in range(j0, j1 + 1)), key=abs))
        t += 0.005
    return errs


def _rms(errs: list[float]) -> float:
    return math.sqrt(sum(e * e for e in errs) / len(errs)) if errs else float("nan")


def measure(name: str = DANCE, repeat: int = REPEAT) -> dict[str, tuple[float, float, float]]:
    """Per joint, in rad: (RMS and max |ours - vendor target|, RMS |ours - vendor
    target as its servo can follow it|)."""
    import httpx

    from reachy_mini.core.motors.map import MotorMap, no_load_rad_s
    from reachy_mini.sim.bus import send_command

    tmp = tempfile.mkdtemp(prefix="reachy_bench_dance_")
    dom = os.environ.get("ROS_DOMAIN_ID", "95")
    st = Stack(tmp, extra=["--params-file", PARAMS] if PARAMS else None, domain=dom, port=free_port())
    try:
        st.pids()
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                if httpx.get(f"http://127.0.0.1:{st.port}/api/health", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        ctl = os.path.join(tmp, "reachy_mini_sim", "ttyDXL.ctl")
        send_command(ctl, {"cmd": "goals"})
        p = subprocess.run([SDK_PY, "-c", SCRIPT, name, str(st.port), str(repeat)], cwd=tmp, capture_output=True,
                           text=True, timeout=300, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-3000:])
        got = json.loads(p.stdout.strip().splitlines()[-1])
        wire = send_command(ctl, {"cmd": "goals"})["goals"]
    finally:
        st.stop()
    if os.environ.get("BENCH_DANCE_DUMP"):
        with open(os.environ["BENCH_DANCE_DUMP"], "w") as f:
            json.dump({"sdk": got, "wire": wire}, f)
    mm = MotorMap.load()
    by_id = {m.id: m for m in mm.motors}
    ours: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in JOINTS}
    for t, i, raw in sorted(wire, key=lambda g: g[0]):   # stable: the arrival order of a burst
        m = by_id[int(i)]
        ours[m.name][0].append(t)
        ours[m.name][1].append(m.raw_to_rad(raw))
    ref_t = [r[0] for r in got["ref"]]
    t0, t1 = got["t0"] + 0.05, got["t1"]
    res = {}
    for k, n in enumerate(JOINTS):
        ts, vs = ours[n]
        ref_v = [r[1][k] for r in got["ref"]]
        errs = _errors(ts, vs, ref_t, ref_v, t0, t1)
        # how fast the vendor's own robot can follow: the servo's no-load speed at its supply, no margin
        st, sv = _servo(ref_t, ref_v, no_load_rad_s(mm.by_name[n].model))
        res[n] = (_rms(errs), max((abs(e) for e in errs), default=float("nan")),
                  _rms(_errors(ts, vs, st, sv, t0, t1)))
    return res


def bench_dance() -> None:
    if not os.path.exists(os.path.join(os.path.dirname(SDK_PY), "..", ".installed")):
        print(f"# dance: skipped, the vendor SDK venv is not made ({SDK_PY}): run `make sdk-venv`")
        return
    runs = [measure() for _ in range(RUNS)]
    res = {n: tuple(statistics.median(r[n][i] for r in runs) for i in range(3)) for n in JOINTS}
    print(f"# median of {RUNS} runs; {DANCE} x{REPEAT} played by the vendor SDK through the stack: wire goals against the vendor "
          "AnalyticalKinematics of the SDK's commands (20 ms allowed, the vendor's tick), per motor")
    print("# _rms/_max: against the vendor IK's targets; _servo_rms: against those targets as the vendor's servo "
          "can follow them (slewed at its no-load speed at 7.6 V)")
    for n, (rms, worst, servo) in res.items():
        out(f"dance_{DANCE}_{n}_rms", rms, "rad")
        out(f"dance_{DANCE}_{n}_max", worst, "rad")
        out(f"dance_{DANCE}_{n}_servo_rms", servo, "rad")


if __name__ == "__main__":
    bench_dance()
