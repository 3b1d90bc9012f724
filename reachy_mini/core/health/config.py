"""health_node's typed configuration (its ROS parameters)."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

from reachy_mini.core.config import NodeConfig, absolute_or_empty, setting
from reachy_mini.core.health.notify import check_url
from reachy_mini.core.health.system import Thresholds
from reachy_mini.common.node_table import NODES
from reachy_mini.common.paths import config_path

NODE_NAMES = [n.name for n in NODES]


def _known_nodes(v) -> str | None:
    unknown = sorted(set(v) - set(NODE_NAMES))
    return f"unknown node(s) {unknown}; known: {NODE_NAMES}" if unknown else None


def _threshold(default, description: str):
    return setting(default, description, 0, 1e6, runtime=True)


@dataclass
class HealthConfig(NodeConfig):
    use_sim: bool = setting(False, "unused; accepted for a uniform command line")
    pub_rate: float = setting(1.0, "publish rate of /diagnostics_agg (Hz)", 0.1, 50.0, runtime=True)
    analyzers_file: str = setting(config_path("analyzers.yaml"), "diagnostic_aggregator analyzer YAML",
                                  check=lambda v: None if os.path.isfile(v) else "no such file")
    data_dir: str = setting("", "incident database and disk check directory; '' = the robot's own "
                            "(~/.local/share/reachy_mini[/<namespace>])", check=absolute_or_empty)
    history_days: float = setting(30.0, "incident retention (days)", 0.001, 3650.0, runtime=True)
    history_max_rows: int = setting(100000, "incident retention (rows)", 100, 10_000_000, runtime=True)
    hang_timeout_s: float = setting(10.0, "a live node whose spin loop has not beaten this long is hung",
                                    2.0, 600.0, runtime=True)
    restart_hung_nodes: bool = setting(True, "under ros2 launch, kill a hung node of this stack so that launch's "
                                       "respawn restarts it (under reachy-mini-bringup the supervisor does it)",
                                       runtime=True)
    expected_nodes: list = setting(NODE_NAMES, "nodes that must publish diagnostics (default: the node table)",
                                   check=_known_nodes)
    state_file: str = setting("", "reachy-mini-bringup state file (pids, restart counts); '' = the robot's own "
                              "(<runtime dir>/reachy_mini_bringup[.<namespace>].json)")
    notify_url: str = setting("", "POST a JSON notification here when the top level enters or leaves ERROR or "
                              "STALE (a webhook, or an ntfy server's root with notify_topic); '' = off",
                              check=check_url, secret=True)
    notify_topic: str = setting("", "ntfy topic put in the notification (ntfy's publish-as-JSON); '' = none",
                                check=lambda v: None if all(c.isalnum() or c in "-_" for c in v) and len(v) <= 64
                                else "letters, digits, '-' and '_' only (at most 64)")
    page_url: str = setting("", "link to the robot's page in notifications; '' = http://<host name>:8000/",
                            check=check_url)
    notify_settle_s: float = setting(15.0, "after start-up, report the top level only once it had this long to "
                                     "settle (nodes coming up are not an alarm)", 0.0, 600.0)
    notify_min_interval_s: float = setting(60.0, "after a notification, the next one waits at least this long and "
                                           "then reports the level of that moment (a flapping level is one "
                                           "notification, not a flood)", 0.0, 3600.0)
    shm_sweep_s: float = setting(60.0, "every this long, remove the Fast DDS shared-memory segments (/dev/shm, RAM) "
                                 "that killed processes of this user left behind; 0 = off", 0.0, 86400.0,
                                 runtime=True)
    cpu_warn_pct: float = _threshold(90.0, "host CPU: WARN once at or above this (%) for cpu_sustain_s")
    cpu_error_pct: float = _threshold(98.0, "host CPU: ERROR at or above this (%) for cpu_sustain_s, only while "
                                      "the motor loop or the camera is below its rate (CPU alone is a WARN)")
    cpu_clear_pct: float = _threshold(80.0, "host CPU: the alarm clears below this (%)")
    cpu_sustain_s: float = _threshold(30.0, "host CPU: seconds above a threshold before the alarm")
    mem_warn_pct: float = _threshold(85.0, "host memory: WARN once at or above this (%) for mem_sustain_s")
    mem_error_pct: float = _threshold(95.0, "host memory: ERROR once at or above this (%) for mem_sustain_s")
    mem_clear_pct: float = _threshold(80.0, "host memory: the alarm clears below this (%)")
    mem_sustain_s: float = _threshold(30.0, "host memory: seconds above a threshold before the alarm")
    recorder: bool = setting(True, "flight recorder: keep the last minute of diagnostics, joint states, head pose "
                             "and goals, and write an MCAP snapshot on each ERROR incident and on request "
                             "(~/snapshot)")
    recorder_buffer_mb: float = setting(32.0, "flight recorder: memory bound of the rolling buffer (MB)", 1.0, 1024.0)
    snapshot_before_s: float = setting(30.0, "flight recorder: seconds recorded before the trigger", 1.0, 300.0)
    snapshot_after_s: float = setting(10.0, "flight recorder: seconds recorded after the trigger", 1.0, 120.0)
    snapshot_quota_mb: float = setting(500.0, "flight recorder: disk quota of the snapshots; the oldest go first "
                                       "(MB)", 0.1, 1e6, runtime=True)
    snapshot_retention_days: float = setting(30.0, "flight recorder: snapshots older than this are deleted (days)",
                                             0.001, 3650.0, runtime=True)
    disk_warn_pct: float = _threshold(85.0, "data disk: WARN at or above (%)")
    disk_error_pct: float = _threshold(95.0, "data disk: ERROR at or above (%)")
    temp_warn_c: float = _threshold(75.0, "hottest host sensor: WARN once at or above this (C) for temp_sustain_s")
    temp_error_c: float = _threshold(85.0, "hottest host sensor: ERROR once at or above this (C) for temp_sustain_s")
    temp_clear_c: float = _threshold(70.0, "hottest host sensor: the alarm clears below this (C)")
    temp_sustain_s: float = _threshold(30.0, "hottest host sensor: seconds above a threshold before the alarm")
    node_rss_warn_mb: float = _threshold(500.0, "a node's RSS: WARN at or above (MB)")
    node_rss_error_mb: float = _threshold(1500.0, "a node's RSS: ERROR at or above (MB)")
    node_cpu_warn_pct: float = _threshold(80.0, "a node's CPU (average): WARN at or above (%)")
    node_fds_warn: int = _threshold(500, "a node's open files: WARN at or above")
    flap_max_changes: int = setting(4, "an item whose level changes more than this many times within "
                                    "flap_window_s is flapping: one incident and one notification at its worst "
                                    "level until it settles", 1, 1000, runtime=True)
    flap_window_s: float = setting(600.0, "flap detection window (s)", 10.0, 86400.0, runtime=True)
    flap_settle_s: float = setting(120.0, "a flapping item settles after this long without a level change (s)",
                                   1.0, 86400.0, runtime=True)

    def thresholds(self) -> Thresholds:
        return Thresholds(**{f.name: getattr(self, f.name) for f in fields(Thresholds)})

    def validate(self) -> list[str]:
        """clear < warn < error for every alarm."""
        return self.thresholds().validate()
