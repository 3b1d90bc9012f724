"""Fallback for the subset of `diagnostic_updater` that reachy_mini uses,
written from the package's documented behaviour, for machines where
diagnostic_updater cannot be installed (e.g. ROS 2 from PyPI wheels).

API subset: Updater(node, period=1.0) with setHardwareID, add(name, fn) /
add(task), removeByName, update, force_update, broadcast;
DiagnosticStatusWrapper with summary, mergeSummary, clearSummary, add;
FrequencyStatusParam and FrequencyStatus with tick, clear and run.
As in diagnostic_updater, published names are "<node name>: <task name>".
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR, STALE = b"\x00", b"\x01", b"\x02", b"\x03"


def _lvl(level) -> bytes:
    if isinstance(level, (bytes, bytearray)):
        return bytes(level[:1])
    return bytes([int(level)])


class DiagnosticStatusWrapper(DiagnosticStatus):
    """A DiagnosticStatus with helpers to build it."""

    def summary(self, *args) -> None:
        """summary(level, message) or summary(other_status)."""
        if len(args) == 1:
            self.level, self.message = _lvl(args[0].level), args[0].message
        else:
            self.level, self.message = _lvl(args[0]), str(args[1])

    def clearSummary(self) -> None:  # noqa: N802 - diagnostic_updater's name
        self.summary(OK, "")

    def mergeSummary(self, *args) -> None:  # noqa: N802
        """Raises the level to the max of both; joins messages with '; '."""
        if len(args) == 1:
            level, message = args[0].level, args[0].message
        else:
            level, message = args
        level = _lvl(level)
        if (level[0] > 0) == (self.level[0] > 0):
            if self.message:
                self.message += "; " + str(message)
            else:
                self.message = str(message)
        elif level[0] > self.level[0]:
            self.message = str(message)
        if level[0] > self.level[0]:
            self.level = level

    def add(self, key: str, value) -> None:
        self.values.append(KeyValue(key=str(key), value=str(value)))


class _Task:
    def __init__(self, name, fn):
        self.name, self.run = name, fn


class Updater:
    """Runs the registered tasks every `period` seconds and publishes one
    DiagnosticArray on /diagnostics. `force_update()` publishes at once."""

    def __init__(self, node, period: float = 1.0) -> None:
        self.node = node
        self.period = float(period)
        self.hwid = ""
        self.tasks: list[_Task] = []
        self.lock = threading.RLock()
        self.publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.timer = node.create_timer(self.period, self.update)

    def setHardwareID(self, hwid: str) -> None:  # noqa: N802
        self.hwid = str(hwid)

    def add(self, *args) -> None:
        task = _Task(args[0].name, args[0].run) if len(args) == 1 else _Task(args[0], args[1])
        with self.lock:
            self.tasks.append(task)

    def removeByName(self, name: str) -> bool:  # noqa: N802
        with self.lock:
            for i, t in enumerate(self.tasks):
                if t.name == name:
                    del self.tasks[i]
                    return True
        return False

    def update(self) -> None:
        self.force_update()

    def force_update(self) -> None:
        out = []
        with self.lock:
            for task in self.tasks:
                st = DiagnosticStatusWrapper()
                st.level, st.name, st.message, st.hardware_id = ERROR, task.name, "No message was set", self.hwid
                st = task.run(st) or st
                out.append(st)
        self.publish(out)

    def broadcast(self, level, message: str) -> None:
        out = []
        with self.lock:
            for task in self.tasks:
                st = DiagnosticStatusWrapper()
                st.name, st.hardware_id = task.name, self.hwid
                st.summary(level, message)
                out.append(st)
        self.publish(out)

    def publish(self, statuses) -> None:
        if not isinstance(statuses, list):
            statuses = [statuses]
        arr = DiagnosticArray()
        arr.header.stamp = self.node.get_clock().now().to_msg()
        prefix = self.node.get_name() + ": "
        for st in statuses:
            msg = DiagnosticStatus(level=_lvl(st.level), name=prefix + st.name, message=st.message,
                                   hardware_id=st.hardware_id, values=list(st.values))
            arr.status.append(msg)
        self.publisher.publish(arr)


class FrequencyStatusParam:
    def __init__(self, freq_bound: dict, tolerance: float = 0.1, window_size: int = 5) -> None:
        self.freq_bound = freq_bound
        self.tolerance = tolerance
        self.window_size = window_size


class FrequencyStatus:
    """Counts tick() calls and checks their rate over a sliding window of
    update periods against freq_bound['min'/'max'] with tolerance."""

    def __init__(self, params: FrequencyStatusParam, name: str = "FrequencyStatus") -> None:
        self.name = name
        self.params = params
        self.lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self.lock:
            now = time.monotonic()
            self.count = 0
            self.times = [now] * self.params.window_size
            self.seq_nums = [0] * self.params.window_size
            self.hist_indx = 0

    def tick(self) -> None:
        with self.lock:
            self.count += 1

    def run(self, stat: DiagnosticStatusWrapper) -> DiagnosticStatusWrapper:
        with self.lock:
            now = time.monotonic()
            events = self.count - self.seq_nums[self.hist_indx]
            window = now - self.times[self.hist_indx]
            freq = events / window if window > 0 else 0.0
            self.seq_nums[self.hist_indx] = self.count
            self.times[self.hist_indx] = now
            self.hist_indx = (self.hist_indx + 1) % self.params.window_size
            fmin = self.params.freq_bound.get("min", 0.0)
            fmax = self.params.freq_bound.get("max", float("inf"))
            tol = self.params.tolerance
            if events == 0:
                stat.summary(ERROR, "No events recorded.")
            elif freq < fmin * (1 - tol):
                stat.summary(WARN, "Frequency too low.")
            elif freq > fmax * (1 + tol):
                stat.summary(WARN, "Frequency too high.")
            else:
                stat.summary(OK, "Desired frequency met")
            stat.add("Events in window", events)
            stat.add("Events since startup", self.count)
            stat.add("Duration of window (s)", f"{window:.3f}")
            stat.add("Actual frequency (Hz)", f"{freq:.2f}")
            if fmin == fmax:
                stat.add("Target frequency (Hz)", fmin)
            if fmin > 0:
                stat.add("Minimum acceptable frequency (Hz)", fmin * (1 - tol))
            if fmax != float("inf"):
                stat.add("Maximum acceptable frequency (Hz)", fmax * (1 + tol))
        return stat
