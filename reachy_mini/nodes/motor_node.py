"""motor_node: the ROS shell around the Rust Dynamixel driver.

Publishes joint_states once per driver sample, takes goals on motors/goal,
serves ~/set_torque, ~/reboot and ~/emergency_stop, and reports per-motor and
bus diagnostics (ros/tasks.py). Rules: core/motors. Safety (command timeout,
torque off) lives in the driver thread, not here.
"""
from __future__ import annotations

import threading
import time

from rclpy.logging import LoggingSeverity
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool, Trigger

from reachy_mini.core.motors.config import LIVE_DRIVER, THRESHOLDS, MotorConfig
from reachy_mini.core.motors.health import bus_health, motor_health
from reachy_mini.core.motors.map import MotorMap
from reachy_mini.core.motors.ports import open_failure, resolve_port
from reachy_mini.core.motors.recovery import AutoRecovery, Escalation
from reachy_mini.driver import Driver, DynamixelError, PortError
from reachy_mini.ops.paths import sim_link
from reachy_mini.ros import qos
from reachy_mini.ros.diagnostics import Updater
from reachy_mini.ros.params import ParameterError, declare
from reachy_mini.ros.runner import run_node
from reachy_mini.ros.tasks import BusCheck, MotorCheck

CONFIG = MotorConfig


class MotorNode(Node):
    def __init__(self) -> None:
        super().__init__("motor_node")
        self.drv = None
        cfg = self.cfg = declare(self, MotorConfig, self._on_params)
        self.thresholds = cfg.thresholds()
        try:
            self.map = MotorMap.load(cfg.motors_file or None)
        except ValueError as e:
            raise ParameterError(f"parameter 'motors_file': {e}") from None
        self.sim_proc, port = None, cfg.serial_port
        self.simulated = cfg.simulated
        if self.simulated:
            from reachy_mini.sim.child import start_sim

            self.sim_proc, port, control = start_sim(cfg.sim_link or sim_link(self.get_namespace()),
                                                     cfg.sim_wire_timing)
            self.get_logger().info(f"simulated bus on {port} (fault injection: reachy-mini-sim-bus inject "
                                   f"--control {control} ...)")
        self.port = port
        self.waiting = "not connected yet"
        self.drv = self._driver(port if port != "auto" else "")
        self.estopped = False
        self.torque_wanted: set[str] = set()
        self.recovery, self.escalation = AutoRecovery(), Escalation()
        self.goal_rejects = 0
        self.js_published = self.js_skipped = 0

        self.js_pub = self.create_publisher(JointState, "joint_states", qos.JOINT_STATES)
        self.create_subscription(JointState, "motors/goal", self._on_goal, qos.GOALS)
        self.create_service(SetBool, "~/set_torque", self._srv_torque)
        self.create_service(Trigger, "~/reboot", self._srv_reboot)
        self.create_service(Trigger, "~/emergency_stop", self._srv_estop)
        self.create_timer(0.1, self._watch)

        self.readings = {r.name: r for r in self.drv.snapshot()}
        self.stats = self.drv.stats()
        self.updater = Updater(self)   # period: parameter diagnostic_updater.period (1 s)
        self.updater.setHardwareID(f"dynamixel_bus:{port}")
        self.updater.add(BusCheck(self))
        for m in self.map.motors:
            self.updater.add(MotorCheck(m.name, self))
        # A robot that is not plugged in (or a port held by another program)
        # is waited for, not fatal: the bus is ERROR with the reason until it opens.
        self.connect_timer = None
        self._connect()
        if self.waiting is not None:
            self.connect_timer = self.create_timer(1.0, self._connect)
        self.running = True
        self.js_thread = threading.Thread(target=self._joint_states, name="joint_states", daemon=True)
        self.js_thread.start()

    # ---- what the checks read (ros/tasks.py)
    def reading(self, name: str):
        return self.readings[name]

    def fresh_stats(self) -> dict:
        self.stats = self.drv.stats()
        return self.stats

    # ---- connection
    def _driver(self, port: str) -> Driver:
        c = self.cfg
        return Driver(port, self.map, baudrate=c.baudrate, loop_rate_hz=c.loop_rate_hz,
                      status_rate_hz=c.status_rate_hz, io_timeout_ms=c.io_timeout_ms,
                      command_timeout_s=c.command_timeout_s, timeout_action=c.command_timeout_action)

    def _connect(self) -> None:
        """Opens the bus, or says what it waits for (also the 1 s retry timer)."""
        port, reason = resolve_port(self.port)
        if port is None:
            self._waiting(reason)
            return
        if self.drv.port != port:
            self.drv = self._driver(port)
        try:
            missing = self.drv.start()
        except PortError as e:
            self._waiting(open_failure(port, getattr(e, "cause", None) or str(e)))
            return
        self.waiting = None
        if self.connect_timer is not None:
            self.destroy_timer(self.connect_timer)
            self.connect_timer = None
        self.updater.setHardwareID(f"dynamixel_bus:{port}")
        if missing:
            names = [f"{self.map.by_id[i].name} (id {i})" for i in missing]
            self.get_logger().error(f"motors not answering at start: {', '.join(names)}")
        if self.cfg.torque_on_start:
            self._torque(True, None)
        self.get_logger().info(f"motor_node up on {port} at {self.cfg.loop_rate_hz:.0f} Hz, "
                               f"{len(self.map.motors)} motors")
        self.updater.force_update()

    def _waiting(self, reason: str) -> None:
        if reason != self.waiting:
            self.get_logger().error(f"servo bus: {reason}")
        self.waiting = reason

    def _on_params(self, changed: dict) -> None:
        """`ros2 param set`: already validated by the same rules as at start."""
        if any(k in THRESHOLDS or k == "loop_rate_hz" for k in changed):
            self.thresholds = self.cfg.thresholds()
        if self.drv is not None and any(k in LIVE_DRIVER for k in changed):
            c = self.cfg
            self.drv.configure(loop_rate_hz=c.loop_rate_hz, status_rate_hz=c.status_rate_hz,
                               command_timeout_s=c.command_timeout_s, timeout_action=c.command_timeout_action)

    # ---- joint_states: one message per driver sample, stamped with its time
    def _joint_states(self) -> None:
        seq = 0
        while self.running:
            got = self.drv.wait_sample(seq, 0.5)
            if got is None:
                continue
            new, stamp, readings = got
            if seq and new > seq + 1:
                self.js_skipped += new - seq - 1
            seq = new
            msg = JointState()
            sec = int(stamp)
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, int((stamp - sec) * 1e9)
            for r in readings:
                if r.position_rad is not None:
                    msg.name.append(r.name)
                    msg.position.append(r.position_rad)
                    msg.effort.append((r.current_ma or 0.0) / 1000.0)
            if msg.name:
                self.js_pub.publish(msg)
                self.js_published += 1

    # ---- goals and services
    def _on_goal(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            return self._reject(f"{len(msg.name)} names but {len(msg.position)} positions")
        unknown = [n for n in msg.name if n not in self.map.by_name]
        if unknown:
            return self._reject(f"unknown joint names {unknown}; known: {self.map.names}")
        if self.estopped:
            return self._reject("emergency stop active (call ~/set_torque true to resume)", 2.0)
        try:
            self.drv.set_goals(dict(zip(msg.name, msg.position)))
        except ValueError as e:
            self._reject(str(e))

    def _reject(self, why: str, throttle: float | None = None) -> None:
        self.goal_rejects += 1
        kw = {"throttle_duration_sec": throttle} if throttle else {}
        self.get_logger().warning(f"goal rejected: {why}", **kw)

    def _torque(self, enable: bool, names) -> dict:
        res = self.drv.set_torque(enable, names)
        for name, err in res.items():
            if err is None:
                (self.torque_wanted.add if enable else self.torque_wanted.discard)(name)
        return res

    def _srv_torque(self, req, resp):
        try:
            res = self._torque(bool(req.data), None)
        except DynamixelError as e:
            resp.success, resp.message = False, str(e)
            return resp
        if req.data:
            self.estopped = False
        failed = {n: e for n, e in res.items() if e}
        resp.success = not failed
        resp.message = "torque {} on {} motors".format("on" if req.data else "off", len(res) - len(failed))
        if failed:
            resp.message += "; failed: " + "; ".join(f"{n}: {e}" for n, e in failed.items())
        return resp

    def _srv_reboot(self, req, resp):
        faulty = [r.name for r in self.drv.snapshot() if r.hardware_error]
        if not faulty:
            resp.success, resp.message = True, "no latched hardware errors"
            return resp
        errors = []
        for name in faulty:
            try:
                self.drv.reboot(name)
            except DynamixelError as e:
                errors.append(f"{name}: {e}")
        resp.success = not errors
        resp.message = f"rebooted {', '.join(faulty)}" + (f"; failed: {'; '.join(errors)}" if errors else "")
        return resp

    def _srv_estop(self, req, resp):
        self.estopped = True
        try:
            failed = {n: e for n, e in self._torque(False, None).items() if e}
            resp.success = not failed
            resp.message = "torque off on all motors" if not failed else f"torque off failed on {failed}"
        except DynamixelError as e:
            resp.success, resp.message = False, str(e)
        self.get_logger().error(f"EMERGENCY STOP: {resp.message}")
        self.updater.force_update()
        return resp

    # ---- monitoring (10 Hz): events, automatic recovery, immediate ERROR
    def _watch(self) -> None:
        log = self.get_logger()
        for ev in self.drv.events():   # (rclpy: one severity per call site)
            if ev.kind == "info":
                log.info(f"[{ev.kind}] {ev.message}")
            else:
                log.error(f"[{ev.kind}] {ev.message}")
        now = time.time()
        stats = self.fresh_stats()
        if log.is_enabled_for(LoggingSeverity.DEBUG):   # `log_level:=debug`: a 10 Hz trace of the bus
            log.debug(f"bus {stats['achieved_rate_hz']:.1f} Hz, cycle p50 {stats['cycle_p50_us']:.0f} us "
                      f"p99 {stats['cycle_p99_us']:.0f} us, jitter p99 {stats['jitter_p99_us']:.0f} us, "
                      f"timeouts {stats['timeouts']}, crc {stats['crc_errors']}, garbage {stats['garbage_bytes']}")
        self.readings = {r.name: r for r in self.drv.snapshot()}
        escalate = False
        for name, r in self.readings.items():
            lv, _, _ = motor_health(r, self.thresholds, stats["connected"], now)
            escalate |= self.escalation.entered_error(name, lv)
            if self.recovery.due(r, self.thresholds, self.cfg.auto_recover, self.cfg.auto_recover_delay_s, now):
                self._reboot(r)
        escalate |= self.escalation.entered_error("bus", bus_health(stats, self.cfg.loop_rate_hz)[0])
        if escalate:
            self.updater.force_update()  # a change to ERROR goes out at once

    def _reboot(self, r) -> None:
        try:
            self.drv.reboot(r.name)
            self.recovery.done()
            self.get_logger().warning(f"{r.name}: hardware error ({', '.join(r.hardware_error_names)}) cause gone; "
                                      "rebooted")
            if r.name in self.torque_wanted and not self.estopped:
                self.drv.set_torque(True, [r.name])
        except DynamixelError as e:
            self.get_logger().error(f"{r.name}: automatic reboot failed: {e}")

    def shutdown(self) -> None:
        self.running = False
        self.js_thread.join(1.0)
        self.drv.stop()
        if self.sim_proc is not None:
            from reachy_mini.sim.child import stop_sim

            stop_sim(self.sim_proc)


def main(args=None) -> int:
    return run_node(MotorNode, "motor_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
