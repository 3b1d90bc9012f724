"""When motor_node's 10 Hz watch evaluates the motors' health (rules; the
watch: bus_link.BusLink.watch).

Evaluating nine motors' health, alarms and recovery from a fresh snapshot
took most of the watch's time, ten times a second, on a robot where nothing
changes (issue 33). While anything is not OK (a motor, the bus, the
recovery, a motor silent or with a latched error) it still runs ten times a
second, as before. While everything is OK, the watch drains the driver's
events and reads its counters ten times a second, and evaluates everything
when any of those moved (an event: motor lost or back, hardware error, disconnect, write
error, command timeout; a counter: a timeout, a corrupt or stray packet,
a reconnect), and otherwise every FULL_EVERY_S: the temperature and voltage
are read at the status rate (2 Hz) and every alarm rule is time-based
(sustain, silence), so that rate only bounds how late a slow change is
seen. An ERROR the driver reports is still seen within one watch period.
"""
from __future__ import annotations

FULL_EVERY_S = 0.5
# Driver counters whose change means something happened on the bus.
CHANGE_COUNTERS = ("connected", "timeouts", "crc_errors", "status_errors", "garbage_bytes", "stray_replies",
                   "write_errors", "reconnects", "disconnects", "events_dropped", "last_error_stamp")


class WatchGate:
    def __init__(self, full_every_s: float = FULL_EVERY_S) -> None:
        self.full_every_s = full_every_s
        self.key: tuple | None = None
        self.at = float("-inf")
        self.calm = False   # set by the watch after each evaluation: everything was OK

    def due(self, events: int, stats: dict, now: float) -> bool:
        """True when the watch must evaluate the motors now: the last
        evaluation was not calm, `events` were drained this time, a change
        counter moved, or FULL_EVERY_S passed since the last evaluation
        (`now`: a steady clock, s)."""
        key = tuple(stats.get(k) for k in CHANGE_COUNTERS)
        if not self.calm or events or key != self.key or now - self.at >= self.full_every_s:
            self.key, self.at = key, now
            return True
        return False
