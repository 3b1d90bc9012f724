"""The log says ERROR only where the alarm rules do: `make run`'s stack
(reachy-mini-bringup --use-sim) beside two CPU hogs for 60 s, start-up
included, writes no ERROR line. A missed reply or a start-up straggler is a
WARN (core/motors/events.py; test/unit/test_bus_events.py has the rules)."""
from __future__ import annotations

import time

from tools.bench.stack import Stack


def test_stack_under_load_logs_no_error(tmp_path, ros_env, cpu_hogs):
    st = Stack(str(tmp_path), domain=ros_env["ROS_DOMAIN_ID"])
    try:
        st.pids(timeout=90)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60.0:
            assert st.proc.poll() is None, "the supervisor exited"
            time.sleep(1.0)
        nodes = st.nodes()
        assert all(n["pid"] for n in nodes.values()), nodes
    finally:
        st.stop()
    with open(st.log.name) as f:
        text = f.read()
    errors = [line for line in text.splitlines() if "[ERROR]" in line or "FATAL" in line or "Traceback" in line]
    warns = [line for line in text.splitlines() if "[WARN]" in line]
    print(f"{len(text.splitlines())} lines, {len(warns)} WARN, e.g.:", *warns[:10], sep="\n  ")
    assert errors == [], "\n".join(errors[:30])
