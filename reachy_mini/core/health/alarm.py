"""Alarm rules an owner can trust (plain Python, injected clock).

Philosophy (docs/health.md "Alarm levels"): ERROR means the robot cannot do its job
or a person must act now; a cause that only *might* matter is a WARN. A
measured value (host CPU, memory, temperature, a motor's temperature or
voltage) therefore does not follow the raw reading:

- `Alarm`: a level is *entered* only after the value stayed at or beyond
  its enter threshold for `sustain_s`, and *left* only once the value is
  below the (lower) clear threshold. A reading that hovers around one
  threshold gives one alarm, not one per sample.
- `FlapDetector`: an item whose level changed more than `max_changes` times
  within `window_s` is flapping; it is reported once, "flapping (k changes
  in M min)", at its worst level of the window, until it has been stable
  for `settle_s`. Used by health_node for incidents and notifications.

`higher=False` alarms are for low values (a voltage that is too low): the
value must stay at or below the enter threshold, and clears above the
clear threshold.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from reachy_mini.core.levels import ERROR, OK, WARN


@dataclass(frozen=True)
class Band:
    """One level of an alarm: entered at `enter` held for `sustain_s`, left
    past `clear` (clear < enter for a high alarm, > for a low one)."""
    level: int
    enter: float
    clear: float
    sustain_s: float = 0.0

    def check(self, higher: bool = True) -> str | None:
        if self.sustain_s < 0:
            return "sustain time must be >= 0"
        if higher and not self.clear < self.enter:
            return f"clear threshold {self.clear:g} must be below the enter threshold {self.enter:g}"
        if not higher and not self.clear > self.enter:
            return f"clear threshold {self.clear:g} must be above the enter threshold {self.enter:g}"
        return None


class Alarm:
    """Hysteresis and sustain on one value. `update(value, now)` returns the
    level (OK, WARN or ERROR); `bands` are ordered from mild to severe."""

    def __init__(self, bands: list[Band], higher: bool = True) -> None:
        self.higher = higher
        self.bands: list[Band] = []
        self.level = OK
        self._since: dict[int, float] = {}   # band level -> when the value first crossed its enter threshold
        self.configure(bands)

    def configure(self, bands: list[Band]) -> None:
        """New thresholds (runtime parameter change); the current level is kept
        and re-judged on the next update."""
        self.bands = sorted(bands, key=lambda b: b.level)

    def _beyond(self, value: float, threshold: float) -> bool:
        return value >= threshold if self.higher else value <= threshold

    def update(self, value: float | None, now: float) -> int:
        if value is None:
            self._since.clear()
            self.level = OK
            return self.level
        # Leave: the current band holds while the value is beyond its clear
        # threshold; from ERROR it falls to WARN if WARN's still holds.
        while self.level != OK:
            band = next((b for b in self.bands if b.level == self.level), None)
            if band is not None and self._beyond(value, band.clear):
                break
            self.level = max((b.level for b in self.bands if b.level < self.level), default=OK)
        # Enter: a higher band once the value has been beyond its enter
        # threshold for its whole sustain time.
        for b in self.bands:
            if self._beyond(value, b.enter):
                since = self._since.setdefault(b.level, now)
                if b.level > self.level and now - since >= b.sustain_s:
                    self.level = b.level
            else:
                self._since.pop(b.level, None)
        return self.level

    def pending(self, now: float) -> tuple[int, float] | None:
        """(level, seconds so far) of a crossing not yet sustained long enough."""
        for b in reversed(self.bands):
            t = self._since.get(b.level)
            if t is not None and b.level > self.level:
                return b.level, now - t
        return None


def high_alarm(warn: float, warn_clear: float, error: float | None = None, error_clear: float | None = None,
               sustain_s: float = 0.0, error_sustain_s: float | None = None) -> Alarm:
    bands = [Band(WARN, warn, warn_clear, sustain_s)]
    if error is not None:
        bands.append(Band(ERROR, error, error_clear if error_clear is not None else warn,
                          sustain_s if error_sustain_s is None else error_sustain_s))
    return Alarm(bands)


class FlapDetector:
    """Level changes of one item: flapping once more than `max_changes`
    changes fell within `window_s`; settled again after `settle_s` without
    a change. While flapping, `worst` is the highest level of the episode
    (including the levels of the window before it started)."""

    def __init__(self, max_changes: int = 4, window_s: float = 600.0, settle_s: float = 120.0) -> None:
        self.max_changes, self.window_s, self.settle_s = max_changes, window_s, settle_s
        self.changes: deque[tuple[float, int]] = deque()   # (time, level left)
        self.flapping = False
        self.worst = OK
        self.last_change: float | None = None
        self.level: int | None = None
        self.suppressed = 0    # changes not reported while flapping

    def configure(self, max_changes: int, window_s: float, settle_s: float) -> None:
        self.max_changes, self.window_s, self.settle_s = max_changes, window_s, settle_s

    def count(self, now: float) -> int:
        while self.changes and now - self.changes[0][0] > self.window_s:
            self.changes.popleft()
        return len(self.changes)

    def observe(self, level: int, now: float) -> str | None:
        """Feeds the current level (on each change, and now and then to let
        time pass); returns 'start' when the item starts flapping, 'end' when
        it settled, else None."""
        event = None
        changed = self.level is not None and level != self.level
        if changed:
            self.changes.append((now, self.level))
            self.last_change = now
        self.level = level
        n = self.count(now)
        if self.flapping:
            self.worst = max(self.worst, level)
            if changed:
                self.suppressed += 1
            if self.last_change is not None and now - self.last_change >= self.settle_s:
                self.flapping = False
                self.changes.clear()
                event = "end"
        elif n > self.max_changes:
            self.flapping = True
            self.suppressed = 0
            self.worst = max([level] + [lv for _, lv in self.changes])
            event = "start"
        return event

    def describe(self) -> str:
        return f"flapping ({len(self.changes)} changes in {self.window_s / 60:g} min)"


class Flaps:
    """One FlapDetector per item name (bounded), and the rule of what gets
    recorded: `admit` on each level change, `settled` now and then."""

    def __init__(self, max_changes: int = 4, window_s: float = 600.0, settle_s: float = 120.0,
                 max_items: int = 20000) -> None:
        self.params = (max_changes, window_s, settle_s)
        self.max_items = max_items
        self.items: dict[str, FlapDetector] = {}
        self.latest: dict[str, tuple[str, str]] = {}   # flapping name -> (latest message, hardware id)

    def admit(self, name: str, level: int, message: str, hardware_id: str, now: float) -> tuple[int, str] | None:
        """A level change of `name`: (level, message) to record, or None while
        it flaps (recorded once, at its worst level, when it starts)."""
        d = self.get(name)
        event = d.observe(int(level), now)
        if not d.flapping:
            return int(level), message
        self.latest[name] = (message, hardware_id)
        return (d.worst, f"{d.describe()}; now: {message}") if event == "start" else None

    def settled(self, now: float) -> list[tuple[str, int, int, str, str]]:
        """Items that stopped flapping: [(name, level now, worst level,
        message, hardware id)], each once."""
        out = []
        for name in list(self.latest):
            d = self.items.get(name)
            if d is None or d.observe(d.level, now) == "end" or not d.flapping:
                message, hwid = self.latest.pop(name)
                if d is not None:
                    out.append((name, int(d.level), int(d.worst),
                                f"settled after flapping ({d.suppressed} changes not recorded); {message}", hwid))
        return out

    def held(self, name: str, level: int, message: str) -> tuple[int, str]:
        """What to notify for `name`: its worst level while it flaps."""
        d = self.items.get(name)
        if d is None or not d.flapping:
            return level, message
        return d.worst, f"{d.describe()}; now: {message}"

    def configure(self, max_changes: int, window_s: float, settle_s: float) -> None:
        self.params = (max_changes, window_s, settle_s)
        for d in self.items.values():
            d.configure(*self.params)

    def get(self, name: str) -> FlapDetector:
        d = self.items.get(name)
        if d is None:
            if len(self.items) >= self.max_items:
                self.items = {k: v for k, v in self.items.items() if v.flapping}
            d = self.items[name] = FlapDetector(*self.params)
        return d

    def flapping(self, name: str) -> bool:
        d = self.items.get(name)
        return bool(d and d.flapping)
