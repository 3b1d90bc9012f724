"""health_node: aggregates /diagnostics into /diagnostics_agg and
/diagnostics_toplevel_state (for rqt_robot_monitor) and adds system checks.
"""
from __future__ import annotations

import json
import os
import time

import psutil
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from ..diag import ERROR, OK, WARN, Updater, level_byte, level_int
from ..health_core import Aggregator
from ..node_table import NODES
from ..params import P, declare, run_node

SPECS = [
    P("use_sim", False, "unused; accepted for a uniform command line"),
    P("pub_rate", 1.0, "publish rate of /diagnostics_agg (Hz)", 0.1, 50.0),
    P("data_dir", os.path.expanduser("~/.local/share/reachy_mini"), "data directory (disk check)"),
    P("cpu_warn_pct", 85.0, "CPU load WARN (%)", 0.0, 100.0),
    P("mem_warn_pct", 85.0, "memory WARN (%)", 0.0, 100.0),
    P("mem_error_pct", 95.0, "memory ERROR (%)", 0.0, 100.0),
    P("disk_warn_pct", 85.0, "disk usage WARN (%)", 0.0, 100.0),
    P("disk_error_pct", 95.0, "disk usage ERROR (%)", 0.0, 100.0),
    P("state_file", os.path.join(os.environ.get("XDG_RUNTIME_DIR") or "/tmp", "reachy_mini_bringup.json"),
      "supervisor state file (restart counts)"),
]


def _status(o) -> DiagnosticStatus:
    return DiagnosticStatus(level=level_byte(o.level), name=o.name, message=o.message, hardware_id=o.hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in o.values])


class HealthNode(Node):
    def __init__(self) -> None:
        super().__init__("health_node")
        self.p = p = declare(self, SPECS)
        self.agg = Aggregator({n.name: n.stale_timeout_s for n in NODES})
        self.agg_pub = self.create_publisher(DiagnosticArray, "/diagnostics_agg", 10)
        self.top_pub = self.create_publisher(DiagnosticStatus, "/diagnostics_toplevel_state", 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 100)
        self.create_timer(1.0 / p["pub_rate"], self._publish)
        self.last_immediate = 0.0
        psutil.cpu_percent(None)
        self.updater = Updater(self, period=1.0)
        self.updater.setHardwareID(os.uname().nodename)
        self.updater.add("system", self._diag_system)
        self.updater.add("processes", self._diag_processes)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        escalate = False
        for st in msg.status:
            lv = level_int(st.level)
            prev = self.agg.update(st.name, lv, st.message, st.hardware_id, [(kv.key, kv.value) for kv in st.values], now)
            if lv == ERROR and prev != ERROR:
                escalate = True
        if escalate and now - self.last_immediate > 0.05:
            self.last_immediate = now
            self._publish()

    def _publish(self) -> None:
        now = time.monotonic()
        outs, top = self.agg.report(now)
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [_status(o) for o in outs]
        self.agg_pub.publish(arr)
        self.top_pub.publish(_status(top))

    def _diag_system(self, st):
        p = self.p
        cpu = psutil.cpu_percent(None)
        mem = psutil.virtual_memory().percent
        os.makedirs(p["data_dir"], exist_ok=True)
        disk = psutil.disk_usage(p["data_dir"]).percent
        st.summary(level_byte(OK), "OK")
        if cpu >= p["cpu_warn_pct"]:
            st.mergeSummary(level_byte(WARN), f"CPU {cpu:.0f} %")
        if mem >= p["mem_error_pct"]:
            st.mergeSummary(level_byte(ERROR), f"memory {mem:.0f} %")
        elif mem >= p["mem_warn_pct"]:
            st.mergeSummary(level_byte(WARN), f"memory {mem:.0f} %")
        if disk >= p["disk_error_pct"]:
            st.mergeSummary(level_byte(ERROR), f"disk {disk:.0f} %")
        elif disk >= p["disk_warn_pct"]:
            st.mergeSummary(level_byte(WARN), f"disk {disk:.0f} %")
        st.add("cpu (%)", f"{cpu:.1f}")
        st.add("load average", " ".join(f"{x:.2f}" for x in os.getloadavg()))
        st.add("memory (%)", f"{mem:.1f}")
        st.add("disk (%)", f"{disk:.1f}")
        st.add("data dir", p["data_dir"])
        st.add("uptime (s)", f"{time.time() - psutil.boot_time():.0f}")
        temps = getattr(psutil, "sensors_temperatures", lambda: {})() or {}
        for chip, entries in temps.items():
            for e in entries[:1]:
                st.add(f"temperature {chip} (C)", f"{e.current:.0f}")
        return st

    def _diag_processes(self, st):
        st.summary(level_byte(OK), "OK")
        try:
            with open(self.p["state_file"]) as f:
                state = json.load(f)
        except (OSError, ValueError):
            st.summary(level_byte(OK), "not started by reachy-mini-bringup (no supervisor state)")
            return st
        for name, n in state.get("nodes", {}).items():
            pid = n.get("pid")
            info = "not running"
            if pid:
                try:
                    pr = psutil.Process(pid)
                    info = f"rss {pr.memory_info().rss / 1e6:.0f} MB, fds {pr.num_fds()}"
                except psutil.Error:
                    pass
            st.add(name, f"{info}, restarts {n.get('restarts', 0)}")
            if n.get("restarts"):
                st.mergeSummary(level_byte(WARN) if pid else level_byte(ERROR),
                                f"{name} restarted {n['restarts']} times")
        return st

def main(args=None) -> int:
    return run_node(HealthNode, "health_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
