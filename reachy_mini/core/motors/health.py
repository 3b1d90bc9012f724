"""Pure motor-health rules: a MotorReading and thresholds in, a level, a
message and key/values out. No ROS imports; unit-tested directly."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from reachy_mini.core.health.alarm import Alarm, Band
from reachy_mini.core.levels import ERROR, OK, WARN
from reachy_mini.core.motors.reading import MotorReading


@dataclass(frozen=True)
class Thresholds:
    temperature_warn_c: float = 55.0
    temperature_error_c: float = 65.0
    voltage_warn_low_v: float = 4.5
    voltage_warn_high_v: float = 6.5
    voltage_error_low_v: float = 3.8
    voltage_error_high_v: float = 7.0
    current_warn_ma: float = 800.0
    current_error_ma: float = 1200.0
    stale_after_s: float = 0.5
    # hysteresis and sustain (core/health/alarm.py) of temperature and voltage
    temperature_clear_c: float = 50.0
    temperature_sustain_s: float = 3.0
    voltage_clear_margin_v: float = 0.2
    voltage_sustain_s: float = 2.0
    comm_errors_warn: int = 5            # WARN at this many communication errors ...
    comm_errors_window_s: float = 10.0   # ... within this window (a lone timeout is not an alarm) ...
    comm_errors_sustain_s: float = 30.0  # ... for this long (a burst of host load is not one either)
    not_answering_sustain_s: float = 2.0  # a motor silent this long is ERROR (a missed reply is a comm error)
    rate_sustain_s: float = 30.0          # the loop below 90 % of its rate this long is WARN

    def validate(self) -> list[str]:
        errs = []
        if not self.temperature_warn_c < self.temperature_error_c:
            errs.append("temperature_warn_c must be < temperature_error_c")
        if not self.temperature_clear_c < self.temperature_warn_c:
            errs.append("temperature_clear_c must be < temperature_warn_c")
        if not self.voltage_warn_low_v + self.voltage_clear_margin_v < \
                self.voltage_warn_high_v - self.voltage_clear_margin_v:
            errs.append("voltage_clear_margin_v leaves no normal range between voltage_warn_low_v and "
                        "voltage_warn_high_v")
        if not (self.voltage_error_low_v < self.voltage_warn_low_v < self.voltage_warn_high_v < self.voltage_error_high_v):
            errs.append("need voltage_error_low_v < voltage_warn_low_v < voltage_warn_high_v < voltage_error_high_v")
        if not 0 < self.current_warn_ma < self.current_error_ma:
            errs.append("need 0 < current_warn_ma < current_error_ma")
        return errs


class MotorAlarms:
    """One motor's temperature and input-voltage alarms with hysteresis and
    sustain: a level is entered after `*_sustain_s` beyond its threshold and
    left once the value is back past the clear threshold (temperature below
    temperature_clear_c, voltage inside the WARN range by
    voltage_clear_margin_v). `now` is any steady clock (s)."""

    def __init__(self) -> None:
        self.temp, self.vlow, self.vhigh = Alarm([]), Alarm([], higher=False), Alarm([])
        self.comm: deque[tuple[float, int]] = deque()   # (time, communication error counter)
        self.comm_alarm = Alarm([])
        self.silent_since: float | None = None
        self.answered = False
        self._th: Thresholds | None = None

    def silent_for(self, responding: bool, now: float) -> float:
        """Seconds the motor has not been answering (0 while it answers;
        infinite while it never has: no grace for a motor that is not there)."""
        if responding:
            self.silent_since, self.answered = None, True
            return 0.0
        if not self.answered:
            return float("inf")
        if self.silent_since is None:
            self.silent_since = now
        return now - self.silent_since

    def recent_comm_errors(self, total: int, now: float, window_s: float) -> int:
        """Communication errors within the last `window_s`, from the motor's counter."""
        self.comm.append((now, total))
        while len(self.comm) > 1 and now - self.comm[1][0] >= window_s:
            self.comm.popleft()
        return max(0, total - self.comm[0][1])

    def configure(self, th: Thresholds) -> None:
        """The alarms' bands from `th` (a frozen Thresholds: a parameter
        change brings a new one); nothing to do for the same one (10 Hz)."""
        if th is self._th:
            return
        self._th = th
        ts, vs, mg = th.temperature_sustain_s, th.voltage_sustain_s, th.voltage_clear_margin_v
        self.temp.configure([Band(WARN, th.temperature_warn_c, th.temperature_clear_c, ts),
                             Band(ERROR, th.temperature_error_c, th.temperature_warn_c, ts)])
        self.vlow.configure([Band(WARN, th.voltage_warn_low_v, th.voltage_warn_low_v + mg, vs),
                             Band(ERROR, th.voltage_error_low_v, th.voltage_warn_low_v, vs)])
        self.vhigh.configure([Band(WARN, th.voltage_warn_high_v, th.voltage_warn_high_v - mg, vs),
                              Band(ERROR, th.voltage_error_high_v, th.voltage_warn_high_v, vs)])
        # WARN once the window held >= comm_errors_warn for the sustain time; clear once it holds none
        self.comm_alarm.configure([Band(WARN, th.comm_errors_warn, 0.5, th.comm_errors_sustain_s)])

    def update(self, m: MotorReading, th: Thresholds, now: float) -> list[tuple[int, str]]:
        self.configure(th)
        ts, vs = th.temperature_sustain_s, th.voltage_sustain_s
        out = []
        t, v = m.temperature_c, m.voltage_v
        lv = self.temp.update(t, now)
        if lv and t is not None:
            lim = th.temperature_error_c if lv == ERROR else th.temperature_warn_c
            out.append((lv, f"temperature {t:.0f} C (>= {lim:.0f} C for {ts:g} s, clears below "
                            f"{th.temperature_clear_c if lv == WARN else th.temperature_warn_c:.0f} C)"))
        lv = max(self.vlow.update(v, now), self.vhigh.update(v, now))
        if lv and v is not None:
            lo, hi = (th.voltage_error_low_v, th.voltage_error_high_v) if lv == ERROR else \
                (th.voltage_warn_low_v, th.voltage_warn_high_v)
            out.append((lv, f"input voltage {v:.1f} V out of [{lo}, {hi}] V for {vs:g} s"))
        return out


def motor_health(m: MotorReading, th: Thresholds, connected: bool, now: float,
                 new_comm_errors: int = 0, alarms: MotorAlarms | None = None, values: bool = True,
                 ) -> tuple[int, str, list[tuple[str, str]]]:
    """Returns (level, message, values) for one motor. With `alarms` (the
    motor's MotorAlarms, kept by the caller) temperature and voltage follow
    their hysteresis and sustain; without, the raw thresholds of this reading.
    `values=False`: no key/values (an empty list), for the 10 Hz watch that
    only needs the level (the diagnostics at 1 Hz show them)."""
    issues: list[tuple[int, str]] = []
    if not connected:
        issues.append((ERROR, "bus disconnected"))
    elif not m.responding:
        silent = alarms.silent_for(False, now) if alarms is not None else None
        if silent is None:
            issues.append((ERROR, f"not answering ({m.last_error or 'no reply'})"))
        elif silent == float("inf"):
            issues.append((ERROR, f"not answering ({m.last_error or 'no reply'})"))
        elif silent >= th.not_answering_sustain_s:
            issues.append((ERROR, f"not answering for {silent:.1f} s ({m.last_error or 'no reply'})"))
    elif alarms is not None:
        alarms.silent_for(True, now)
    if m.hardware_error:
        issues.append((ERROR, "hardware error: " + ", ".join(m.hardware_error_names)))
    if alarms is not None:
        issues += alarms.update(m, th, now)
    else:
        t = m.temperature_c
        if t is not None:
            if t >= th.temperature_error_c:
                issues.append((ERROR, f"temperature {t:.0f} C >= {th.temperature_error_c:.0f} C"))
            elif t >= th.temperature_warn_c:
                issues.append((WARN, f"temperature {t:.0f} C >= {th.temperature_warn_c:.0f} C"))
        v = m.voltage_v
        if v is not None:
            if not th.voltage_error_low_v <= v <= th.voltage_error_high_v:
                issues.append((ERROR, f"input voltage {v:.1f} V out of [{th.voltage_error_low_v}, "
                                      f"{th.voltage_error_high_v}] V"))
            elif not th.voltage_warn_low_v <= v <= th.voltage_warn_high_v:
                issues.append((WARN, f"input voltage {v:.1f} V out of [{th.voltage_warn_low_v}, "
                                     f"{th.voltage_warn_high_v}] V"))
    c = m.current_ma
    if c is not None:
        if abs(c) >= th.current_error_ma:
            issues.append((ERROR, f"current {abs(c):.0f} mA >= {th.current_error_ma:.0f} mA"))
        elif abs(c) >= th.current_warn_ma:
            issues.append((WARN, f"current {abs(c):.0f} mA >= {th.current_warn_ma:.0f} mA"))
    if connected and m.responding and m.age_s(now) > th.stale_after_s:
        issues.append((WARN, f"position not updated for {m.age_s(now):.1f} s"))
    if alarms is not None:
        recent = alarms.recent_comm_errors(m.comm_errors, now, th.comm_errors_window_s)
        if alarms.comm_alarm.update(recent, now) and m.responding:
            issues.append((WARN, f"{recent} communication errors in the last {th.comm_errors_window_s:g} s "
                                 f"(>= {th.comm_errors_warn} for {th.comm_errors_sustain_s:g} s)"))
    elif new_comm_errors and m.responding:
        issues.append((WARN, f"{new_comm_errors} communication errors since last report"))
    level = max((lv for lv, _ in issues), default=OK)
    message = "; ".join(msg for _, msg in issues) if issues else "OK"
    if not values:
        return level, message, []

    def fmt(x, f):
        return "n/a" if x is None else f.format(x)

    values = [
        ("id", str(m.id)),
        ("responding", str(m.responding)),
        ("position (rad)", fmt(m.position_rad, "{:.4f}")),
        ("goal (rad)", fmt(m.goal_rad, "{:.4f}")),
        ("temperature (C)", fmt(m.temperature_c, "{:.0f}")),
        ("voltage (V)", fmt(m.voltage_v, "{:.1f}")),
        ("current (mA)", fmt(m.current_ma, "{:.0f}")),
        ("torque", fmt(m.torque_enabled, "{}")),
        ("hardware error", ", ".join(m.hardware_error_names) or "none"),
        ("hardware error status", f"0x{m.hardware_error:02x}"),
        ("communication errors", str(m.comm_errors)),
        ("timeouts", str(m.timeouts)),
        ("crc errors", str(m.crc_errors)),
        ("last error", m.last_error or ""),
    ]
    return level, message, values


class RateAlarm:
    """The control loop's rate: WARN once below `min_ratio` of the target for
    `sustain_s`, cleared at 95 % (a burst of host load is not an alarm)."""

    def __init__(self) -> None:
        self.alarm = Alarm([], higher=False)

    def update(self, achieved: float, target: float, min_ratio: float, sustain_s: float, now: float) -> int:
        self.alarm.configure([Band(WARN, min_ratio, max(min_ratio + 0.01, 0.95), sustain_s)])
        return self.alarm.update(achieved / target if target > 0 else 1.0, now)


def bus_health(stats: dict, target_rate_hz: float, min_rate_ratio: float = 0.9, rate_alarm: RateAlarm | None = None,
               now: float = 0.0, sustain_s: float = 0.0) -> tuple[int, str, list[tuple[str, str]]]:
    """The bus: disconnected is ERROR; a loop below `min_rate_ratio` of its
    target is WARN, at once, or with `rate_alarm` (kept by the caller) once
    it lasted `sustain_s`."""
    issues = []
    slow = stats["achieved_rate_hz"] < target_rate_hz * min_rate_ratio
    if rate_alarm is not None:
        slow = rate_alarm.update(stats["achieved_rate_hz"], target_rate_hz, min_rate_ratio, sustain_s, now) == WARN
    if not stats["connected"]:
        issues.append((ERROR, f"disconnected ({stats.get('last_error') or 'port closed'}); reopening"))
    elif slow:
        issues.append((WARN, f"requested {target_rate_hz:.0f} Hz, achieving {stats['achieved_rate_hz']:.0f} Hz"
                       + (f" for {sustain_s:g} s or more" if rate_alarm is not None else "")))
    level = max((lv for lv, _ in issues), default=OK)
    msg = "; ".join(m for _, m in issues) if issues else f"{stats['achieved_rate_hz']:.1f} Hz"
    values = [
        ("port", stats["port"]), ("baudrate", str(stats["baudrate"])), ("connected", str(stats["connected"])),
        ("target rate (Hz)", f"{target_rate_hz:.1f}"), ("achieved rate (Hz)", f"{stats['achieved_rate_hz']:.1f}"),
        ("cycle p50 (us)", f"{stats['cycle_p50_us']:.0f}"), ("cycle p99 (us)", f"{stats['cycle_p99_us']:.0f}"),
        ("cycle max (us)", f"{stats['cycle_max_us']:.0f}"), ("jitter p99 (us)", f"{stats['jitter_p99_us']:.0f}"),
        ("timeouts", str(stats["timeouts"])), ("crc errors", str(stats["crc_errors"])),
        ("garbage bytes", str(stats["garbage_bytes"])), ("stray replies", str(stats.get("stray_replies", 0))),
        ("write errors", str(stats["write_errors"])), ("realtime", stats.get("realtime") or "not started"),
        ("disconnects", str(stats["disconnects"])), ("reconnects", str(stats["reconnects"])),
        ("last error", stats.get("last_error") or ""),
    ]
    return level, msg, values


def recoverable(m: MotorReading, th: Thresholds) -> bool:
    """A latched hardware error whose cause is gone (cool, voltage in range):
    a reboot will clear it."""
    if not m.hardware_error or not m.responding:
        return False
    if m.temperature_c is not None and m.temperature_c >= th.temperature_warn_c:
        return False
    if m.voltage_v is not None and not th.voltage_warn_low_v <= m.voltage_v <= th.voltage_warn_high_v:
        return False
    return True
