"""motor_node's hardware side, without ROS: the servo bus link.

It opens the bus, or says what it waits for (an absent adapter, a busy
port); starts the simulated bus when asked; keeps the operator's intent
(which motors should hold torque, emergency stop); carries out the
decisions of core/motors (automatic reboot, immediate ERROR); and validates
goals. motor_node only turns ROS messages and services into these calls.
"""
from __future__ import annotations

import time
from typing import Callable

from reachy_mini.core.motors.config import MotorConfig
from reachy_mini.core.motors.health import bus_health, motor_health
from reachy_mini.core.motors.map import MotorMap
from reachy_mini.core.motors.ports import open_failure, resolve_port
from reachy_mini.core.motors.recovery import AutoRecovery, Escalation
from reachy_mini.driver import Driver, DynamixelError, PortError


class BusLink:
    def __init__(self, cfg: MotorConfig, motor_map: MotorMap, sim_link: str, log) -> None:
        self.cfg, self.map, self.log = cfg, motor_map, log
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
        self.goal_rejects = 0
        self.readings = {r.name: r for r in self.drv.snapshot()}
        self.stats = self.drv.stats()
        self.sample_seq = self.js_published = self.js_skipped = 0

    @property
    def simulated(self) -> bool:
        return self.sim_proc is not None

    def _driver(self, port: str) -> Driver:
        c = self.cfg
        return Driver(port, self.map, baudrate=c.baudrate, loop_rate_hz=c.loop_rate_hz,
                      status_rate_hz=c.status_rate_hz, io_timeout_ms=c.io_timeout_ms,
                      command_timeout_s=c.command_timeout_s, timeout_action=c.command_timeout_action)

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
            names = [f"{self.map.by_id[i].name} (id {i})" for i in missing]
            self.log.error(f"motors not answering at start: {', '.join(names)}")
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
        if any(k in ("loop_rate_hz", "status_rate_hz", "command_timeout_s", "command_timeout_action")
               for k in changed):
            c = self.cfg
            self.drv.configure(loop_rate_hz=c.loop_rate_hz, status_rate_hz=c.status_rate_hz,
                               command_timeout_s=c.command_timeout_s, timeout_action=c.command_timeout_action)

    # ---- what the checks read (ros/tasks.py)
    def reading(self, name: str):
        return self.readings[name]

    def fresh_stats(self) -> dict:
        self.stats = self.drv.stats()
        return self.stats

    def next_sample(self, timeout_s: float):
        """The next driver sample as (stamp, readings), each sample once, or
        None after timeout_s; counts samples it had to skip (it fell behind)."""
        got = self.drv.wait_sample(self.sample_seq, timeout_s)
        if got is None:
            return None
        seq, stamp, readings = got
        if self.sample_seq and seq > self.sample_seq + 1:
            self.js_skipped += seq - self.sample_seq - 1
        self.sample_seq = seq
        return stamp, readings

    # ---- commands
    def goal_error(self, names: list[str], positions: list[float]) -> str | None:
        """Sends a goal; returns why it was rejected, or None."""
        if len(positions) != len(names):
            return f"{len(names)} names but {len(positions)} positions"
        unknown = [n for n in names if n not in self.map.by_name]
        if unknown:
            return f"unknown joint names {unknown}; known: {self.map.names}"
        if self.estopped:
            return "emergency stop active (call ~/set_torque true to resume)"
        try:
            self.drv.set_goals(dict(zip(names, positions)))
        except ValueError as e:
            return str(e)
        return None

    def torque(self, enable: bool, names) -> dict:
        res = self.drv.set_torque(enable, names)
        for name, err in res.items():
            if err is None:
                (self.torque_wanted.add if enable else self.torque_wanted.discard)(name)
        return res

    def set_torque_all(self, enable: bool) -> tuple[bool, str]:
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
    def watch(self, on_event: Callable) -> bool:
        """Drains driver events, refreshes readings, runs automatic recovery;
        True when something entered ERROR (its diagnostics go out at once)."""
        for ev in self.drv.events():
            on_event(ev)
        now = time.time()
        stats = self.fresh_stats()
        self.readings = {r.name: r for r in self.drv.snapshot()}
        escalate = False
        for name, r in self.readings.items():
            escalate |= self.escalation.entered_error(name, motor_health(r, self.thresholds, stats["connected"], now)[0])
            if self.recovery.due(r, self.thresholds, self.cfg.auto_recover, self.cfg.auto_recover_delay_s, now):
                self._reboot(r)
        return self.escalation.entered_error("bus", bus_health(stats, self.cfg.loop_rate_hz)[0]) or escalate

    def _reboot(self, r) -> None:
        try:
            self.drv.reboot(r.name)
            self.recovery.done()
            self.log.warning(f"{r.name}: hardware error ({', '.join(r.hardware_error_names)}) cause gone; rebooted")
            if r.name in self.torque_wanted and not self.estopped:
                self.drv.set_torque(True, [r.name])
        except DynamixelError as e:
            self.log.error(f"{r.name}: automatic reboot failed: {e}")

    def close(self) -> None:
        self.drv.stop()
        if self.sim_proc is not None:
            from reachy_mini.sim.child import stop_sim

            stop_sim(self.sim_proc)
