"""health_node: /diagnostics -> /diagnostics_agg + /diagnostics_toplevel_state
(rqt_robot_monitor), driven by config/analyzers.yaml; system and per-node
process checks (ros/tasks.py); hangs and restarts of the stack's nodes
(core/health/nodes.py says who owns what); incident history in SQLite."""
from __future__ import annotations

import os
import signal
import socket
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from reachy_mini.core.health.aggregator import ConfigError, load_aggregator, shown_message
from reachy_mini.core.health.alarm import Flaps
from reachy_mini.core.health.config import HealthConfig
from reachy_mini.core.health.incidents import Incident, IncidentWriter
from reachy_mini.core.health.recorder import snapshot_dir
from reachy_mini.core.health.nodes import LevelChanges, NodeWatch, RestartLog, node_status
from reachy_mini.core.health.notify import Notifier, TopLevelWatch
from reachy_mini.core.health.system import ProcessMonitor, rate_symptoms, siblings
from reachy_mini.core.levels import ERROR, Level
from reachy_mini.common.node_table import NODES
from reachy_mini.common.paths import data_dir, heartbeat_file, state_file
from reachy_mini.ros import qos
from reachy_mini.core.identity import robot_name
from reachy_mini.ros.diagnostics import RobotUpdater
from reachy_mini.ros.params import ParameterError, declare
from reachy_mini.ros.recorder import FlightRecorder
from reachy_mini.ros.runner import run_node
from reachy_mini.ros.tasks import (IncidentsCheck, NotifyCheck, ProcessCheck, RecorderCheck, SharedMemoryCheck,
                                   SystemCheck)

CONFIG = HealthConfig


def _status(o) -> DiagnosticStatus:
    return DiagnosticStatus(level=Level(o.level).to_bytes(), name=o.name, message=o.message,
                            hardware_id=o.hardware_id, values=[KeyValue(key=k, value=v) for k, v in o.values])


class HealthNode(Node):
    def __init__(self) -> None:
        super().__init__("health_node")
        self.cfg = c = declare(self, HealthConfig, self._on_params)
        self.robot = robot_name(self.cfg.robot_name, self.get_namespace())
        ns = self.get_namespace()
        self.data_dir = c.data_dir or data_dir(ns)
        try:
            self.agg = load_aggregator(c.analyzers_file)
        except ConfigError as e:
            raise ParameterError(f"parameter 'analyzers_file': {e}") from None
        now = time.monotonic()
        expected = [n for n in NODES if n.name in c.expected_nodes]
        self.watch = NodeWatch({n.name: n.stale_timeout_s for n in expected}, now)
        self.procs = ProcessMonitor({n.name: n.module for n in expected}, c.state_file or state_file(ns), ns,
                                    lambda node: heartbeat_file(ns, node))
        self.info: dict = {}
        self.restarts = RestartLog([n.name for n in expected])
        self.killed_pids: set[int] = set()
        self.refused = ""     # why a state file or pid was not trusted (logged once per change)
        self.db = IncidentWriter(self.data_dir, c.history_days, c.history_max_rows, robot=self.robot)
        if self.db.moved_aside:
            self.get_logger().warning(f"incident database damaged; moved aside to {self.db.moved_aside}, "
                                      "starting a fresh one")
        self.recorder = FlightRecorder(self, snapshot_dir(self.data_dir), c) if c.recorder else None
        self.changes = LevelChanges(self.db.last_levels())
        self.flaps = Flaps(c.flap_max_changes, c.flap_window_s, c.flap_settle_s)
        self.top_watch = TopLevelWatch(self.changes.previous("toplevel_state"), c.notify_settle_s, now,
                                       c.notify_min_interval_s)
        self.notifier: Notifier | None = None
        if c.notify_url:
            self.notifier = Notifier(c.notify_url, self.robot, c.page_url or f"http://{socket.gethostname()}:8000/",
                                     c.notify_topic, log=self._log)
        self.statuses = 0
        self.last_immediate = 0.0
        self.last_prune = now
        # Absolute names, as diagnostic_aggregator and rqt_robot_monitor use;
        # with a namespace the launch file and the supervisor remap them into it.
        self.agg_pub = self.create_publisher(DiagnosticArray, "/diagnostics_agg", qos.DIAGNOSTICS_AGG)
        self.top_pub = self.create_publisher(DiagnosticStatus, "/diagnostics_toplevel_state", qos.DIAGNOSTICS_AGG)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, qos.DIAGNOSTICS_IN)
        self.pub_timer = self.create_timer(1.0 / c.pub_rate, self._publish)
        self.create_timer(1.0, self._sample)
        self.updater = RobotUpdater(self, self.robot)
        self.updater.setHardwareID(os.uname().nodename)
        self.updater.add(SystemCheck(self.data_dir, c.thresholds, lambda: rate_symptoms(self.agg.items)))
        self.updater.add(IncidentsCheck(self))
        self.updater.add(NotifyCheck(self))
        self.updater.add(RecorderCheck(self))
        self.updater.add(SharedMemoryCheck(lambda: self.cfg.shm_sweep_s, lambda t: self._log("info", t)))
        for n in expected:
            self.updater.add(ProcessCheck(n.name, self))

    def _log(self, level: str, text: str) -> None:
        # one call site per severity: rclpy refuses a call site whose severity changes
        if level == "info":
            self.get_logger().info(text)
        elif level == "warn":
            self.get_logger().warning(text)
        else:
            self.get_logger().error(text)

    def _on_params(self, changed: dict) -> None:
        """`ros2 param set`: already validated by the same rules as at start."""
        if "history_days" in changed:
            self.db.retention_days = float(self.cfg.history_days)
        if "history_max_rows" in changed:
            self.db.max_rows = int(self.cfg.history_max_rows)
        if changed.keys() & {"flap_max_changes", "flap_window_s", "flap_settle_s"}:
            self.flaps.configure(self.cfg.flap_max_changes, self.cfg.flap_window_s, self.cfg.flap_settle_s)
        if "pub_rate" in changed:
            self.destroy_timer(self.pub_timer)
            self.pub_timer = self.create_timer(1.0 / self.cfg.pub_rate, self._publish)

    def _note(self, name: str, level: int, message: str, hwid: str = "", kind: str = "level") -> None:
        """Records a level change (or a restart/hang) as an incident; a
        flapping item once, at its worst level, until it settles
        (core/health/alarm.Flaps)."""
        if kind == "level":
            changed, prev = self.changes.change(name, level)
            if not changed:
                return
            admitted = self.flaps.admit(name, level, message, hwid, time.monotonic())
            if admitted is None:
                return
            level, message = admitted
        else:
            prev = self.changes.previous(name)
        snap = self.recorder.incident(name, level) if self.recorder else None   # an ERROR opens a snapshot
        self.db.record(Incident(time.time(), name, int(level), prev, message, hwid, kind, snapshot=snap))

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
        for o in outs:   # incidents read a group's cause, not its bare level word
            self._note(o.name, o.level, shown_message(o.message, o.values), o.hardware_id)
        self._note(top.name, top.level, top.message)
        level, message = self.flaps.held(top.name, top.level, top.message)   # flapping: its worst level
        tr = self.top_watch.observe(level, message, time.monotonic())
        if tr is not None and self.notifier is not None:
            self.notifier.submit(tr)

    def _sample(self) -> None:
        now, wall = time.monotonic(), time.time()
        if now - self.last_prune > 60.0:   # names that stopped for good must not accumulate
            self.last_prune = now
            if self.agg.prune(now, 3600.0) or len(self.changes.levels) > 20000:
                self.changes.prune({o.name for o in self.agg.report(now)[0]} | {"toplevel_state"})
        for name, level, worst, message, hwid in self.flaps.settled(now):
            self.db.record(Incident(time.time(), name, level, worst, message, hwid))
        self.info = self.procs.sample()
        if self.procs.refused != self.refused:
            self.refused = self.procs.refused
            if self.refused:
                self.get_logger().warning(self.refused)
        for name, kind, message in self.restarts.observe(self.info, wall):
            self._note(self._item(name), ERROR, message, kind=kind)
        if self.procs.manager != "launch" or not self.cfg.restart_hung_nodes:
            return   # reachy-mini-bringup kills and restarts its hung children itself
        for name, info in self.info.items():
            if name == "health_node" or info.pid in self.killed_pids or info.pid == os.getpid():   # not itself
                continue
            _, msg, hung = node_status(name, info, self.watch, now, self.cfg.hang_timeout_s)
            if hung:
                self._kill_hung(name, info.pid, msg)

    def _kill_hung(self, name: str, pid: int, msg: str) -> None:
        """Under ros2 launch: kill a hung node of this launch (a sibling
        process) so that launch's respawn restarts it."""
        if pid not in {p.pid for p in siblings()}:
            self.get_logger().error(f"{name} {msg}: pid {pid} is not a process of this launch; not killing it")
            self.killed_pids.add(pid)
            return
        self.killed_pids.add(pid)
        self.restarts.hang_kills[name] = self.restarts.hang_kills.get(name, 0) + 1
        self.get_logger().error(f"{name} {msg}: killing pid {pid} so that it is respawned")
        self._note(self._item(name), ERROR, f"{msg}; killed pid {pid}", kind="hang")
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError as e:
            self.get_logger().error(f"could not kill {name} (pid {pid}): {e}")

    def workers(self) -> dict:
        w = {"incident writer": self.db.thread}
        if self.notifier is not None:
            w["notifier"] = self.notifier.thread
        if self.recorder is not None:
            w["flight recorder"] = self.recorder.thread
        return w

    def shutdown(self) -> None:
        if self.notifier is not None:
            self.notifier.stop(2.0)
        if self.recorder is not None:
            self.recorder.close()
        self.db.close()


NODE = HealthNode   # nodes/robot.py


def main(args=None) -> int:
    return run_node(HealthNode, "health_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
