"""What motor_node decides from the readings (plain Python): when to reboot a
motor automatically and when to stop trying, whether torque may come back
without a person, and when a change must go out at once."""
from __future__ import annotations

from reachy_mini.core.levels import ERROR, OK
from reachy_mini.core.motors.health import Thresholds, recoverable
from reachy_mini.core.motors.reading import MotorReading


class AutoRecovery:
    """A motor with a latched hardware error is rebooted once its cause is
    gone (cool, voltage in range) and `delay_s` has passed since the fault or
    the last attempt; at most `max_tries` times per `window_s`. After that it
    gives up (a jammed or damaged servo re-latches after every reboot) until
    a person reboots it or sets torque. Torque is restored after an overload
    only once without a person."""

    def __init__(self) -> None:
        self.fault_since: dict[str, float] = {}
        self.attempts: dict[str, list[float]] = {}
        self.gave_up: dict[str, str] = {}
        self.overload_restores: dict[str, int] = {}
        self.count = 0

    def due(self, r: MotorReading, th: Thresholds, enabled: bool, delay_s: float, now: float,
            max_tries: int = 3, window_s: float = 600.0) -> bool:
        if not r.hardware_error:
            self.fault_since.pop(r.name, None)
            return False
        if r.name in self.gave_up:
            return False
        since = self.fault_since.setdefault(r.name, now)
        if not enabled:
            return False
        recent = self.attempts[r.name] = [t for t in self.attempts.get(r.name, []) if now - t < window_s]
        if len(recent) >= max_tries:   # the budget is spent and the fault is back: a person must look
            self.gave_up[r.name] = (f"automatic recovery gave up after {len(recent)} tries in "
                                    f"{window_s / 60:.0f} min; call ~/reboot")
            return False
        if now - since < delay_s or not recoverable(r, th):
            return False
        self.fault_since[r.name] = now   # next attempt after another delay
        recent.append(now)
        return True

    def done(self) -> None:
        self.count += 1

    def may_restore_torque(self, r: MotorReading) -> bool:
        """After an automatic reboot: torque back on, except after a second
        overload without a person in between."""
        if "overload" not in r.hardware_error_names:
            return True
        n = self.overload_restores.get(r.name, 0)
        self.overload_restores[r.name] = n + 1
        return n == 0

    def person_acted(self, names=None) -> None:
        """A person rebooted or set torque: the counts start again."""
        for d in (self.gave_up, self.attempts, self.overload_restores):
            for k in list(d) if names is None else [n for n in names if n in d]:
                del d[k]

    def status(self) -> tuple[int, str]:
        """The 'recovery' item: ERROR while it has given up on a motor."""
        if self.gave_up:
            return ERROR, "; ".join(f"{n}: {m}" for n, m in sorted(self.gave_up.items()))
        return OK, f"{self.count} automatic reboots"


class Escalation:
    """True when an item enters ERROR: its diagnostics go out at once
    instead of at the next period."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def entered_error(self, name: str, level: int) -> bool:
        rose = level >= ERROR and self.last.get(name, OK) < ERROR
        self.last[name] = level
        return rose


def torque_off_targets(readings: dict[str, MotorReading], names: list[str]) -> list[str]:
    """The motors of a goal that cannot move because their torque is off."""
    return [n for n in names if n in readings and readings[n].torque_enabled is False]
