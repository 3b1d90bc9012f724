"""motor_node's hardware side, without ROS: the servo bus link.

It opens the bus, or says what it waits for (an absent adapter, a busy
port); starts the simulated bus when asked; keeps the operator's intent
(which motors should hold torque, emergency stop); carries out the
decisions of core/motors (automatic reboot, immediate ERROR); and validates
goals. motor_node only turns ROS messages and services into these calls.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from reachy_mini.core.levels import OK, WARN
from reachy_mini.core.motors.config import MotorConfig
from reachy_mini.core.motors.events import BusEventLog
from reachy_mini.core.motors.envelope import MechanismRules, check_command, check_names
from reachy_mini.core.motors.health import MotorAlarms, RateAlarm, bus_health, motor_health
from reachy_mini.core.motors.map import MotorMap
from reachy_mini.core.motors.ports import open_failure, resolve_port
from reachy_mini.core.motors.recovery import AutoRecovery, Escalation, torque_off_targets
from reachy_mini.driver import TRAJECTORY_MAX_POINTS, Driver, DynamixelError, PortError


@dataclass
class Outcome:
    """What became of a motion command. `refused`: why nothing of it was
    executed (None when it was); `clamped`: goals limited to their joint
    range [(name, requested rad, applied rad)]; `torque_off`: motors that
    will not move (torque off); `motors`: the motors the command names."""
    motors: list[str]
    refused: str | None = None
    clamped: list[tuple[str, float, float]] = field(default_factory=list)
    torque_off: list[str] = field(default_factory=list)


class BusLink:
    def __init__(self, cfg: MotorConfig, motor_map: MotorMap, sim_link: str, log,
                 rules: MechanismRules | None = None) -> None:
        self.cfg, self.map, self.log, self.rules = cfg, motor_map, log, rules
        self.sim_proc, port = None, cfg.serial_port
        if cfg.simulated:
            from reachy_mini.sim.child import start_sim

            self.sim_proc, port, control = start_sim(cfg.sim_link or sim_link, cfg.sim_wire_timing)
            log.info(f"simulated bus on {port} (fault injection: reachy-mini-sim-bus inject --control {control} ...)")
        self.port = port
        self.waiting: str | None = "not connected yet"
        self.drv = self._driver(port if port != "auto" else "")
        self.estopped = False
        self.torque_wanted: set[str] = set()
        self.recovery, self.escalation = AutoRecovery(), Escalation()
        self.thresholds = cfg.thresholds()
        self.events_log = BusEventLog(self.thresholds.not_answering_sustain_s)   # bus events' log levels
        self.goal_rejects = 0
        self.ignored_goals, self.ignored_at, self.ignored_names = 0, -1e9, []
        self.readings = {r.name: r for r in self.drv.snapshot()}
        self.alarms = {name: MotorAlarms() for name in self.readings}   # hysteresis per motor
        self.rate_alarm = RateAlarm()
        self.stats = self.drv.stats()
        self.sample_seq = self.js_published = self.js_skipped = 0
        self.js_mode = "starting"   # motor_node's sample thread (core/motors/sampling.py mode())

    @property
    def simulated(self) -> bool:
        return self.sim_proc is not None

    def _driver(self, port: str) -> Driver:
        c = self.cfg
        return Driver(port, self.map, baudrate=c.baudrate, loop_rate_hz=c.loop_rate_hz,
                      status_rate_hz=c.status_rate_hz, io_timeout_ms=c.io_timeout_ms,
                      command_timeout_s=c.command_timeout_s, timeout_action=c.command_timeout_action,
                      realtime_priority=c.realtime_priority, lock_memory=c.lock_memory,
                      limit_policy=c.limit_policy)

    # ---- connection
    def connect(self) -> bool:
        """Opens the bus; False (and `waiting` says why) while it cannot."""
        port, reason = resolve_port(self.port)
        if port is None:
            return self._waiting(reason)
        if self.drv.port != port:
            self.drv, self.sample_seq = self._driver(port), 0
        try:
            missing = self.drv.start()
        except PortError as e:
            return self._waiting(open_failure(port, getattr(e, "cause", None) or str(e)))
        self.waiting = None
        if missing:
            # a start-up straggler is a WARN; ERROR once silent for the rule's sustain (watch)
            self.line(*self.events_log.missing_at_start([self.map.by_id[i].name for i in missing],
                                                        [f"{self.map.by_id[i].name} (id {i})" for i in missing],
                                                        time.monotonic()))
        if self.cfg.torque_on_start:
            self.torque(True, None)
        self.log.info(f"motor_node up on {port} at {self.cfg.loop_rate_hz:.0f} Hz, {len(self.map.motors)} motors")
        return True

    def _waiting(self, reason: str) -> bool:
        if reason != self.waiting:
            self.log.error(f"servo bus: {reason}")
        self.waiting = reason
        return False

    def configure(self, changed: dict) -> None:
        """Runtime parameter changes (already validated)."""
        self.thresholds = self.cfg.thresholds()
        self.events_log.sustain_s = self.thresholds.not_answering_sustain_s
        if any(k in ("loop_rate_hz", "status_rate_hz", "command_timeout_s", "command_timeout_action")
               for k in changed):
            c = self.cfg
            self.drv.configure(loop_rate_hz=c.loop_rate_hz, status_rate_hz=c.status_rate_hz,
                               command_timeout_s=c.command_timeout_s, timeout_action=c.command_timeout_action)

    # ---- what the checks read (ros/tasks.py)
    def alarm(self, name: str) -> MotorAlarms:
        """The motor's temperature/voltage alarms (hysteresis), kept across readings."""
        a = self.alarms.get(name)
        if a is None:
            a = self.alarms[name] = MotorAlarms()
        return a

    def reading(self, name: str):
        return self.readings[name]

    def bus_health(self, stats: dict):
        """core/motors/health.bus_health with the loop-rate alarm's sustain."""
        return bus_health(stats, self.cfg.loop_rate_hz, rate_alarm=self.rate_alarm, now=time.monotonic(),
                          sustain_s=self.thresholds.rate_sustain_s)

    def fresh_stats(self) -> dict:
        self.stats = self.drv.stats()
        return self.stats

    def wait_sample(self, timeout_s: float, samples: int = 1) -> bool:
        """Waits (GIL released) until `samples` driver samples newer than the
        last one samples_since returned exist; False after timeout_s."""
        return self.drv.wait_sample(self.sample_seq + max(1, samples) - 1, timeout_s) is not None

    def samples_since(self) -> list[tuple[float, list[tuple[str, float]]]]:
        """Every driver sample since the last call, each
        once, oldest first, without waiting: (stamp, [(name, rad)]). Samples
        the driver no longer keeps (a reader late by more than 2.5 s) are
        counted as skipped."""
        out = []
        for seq, stamp, positions in self.drv.samples_after(self.sample_seq):
            if self.sample_seq and seq > self.sample_seq + 1:
                self.js_skipped += seq - self.sample_seq - 1
            self.sample_seq = seq
            out.append((stamp, positions))
        return out

    # ---- commands
    def goal(self, names: list[str], positions: list[float], mechanism: bool = True) -> Outcome:
        """Sends a goal (rad by name), after the checks: well formed, no
        emergency stop, the mechanism's rules (unless `mechanism` is False:
        the head pose path has applied them to the pose); the driver then
        enforces each joint's range and velocity."""
        out = Outcome(list(names))
        out.refused = check_command(names, positions, self.map) or self._estop()
        if out.refused is None and mechanism and self.rules is not None and self.rules.applies(names):
            out.refused = self.rules.check(dict(zip(names, positions)), self._present())
        if out.refused is None:
            self._send(out, lambda: self.drv.set_goals(dict(zip(names, positions))))
        return out

    def trajectory(self, names: list[str], points: list[tuple[float, list[float]]]) -> Outcome:
        """Runs waypoints [(seconds from now, positions)] for `names` in the
        driver thread (cfg.trajectory_interpolation); checked as goal() is,
        every waypoint (the driver bounds their number and duration)."""
        out = Outcome(list(names))
        out.refused = check_names(names, self.map) or ("no waypoint" if not points else None)
        if len(points) > TRAJECTORY_MAX_POINTS:   # before any per-point work
            out.refused = f"{len(points)} waypoints; at most {TRAJECTORY_MAX_POINTS} are accepted"
        for i, (_, pos) in enumerate(points):
            if out.refused is None:
                out.refused = check_command(names, pos, self.map, f"point {i}")
        out.refused = out.refused or self._estop()
        if out.refused is None and self.rules is not None and self.rules.applies(names):
            present = self._present()
            for i, (_, pos) in enumerate(points):
                why = self.rules.check(dict(zip(names, pos)), present)
                if why:
                    out.refused = f"point {i}: {why}"
                    break
        if out.refused is None:
            self._send(out, lambda: self.drv.follow([(t, dict(zip(names, pos))) for t, pos in points],
                                                    self.cfg.trajectory_interpolation))
        return out

    def _estop(self) -> str | None:
        return "emergency stop active (call ~/set_torque true to resume)" if self.estopped else None

    def _present(self) -> Callable[[str], float | None]:
        """Each joint's last goal written (else its position), as of now."""
        now = {r.name: r.goal_rad if r.goal_rad is not None else r.position_rad for r in self.drv.snapshot()}
        return now.get

    def _send(self, out: Outcome, send) -> None:
        try:
            out.clamped = send()
        except ValueError as e:
            out.refused = str(e)
            return
        out.torque_off = torque_off_targets(self.readings, out.motors)
        if out.torque_off:
            self.ignored_goals += 1
            self.ignored_at, self.ignored_names = time.monotonic(), out.torque_off

    def goals_ignored(self, within_s: float = 2.0) -> list[str]:
        """Motors that received goals with torque off in the last `within_s`."""
        return self.ignored_names if time.monotonic() - self.ignored_at < within_s else []

    def torque(self, enable: bool, names) -> dict:
        res = self.drv.set_torque(enable, names)
        for name, err in res.items():
            if err is None:
                (self.torque_wanted.add if enable else self.torque_wanted.discard)(name)
        # the driver's snapshot holds the torque just written: a goal sent right after the
        # service's answer must not be refused as "torque off" by readings up to 100 ms old
        self.readings = {r.name: r for r in self.drv.snapshot()}
        return res

    def set_torque_all(self, enable: bool) -> tuple[bool, str]:
        self.recovery.person_acted()
        try:
            res = self.torque(enable, None)
        except DynamixelError as e:
            return False, str(e)
        if enable:
            self.estopped = False
        failed = {n: e for n, e in res.items() if e}
        msg = "torque {} on {} motors".format("on" if enable else "off", len(res) - len(failed))
        if failed:
            msg += "; failed: " + "; ".join(f"{n}: {e}" for n, e in failed.items())
        return not failed, msg

    def reboot_faulty(self) -> tuple[bool, str]:
        faulty = [r.name for r in self.drv.snapshot() if r.hardware_error]
        self.recovery.person_acted(faulty)
        if not faulty:
            return True, "no latched hardware errors"
        errors = []
        for name in faulty:
            try:
                self.drv.reboot(name)
            except DynamixelError as e:
                errors.append(f"{name}: {e}")
        return not errors, f"rebooted {', '.join(faulty)}" + (f"; failed: {'; '.join(errors)}" if errors else "")

    def emergency_stop(self) -> tuple[bool, str]:
        self.estopped = True
        try:
            failed = {n: e for n, e in self.torque(False, None).items() if e}
        except DynamixelError as e:
            return False, str(e)
        return not failed, "torque off on all motors" if not failed else f"torque off failed on {failed}"

    # ---- monitoring (10 Hz)
    def line(self, level: int, text: str) -> None:
        """A log line at a level of core/levels.py (OK = INFO); one call site
        per severity, as rclpy requires."""
        if level == OK:
            self.log.info(text)
        elif level == WARN:
            self.log.warning(text)
        else:
            self.log.error(text)

    def watch(self) -> bool:
        """Drains driver events (logged at the level their alarm rule gives
        them: core/motors/events.py), refreshes readings, runs automatic
        recovery; True when something entered ERROR (its diagnostics go out
        at once)."""
        mono = time.monotonic()
        for ev in self.drv.events():
            self.line(*self.events_log.event(ev.kind, ev.message, ev.motor_name, mono))
        now = time.time()
        stats = self.fresh_stats()
        self.readings = {r.name: r for r in self.drv.snapshot()}
        for lv, text in self.events_log.poll({n: r.responding for n, r in self.readings.items()}, mono):
            self.line(lv, text)
        escalate = False
        for name, r in self.readings.items():
            escalate |= self.escalation.entered_error(name, motor_health(r, self.thresholds, stats["connected"], now,
                                                                           alarms=self.alarm(name), values=False)[0])
            c = self.cfg
            gave_up = name in self.recovery.gave_up
            if self.recovery.due(r, self.thresholds, c.auto_recover, c.auto_recover_delay_s, now, c.auto_recover_max,
                                 c.auto_recover_window_s):
                self._reboot(r)
            elif not gave_up and name in self.recovery.gave_up:
                self.log.error(f"{name}: {self.recovery.gave_up[name]}")
        escalate |= self.escalation.entered_error("recovery", self.recovery.status()[0])
        return self.escalation.entered_error("bus", self.bus_health(stats)[0]) or escalate

    def _reboot(self, r) -> None:
        try:
            self.drv.reboot(r.name)
            self.recovery.done()
            self.log.warning(f"{r.name}: hardware error ({', '.join(r.hardware_error_names)}) cause gone; rebooted")
            if r.name in self.torque_wanted and not self.estopped:
                if self.recovery.may_restore_torque(r):
                    self.drv.set_torque(True, [r.name])
                else:
                    self.log.error(f"{r.name}: overload again; torque stays off until a person calls "
                                   "~/set_torque true")
        except DynamixelError as e:
            self.log.error(f"{r.name}: automatic reboot failed: {e}")

    def close(self) -> None:
        """on_exit: 'torque_off' turns every motor's torque off before the loop
        stops (nothing stays powered without a controller); 'hold' keeps it."""
        if self.cfg.on_exit == "torque_off" and self.drv.running:
            try:
                failed = {n: e for n, e in self.drv.set_torque(False).items() if e}
                for _ in range(2):   # a status packet lost (a busy host answers late): the motor is asked again
                    if not failed:
                        break
                    failed = {n: e for n, e in self.drv.set_torque(False, list(failed)).items() if e}
                if failed:
                    self.log.error(f"on_exit torque_off failed on {failed}")
            except DynamixelError as e:
                self.log.error(f"on_exit torque_off failed: {e}")
        self.drv.stop()
        if self.sim_proc is not None:
            from reachy_mini.sim.child import stop_sim

            stop_sim(self.sim_proc)
