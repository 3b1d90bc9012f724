"""Owner notifications from the real health_node (a process, fed over real
rclpy) to a real local HTTP receiver: an injected ERROR is exactly one POST
with the right fields, leaving ERROR one more; a receiver that is down at first
gets the post once it starts, and the health node reports the failing
deliveries in its diagnostics meanwhile."""
from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

from conftest import wait_for
from notify_receiver import Receiver, free_port
from ros_probe import RosProbe
from test_health_node import HealthProc

ANALYZERS = """
analyzers:
  ros__parameters:
    path: Robot
    motors:
      type: diagnostic_aggregator/GenericAnalyzer
      path: Motors
      find_and_remove_prefix: ["motor_node: "]
      timeout: 5.0
    host:
      type: diagnostic_aggregator/GenericAnalyzer
      path: Host
      find_and_remove_prefix: ["health_node: "]
      timeout: 5.0
"""
# only the motor fed by the test decides the top level: the host alarms are out of
# reach on a loaded test machine, and no other node is expected
QUIET = {"expected_nodes": "[health_node]", "cpu_warn_pct": 100.5, "cpu_error_pct": 101.0, "mem_warn_pct": 100.5,
         "mem_error_pct": 101.0, "disk_warn_pct": 100.5, "disk_error_pct": 101.0, "temp_warn_c": 1e5,
         "temp_error_c": 1e5 + 1, "node_rss_error_mb": 1e5, "node_fds_warn": 100000, "notify_settle_s": 3.0, "notify_min_interval_s": 0.0,
         "pub_rate": 2.0}


class Feeder:
    """Publishes 'motor_node: m1' at the level set, 5 times a second."""

    def __init__(self, probe) -> None:
        self.probe, self.level, self.message = probe, 0, "ok"
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def set(self, level: int, message: str) -> None:
        self.level, self.message = level, message

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            arr = DiagnosticArray()
            arr.status = [DiagnosticStatus(level=bytes([self.level]), name="motor_node: m1", message=self.message,
                                           hardware_id="dynamixel:1")]
            self.probe.pub.publish(arr)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)


@pytest.fixture
def probe(ros_env):
    p = RosProbe("notify_test")
    p.listen(DiagnosticArray, "/diagnostics_agg")
    p.listen(DiagnosticStatus, "/diagnostics_toplevel_state")
    p.pub = p.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
    yield p
    p.close()


def top(probe):
    msgs = probe.get("/diagnostics_toplevel_state")
    return msgs[-1][1] if msgs else None


def notify_item(probe):
    msgs = probe.get("/diagnostics_agg")
    return next((s for s in msgs[-1][1].status if s.name == "/Robot/Host/notify"), None) if msgs else None


def test_error_is_one_post_and_leaving_it_one_more(ros_env, tmp_path, probe):
    rec = Receiver()
    feeder = Feeder(probe)
    h = HealthProc(ros_env, tmp_path, ANALYZERS, notify_url=rec.url, notify_topic="reachy-alerts",
                   page_url="http://robot.local:8000/", **QUIET)
    try:
        wait_for(lambda: (t := top(probe)) and t.level[0] == 0, timeout=20, period=0.2)
        time.sleep(4.0)                      # past the settle window, still OK
        assert rec.attempts == 0, rec.bodies()
        t0 = time.time()
        feeder.set(2, "overheating: 71 C")
        (b,) = wait_for(lambda: rec.bodies(), timeout=10, period=0.05)
        assert b["level"] == "ERROR" and b["previous_level"] == "OK" and "overheating: 71 C" in b["message"]
        assert b["robot"] and b["url"] == b["click"] == "http://robot.local:8000/"
        assert b["topic"] == "reachy-alerts" and b["priority"] == 5 and b["title"] == f"{b['robot']}: ERROR"
        assert abs(datetime.fromisoformat(b["time"].replace("Z", "+00:00")).timestamp() - b["time_unix"]) < 0.01
        assert t0 - 1 <= b["time_unix"] <= time.time()
        assert rec.posts[0]["headers"]["Idempotency-Key"] == b["notification_id"]
        time.sleep(3.0)                      # still ERROR, republished every 0.5 s: no repeat
        assert rec.attempts == 1
        feeder.set(0, "ok")
        wait_for(lambda: len(rec.bodies()) == 2, timeout=10, period=0.05)
        b2 = rec.bodies()[1]
        assert (b2["previous_level"], b2["level"]) == ("ERROR", "OK") and b2["notification_id"] != b["notification_id"]
        feeder.set(1, "warm")                # OK -> WARN is not a notification
        wait_for(lambda: (t := top(probe)) and t.level[0] == 1, timeout=10, period=0.1)
        time.sleep(2.0)
        assert rec.attempts == 2
        item = wait_for(lambda: notify_item(probe), timeout=5)
        kv = {v.key: v.value for v in item.values}
        assert item.level[0] == 0 and kv["sent"] == "2" and kv["failed"] == "0"
    finally:
        feeder.close()
        out = h.stop()
        rec.close()
    assert h.proc.returncode == 0, out


def test_flapping_top_level_is_one_notification_until_it_settles(ros_env, tmp_path, probe):
    """A top level toggling ERROR/OK 10 times (notify_min_interval_s 0):
    notified at its first two changes, then once "flapping (3 changes in 1
    min)" at ERROR, then nothing until it settled, then once OK."""
    rec = Receiver()
    feeder = Feeder(probe)
    h = HealthProc(ros_env, tmp_path, ANALYZERS, notify_url=rec.url, flap_max_changes=2, flap_window_s=60.0,
                   flap_settle_s=4.0, **QUIET)
    try:
        wait_for(lambda: (t := top(probe)) and t.level[0] == 0, timeout=20, period=0.2)
        time.sleep(4.0)                      # past the settle window
        for i in range(10):
            lv = 2 if i % 2 == 0 else 0
            feeder.set(lv, f"step {i}")
            wait_for(lambda lv=lv: (t := top(probe)) and t.level[0] == lv, timeout=5, period=0.05)
            time.sleep(0.6)
        assert [b["level"] for b in rec.bodies()] == ["ERROR", "OK", "ERROR"], rec.bodies()
        assert rec.bodies()[2]["message"].startswith("flapping (3 changes in 1 min); now: "), rec.bodies()[2]
        bodies = wait_for(lambda: len(rec.bodies()) == 4 and rec.bodies(), timeout=15, period=0.2)
        assert bodies[3]["level"] == "OK" and bodies[3]["previous_level"] == "ERROR", bodies[3]
        time.sleep(1.0)
        assert rec.attempts == 4
    finally:
        feeder.close()
        h.stop()
        rec.close()


def test_receiver_down_then_up_gets_the_post(ros_env, tmp_path, probe):
    port = free_port()
    feeder = Feeder(probe)
    h = HealthProc(ros_env, tmp_path, ANALYZERS, notify_url=f"http://owner:s3cret@127.0.0.1:{port}/hook", **QUIET)
    rec = None
    try:
        wait_for(lambda: (t := top(probe)) and t.level[0] == 0, timeout=20, period=0.2)
        time.sleep(4.0)
        feeder.set(2, "overload")
        # refused: the health node says so (WARN under Host), and keeps trying
        item = wait_for(lambda: (s := notify_item(probe)) and s.level[0] == 1 and s, timeout=15, period=0.2)
        assert "notifications failing" in item.message and "s3cret" not in item.message
        kv = {v.key: v.value for v in item.values}
        assert kv["pending"] == "1" and int(kv["retries"]) >= 1 and "s3cret" not in kv["url"]
        time.sleep(2.0)
        rec = Receiver(port=port)
        t_up = time.monotonic()
        (b,) = wait_for(lambda: rec.bodies(), timeout=70, period=0.1)
        print(f"delivered {time.monotonic() - t_up:.1f} s after the receiver came up")
        assert (b["previous_level"], b["level"]) == ("OK", "ERROR") and "overload" in b["message"]
        assert rec.posts[0]["headers"]["Authorization"].startswith("Basic ")
        wait_for(lambda: (s := notify_item(probe)) and s.level[0] == 0, timeout=10, period=0.2)
        time.sleep(2.0)
        assert rec.attempts == 1, "delivered once"
    finally:
        feeder.close()
        out = h.stop()
        if rec:
            rec.close()
    assert h.proc.returncode == 0, out
    assert "refused" in out and "retrying" in out and "delivered" in out and "s3cret" not in out


@pytest.mark.parametrize("value,needle", [("ftp://owner:s3cret@example.com/x", "http:// or https://"),
                                          ("example.com/hook", "http:// or https://"),
                                          ("http://host:99999/", "not a valid URL")])
def test_invalid_notify_url_fails_fast_without_echoing_it(ros_env, tmp_path, value, needle):
    h = HealthProc(ros_env, tmp_path, notify_url=value)
    out = h.proc.communicate(timeout=30)[0]
    assert h.proc.returncode == 2, out
    assert "notify_url" in out and needle in out and "s3cret" not in out and "Traceback" not in out
