"""motor_node: the ROS shell around the Rust Dynamixel driver.

Publishes /joint_states, takes goals on /motors/goal, serves ~/set_torque,
~/reboot and ~/emergency_stop, and reports per-motor and bus diagnostics.
Safety (command timeout, torque off) lives in the driver thread, not here.
"""
from __future__ import annotations

import time

from rclpy.logging import LoggingSeverity
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool, Trigger

from reachy_mini.ros import qos
from reachy_mini.core.levels import ERROR, Level
from reachy_mini.ros.diagnostics import Updater
from reachy_mini.driver import Driver, DynamixelError, PortError
from reachy_mini.core.motors.health import Thresholds, bus_health, motor_health, recoverable
from reachy_mini.core.motors.map import MotorMap
from reachy_mini.ros.params import Param, ParameterError, declare, run_node
from reachy_mini.ops.paths import sim_link
from reachy_mini.core.motors.ports import open_failure, resolve_port

THRESHOLDS = ("temperature_warn_c", "temperature_error_c", "voltage_warn_low_v", "voltage_warn_high_v",
              "voltage_error_low_v", "voltage_error_high_v", "current_warn_ma", "current_error_ma")
LIVE_DRIVER = ("loop_rate_hz", "status_rate_hz", "command_timeout_s", "command_timeout_action")

SPECS = [
    Param("use_sim", False, "use the simulated servo bus (same as serial_port:=sim)"),
    Param("serial_port", "auto", "'auto' (find 1a86:55d3), 'sim', or a device path",
          check=lambda v: None if v in ("auto", "sim") or v.startswith("/") else "must be 'auto', 'sim' or an absolute path"),
    Param("sim_link", "", "pty link path of the simulated bus (serial_port=sim); '' = the robot's own "
          "(<runtime dir>/reachy_mini_sim[/<namespace>]/ttyDXL)",
          check=lambda v: None if v == "" or v.startswith("/") else "must be '' or an absolute path"),
    Param("sim_wire_timing", True, "simulate 10 bits per byte at the baud rate"),
    Param("baudrate", 1_000_000, "bus baud rate", 9600, 4_500_000),
    Param("loop_rate_hz", 100.0, "control loop and /joint_states rate", 1.0, 1000.0, runtime=True),
    Param("status_rate_hz", 2.0, "temperature/voltage/current/error read rate", 0.1, 50.0, runtime=True),
    Param("io_timeout_ms", 5.0, "slack added to every read deadline", 0.5, 500.0),
    Param("motors_file", "", "motor map YAML (default: the package's config/motors.yaml)"),
    Param("command_timeout_s", 0.5, "after this long without a goal, apply command_timeout_action (0 = off)",
          0.0, 3600.0, runtime=True),
    Param("command_timeout_action", "hold", "'hold' (goal := present position) or 'torque_off'",
          choices=("hold", "torque_off"), runtime=True),
    Param("torque_on_start", True, "turn torque on (holding the present pose) at start"),
    Param("auto_recover", True, "reboot a motor whose hardware error cause has cleared", runtime=True),
    Param("auto_recover_delay_s", 3.0, "wait this long after a fault before an automatic reboot", 0.0, 600.0,
          runtime=True),
    Param("temperature_warn_c", 55.0, "WARN at or above (C)", 0.0, 100.0, runtime=True),
    Param("temperature_error_c", 65.0, "ERROR at or above (C)", 0.0, 100.0, runtime=True),
    Param("voltage_warn_low_v", 4.5, "WARN below (V)", 0.0, 20.0, runtime=True),
    Param("voltage_warn_high_v", 6.5, "WARN above (V)", 0.0, 20.0, runtime=True),
    Param("voltage_error_low_v", 3.8, "ERROR below (V)", 0.0, 20.0, runtime=True),
    Param("voltage_error_high_v", 7.0, "ERROR above (V)", 0.0, 20.0, runtime=True),
    Param("current_warn_ma", 800.0, "WARN at or above |current| (mA)", 0.0, 10000.0, runtime=True),
    Param("current_error_ma", 1200.0, "ERROR at or above |current| (mA)", 0.0, 10000.0, runtime=True),
]


def thresholds(p: dict) -> Thresholds:
    return Thresholds(*(p[k] for k in THRESHOLDS), stale_after_s=max(0.5, 5.0 / p["loop_rate_hz"]))


def validate(p: dict) -> list[str]:
    return [f"thresholds: {e}" for e in thresholds(p).validate()]


class MotorNode(Node):
    def __init__(self) -> None:
        super().__init__("motor_node")
        self.drv = None
        p = self.p = declare(self, SPECS, validate, self._on_params)
        self.th = thresholds(p)
        try:
            self.map = MotorMap.load(p["motors_file"] or None)
        except ValueError as e:
            raise ParameterError(f"parameter 'motors_file': {e}") from None
        self.sim_proc = None
        port = p["serial_port"]
        if p["use_sim"] or port == "sim":
            from reachy_mini.sim.child import start_sim

            self.sim_proc, port, control = start_sim(p["sim_link"] or sim_link(self.get_namespace()),
                                                     p["sim_wire_timing"])
            self.get_logger().info(f"simulated bus on {port} (fault injection: reachy-mini-sim-bus inject --control {control} ...)")
        self.port = port
        self.waiting = "not connected yet"
        self.drv = self._driver(port if port != "auto" else "")
        self.estopped = False
        self.torque_wanted = set()
        self.fault_since: dict[str, float] = {}
        self.recoveries = 0
        self.last_levels: dict[str, int] = {}
        self.comm_seen: dict[str, int] = {}
        self.goal_rejects = 0

        self.js_pub = self.create_publisher(JointState, "joint_states", qos.JOINT_STATES)
        self.create_subscription(JointState, "motors/goal", self._on_goal, qos.GOALS)
        self.create_service(SetBool, "~/set_torque", self._srv_torque)
        self.create_service(Trigger, "~/reboot", self._srv_reboot)
        self.create_service(Trigger, "~/emergency_stop", self._srv_estop)
        self.js_timer = self.create_timer(1.0 / p["loop_rate_hz"], self._publish_joints)
        self.create_timer(0.1, self._watch)

        self.updater = Updater(self)   # period: parameter diagnostic_updater.period (1 s)
        self.updater.setHardwareID(f"dynamixel_bus:{port}")
        self.updater.add("bus", self._diag_bus)
        for m in self.map.motors:
            self.updater.add(m.name, lambda st, name=m.name: self._diag_motor(st, name))
        self._snap = {r.name: r for r in self.drv.snapshot()}
        self._stats = self.drv.stats()
        # A robot that is not plugged in (or a port held by another program)
        # is waited for, not fatal: the bus is ERROR with the reason until it opens.
        self.connect_timer = None
        self._connect()
        if self.waiting is not None:
            self.connect_timer = self.create_timer(1.0, self._connect)

    def _driver(self, port: str) -> Driver:
        p = self.p
        return Driver(port, self.map, baudrate=p["baudrate"], loop_rate_hz=p["loop_rate_hz"],
                      status_rate_hz=p["status_rate_hz"], io_timeout_ms=p["io_timeout_ms"],
                      command_timeout_s=p["command_timeout_s"], timeout_action=p["command_timeout_action"])

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
        if self.p["torque_on_start"]:
            self._torque(True, None)
        self.get_logger().info(f"motor_node up on {port} at {self.p['loop_rate_hz']:.0f} Hz, "
                               f"{len(self.map.motors)} motors")
        self.updater.force_update()

    def _waiting(self, reason: str) -> None:
        if reason != self.waiting:
            self.get_logger().error(f"servo bus: {reason}")
        self.waiting = reason

    def _on_params(self, changed: dict) -> None:
        """`ros2 param set`: already validated by the same rules as at start."""
        if any(k in THRESHOLDS or k == "loop_rate_hz" for k in changed):
            self.th = thresholds(self.p)
        if self.drv is not None and any(k in LIVE_DRIVER for k in changed):
            self.drv.configure(loop_rate_hz=self.p["loop_rate_hz"], status_rate_hz=self.p["status_rate_hz"],
                               command_timeout_s=self.p["command_timeout_s"],
                               timeout_action=self.p["command_timeout_action"])
        if "loop_rate_hz" in changed and hasattr(self, "js_timer"):
            self.destroy_timer(self.js_timer)
            self.js_timer = self.create_timer(1.0 / self.p["loop_rate_hz"], self._publish_joints)

    # ---- publishing
    def _publish_joints(self) -> None:
        snap = self.drv.snapshot()
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        for r in snap:
            if r.position_rad is None:
                continue
            msg.name.append(r.name)
            msg.position.append(r.position_rad)
            msg.effort.append((r.current_ma or 0.0) / 1000.0)
        if msg.name:
            self.js_pub.publish(msg)

    # ---- goals and services
    def _on_goal(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            self.goal_rejects += 1
            self.get_logger().warning(f"goal rejected: {len(msg.name)} names but {len(msg.position)} positions")
            return
        unknown = [n for n in msg.name if n not in self.map.by_name]
        if unknown:
            self.goal_rejects += 1
            self.get_logger().warning(f"goal rejected: unknown joint names {unknown}; known: {self.map.names}")
            return
        if self.estopped:
            self.goal_rejects += 1
            self.get_logger().warning("goal rejected: emergency stop active (call ~/set_torque true to resume)",
                                   throttle_duration_sec=2.0)
            return
        try:
            self.drv.set_goals(dict(zip(msg.name, msg.position)))
        except ValueError as e:
            self.goal_rejects += 1
            self.get_logger().warning(f"goal rejected: {e}")

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
            res = self._torque(False, None)
            failed = {n: e for n, e in res.items() if e}
            resp.success = not failed
            resp.message = "torque off on all motors" if not failed else f"torque off failed on {failed}"
        except DynamixelError as e:
            resp.success, resp.message = False, str(e)
        self.get_logger().error(f"EMERGENCY STOP: {resp.message}")
        self.updater.force_update()
        return resp

    # ---- monitoring
    def _watch(self) -> None:
        for ev in self.drv.events():
            if ev.kind == "info":
                self.get_logger().info(f"[{ev.kind}] {ev.message}")
            else:
                self.get_logger().error(f"[{ev.kind}] {ev.message}")
        now = time.time()
        self._stats = stats = self.drv.stats()
        log = self.get_logger()
        if log.is_enabled_for(LoggingSeverity.DEBUG):   # `log_level:=debug`: a 10 Hz trace of the bus
            log.debug(f"bus {stats['achieved_rate_hz']:.1f} Hz, cycle p50 {stats['cycle_p50_us']:.0f} us "
                      f"p99 {stats['cycle_p99_us']:.0f} us, jitter p99 {stats['jitter_p99_us']:.0f} us, "
                      f"timeouts {stats['timeouts']}, crc {stats['crc_errors']}, garbage {stats['garbage_bytes']}")
        self._snap = {r.name: r for r in self.drv.snapshot()}
        escalate = False
        for name, r in self._snap.items():
            lv, _, _ = motor_health(r, self.th, stats["connected"], now)
            if lv == ERROR and self.last_levels.get(name, 0) < ERROR:
                escalate = True
            self.last_levels[name] = lv
            self._auto_recover(r, now)
        blv, _, _ = bus_health(stats, self.p["loop_rate_hz"])
        if blv == ERROR and self.last_levels.get("bus", 0) < ERROR:
            escalate = True
        self.last_levels["bus"] = blv
        if escalate:
            self.updater.force_update()  # a change to ERROR goes out at once

    def _auto_recover(self, r, now: float) -> None:
        if not r.hardware_error:
            self.fault_since.pop(r.name, None)
            return
        since = self.fault_since.setdefault(r.name, now)
        if not self.p["auto_recover"] or now - since < self.p["auto_recover_delay_s"]:
            return
        if not recoverable(r, self.th):
            return
        self.fault_since[r.name] = now  # next attempt after another delay
        try:
            self.drv.reboot(r.name)
            self.recoveries += 1
            self.get_logger().warning(f"{r.name}: hardware error ({', '.join(r.hardware_error_names)}) cause gone; rebooted")
            if r.name in self.torque_wanted and not self.estopped:
                self.drv.set_torque(True, [r.name])
        except DynamixelError as e:
            self.get_logger().error(f"{r.name}: automatic reboot failed: {e}")

    def _diag_motor(self, st, name: str):
        r = self._snap[name]
        prev = self.comm_seen.get(name, r.comm_errors)
        self.comm_seen[name] = r.comm_errors
        lv, msg, values = motor_health(r, self.th, self._stats["connected"], time.time(), r.comm_errors - prev)
        st.summary(Level(lv).to_bytes(), msg)
        st.hardware_id = f"dynamixel:{r.id}"
        for k, v in values:
            st.add(k, v)
        return st

    def _diag_bus(self, st):
        stats = self.drv.stats()
        lv, msg, values = bus_health(stats, self.p["loop_rate_hz"])
        if self.waiting:
            lv, msg = ERROR, self.waiting
        if self.estopped:
            lv, msg = max(lv, 1), "emergency stop active; " + msg
        st.summary(Level(lv).to_bytes(), msg)
        for k, v in values:
            st.add(k, v)
        st.add("automatic recoveries", str(self.recoveries))
        st.add("rejected goals", str(self.goal_rejects))
        if self.sim_proc is not None:
            st.add("simulated", "true")
        return st

    def shutdown(self) -> None:
        self.drv.stop()
        if self.sim_proc is not None:
            from reachy_mini.sim.child import stop_sim

            stop_sim(self.sim_proc)


def main(args=None) -> int:
    return run_node(MotorNode, "motor_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
