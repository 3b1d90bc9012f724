"""The log level of a servo-bus event follows the alarm rule of its
diagnostic (core/motors/health.py): a blip is not an error.

- A motor that stops answering (``motor_lost``), or one that does not answer
  at start, is a WARN line at once; an ERROR line only once it has been
  silent for the rule's sustain time (``not_answering_sustain_s``, the time
  after which its diagnostic is ERROR), and then an INFO line when it
  answers again. One missed reply on a loaded machine, answered again
  0.2 s later, is a WARN and an INFO, never an ERROR.
- A failed write and a command timeout (the goal stream stopped; the safety
  action ran) are WARN: the write is retried by its caller, who gets the
  error; the command timeout is the designed reaction.
- Disconnection and a hardware error (the servo's own alarm bit) are ERROR
  at once, as their diagnostics are.

Plain Python: events and readings in, ``(level, text)`` lines out, with the
levels of core/levels.py (OK = an INFO line).
"""
from __future__ import annotations

from reachy_mini.core.levels import ERROR, OK, WARN

_LEVEL = {"info": OK, "write_error": WARN, "command_timeout": WARN, "missing": WARN,
          "disconnected": ERROR, "hardware_error": ERROR}


class BusEventLog:
    def __init__(self, sustain_s: float = 2.0) -> None:
        self.sustain_s = sustain_s
        self.silent: dict[str, list] = {}   # motor name -> [since, escalated]

    def _silent(self, name: str, now: float) -> None:
        self.silent.setdefault(name, [now, False])

    def event(self, kind: str, message: str, motor: str | None, now: float) -> tuple[int, str]:
        """The line of one driver event."""
        if kind == "motor_lost":
            if motor:
                self._silent(motor, now)
            return WARN, f"[{kind}] {message} (ERROR if still silent after {self.sustain_s:g} s)"
        return _LEVEL.get(kind, ERROR), f"[{kind}] {message}"

    def missing_at_start(self, names: list[str], labels: list[str], now: float) -> tuple[int, str]:
        """The line of the motors that did not answer the start-up ping."""
        for n in names:
            self._silent(n, now)
        return WARN, (f"motors not answering at start: {', '.join(labels)} (ERROR if still silent after "
                      f"{self.sustain_s:g} s)")

    def poll(self, responding: dict[str, bool], now: float) -> list[tuple[int, str]]:
        """Lines due now, from the motors' latest readings (name -> answering):
        ERROR for a motor silent for the sustain time, INFO when an escalated
        one answers again. Call it at the watch rate."""
        out = []
        for name, (since, escalated) in list(self.silent.items()):
            if responding.get(name, False):
                del self.silent[name]
                if escalated:
                    out.append((OK, f"{name} answers again after {now - since:.1f} s"))
            elif not escalated and now - since >= self.sustain_s:
                self.silent[name][1] = True
                out.append((ERROR, f"{name} not answering for {now - since:.1f} s (since it stopped answering "
                                   f"or since start)"))
        return out
