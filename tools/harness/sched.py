"""SCHED_FIFO for the simulated servo bus: real servos are hardware, never
delayed by host load, so benches and tests that judge bus timing on a busy
machine run the Python simulator (and may run the driver's control thread)
at a real-time priority. Never fatal: without the right (not root, no
CAP_SYS_NICE, no RLIMIT_RTPRIO) the process stays on the normal scheduler
and the returned text says why."""
from __future__ import annotations

import os


def sched_fifo_all_threads(pid: int, priority: int) -> str:
    """Every thread of `pid` to SCHED_FIFO `priority` (0: back to normal)."""
    policy = os.SCHED_FIFO if priority > 0 else os.SCHED_OTHER
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setscheduler(int(tid), policy, os.sched_param(priority))
    except OSError as e:
        return f"normal scheduler (SCHED_FIFO refused: {e})"
    return f"SCHED_FIFO {priority}" if priority > 0 else "normal scheduler"
