"""web_bridge: serves the web status page and JSON API from the
aggregated diagnostics. uvicorn runs on its own thread."""
from __future__ import annotations

import threading

import uvicorn
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import JointState

from ..diag import OK, Updater, level_byte, level_int
from ..params import P, declare, run_node
from ..web.app import create_app
from ..web.state import StateStore, status_dict

SPECS = [
    P("use_sim", False, "unused; accepted for a uniform command line"),
    P("host", "127.0.0.1", "listen address"),
    P("port", 8000, "listen port", 1, 65535),
]


def _d(st) -> dict:
    return status_dict(st.name, level_int(st.level), st.message, [(kv.key, kv.value) for kv in st.values])


class WebBridge(Node):
    def __init__(self) -> None:
        super().__init__("web_bridge")
        self.p = p = declare(self, SPECS)
        self.store = StateStore()
        self.create_subscription(DiagnosticStatus, "/diagnostics_toplevel_state",
                                 lambda m: self.store.set_diagnostics(_d(m), None), 10)
        self.create_subscription(DiagnosticArray, "/diagnostics_agg",
                                 lambda m: self.store.set_diagnostics(None, [_d(s) for s in m.status[1:]]), 10)
        self.create_subscription(JointState, "/joint_states",
                                 lambda m: self.store.set_joints(m.name, m.position), 10)
        config = uvicorn.Config(create_app(self.store), host=p["host"], port=p["port"], log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        self.updater = Updater(self, period=1.0)
        self.updater.setHardwareID(f"http://{p['host']}:{p['port']}")
        self.updater.add("http", self._diag)
        self.get_logger().info(f"web status page on http://{p['host']}:{p['port']}")

    def _diag(self, st):
        if self.thread.is_alive() and self.server.started:
            st.summary(level_byte(OK), f"serving on {self.p['host']}:{self.p['port']}")
        else:
            st.summary(level_byte(2), "HTTP server not running")
        return st

    def shutdown(self) -> None:
        self.server.should_exit = True
        self.thread.join(3)


def main(args=None) -> int:
    return run_node(WebBridge, "web_bridge", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
