"""Strict twin of the part of `diagnostic_updater` (ros/diagnostics, ros2
branch) that reachy_mini uses, for machines where diagnostic_updater cannot be
installed (ROS 2 from PyPI wheels).

It follows upstream's source, not its documentation:
- Updater(node, period=1.0) publishes on the absolute topic /diagnostics
  (depth 1), declares the parameters `diagnostic_updater.period` and
  `diagnostic_updater.use_fqn`, publishes "Node starting up" (OK) for each task
  when it is added, and names statuses "<node name>: <task name>" (with
  use_fqn: "<namespace>/<node name>: <task name>").
- update() and force_update() run every task at once; a task starts as ERROR
  "No message was set" with the updater's hardware id.
- DiagnosticStatusWrapper levels are `bytes` (DiagnosticStatus.OK == b'\\x00');
  values are `str`. Upstream publishes any other level as an undefined byte
  (measured: 2 -> b'\\x03', None -> b'\\xa0'); the twin refuses it. Upstream stores whatever it is given and fails later, in
  publish, with "TypeError: bad argument type for built-in operation"; this
  twin rejects the same inputs with a TypeError at the call that passed them,
  naming the key, so a mistake shows where it is made.
- FrequencyStatus / FrequencyStatusParam: same window, bounds, messages and
  keys as upstream (freq_bound needs 'min'; 'max' is optional).

test/test_diagnostics_conformance.py runs the same cases against this module
and, where it is importable, against the real diagnostic_updater.
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ["DiagnosticStatusWrapper", "DiagnosticTask", "FunctionDiagnosticTask", "CompositeDiagnosticTask",
           "Updater", "FrequencyStatusParam", "FrequencyStatus", "Heartbeat"]


def _check_level(level) -> bytes:
    if not isinstance(level, bytes) or len(level) != 1:
        raise TypeError(f"diagnostic level must be a 1-byte bytes value such as DiagnosticStatus.OK "
                        f"(b'\\x00'), not {level!r}")
    return level


def _check_str(what: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"diagnostic {what} must be a str, not {type(value).__name__} ({value!r}); "
                        f"format it first, e.g. str(x) or f'{{x:.1f}}'")
    return value


class DiagnosticStatusWrapper(DiagnosticStatus):
    """A DiagnosticStatus with helpers to fill it (upstream's methods)."""

    def summary(self, *args) -> None:
        """summary(status) copies level and message; summary(level, message)."""
        if len(args) == 1:
            self.level = _check_level(args[0].level)
            self.message = args[0].message
        elif len(args) == 2:
            self.level = _check_level(args[0])
            self.message = str(args[1])   # upstream: str(args[1])

    def clearSummary(self) -> None:  # noqa: N802 - upstream's name
        self.summary(DiagnosticStatus.OK, "")

    def mergeSummary(self, *args) -> None:  # noqa: N802
        """The level becomes the greater one. Messages of two non-OK (or two
        OK) levels are joined with '; '; otherwise the non-OK one is kept."""
        if len(args) == 1:
            lvl, msg = args[0].level, args[0].message
        elif len(args) == 2:
            lvl, msg = args
        else:
            raise TypeError("mergeSummary(status) or mergeSummary(level, message)")
        lvl = _check_level(lvl)
        msg = _check_str("message", msg)
        if (lvl > DiagnosticStatus.OK) == (self.level > DiagnosticStatus.OK):
            if len(self.message) > 0:
                self.message += "; "
            self.message += msg
        elif lvl > self.level:
            self.message = msg
        if lvl > self.level:
            self.level = lvl

    def add(self, key, val) -> None:
        kv = KeyValue()
        kv.key = _check_str("key", key)
        kv.value = _check_str(f"value of {key!r}", val)
        self.values.append(kv)


class DiagnosticTask:
    def __init__(self, name: str) -> None:
        self.name = name

    def getName(self) -> str:  # noqa: N802
        return self.name

    def run(self, stat: DiagnosticStatusWrapper) -> DiagnosticStatusWrapper:
        return stat


class FunctionDiagnosticTask(DiagnosticTask):
    def __init__(self, name: str, fn) -> None:
        super().__init__(name)
        self.fn = fn

    def run(self, stat):
        return self.fn(stat)


class CompositeDiagnosticTask(DiagnosticTask):
    """Runs its child tasks into one status: max level, merged messages."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.tasks: list[DiagnosticTask] = []

    def run(self, stat):
        combined, original = DiagnosticStatusWrapper(), DiagnosticStatusWrapper()
        original.summary(stat)
        for task in self.tasks:
            stat.summary(original)
            stat = task.run(stat)
            combined.mergeSummary(stat)
        stat.summary(combined)
        return stat

    def addTask(self, t: DiagnosticTask) -> None:  # noqa: N802
        self.tasks.append(t)


class _TaskInternal:
    def __init__(self, name: str, fn) -> None:
        self.name, self.fn = name, fn

    def run(self, stat):
        stat.name = self.name
        return self.fn(stat)


class Updater:
    """Runs the registered tasks every `period` seconds (parameter
    `diagnostic_updater.period`) and publishes one DiagnosticArray on
    /diagnostics; force_update() publishes at once."""

    def __init__(self, node, period: float = 1.0) -> None:
        self.tasks: list[_TaskInternal] = []
        self.lock = threading.Lock()
        self.node = node
        self.publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 1)
        self.period_parameter = "diagnostic_updater.period"
        self.__period = node.declare_parameter(self.period_parameter, period).value
        self.timer = node.create_timer(self.__period, self.update)
        self.verbose = False
        self.hwid = ""
        self.warn_nohwid_done = False
        self.use_fqn_parameter = "diagnostic_updater.use_fqn"
        if node.has_parameter(self.use_fqn_parameter):
            self.__use_fqn = node.get_parameter(self.use_fqn_parameter).value
        else:
            self.__use_fqn = node.declare_parameter(self.use_fqn_parameter, False).value
        self.node_name = "/".join([node.get_namespace(), node.get_name()]) if self.__use_fqn else node.get_name()

    # -- task list (upstream's DiagnosticTaskVector)
    def add(self, *args) -> None:
        """add(task) or add(name, fn)."""
        if len(args) == 1:
            task = _TaskInternal(args[0].getName(), args[0].run)
        elif len(args) == 2:
            task = _TaskInternal(args[0], args[1])
        else:
            raise TypeError("add(task) or add(name, fn)")
        with self.lock:
            self.tasks.append(task)
            self.addedTaskCallback(task)

    def removeByName(self, name: str) -> bool:  # noqa: N802
        with self.lock:
            for i, t in enumerate(self.tasks):
                if t.name == name:
                    self.tasks.pop(i)
                    return True
        return False

    def addedTaskCallback(self, task) -> None:  # noqa: N802
        stat = DiagnosticStatusWrapper()
        stat.name = task.name
        stat.summary(DiagnosticStatus.OK, "Node starting up")
        self.publish(stat)

    # -- publishing
    def update(self) -> None:
        warn_nohwid = len(self.hwid) == 0
        status_vec = []
        with self.lock:
            for task in self.tasks:
                status = DiagnosticStatusWrapper()
                status.level = DiagnosticStatus.ERROR
                status.name = task.name
                status.message = "No message was set"
                status.hardware_id = self.hwid
                status = task.run(status)
                status_vec.append(status)
                if status.level != b"\x00":
                    warn_nohwid = False
        if warn_nohwid and not self.warn_nohwid_done:
            self.node.get_logger().warning("diagnostic_updater: No HW_ID was set. This is probably a bug.")
            self.warn_nohwid_done = True
        self.publish(status_vec)

    @property
    def period(self) -> float:
        return self.__period

    @period.setter
    def period(self, period: float) -> None:
        self.__period = period
        self.timer.reset()
        self.timer = self.node.create_timer(self.__period, self.update)

    def force_update(self) -> None:
        self.update()

    def broadcast(self, lvl, msg) -> None:
        status_vec = []
        for task in self.tasks:
            status = DiagnosticStatusWrapper()
            status.name = task.name
            status.summary(lvl, msg)
            status_vec.append(status)
        self.publish(status_vec)

    def setHardwareID(self, hwid) -> None:  # noqa: N802
        self.hwid = _check_str("hardware id", hwid)

    def publish(self, msg) -> None:
        if type(msg) is not list:
            msg = [msg]
        da = DiagnosticArray()
        da.header.stamp = self.node.get_clock().now().to_msg()
        for stat in msg:
            stat.name = self.node_name + ": " + stat.name
            db = DiagnosticStatus()
            db.name = _check_str("name", stat.name)
            db.message = _check_str("message", stat.message)
            db.hardware_id = _check_str("hardware_id", stat.hardware_id)
            for kv in stat.values:
                _check_str("key", kv.key)
                _check_str(f"value of {kv.key!r}", kv.value)
            db.values = stat.values
            db.level = _check_level(stat.level)
            da.status.append(db)
        self.publisher.publish(da)


class FrequencyStatusParam:
    def __init__(self, freq_bound: dict, tolerance: float = 0.1, window_size: int = 5) -> None:
        self.freq_bound = freq_bound
        self.tolerance = tolerance
        self.window_size = window_size


class FrequencyStatus(DiagnosticTask):
    """Counts tick() calls; run() checks their rate over the last
    `window_size` runs against freq_bound['min'] (and 'max' if given)."""

    def __init__(self, params: FrequencyStatusParam, name: str = "FrequencyStatus") -> None:
        super().__init__(name)
        self.params = params
        self.lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self.lock:
            self.count = 0
            now = time.time()   # upstream: ROS_TIME, i.e. wall time without sim time
            self.times = [now for _ in range(self.params.window_size)]
            self.seq_nums = [0 for _ in range(self.params.window_size)]
            self.hist_indx = 0

    def tick(self) -> None:
        with self.lock:
            self.count += 1

    def run(self, stat):
        with self.lock:
            now = time.time()
            curseq = self.count
            events = curseq - self.seq_nums[self.hist_indx]
            window = now - self.times[self.hist_indx]
            freq = events / window
            self.seq_nums[self.hist_indx] = curseq
            self.times[self.hist_indx] = now
            self.hist_indx = (self.hist_indx + 1) % self.params.window_size
            fb, tol = self.params.freq_bound, self.params.tolerance
            if events == 0:
                stat.summary(DiagnosticStatus.ERROR, "No events recorded.")
            elif freq < fb["min"] * (1 - tol):
                stat.summary(DiagnosticStatus.WARN, "Frequency too low.")
            elif "max" in fb and freq > fb["max"] * (1 + tol):
                stat.summary(DiagnosticStatus.WARN, "Frequency too high.")
            else:
                stat.summary(DiagnosticStatus.OK, "Desired frequency met")
            stat.add("Events in window", "%d" % events)
            stat.add("Events since startup", "%d" % self.count)
            stat.add("Duration of window (s)", "%f" % window)
            stat.add("Actual frequency (Hz)", "%f" % freq)
            if "max" in fb and fb["min"] == fb["max"]:
                stat.add("Target frequency (Hz)", "%f" % fb["min"])
            if fb["min"] > 0:
                stat.add("Minimum acceptable frequency (Hz)", "%f" % (fb["min"] * (1 - tol)))
            if "max" in fb:
                stat.add("Maximum acceptable frequency (Hz)", "%f" % (fb["max"] * (1 + tol)))
        return stat


class Heartbeat(DiagnosticTask):
    def __init__(self) -> None:
        super().__init__("Heartbeat")

    def run(self, stat):
        stat.summary(DiagnosticStatus.OK, "Alive")
        return stat
