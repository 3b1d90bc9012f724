"""tools/bench/footprint.py's arithmetic (`make bench BENCH=footprint`): the
process tree it measures (the simulator left out), CPU from /proc ticks,
and the matching of SDK calls to goal writes on the simulated wire."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time

from tools.bench import footprint as fp


def test_the_tree_holds_the_descendants_but_not_the_simulator():
    code = ("import subprocess, sys, time\n"
            "a = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "b = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', 'reachy_mini.sim.cli'])\n"
            "print(a.pid, b.pid, flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child, sim = (int(x) for x in p.stdout.readline().split())
        pids = fp.tree(p.pid)
        assert p.pid in pids and child in pids and sim not in pids
        snap = fp.snapshot(p.pid)
        assert set(snap["procs"]) == set(pids)
        for info in snap["procs"].values():
            assert info["threads"] >= 1 and info["pss"] > 0 and info["rss"] > 0 and info["fds"] >= 3
    finally:
        p.kill()
        p.wait()
        for pid in (child, sim):
            try:
                os.kill(pid, 9)
            except OSError:
                pass


def test_cpu_is_ticks_over_wall_time_per_process_name():
    a = {"t": 10.0, "procs": {1: {"name": "motor_node", "ticks": 100, "threads": 5, "rss": 50.0, "pss": 40.0,
                                 "fds": 10},
                             2: {"name": "web_bridge", "ticks": 0, "threads": 3, "rss": 30.0, "pss": 20.0, "fds": 5}}}
    b = {"t": 20.0, "procs": {1: dict(a["procs"][1], ticks=100 + fp.CLK_TCK),          # 1 s of CPU in 10 s
                             2: dict(a["procs"][2], ticks=fp.CLK_TCK // 2, pss=25.0),
                             3: {"name": "late", "ticks": 999, "threads": 1, "rss": 1.0, "pss": 1.0, "fds": 1}}}
    w = fp.window(a, b)
    assert math.isclose(w["cpu_by"]["motor_node"], 10.0) and math.isclose(w["cpu_by"]["web_bridge"], 5.0)
    assert "late" not in w["cpu_by"]      # not alive at both ends: its CPU is not known
    assert math.isclose(w["cpu"], 15.0) and w["pss"] == 66.0 and w["threads"] == 9 and w["procs"] == 3


def test_a_call_is_matched_to_the_first_write_of_its_goal_within_a_second():
    raw = lambda v: round(2048 + v * fp.TICKS_PER_RAD)   # noqa: E731
    values = [(k - 10) * 4 * 2 * math.pi / 4096 for k in range(20)]
    sent = [(100.0 + 0.02 * k, v) for k, v in enumerate(values)]
    log = []
    for k, (t, v) in enumerate(sent):
        if k == 7:
            continue                                          # never written: a miss
        log.append((t + 0.003, fp.ANTENNA_ID, raw(v)))        # 3 ms later
        log.append((t + 0.013, fp.ANTENNA_ID, raw(v)))        # and again: the first write counts
        log.append((t + 0.001, 10, raw(v)))                   # another motor: ignored
    lat, missed = fp.latencies(sent, log)
    assert missed == 1 and len(lat) == 19 and all(math.isclose(x, 3.0, abs_tol=1e-6) for x in lat)
    # the other sign convention (rad -> raw mirrored) is found as well
    mirrored = [(t, i, 4096 - r) for t, i, r in log]
    assert fp.latencies(sent, mirrored)[1] == 1
    # a write more than 1 s later is not that call's
    late = [(t + 2.0, i, r) for t, i, r in log]
    assert fp.latencies(sent, late) == ([], 20)


def test_slopes_are_least_squares_per_minute(capsys):
    snaps = [{"t": 60.0 * k, "procs": {1: {"rss": 100.0 + 2 * k, "fds": 10}}} for k in range(4)]
    fp.slopes("x", {"snaps": snaps})
    text = capsys.readouterr().out
    assert "footprint_x_rss_slope: 2.000 MB/min" in text and "footprint_x_fds_slope: 0.000 fds/min" in text


def test_a_missing_vendor_venv_is_said_not_hidden(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fp, "VENDOR_VENV", str(tmp_path / ".venv-vendor"))
    (tmp_path / ".venv-vendor.failed").write_text("reachy_mini: vendor daemon venv not made: no network\n")
    r: dict = {}
    t0 = time.monotonic()
    fp.vendor(r)
    assert r == {} and time.monotonic() - t0 < 30
    assert "vendor daemon not installed (reachy_mini: vendor daemon venv not made: no network)" in capsys.readouterr().out
