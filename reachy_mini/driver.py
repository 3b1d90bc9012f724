"""Typed Python front of the Rust Dynamixel driver (`reachy_mini._driver`).

    from reachy_mini.driver import Driver
    from reachy_mini.core.motors.map import MotorMap

    with Driver("/dev/ttyACM0", MotorMap.load()) as drv:
        for m in drv.snapshot():
            print(m.name, m.position_rad, m.temperature_c)
        drv.set_goals({"stewart_1": 0.2})

All blocking work happens on the driver's own thread with the GIL released;
every call here returns quickly or raises a `DynamixelError` subclass whose
`motor_id` and `cause` attributes say which motor failed and why.
"""
from __future__ import annotations

import math
from typing import Iterable

from reachy_mini import _driver
from reachy_mini.core.motors.map import MotorMap
from reachy_mini.core.motors.reading import DriverEvent, MotorReading

DynamixelError = _driver.DynamixelError
PortError = _driver.PortError
CommTimeout = _driver.CommTimeout
CrcError = _driver.CrcError
StatusError = _driver.StatusError
MalformedPacket = _driver.MalformedPacket
NotRunning = _driver.NotRunning
RawBus = _driver.Bus
decode_hardware_error = _driver.decode_hardware_error


class Driver:
    """Runs the control loop for the motors of `motor_map` on `port`."""

    def __init__(self, port: str, motor_map: MotorMap, *, baudrate: int = 1_000_000,
                 loop_rate_hz: float = 100.0, status_rate_hz: float = 2.0, io_timeout_ms: float = 5.0,
                 absent_after: int = 3, command_timeout_s: float = 0.0, timeout_action: str = "hold",
                 reconnect_min_s: float = 0.1, reconnect_max_s: float = 2.0, realtime_priority: int = 0,
                 lock_memory: bool = False) -> None:
        self.port = port
        self.map = motor_map
        self._c = _driver.Controller(
            port, motor_map.ids, baudrate=baudrate, loop_rate_hz=loop_rate_hz,
            status_rate_hz=status_rate_hz, io_timeout_ms=io_timeout_ms, absent_after=absent_after,
            reconnect_min_s=reconnect_min_s, reconnect_max_s=reconnect_max_s,
            command_timeout_s=command_timeout_s, timeout_action=timeout_action,
            realtime_priority=realtime_priority, lock_memory=lock_memory)

    # -- lifecycle
    def start(self) -> list[int]:
        """Opens the port and starts the loop. Returns the ids that did not
        answer the initial ping (the loop keeps trying them). Raises
        PortError when the port cannot be opened."""
        return list(self._c.start())

    def stop(self) -> None:
        self._c.stop()

    def configure(self, *, loop_rate_hz: float | None = None, status_rate_hz: float | None = None,
                  command_timeout_s: float | None = None, timeout_action: str | None = None) -> dict:
        """Changes rates and the goal watchdog of the running loop (taken at
        its next iteration); omitted values are kept. Raises ValueError for an
        invalid value. Returns the configuration in force."""
        return dict(self._c.configure(loop_rate_hz, status_rate_hz, command_timeout_s, timeout_action))

    @property
    def running(self) -> bool:
        return self._c.is_running()

    def __enter__(self) -> "Driver":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- state
    def snapshot(self) -> list[MotorReading]:
        out = []
        cu, vu = self.map.current_unit_ma, self.map.voltage_unit_v
        for d in self._c.snapshot():
            m = self.map.by_id[d["id"]]
            pos = d["position"]
            out.append(MotorReading(
                id=m.id, name=m.name, responding=d["responding"],
                position_rad=m.raw_to_rad(pos) if pos is not None else None, position_raw=pos,
                position_stamp=d["position_stamp"],
                goal_rad=m.raw_to_rad(d["goal"]) if d["goal"] is not None else None,
                temperature_c=float(d["temperature"]) if d["temperature"] is not None else None,
                voltage_v=d["voltage"] * vu if d["voltage"] is not None else None,
                current_ma=d["current"] * cu if d["current"] is not None else None,
                torque_enabled=d["torque_enabled"], hardware_error=d["hardware_error"],
                hardware_error_names=list(d["hardware_error_names"]), alert=d["alert"],
                status_stamp=d["status_stamp"], comm_errors=d["comm_errors"], timeouts=d["timeouts"],
                crc_errors=d["crc_errors"], last_error=d["last_error"]))
        return out

    def wait_sample(self, after_seq: int, timeout_s: float,
                    readings: bool = True) -> tuple[int, float, list[MotorReading] | None] | None:
        """Blocks (GIL released) until the loop has completed a position read
        newer than `after_seq`; returns (seq, stamp, readings or None), or None
        after `timeout_s`. Sequence numbers count samples from 1, without gaps."""
        got = self._c.wait_sample(after_seq, timeout_s)
        if got is None:
            return None
        seq, stamp = got
        return seq, stamp, self.snapshot() if readings else None

    def stats(self) -> dict:
        """Loop statistics: achieved_rate_hz, cycle_p50/p99/max_us,
        jitter_p99_us, timeouts, crc_errors, write_errors, connected..."""
        return dict(self._c.stats())

    def reset_timing(self) -> None:
        self._c.reset_timing()

    def events(self) -> list[DriverEvent]:
        """Errors and state changes since the last call (never dropped
        silently: overflow is counted in stats()['events_dropped'])."""
        out = []
        for stamp, kind, mid, msg in self._c.drain_events():
            name = self.map.by_id[mid].name if mid in self.map.by_id else None
            out.append(DriverEvent(stamp, kind, mid, msg, name))
        return out

    # -- commands
    def _motor(self, name: str):
        try:
            return self.map.by_name[name]
        except KeyError:
            raise ValueError(f"unknown motor {name!r}; known: {', '.join(self.map.names)}") from None

    def set_goals(self, goals: dict[str, float]) -> None:
        """Goal positions in rad by motor name. Written on the next cycle."""
        raw = []
        for name, rad in goals.items():
            if not math.isfinite(rad):
                raise ValueError(f"goal for {name} is not finite: {rad}")
            m = self._motor(name)
            raw.append((m.id, m.rad_to_raw(rad)))
        self._c.set_goals(raw)

    def goto(self, goals: dict[str, float], duration: float, interpolation: str = "minjerk") -> None:
        """Moves to `goals` (rad by motor name) in `duration` s, interpolated in
        the driver thread at loop rate; returns at once (see trajectory_active)."""
        self.follow([(duration, goals)], interpolation)

    def follow(self, points: list[tuple[float, dict[str, float]]], interpolation: str = "minjerk") -> None:
        """Waypoints [(seconds from now, {name: rad})], the same motors in each,
        times increasing; preempts the running trajectory (and streamed goals
        preempt it). Raises ValueError for an invalid trajectory."""
        raw = []
        for t, goals in points:
            row = []
            for name, rad in goals.items():
                if not math.isfinite(rad):
                    raise ValueError(f"waypoint at {t} s: goal for {name} is not finite: {rad}")
                m = self._motor(name)
                row.append((m.id, m.rad_to_raw(rad)))
            raw.append((float(t), row))
        self._c.set_trajectory(raw, interpolation)

    @property
    def trajectory_active(self) -> bool:
        return self._c.trajectory_active()

    def set_goals_raw(self, goals: dict[int, int]) -> None:
        self._c.set_goals(list(goals.items()))

    def set_torque(self, enable: bool, names: Iterable[str] | None = None) -> dict[str, str | None]:
        """Torque on/off (all motors by default). Returns {name: error or None}.
        Turning torque on first sets goal = present position (no jump)."""
        ids = [self._motor(n).id for n in names] if names is not None else []
        return {self.map.by_id[i].name: err for i, err in self._c.set_torque(ids, enable)}

    def reboot(self, name: str) -> None:
        """Reboots one motor, clearing its latched hardware error. The bus
        waits 50 ms at least for its acknowledgement (REBOOT_REPLY_WAIT: a
        starved host or a late USB adapter) and retries once one lost on the
        wire."""
        self._c.reboot(self._motor(name).id)

    def ping(self, name: str) -> tuple[int, int]:
        return self._c.ping(self._motor(name).id)

    def read(self, motor_id: int, address: int, length: int) -> bytes:
        return self._c.read(motor_id, address, length)

    def write(self, motor_id: int, address: int, data: bytes) -> None:
        self._c.write(motor_id, address, list(data))
