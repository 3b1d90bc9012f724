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

RAW_MIN, RAW_MAX = -(2 ** 31), 2 ** 31 - 1   # goal position register (int32)
# The largest trajectory the driver accepts (rust_driver/src/control/trajectory.rs).
TRAJECTORY_MAX_POINTS: int = _driver.TRAJECTORY_MAX_POINTS
TRAJECTORY_MAX_DURATION_S: float = _driver.TRAJECTORY_MAX_DURATION_S

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
                 lock_memory: bool = False, limit_policy: str = "clamp", enforce_limits: bool = True) -> None:
        """The joint ranges and maximum velocities of `motor_map` are enforced
        in the driver on every goal (`limit_policy`: 'clamp' or 'reject');
        `enforce_limits=False` leaves them out (benchmarks, bring-up only)."""
        self.port = port
        self.map = motor_map
        limits = [(m.id, *lim) for m in motor_map.motors if (lim := m.raw_limits())] if enforce_limits else []
        self._c = _driver.Controller(
            port, motor_map.ids, baudrate=baudrate, loop_rate_hz=loop_rate_hz,
            status_rate_hz=status_rate_hz, io_timeout_ms=io_timeout_ms, absent_after=absent_after,
            reconnect_min_s=reconnect_min_s, reconnect_max_s=reconnect_max_s,
            command_timeout_s=command_timeout_s, timeout_action=timeout_action,
            realtime_priority=realtime_priority, lock_memory=lock_memory, limits=limits,
            limit_policy=limit_policy)

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
                crc_errors=d["crc_errors"], last_error=d["last_error"],
                eeprom_limits_raw=(d["eeprom_min"], d["eeprom_max"]) if d["eeprom_min"] is not None else None,
                limit_clamps=d["limit_clamps"]))
        return out

    def wait_sample(self, after_seq: int, timeout_s: float) -> tuple[int, float] | None:
        """Blocks (GIL released) until the loop has completed a position read
        newer than `after_seq`; returns the latest (seq, stamp), or None after
        `timeout_s`. Sequence numbers count samples from 1, without gaps; the
        samples themselves: samples_after."""
        return self._c.wait_sample(after_seq, timeout_s)

    def samples_after(self, after_seq: int) -> list[tuple[int, float, list[tuple[str, float]]]]:
        """The driver samples newer than `after_seq` that it still keeps (the
        last 256), oldest first, without waiting: (seq, stamp, [(motor name,
        position in rad)] for the motors read so far)."""
        motors = self.map.motors   # the controller's configured order (map.ids)
        return [(seq, stamp, [(m.name, m.raw_to_rad(p)) for m, p in zip(motors, raw) if p is not None])
                for seq, stamp, raw in self._c.samples_after(after_seq)]

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

    def _raw(self, name: str, rad: float, where: str = "") -> tuple[int, int]:
        if not math.isfinite(rad):
            raise ValueError(f"{where}goal for {name} is not finite: {rad}")
        m = self._motor(name)
        raw = m.rad_to_raw(rad)
        if not RAW_MIN <= raw <= RAW_MAX:
            raise ValueError(f"{where}goal for {name} ({rad:g} rad) is out of any servo's range")
        return m.id, raw

    def _clamps(self, clamped, given: dict[str, float] | None = None) -> list[tuple[str, float, float]]:
        """[(name, requested rad, the range's bound in rad)] of the driver's clamps."""
        out = []
        for mid, requested, _ in clamped:
            m = self.map.by_id[mid]
            rad = given[m.name] if given and m.name in given else m.raw_to_rad(requested)
            out.append((m.name, rad, m.clip(rad)))
        return out

    def _refused(self, e: ValueError) -> ValueError:
        """A refusal by the joint limits, in names and radians."""
        m = self.map.by_id.get(getattr(e, "motor_id", None))
        if m is None or getattr(e, "cause", None) != "out_of_limits":
            return e
        where = str(e).split("motor ")[0]
        return ValueError(f"{where}{m.name}: goal beyond its joint limits [{m.min_rad:g}, {m.max_rad:g}] rad "
                          "(limit_policy reject)")

    def set_goals(self, goals: dict[str, float]) -> list[tuple[str, float, float]]:
        """Goal positions in rad by motor name. Written on the next cycle,
        within each joint's range and maximum velocity. Returns the goals
        clamped into their range [(name, requested, applied)]; with
        limit_policy 'reject' a goal beyond it raises ValueError instead."""
        raw = [self._raw(name, rad) for name, rad in goals.items()]
        try:
            return self._clamps(self._c.set_goals(raw), goals)
        except ValueError as e:
            raise self._refused(e) from None

    def goto(self, goals: dict[str, float], duration: float,
             interpolation: str = "minjerk") -> list[tuple[str, float, float]]:
        """Moves to `goals` (rad by motor name) in `duration` s, interpolated in
        the driver thread at loop rate; returns at once (see trajectory_active)."""
        return self.follow([(duration, goals)], interpolation)

    def follow(self, points: list[tuple[float, dict[str, float]]],
               interpolation: str = "minjerk") -> list[tuple[str, float, float]]:
        """Waypoints [(seconds from now, {name: rad})], the same motors in each,
        times increasing (at most 10 000 waypoints within 120 s); preempts the
        running trajectory (and streamed goals preempt it). Raises ValueError
        for an invalid trajectory. Joint limits as in set_goals (returns the
        largest clamp per motor)."""
        raw = [(float(t), [self._raw(name, rad, f"waypoint at {t} s: ") for name, rad in goals.items()])
               for t, goals in points]
        try:
            return self._clamps(self._c.set_trajectory(raw, interpolation))
        except ValueError as e:
            raise self._refused(e) from None

    @property
    def trajectory_active(self) -> bool:
        return self._c.trajectory_active()

    def set_goals_raw(self, goals: dict[int, int]) -> list[tuple[int, int, int]]:
        """Raw goals by motor id: the same joint limits as set_goals; returns
        the clamps [(id, requested, applied)]."""
        for mid, raw in goals.items():
            if not RAW_MIN <= raw <= RAW_MAX:
                raise ValueError(f"raw goal {raw} for motor {mid} is out of any servo's range")
        return self._c.set_goals(list(goals.items()))

    def limits(self) -> tuple[list[tuple[int, int, int, float]], str]:
        """The limits in force in the driver: ([(id, min, max, max ticks/s)], policy)."""
        return self._c.limits()

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
