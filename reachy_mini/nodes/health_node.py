"""health_node: /diagnostics -> /diagnostics_agg + /diagnostics_toplevel_state
(rqt_robot_monitor), driven by config/analyzers.yaml; system and per-node
process checks; hang detection (alive but silent nodes are killed so the
supervisor or launch's respawn restarts them); incident history in SQLite.
The logic lives in health_core, system_probes and incidents."""
from __future__ import annotations

import os
import signal
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from reachy_mini.ros import qos
from reachy_mini.core.levels import ERROR, Level, OK, WARN
from reachy_mini.ros.diagnostics import Updater
from reachy_mini.core.health.aggregator import ConfigError, NodeWatch, load_aggregator, node_status
from reachy_mini.core.health.incidents import Incident, IncidentWriter
from reachy_mini.ops.node_table import NODES
from reachy_mini.ros.params import Param, ParameterError, declare, run_node
from reachy_mini.ops.paths import config_path, data_dir, state_file
from reachy_mini.core.health.system import ProcessMonitor, Thresholds, evaluate_process, evaluate_system, system_snapshot

TH = Thresholds()
SPECS = [
    Param("use_sim", False, "unused; accepted for a uniform command line"),
    Param("pub_rate", 1.0, "publish rate of /diagnostics_agg (Hz)", 0.1, 50.0, runtime=True),
    Param("analyzers_file", config_path("analyzers.yaml"), "diagnostic_aggregator analyzer YAML",
          check=lambda v: None if os.path.isfile(v) else "no such file"),
    Param("data_dir", "", "incident database and disk check directory; '' = the robot's own "
          "(~/.local/share/reachy_mini[/<namespace>])",
          check=lambda v: None if v == "" or os.path.isabs(v) else "must be '' or an absolute path"),
    Param("history_days", 30.0, "incident retention (days)", 0.001, 3650.0, runtime=True),
    Param("history_max_rows", 100000, "incident retention (rows)", 100, 10_000_000, runtime=True),
    Param("hang_timeout_s", 10.0, "a live node silent this long is hung", 2.0, 600.0, runtime=True),
    Param("restart_hung_nodes", True, "kill hung nodes so that the supervisor / launch respawn restarts them",
          runtime=True),
    Param("expected_nodes", [n.name for n in NODES], "nodes that must publish diagnostics (default: the node table)",
          check=lambda v: None if set(v) <= {n.name for n in NODES} else
          f"unknown node(s) {sorted(set(v) - {n.name for n in NODES})}; known: {[n.name for n in NODES]}"),
    Param("state_file", "", "reachy-mini-bringup state file (pids, restart counts); '' = the robot's own "
          "(<runtime dir>/reachy_mini_bringup[.<namespace>].json)"),
] + [Param(k, v, f"threshold: {k}", 0, 1e6, runtime=True) for k, v in vars(TH).items()]


def validate(p: dict) -> list[str]:
    """warn < error for every threshold pair."""
    return [f"need {k} < {k.replace('_warn', '_error')} ({p[k]} >= {p[k.replace('_warn', '_error')]})"
            for k in vars(TH) if "_warn" in k and k.replace("_warn", "_error") in p
            and p[k] >= p[k.replace("_warn", "_error")]]


def _status(o) -> DiagnosticStatus:
    return DiagnosticStatus(level=Level(o.level).to_bytes(), name=o.name, message=o.message, hardware_id=o.hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in o.values])


class HealthNode(Node):
    def __init__(self) -> None:
        super().__init__("health_node")
        self.p = p = declare(self, SPECS, validate, self._on_params)
        ns = self.get_namespace()
        self.data_dir = p["data_dir"] or data_dir(ns)
        self.th = Thresholds(**{k: p[k] for k in vars(TH)})
        try:
            self.agg = load_aggregator(p["analyzers_file"])
        except ConfigError as e:
            raise ParameterError(f"parameter 'analyzers_file': {e}") from None
        now = time.monotonic()
        expected = [n for n in NODES if n.name in p["expected_nodes"]]
        self.watch = NodeWatch({n.name: n.stale_timeout_s for n in expected}, now)
        self.procs = ProcessMonitor({n.name: n.module for n in expected}, p["state_file"] or state_file(ns), ns)
        self.info: dict = {}
        self.restart_log: dict[str, list[float]] = {n.name: [] for n in expected}
        self.hang_kills: dict[str, int] = {n.name: 0 for n in expected}
        self.killed_pids: set[int] = set()
        self.restarts_seen: dict[str, int] = {}
        self.db = IncidentWriter(self.data_dir, p["history_days"], p["history_max_rows"])
        self.levels = self.db.last_levels()
        self.statuses = 0
        self.last_immediate = 0.0
        self.last_prune = now
        # Absolute names, as diagnostic_aggregator and rqt_robot_monitor use;
        # with a namespace the launch file and the supervisor remap them into it.
        self.agg_pub = self.create_publisher(DiagnosticArray, "/diagnostics_agg", qos.DIAGNOSTICS_AGG)
        self.top_pub = self.create_publisher(DiagnosticStatus, "/diagnostics_toplevel_state", qos.DIAGNOSTICS_AGG)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, qos.DIAGNOSTICS_IN)
        self.pub_timer = self.create_timer(1.0 / p["pub_rate"], self._publish)
        self.create_timer(1.0, self._sample)
        system_snapshot(self.data_dir)  # primes cpu_percent
        self.updater = Updater(self)
        self.updater.setHardwareID(os.uname().nodename)
        self.updater.add("system", self._diag_system)
        self.updater.add("incidents", self._diag_incidents)
        for n in expected:
            self.updater.add(f"node {n.name}", lambda st, name=n.name: self._diag_node(st, name))

    def _on_params(self, changed: dict) -> None:
        """`ros2 param set`: already validated by the same rules as at start."""
        if any(k in vars(TH) for k in changed):
            self.th = Thresholds(**{k: self.p[k] for k in vars(TH)})
        if "history_days" in changed:
            self.db.retention_days = float(self.p["history_days"])
        if "history_max_rows" in changed:
            self.db.max_rows = int(self.p["history_max_rows"])
        if "pub_rate" in changed:
            self.destroy_timer(self.pub_timer)
            self.pub_timer = self.create_timer(1.0 / self.p["pub_rate"], self._publish)

    def _note(self, name: str, level: int, message: str, hwid: str = "", kind: str = "level") -> None:
        prev = self.levels.get(name)
        if kind == "level" and prev == level:
            return
        if kind == "level":
            self.levels[name] = level
        self.db.record(Incident(time.time(), name, level, prev, message, hwid, kind))

    def _item(self, node: str) -> str:
        """Aggregated name of a node's presence item, e.g. /Reachy Mini/Nodes/camera_node."""
        names = self.agg.out_names(f"health_node: node {node}")
        return names[0] if names else f"health_node: node {node}"

    def _on_diag(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        escalate = False
        for st in msg.status:
            lv = Level.of(st.level)
            prev = self.agg.update(st.name, lv, st.message, st.hardware_id, st.values, now)
            self.watch.seen(st.name, now)
            if prev != lv:
                for out_name in self.agg.out_names(st.name):
                    self._note(out_name, lv, st.message, st.hardware_id)
                escalate |= lv == ERROR
        self.statuses += len(msg.status)
        if escalate and now - self.last_immediate > 0.02:
            self.last_immediate = now
            self._publish()

    def _publish(self) -> None:
        outs, top = self.agg.report(time.monotonic())
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [_status(o) for o in outs]
        self.agg_pub.publish(arr)
        self.top_pub.publish(_status(top))
        self.get_logger().debug(f"published {len(outs)} items; top level {top.level}: {top.message}")
        for o in outs:
            self._note(o.name, o.level, o.message, o.hardware_id)
        self._note(top.name, top.level, top.message)

    def _sample(self) -> None:
        now, wall = time.monotonic(), time.time()
        if now - self.last_prune > 60.0:   # names that stopped for good must not accumulate
            self.last_prune = now
            if self.agg.prune(now, 3600.0) or len(self.levels) > 20000:
                live = {o.name for o in self.agg.report(now)[0]} | {"toplevel_state"}
                self.levels = {k: v for k, v in self.levels.items() if k in live}
        self.info = self.procs.sample()
        for name, info in self.info.items():
            log = self.restart_log[name]
            prev = self.restarts_seen.get(name)
            if prev is not None and info.restarts > prev:
                log.append(wall)
                self._note(self._item(name), ERROR, f"{name} restarted (restart #{info.restarts}, "
                           f"last exit {info.last_exit})", kind="restart")
            self.restart_log[name] = [t for t in log if wall - t < 600]
            if name == "health_node":
                continue
            _, msg, hung = node_status(name, info, self.watch, now, self.p["hang_timeout_s"])
            if hung and self.p["restart_hung_nodes"] and info.pid not in self.killed_pids:
                self.killed_pids.add(info.pid)
                self.hang_kills[name] += 1
                self.get_logger().error(f"{name} {msg}: killing pid {info.pid} so that it is respawned")
                self._note(self._item(name), ERROR, f"{msg}; killed pid {info.pid}", kind="hang")
                try:
                    os.kill(info.pid, signal.SIGKILL)
                except OSError as e:
                    self.get_logger().error(f"could not kill {name} (pid {info.pid}): {e}")
        self.restarts_seen = {n: i.restarts for n, i in self.info.items()}

    def _diag_node(self, st, name: str):
        info = self.info.get(name)
        now = time.monotonic()
        if name == "health_node":
            lv, msg = OK, "publishing"
        else:
            lv, msg, _ = node_status(name, info, self.watch, now, self.p["hang_timeout_s"],
                                     len(self.restart_log[name]))
        if info is not None:
            plv, pmsgs = evaluate_process(info, self.th)
            if plv > lv and lv in (OK, WARN):
                lv, msg = plv, "; ".join(pmsgs)
            st.add("pid", str(info.pid or ""))
            st.add("process state", str(info.status))
            st.add("rss (MB)", f"{info.rss_mb:.1f}")
            st.add("cpu (%)", f"{info.cpu_pct:.1f}")
            st.add("open fds", str(info.fds))
            st.add("threads", str(info.threads))
            st.add("process age (s)", "" if info.age_s is None else f"{info.age_s:.1f}")
            st.add("restarts", str(info.restarts))
            st.add("last exit", "" if info.last_exit is None else str(info.last_exit))
            st.add("pid source", info.source)
        st.add("hang restarts", str(self.hang_kills[name]))
        st.add("last diagnostics age (s)", f"{self.watch.silent_for(name, now):.1f}")
        st.add("statuses received", str(self.watch.counts.get(name, 0)))
        st.summary(Level(lv).to_bytes(), msg)
        st.hardware_id = f"pid:{info.pid}" if info and info.pid else ""
        return st

    def _diag_system(self, st):
        s = system_snapshot(self.data_dir)
        lv, msg = evaluate_system(s, self.th)
        st.summary(Level(lv).to_bytes(), msg)
        st.add("cpu (%)", f"{s['cpu_pct']:.1f}")
        st.add("load average", " ".join(f"{x:.2f}" for x in s["load"]))
        st.add("memory (%)", f"{s['mem_pct']:.1f}")
        st.add("disk (%)", f"{s['disk_pct']:.1f}")
        st.add("disk free (GB)", f"{s['disk_free_gb']:.1f}")
        st.add("data dir", self.data_dir)
        st.add("uptime (s)", f"{s['uptime_s']:.0f}")
        for k, v in list(s["temps"].items())[:8]:
            st.add(f"temperature {k} (C)", f"{v:.0f}")
        if not s["temps"]:
            st.add("temperature", "no sensor")
        return st

    def _diag_incidents(self, st):
        d = self.db
        lv = ERROR if d.errors else OK
        st.summary(Level(lv).to_bytes(), f"write errors: {d.last_error}" if d.errors else "OK")
        st.add("database", d.path)
        for k in ("written", "dropped", "pruned", "errors"):
            st.add(k, str(getattr(d, k)))
        st.add("queue", str(d.q.qsize()))
        st.add("statuses aggregated", str(self.statuses))
        st.add("items", str(len(self.agg.items)))
        return st

    def shutdown(self) -> None:
        self.db.close()


def main(args=None) -> int:
    return run_node(HealthNode, "health_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
