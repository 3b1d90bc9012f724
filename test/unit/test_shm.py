"""core/health/shm.py: the Fast DDS segments of killed processes are found by
their free lock file and removed; live and young ones are kept."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from reachy_mini.core.health import shm

from conftest import wait_for

HOLD = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); " \
       "print('locked', flush=True); time.sleep(60)"


def _segment(d, name: str, mb: float = 1.0, age_s: float = 60.0) -> tuple[str, str]:
    seg, lock = d / name, d / f"{name}_el"
    seg.write_bytes(b"\1" * int(mb * 1e6))
    lock.write_bytes(b"")
    old = time.time() - age_s
    os.utime(lock, (old, old))
    return str(seg), str(lock)


def test_free_lock_is_a_zombie_held_or_young_is_not(tmp_path):
    dead = _segment(tmp_path, "fastdds_0123456789abcdef", 2.0)
    live = _segment(tmp_path, "fastdds_fedcba9876543210", 1.0)
    young = _segment(tmp_path, "fastrtps_00000000000000aa", 1.0, age_s=1.0)
    other = tmp_path / "fastdds_port7412_el"      # ports are reused, not leaked: never touched
    other.write_bytes(b"")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, live[1]], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        dry = shm.sweep(str(tmp_path), remove=False)
        assert (dry.removed, dry.in_use) == (1, 2) and os.path.exists(dead[0])
        s = shm.sweep(str(tmp_path))
        assert (s.removed, s.in_use, s.errors) == (1, 2, [])
        assert 1.9e6 < s.freed_bytes < 2.2e6 and 1.9e6 < s.in_use_bytes < 2.2e6   # RAM held, from the blocks
        assert not any(os.path.exists(p) for p in dead)
        assert all(os.path.exists(p) for p in live + young) and other.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died: its segment is a zombie now (its lock file is old enough)
    s = shm.sweep(str(tmp_path))
    assert s.removed == 1 and not os.path.exists(live[0]) and os.path.exists(young[0])


def test_a_missing_directory_is_an_error_not_an_exception(tmp_path):
    s = shm.sweep(str(tmp_path / "nope"))
    assert s.removed == 0 and len(s.errors) == 1 and "nope" in s.errors[0]


@pytest.mark.skipif(not os.path.isdir(shm.SHM_DIR), reason="no /dev/shm")
def test_a_killed_fastdds_participant_leaves_its_segment_and_the_sweep_frees_it(ros_env):
    """Real Fast DDS (rmw_fastrtps_cpp): a participant killed with SIGKILL
    leaves its segment in /dev/shm; a live one is kept."""
    before = set(os.listdir(shm.SHM_DIR))
    code = "import rclpy, time; rclpy.init(); n = rclpy.create_node('shm_probe'); print('up', flush=True); " \
           "time.sleep(60)"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=ros_env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "up"
        mine = wait_for(lambda: (n := sorted(f for f in set(os.listdir(shm.SHM_DIR)) - before
                                             if shm._LOCK.match(f))) and len(n) == 2 and n, timeout=10)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        left = [f for f in mine if os.path.exists(os.path.join(shm.SHM_DIR, f))]
        assert left == mine      # the killed one's files stay: the leak being fixed
        s = shm.sweep(min_age_s=0.0)
        assert s.removed >= 1 and s.in_use >= 1
        kept = [f for f in mine if os.path.exists(os.path.join(shm.SHM_DIR, f))]
        assert len(kept) == 1 and os.path.exists(os.path.join(shm.SHM_DIR, kept[0][:-3]))
    finally:
        for p in procs:
            p.kill()
            p.wait()
