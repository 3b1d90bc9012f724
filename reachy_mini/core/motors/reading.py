"""What the driver reports, as plain data: one motor's latest reading and
one driver event. No compiled code here, so the rules that judge them are
testable without the driver."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class MotorReading:
    """Latest state of one motor, in SI-ish units. `None` = never read."""

    id: int
    name: str
    responding: bool
    position_rad: float | None
    position_raw: int | None
    position_stamp: float
    goal_rad: float | None
    temperature_c: float | None
    voltage_v: float | None
    current_ma: float | None
    torque_enabled: bool | None
    hardware_error: int
    hardware_error_names: list[str]
    alert: bool
    status_stamp: float
    comm_errors: int
    timeouts: int
    crc_errors: int
    last_error: str | None
    eeprom_limits_raw: tuple[int, int] | None = None   # the servo's own (min, max) position limits
    limit_clamps: int = 0                               # goals clamped into the joint range

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the position was last read (inf if never)."""
        if not self.position_stamp:
            return math.inf
        return (now or time.time()) - self.position_stamp


@dataclass
class DriverEvent:
    stamp: float
    kind: str
    motor_id: int | None
    message: str
    motor_name: str | None = field(default=None)
