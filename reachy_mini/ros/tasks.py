"""The diagnostic checks of the nodes, one DiagnosticTask class per check
(as diagnostic_common_diagnostics' cpu_monitor does): motor, bus, capture
(camera, microphone), system, process (node), incidents, notifications, web
server.

Each task asks its source for data, applies a pure rule from core/ and
fills the status; it holds no decision of its own. Works with the real
diagnostic_updater and with our strict twin (ros/diagnostics.py).
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

from reachy_mini.core.health import shm
from reachy_mini.core.health.nodes import node_status
from reachy_mini.core.identity import hardware_id as robot_hardware_id
from reachy_mini.core.health.system import HostAlarms, evaluate_process, system_snapshot
from reachy_mini.core.levels import ERROR, OK, WARN, Level
from reachy_mini.core.media.capture import capture_health
from reachy_mini.core.motors.envelope import eeprom_wider
from reachy_mini.core.motors.health import motor_health
from reachy_mini.ros.diagnostics import DiagnosticTask

Values = Iterable[tuple[str, str]]


class Check(DiagnosticTask):
    """evaluate() -> (level, message, [(key, value)]); hardware_id() -> str or None."""

    def evaluate(self) -> tuple[int, str, Values]:
        raise NotImplementedError

    robot = ""   # set by RobotUpdater.add: the robot's name, prefixed to hardware_id()

    def hardware_id(self) -> str | None:
        return None

    def run(self, stat):
        level, message, values = self.evaluate()
        stat.summary(Level(level).to_bytes(), message)
        for k, v in values:
            stat.add(k, str(v))
        hw = self.hardware_id()
        if hw is not None:
            stat.hardware_id = robot_hardware_id(self.robot, hw)
        return stat


# ------------------------------------------------------------------ motors
class MotorCheck(Check):
    """One servo: motor_health() on its latest reading. `bus` is motor_node's
    bus link (readings, stats, thresholds)."""

    def __init__(self, name: str, bus) -> None:
        super().__init__(name)
        self.motor, self.bus = name, bus
        self.comm_seen: int | None = None
        self.motor_id = ""

    def evaluate(self):
        r = self.bus.reading(self.motor)
        prev = r.comm_errors if self.comm_seen is None else self.comm_seen
        self.comm_seen = r.comm_errors
        self.motor_id = str(r.id)
        lv, msg, values = motor_health(r, self.bus.thresholds, self.bus.stats["connected"], time.time(),
                                       r.comm_errors - prev, self.bus.alarm(self.motor))
        gave_up = self.bus.recovery.gave_up.get(self.motor)
        if gave_up:
            lv, msg = ERROR, f"{msg}; {gave_up}"
        return lv, msg, values

    def hardware_id(self) -> str:
        return f"dynamixel:{self.motor_id}"


class BusCheck(Check):
    """The servo bus: bus_health() on the loop statistics, then what only the
    node knows (waiting for the adapter, emergency stop)."""

    def __init__(self, bus) -> None:
        super().__init__("bus")
        self.bus = bus

    def evaluate(self):
        stats = self.bus.fresh_stats()
        lv, msg, values = self.bus.bus_health(stats)
        if self.bus.waiting:
            lv, msg = ERROR, self.bus.waiting
        if self.bus.estopped:
            lv, msg = max(lv, WARN), "emergency stop active; " + msg
        ignored = self.bus.goals_ignored()
        if ignored and not self.bus.estopped:
            lv, msg = max(lv, WARN), f"goals ignored: torque off ({', '.join(ignored)}); " + msg
        values = list(values) + [("automatic recoveries", str(self.bus.recovery.count)),
                                 ("rejected goals", str(self.bus.goal_rejects)),
                                 ("goals clamped to joint limits", str(stats.get("goals_clamped", 0))),
                                 ("commands refused by joint limits", str(stats.get("limit_refusals", 0))),
                                 ("limit policy", self.bus.cfg.limit_policy),
                                 ("servo position limits wider than configured",
                                  "; ".join(eeprom_wider(self.bus.readings.values(), self.bus.map)) or "none"),
                                 ("goals with torque off", str(self.bus.ignored_goals)),
                                 ("driver samples", str(stats.get("sample_seq", 0))),
                                 ("joint_states published", str(self.bus.js_published)),
                                 ("joint_states skipped samples", str(self.bus.js_skipped)),
                                 ("joint_states publishing", self.bus.js_mode)]
        if self.bus.simulated:
            values.append(("simulated", "true"))
        return lv, msg, values


class RecoveryCheck(Check):
    """Automatic recovery: ERROR while it has given up on a motor (a fault
    that re-latches after every reboot), so that the give-up is an incident."""

    def __init__(self, bus) -> None:
        super().__init__("recovery")
        self.bus = bus

    def evaluate(self):
        lv, msg = self.bus.recovery.status()
        c = self.bus.cfg
        return lv, msg, [("automatic reboots", str(self.bus.recovery.count)),
                         ("limit", f"{c.auto_recover_max} per {c.auto_recover_window_s:.0f} s"),
                         ("enabled", str(c.auto_recover).lower())]


# ------------------------------------------------------------------ media
class CaptureCheck(Check):
    """A capture device (camera or microphone) run by a SourceLoop.

    target_hz() and stall_s() read the live config; extra(snapshot) -> (level,
    message) merges further findings (silence, clipping) when the device
    delivers; values(snapshot) lists the key/values."""

    def __init__(self, name: str, loop, what: str, target_hz: Callable[[], float], stall_s: Callable[[], float],
                 values: Callable[[dict], Values], extra: Callable[[dict], list[tuple[int, str]]] | None = None):
        super().__init__(name)
        self.loop, self.what, self.target_hz, self.stall_s = loop, what, target_hz, stall_s
        self.values, self.extra = values, extra

    def run(self, stat):
        s = self.loop.snapshot()
        if s.get("held"):   # given up on request (camera/release, audio/release): not a fault
            stat.summary(Level(OK).to_bytes(), "released for apps")
            stat.add("released", "true")
            for k, v in self.values(s):
                stat.add(k, str(v))
            return stat
        lv, msg = capture_health(s, self.target_hz(), self.stall_s(), self.what)
        stat.summary(Level(lv).to_bytes(), msg)
        stat.add("released", "false")
        if lv < ERROR and self.extra:
            for xl, xm in self.extra(s):
                stat.mergeSummary(Level(xl).to_bytes(), xm)
        for k, v in self.values(s):
            stat.add(k, str(v))
        return stat


# ------------------------------------------------------------------ health node
class SystemCheck(Check):
    """The host: CPU, memory, data disk, temperatures, with hysteresis and
    sustain (HostAlarms). symptoms() -> what shows the robot cannot keep up
    (the only case where host CPU is ERROR)."""

    def __init__(self, data_dir: str, thresholds: Callable[[], object],
                 symptoms: Callable[[], list[str]] = lambda: []) -> None:
        super().__init__("system")
        self.data_dir, self.thresholds, self.symptoms = data_dir, thresholds, symptoms
        self.alarms = HostAlarms()
        system_snapshot(data_dir)   # primes cpu_percent

    def evaluate(self):
        s = system_snapshot(self.data_dir)
        lv, msg = self.alarms.evaluate(s, self.thresholds(), time.monotonic(), self.symptoms())
        values = [("cpu (%)", f"{s['cpu_pct']:.1f}"), ("load average", " ".join(f"{x:.2f}" for x in s["load"])),
                  ("memory (%)", f"{s['mem_pct']:.1f}"), ("disk (%)", f"{s['disk_pct']:.1f}"),
                  ("disk free (GB)", f"{s['disk_free_gb']:.1f}"), ("data dir", self.data_dir),
                  ("uptime (s)", f"{s['uptime_s']:.0f}")]
        values += [(f"temperature {k} (C)", f"{v:.0f}") for k, v in list(s["temps"].items())[:8]]
        if not s["temps"]:
            values.append(("temperature", "no sensor"))
        return lv, msg, values


class ProcessCheck(Check):
    """One node of the stack: presence on /diagnostics, hang, restarts and
    its process figures. `health` is the health node's view."""

    def __init__(self, node: str, health) -> None:
        super().__init__(f"node {node}")
        self.node, self.health = node, health
        self.pid = None

    def evaluate(self):
        h, name = self.health, self.node
        info = h.info.get(name)
        now = time.monotonic()
        if name == "health_node":
            lv, msg = OK, "publishing"
        else:
            lv, msg, _ = node_status(name, info, h.watch, now, h.cfg.hang_timeout_s, h.restarts.recent(name))
        values = []
        if info is not None:
            plv, pmsgs = evaluate_process(info, h.cfg.thresholds())
            if plv > lv and lv in (OK, WARN):
                lv, msg = plv, "; ".join(pmsgs)
            values += [("pid", str(info.pid or "")), ("process state", str(info.status)),
                       ("rss (MB)", f"{info.rss_mb:.1f}"), ("cpu (%)", f"{info.cpu_pct:.1f}"),
                       ("open fds", str(info.fds)), ("threads", str(info.threads)),
                       ("process age (s)", "" if info.age_s is None else f"{info.age_s:.1f}"),
                       ("spin loop heartbeat age (s)", "" if info.beat_age_s is None else f"{info.beat_age_s:.1f}"),
                       ("restarts", str(h.restarts.total(name))),
                       ("last exit", "" if info.last_exit is None else str(info.last_exit)),
                       ("pid source", info.source)]
        values += [("hang restarts", str(h.restarts.hang_kills.get(name, 0))),
                   ("last diagnostics age (s)", f"{h.watch.silent_for(name, now):.1f}"),
                   ("statuses received", str(h.watch.counts.get(name, 0)))]
        self.pid = info.pid if info else None
        return lv, msg, values

    def hardware_id(self) -> str:
        return f"pid:{self.pid}" if self.pid else ""


class IncidentsCheck(Check):
    """The incident database writer."""

    def __init__(self, health) -> None:
        super().__init__("incidents")
        self.health = health

    def evaluate(self):
        d, h = self.health.db, self.health
        lv = ERROR if d.errors else OK
        values = [("database", d.path)] + [(k, str(getattr(d, k))) for k in ("written", "dropped", "pruned", "errors")]
        values += [("queue", str(d.q.qsize())), ("statuses aggregated", str(h.statuses)),
                   ("items", str(len(h.agg.items)))]
        if d.moved_aside:   # until the next start: the owner may want the old history back
            values.append(("damaged database moved aside", d.moved_aside))
            if not d.errors:
                return WARN, f"the database was damaged at start; moved aside to {d.moved_aside}", values
        return lv, f"write errors: {d.last_error}" if d.errors else "OK", values


class SharedMemoryCheck(Check):
    """Fast DDS's segments in /dev/shm (core/health/shm.py): every
    `period_s()` seconds the zombies (left by killed processes) are removed;
    reports the segments in use and what was freed. WARN while a sweep
    cannot check or remove something; `log(text)` hears of each removal."""

    def __init__(self, period_s: Callable[[], float], log: Callable[[str], None],
                 directory: str = shm.SHM_DIR) -> None:
        super().__init__("shared memory")
        self.period_s, self.log, self.directory = period_s, log, directory
        self.next_at = 0.0   # the first sweep at start-up: a restarted process' predecessor left its segment
        self.last: shm.Sweep | None = None
        self.removed = self.freed = 0
        self.last_removed_at: float | None = None

    def evaluate(self):
        now, period = time.monotonic(), self.period_s()
        if period <= 0:
            return OK, "sweep off (shm_sweep_s = 0)", [("directory", self.directory)]
        if now >= self.next_at:
            self.next_at = now + period
            self.last = s = shm.sweep(self.directory)
            if s.removed:
                self.removed += s.removed
                self.freed += s.freed_bytes
                self.last_removed_at = now
                self.log(f"removed {s.removed} Fast DDS shared-memory segment(s) left by killed processes "
                         f"in {self.directory} ({s.freed_bytes / 1e6:.1f} MB of RAM freed)")
        s = self.last
        values = [("directory", self.directory), ("segments in use", str(s.in_use)),
                  ("in use (MB)", f"{s.in_use_bytes / 1e6:.1f}"), ("stale segments removed", str(self.removed)),
                  ("freed (MB)", f"{self.freed / 1e6:.1f}"), ("sweep every (s)", f"{period:g}")]
        if self.last_removed_at is not None:
            values.append(("last removal (s ago)", f"{now - self.last_removed_at:.0f}"))
        if s.errors:
            return WARN, f"sweep incomplete: {'; '.join(s.errors[:3])}", values + [("errors", str(len(s.errors)))]
        return OK, f"{s.in_use} segment(s) in use, {s.in_use_bytes / 1e6:.1f} MB", values


class RecorderCheck(Check):
    """The flight recorder (ros/recorder.py): WARN while snapshots cannot be
    written (disk full, unwritable directory, over the quota); OK otherwise."""

    def __init__(self, health) -> None:
        super().__init__("recorder")
        self.health = health

    def evaluate(self):
        r = self.health.recorder
        if r is None:
            return OK, "off (recorder is false)", []
        s = r.stats()
        values = [(k, str(v)) for k, v in s.items()]
        if r.failing:
            return WARN, f"snapshots failing: {s['last error']}", values
        return OK, f"{s['snapshots']} snapshots, {s['disk (MB)']} MB of {s['quota (MB)']} MB; buffer " \
                   f"{s['buffer (s)']} s", values


class NotifyCheck(Check):
    """Owner notifications (core/health/notify.py): WARN while deliveries are
    failing (retrying, or the last one was refused), OK otherwise."""

    def __init__(self, health) -> None:
        super().__init__("notify")
        self.health = health

    def evaluate(self):
        n = self.health.notifier
        if n is None:
            return OK, "off (notify_url is '')", [("url", "")]
        s = n.stats()
        values = [("url", n.shown_url), ("robot", n.robot), ("page", n.page_url)]
        values += [(k, str(s[k])) for k in ("sent", "failed", "retries", "dropped", "pending")]
        values.append(("last error", s["last_error"]))
        if s["failing"]:
            return WARN, f"notifications failing: {s['last_error']} ({s['pending']} pending)", values
        return OK, f"{s['sent']} sent" + (f", {s['pending']} pending" if s["pending"] else ""), values


# ------------------------------------------------------------------ web
class WebServerCheck(Check):
    """The HTTP server thread of web_bridge."""

    def __init__(self, bridge) -> None:
        super().__init__("http")
        self.bridge = bridge

    def evaluate(self):
        b = self.bridge
        hub, metrics = b.app.state.hub, b.app.state.metrics
        if b.thread.is_alive() and b.server.started:
            lv, msg = OK, f"serving on {b.cfg.host}:{b.cfg.port}"
        else:
            lv, msg = ERROR, "HTTP server not running (port in use?)"
        return lv, msg, [("live clients", str(len(hub.clients))),
                         ("updates dropped for slow clients", str(hub.dropped)),
                         ("requests", str(metrics.requests))]


class SdkCheck(Check):
    """The vendor SDK's /ws/sdk (web/sdk_ws.py): clients, what was dropped
    and why, the commands this stack does not honour; WARN while the
    endpoint is open to the network (the SDK sends no credential)."""

    def __init__(self, hub, exposed: bool, vendor=None) -> None:
        super().__init__("sdk")
        self.hub, self.exposed, self.vendor = hub, exposed, vendor   # vendor: web/vendor_api.VendorApi

    def evaluate(self):
        h, c = self.hub, self.hub.counts
        if h.open_to_network and self.exposed:
            lv, msg = WARN, "SDK endpoint open to the network without authentication (/ws/sdk and the vendor HTTP API)"
        else:
            lv, msg = OK, "SDK endpoint: loopback clients only"
        msg += f"; {len(h.clients)} client(s)"
        values = [("clients", str(len(h.clients))), ("open to the network", str(h.open_to_network).lower())]
        values += [(k.replace("_", " "), str(v)) for k, v in c.items()]
        values.append(("last dropped frame or error", h.last_error or "none"))
        values += [(f"unsupported: {t}", why) for t, why in sorted(h.unsupported.items())]
        if self.vendor is not None:
            values += [(f"vendor API {k.replace('_', ' ')}", str(v)) for k, v in self.vendor.counts.items()]
            values.append(("vendor API last refusal", self.vendor.last_error or "none"))
        return lv, msg, values
