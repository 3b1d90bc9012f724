"""What motor_node decides from the readings (plain Python): when to reboot a
motor automatically, and when a change must go out at once."""
from __future__ import annotations

from reachy_mini.core.levels import ERROR, OK
from reachy_mini.core.motors.health import Thresholds, recoverable
from reachy_mini.core.motors.reading import MotorReading


class AutoRecovery:
    """A motor with a latched hardware error is rebooted once its cause is
    gone (cool, voltage in range) and `delay_s` has passed since the fault or
    the last attempt."""

    def __init__(self) -> None:
        self.fault_since: dict[str, float] = {}
        self.count = 0

    def due(self, r: MotorReading, th: Thresholds, enabled: bool, delay_s: float, now: float) -> bool:
        if not r.hardware_error:
            self.fault_since.pop(r.name, None)
            return False
        since = self.fault_since.setdefault(r.name, now)
        if not enabled or now - since < delay_s or not recoverable(r, th):
            return False
        self.fault_since[r.name] = now   # next attempt after another delay
        return True

    def done(self) -> None:
        self.count += 1


class Escalation:
    """True when an item enters ERROR: its diagnostics go out at once
    instead of at the next period."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def entered_error(self, name: str, level: int) -> bool:
        rose = level >= ERROR and self.last.get(name, OK) < ERROR
        self.last[name] = level
        return rose
