"""ros/runner.py: the spin loop waits long when nothing is due (each wake-up
of rclpy's executor costs CPU), yet SIGTERM and SIGINT still stop a node at
once: the signal wakes the executor's wait (set_wakeup_fd + a helper thread)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import next_domain

pytest.importorskip("rclpy")

# A node with nothing due, in a loop whose wait is made 60 s long: without the
# wake-up, the node would stop only when that wait ends.
NODE = """
import sys
import rclpy.node
import reachy_mini.ros.runner as runner
runner.SPIN_WAIT_S = 60.0

class Idle(rclpy.node.Node):
    def __init__(self):
        super().__init__("runner_wake_test", start_parameter_services=False)
        print("up", flush=True)

sys.exit(runner.run_node(Idle, "runner_wake_test", ["runner_wake_test"]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_node_waiting_with_nothing_due(tmp_path, sig):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = dict(os.environ, ROS_DOMAIN_ID=next_domain(), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               XDG_RUNTIME_DIR=str(run), REACHY_MINI_HEARTBEAT=str(tmp_path / "beat"))
    p = subprocess.Popen([sys.executable, "-c", NODE], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "up"
        time.sleep(2.0)   # built: now in the spin loop's wait
        t0 = time.monotonic()
        p.send_signal(sig)
        assert p.wait(30) == 0
        assert time.monotonic() - t0 < 30   # far less than the 60 s wait
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
