"""web_bridge: the web status page, JSON API and Prometheus metrics (web/app.py)
over a StateStore filled from /diagnostics_agg, /diagnostics_toplevel_state,
/joint_states, the camera's compressed topic, the audio level and the incident
history. uvicorn runs on its own thread; writes call motor_node's services."""
from __future__ import annotations

import os
import socket
import threading
import time

import uvicorn
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, JointState
from std_msgs.msg import Float32
from std_srvs.srv import SetBool, Trigger

from reachy_mini.ros import qos
from reachy_mini.core.levels import ERROR, Level, OK
from reachy_mini.ros.diagnostics import Updater
from reachy_mini.core.health.incidents import db_path, query
from reachy_mini.ros.params import Param, ParameterError, declare, run_node
from reachy_mini.ops.paths import data_dir
from reachy_mini.web.app import Actions, WebConfig, create_app
from reachy_mini.web.state import StateStore, status_dict

SPECS = [
    Param("use_sim", False, "unused; accepted for a uniform command line"),
    Param("host", "127.0.0.1", "listen address (0.0.0.0 to serve the LAN)"),
    Param("port", 8000, "listen port", 1, 65535),
    Param("data_dir", "", "health_node's data directory (incident history); '' = the robot's own "
          "(~/.local/share/reachy_mini[/<namespace>])",
          check=lambda v: None if v == "" or os.path.isabs(v) else "must be '' or an absolute path"),
    Param("token_file", "", "file holding the bearer token for writes (else env REACHY_MINI_WEB_TOKEN)"),
    Param("history_minutes", 30.0, "length of the temperature / loop-rate history", 1.0, 1440.0),
    Param("write_rate", 5, "writes allowed per client per write_window_s", 1, 1000, runtime=True),
    Param("write_window_s", 10.0, "rate-limit window for writes", 1.0, 3600.0, runtime=True),
    Param("service_timeout_s", 3.0, "how long a write waits for motor_node", 0.1, 30.0, runtime=True),
    Param("health_stale_s", 3.0, "the robot's health is STALE (503) when the health node has been silent this long "
          "(default: 3 x its 1 s period)", 0.5, 600.0, runtime=True),
    Param("motor_node", "motor_node", "name of the motor node (its services, relative to this namespace)",
          check=lambda v: None if v and not v.startswith("/") and " " not in v else "must be a relative node name"),
]


def _d(st) -> dict:
    return status_dict(st.name, Level.of(st.level), st.message, [(kv.key, kv.value) for kv in st.values],
                       st.hardware_id)


def _token(p) -> str | None:
    if p["token_file"]:
        try:
            with open(p["token_file"]) as f:
                tok = f.read().strip()
        except OSError as e:
            raise ParameterError(f"parameter 'token_file' = {p['token_file']!r}: {e.strerror}") from None
        if len(tok) < 16:
            raise ParameterError("parameter 'token_file': the token must be at least 16 characters")
        if os.stat(p["token_file"]).st_mode & 0o077:
            print(f"[web_bridge] WARNING: token file {p['token_file']} is readable by other users "
                  f"(chmod 600 it)", flush=True)
        return tok
    tok = os.environ.get("REACHY_MINI_WEB_TOKEN", "").strip()
    if tok and len(tok) < 16:
        raise ParameterError("REACHY_MINI_WEB_TOKEN must be at least 16 characters")
    return tok or None


class WebBridge(Node):
    def __init__(self) -> None:
        super().__init__("web_bridge")
        self.app = None
        self.p = p = declare(self, SPECS, on_change=self._on_params)
        self.store = StateStore(history_s=p["history_minutes"] * 60, stale_after_s=p["health_stale_s"])
        self.db = db_path(p["data_dir"] or data_dir(self.get_namespace()))
        s = self.store
        # The diagnostics topics are absolute (ROS convention; remapped into the
        # namespace by the launch file and the supervisor); the rest is relative.
        self.create_subscription(DiagnosticStatus, "/diagnostics_toplevel_state",
                                 lambda m: s.set_diagnostics(_d(m), None), qos.DIAGNOSTICS_AGG)
        self.create_subscription(DiagnosticArray, "/diagnostics_agg",
                                 lambda m: s.set_diagnostics(None, [_d(x) for x in m.status]), qos.DIAGNOSTICS_AGG)
        self.create_subscription(JointState, "joint_states", lambda m: s.set_joints(m.name, m.position), qos.LATEST)
        self.create_subscription(CompressedImage, "camera/image_raw/compressed", lambda m: s.set_camera(m.data),
                                 qos.LATEST)
        self.create_subscription(Float32, "audio/level_dbfs", lambda m: s.set_audio_level(m.data), qos.LATEST)
        self.create_timer(1.0, lambda: s.set_incidents(query(self.db, limit=20)))
        self.create_timer(0.5, s.check_stale)   # a silent health node turns the page and /api/health STALE
        self.torque_cli = self.create_client(SetBool, f"{p['motor_node']}/set_torque")
        self.reboot_cli = self.create_client(Trigger, f"{p['motor_node']}/reboot")
        token = _token(p)
        cfg = WebConfig(token=token, write_rate=p["write_rate"], write_window_s=p["write_window_s"],
                        public_config={k: v for k, v in p.items() if k != "token_file"}
                        | {"namespace": self.get_namespace(), "token_file_set": bool(p["token_file"])},
                        robot=self.get_namespace().strip("/") or socket.gethostname())
        app = create_app(s, Actions(self._torque, self._reboot,
                                    lambda since=None, limit=100: query(self.db, since=since, limit=limit)), cfg)
        self.server = uvicorn.Server(uvicorn.Config(app, host=p["host"], port=p["port"], log_level="warning",
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        self.updater = Updater(self, period=1.0)
        self.updater.setHardwareID(f"http://{p['host']}:{p['port']}")
        self.updater.add("http", self._diag)
        self.app = app
        self.get_logger().info(f"web status page on http://{p['host']}:{p['port']} "
                               f"(writes {'enabled' if token else 'disabled: no token'})")

    def _on_params(self, changed: dict) -> None:
        if "health_stale_s" in changed:
            self.store.stale_after_s = self.p["health_stale_s"]
        if self.app is not None and ("write_rate" in changed or "write_window_s" in changed):
            self.app.state.limiter.configure(self.p["write_rate"], self.p["write_window_s"])

    def _call(self, cli, req) -> tuple[bool, str]:   # uvicorn worker thread; the executor completes it
        if not cli.wait_for_service(timeout_sec=self.p["service_timeout_s"]):
            raise TimeoutError(f"service {cli.srv_name} not available (is motor_node running?)")
        fut = cli.call_async(req)
        end = time.monotonic() + self.p["service_timeout_s"]
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.005)
        if not fut.done():
            fut.cancel()
            raise TimeoutError(f"service {cli.srv_name} did not answer within {self.p['service_timeout_s']} s")
        r = fut.result()
        return r.success, r.message

    def _torque(self, enabled: bool) -> tuple[bool, str]:
        return self._call(self.torque_cli, SetBool.Request(data=enabled))

    def _reboot(self) -> tuple[bool, str]:
        return self._call(self.reboot_cli, Trigger.Request())

    def _diag(self, st):
        hub = self.app.state.hub
        if self.thread.is_alive() and self.server.started:
            st.summary(Level(OK).to_bytes(), f"serving on {self.p['host']}:{self.p['port']}")
        else:
            st.summary(Level(ERROR).to_bytes(), "HTTP server not running (port in use?)")
        st.add("live clients", str(len(hub.clients)))
        st.add("updates dropped for slow clients", str(hub.dropped))
        st.add("requests", str(sum(self.app.state.metrics.count.values())))
        return st

    def shutdown(self) -> None:
        self.app.state.hub.close()
        time.sleep(0.1)
        self.server.should_exit = True
        self.thread.join(3)


def main(args=None) -> int:
    return run_node(WebBridge, "web_bridge", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
