"""Capture on demand (plain Python): a device is open only while someone reads.

Like image_transport's lazy publishers and what usb_cam users expect: the
node counts its readers (subscribers of its topics, SDK socket clients) on a
cheap timer and feeds the count here. While there is a reader, capture runs;
`idle_close_s` after the last one left, the device is closed (released: the
LED goes off, another program may open it) and the capture thread sleeps.
At start-up capture runs for `idle_close_s` as if a reader had just left, so
a working device is verified (opened, frames counted) before it goes idle.
idle_close_s = 0 captures always (the behaviour before this module).
"""
from __future__ import annotations

import threading
from typing import Callable

IDLE_MESSAGE = "idle: no reader (device closed)"


class Demand:
    def __init__(self, idle_close_s: Callable[[], float] | float, now: float) -> None:
        self._idle_close_s = idle_close_s if callable(idle_close_s) else (lambda v=float(idle_close_s): v)
        self.lock = threading.Lock()
        self.last_reader = now      # start-up grace: capture for idle_close_s first
        self.readers = 0
        self.capturing = True
        self.since = now            # time of the last transition
        self.starts = 0             # idle -> capturing transitions (a reader arrived)
        self.stops = 0              # capturing -> idle transitions (idle_close_s without a reader)

    @property
    def idle_close_s(self) -> float:
        return max(0.0, float(self._idle_close_s()))

    def update(self, readers: int, now: float) -> bool:
        """The reader count at `now`; returns whether the device should capture."""
        with self.lock:
            self.readers = max(0, int(readers))
            close_s = self.idle_close_s
            if self.readers > 0 or close_s == 0:   # 0: as if always read (a later non-zero counts from now)
                self.last_reader = now
            want = close_s == 0 or self.readers > 0 or now - self.last_reader < close_s
            if want != self.capturing:
                self.capturing, self.since = want, now
                if want:
                    self.starts += 1
                else:
                    self.stops += 1
            return want

    def snapshot(self, now: float) -> dict:
        with self.lock:
            close_s = self.idle_close_s
            closes_in = None
            if self.capturing and self.readers == 0 and close_s > 0:
                closes_in = max(0.0, close_s - (now - self.last_reader))
            return {"capturing": self.capturing, "readers": self.readers, "idle_close_s": close_s,
                    "for_s": now - self.since, "closes_in_s": closes_in, "starts": self.starts, "stops": self.stops}


def demand_values(d: dict) -> list[tuple[str, str]]:
    """Diagnostic key/values of a Demand snapshot."""
    if d["idle_close_s"] == 0:
        state = "always (idle_close_s = 0)"
    elif d["capturing"]:
        state = "reader present" if d["readers"] else f"no reader: closing in {d['closes_in_s']:.1f} s"
    else:
        state = IDLE_MESSAGE
    return [("capture", state), ("readers", d["readers"]), ("idle_close_s", f"{d['idle_close_s']:g}"),
            ("in this state for (s)", f"{d['for_s']:.1f}"), ("capture starts on demand", d["starts"]),
            ("idle closes", d["stops"])]
