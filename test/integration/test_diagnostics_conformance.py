"""The same cases against reachy_mini.diagnostics_compat and, where it is
importable, the real diagnostic_updater (ros/diagnostics): the types each one
accepts and rejects, the topic, the parameters it declares, force_update,
setHardwareID and FrequencyStatus. A case that passes on ours but fails on
upstream means our fallback is not a faithful twin."""
from __future__ import annotations

import importlib
import time

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


@pytest.fixture(params=["reachy_mini.ros.diagnostics_compat", "diagnostic_updater"])
def du(request):
    try:
        return importlib.import_module(request.param)
    except ImportError:
        pytest.skip(f"{request.param} is not installed (ROS 2 from PyPI wheels)")


@pytest.fixture
def ros(ros_env):
    """A ROS context with a node under test (namespace /conf) and a listener
    on /diagnostics, the absolute topic both implementations use."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("dut", namespace="/conf", context=ctx)
    listener = rclpy.create_node("listener", context=ctx)
    got: list[DiagnosticArray] = []
    listener.create_subscription(DiagnosticArray, "/diagnostics", got.append, 50)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(listener)

    def spin_until(pred, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
            if pred():
                return True
        return False

    def wait_matched(pub_node_topic="/diagnostics"):
        return spin_until(lambda: node.count_subscribers(pub_node_topic) > 0)

    yield node, got, spin_until, wait_matched
    ex.shutdown()
    node.destroy_node()
    listener.destroy_node()
    rclpy.try_shutdown(context=ctx)


def _publish_fails(du, node, fill) -> bool:
    """Runs `fill(stat)` as a task and publishes; True if a TypeError was
    raised anywhere on the way (upstream raises in publish, ours earlier)."""
    up = du.Updater(node, period=100.0)
    up.setHardwareID("none")
    try:
        up.add("case", lambda st: (fill(st), st)[1])
        up.force_update()
    except TypeError:
        return True
    finally:
        node.destroy_timer(up.timer)
    return False


# ---- DiagnosticStatusWrapper

def test_wrapper_summary_and_merge_semantics(du):
    st = du.DiagnosticStatusWrapper()
    st.summary(OK, "fine")
    assert (st.level, st.message) == (OK, "fine")
    st.mergeSummary(WARN, "hot")              # OK + WARN: the non-OK message wins
    assert (st.level, st.message) == (WARN, "hot")
    st.mergeSummary(ERROR, "stalled")         # two non-OK: joined
    assert (st.level, st.message) == (ERROR, "hot; stalled")
    st.mergeSummary(OK, "ignored")            # OK into non-OK: level and message kept
    assert (st.level, st.message) == (ERROR, "hot; stalled")
    ok = du.DiagnosticStatusWrapper()
    ok.summary(OK, "a")
    ok.mergeSummary(OK, "b")                  # two OK: joined (upstream's code)
    assert (ok.level, ok.message) == (OK, "a; b")
    other = DiagnosticStatus(level=WARN, message="copied")
    ok.summary(other)
    assert (ok.level, ok.message) == (WARN, "copied")
    ok.clearSummary()
    assert (ok.level, ok.message) == (OK, "")
    st.add("key", "value")
    assert [(kv.key, kv.value) for kv in st.values] == [("key", "value")]


def test_summary_message_is_converted_with_str(du):
    st = du.DiagnosticStatusWrapper()
    st.summary(WARN, 42)
    assert st.message == "42"


def test_int_level_in_merge_is_rejected(du):
    st = du.DiagnosticStatusWrapper()
    st.summary(OK, "")
    with pytest.raises(TypeError):
        st.mergeSummary(1, "int level")


@pytest.mark.parametrize("value", [3, 2.5, True, None, b"x"])
def test_non_str_values_are_rejected(du, ros, value):
    node, *_ = ros
    assert _publish_fails(du, node, lambda st: (st.summary(OK, "x"), st.add("n", value)))


@pytest.mark.parametrize("level", [2, "2", 2.0, None, 300, b"\x01\x02"])
def test_non_bytes_levels_are_rejected(du, ros, level):
    if du.__name__ == "diagnostic_updater":
        pytest.skip("upstream publishes an undefined level byte for these (measured: 2 -> b'\\x03', "
                    "None -> b'\\xa0'), a silent corruption the twin refuses instead")
    node, *_ = ros
    assert _publish_fails(du, node, lambda st: st.summary(level, "bad level"))


def test_str_values_and_bytes_levels_publish(du, ros):
    node, *_ = ros
    assert not _publish_fails(du, node, lambda st: (st.summary(WARN, "x"), st.add("n", "3")))


# ---- Updater

def test_updater_topic_parameters_names_and_force_update(du, ros):
    node, got, spin_until, wait_matched = ros
    up = du.Updater(node, period=100.0)           # the timer never fires in this test
    assert node.get_parameter("diagnostic_updater.period").value == 100.0
    assert node.get_parameter("diagnostic_updater.use_fqn").value is False
    assert ("/diagnostics", ["diagnostic_msgs/msg/DiagnosticArray"]) in node.get_publisher_names_and_types_by_node(
        "dut", "/conf")
    assert wait_matched()
    up.setHardwareID("hw:1")

    def task(st):
        st.summary(WARN, "warm")
        st.add("t (C)", "51")
        return st
    up.add("temp", task)
    up.add("silent", lambda st: st)               # sets nothing: ERROR "No message was set"
    assert spin_until(lambda: len(got) >= 2)
    start = [s for a in got for s in a.status]
    assert [(s.name, s.level, s.message) for s in start] == [
        ("dut: temp", OK, "Node starting up"), ("dut: silent", OK, "Node starting up")]
    got.clear()
    up.force_update()
    assert spin_until(lambda: got)
    by = {s.name: s for s in got[0].status}
    assert set(by) == {"dut: temp", "dut: silent"}
    assert (by["dut: temp"].level, by["dut: temp"].message, by["dut: temp"].hardware_id) == (WARN, "warm", "hw:1")
    assert [(kv.key, kv.value) for kv in by["dut: temp"].values] == [("t (C)", "51")]
    assert (by["dut: silent"].level, by["dut: silent"].message) == (ERROR, "No message was set")
    assert up.removeByName("silent") and not up.removeByName("silent")
    got.clear()
    up.force_update()
    assert spin_until(lambda: got)
    assert [s.name for s in got[0].status] == ["dut: temp"]


def test_updater_period_parameter_from_overrides_and_use_fqn(du, ros_env):
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        from rclpy.parameter import Parameter

        node = rclpy.create_node("fq", namespace="/robot9", context=ctx, parameter_overrides=[
            Parameter("diagnostic_updater.period", Parameter.Type.DOUBLE, 0.25),
            Parameter("diagnostic_updater.use_fqn", Parameter.Type.BOOL, True)],
            automatically_declare_parameters_from_overrides=False)
        up = du.Updater(node, period=1.0)
        assert up.period == 0.25
        assert up.node_name == "/robot9/fq"
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_add_task_object(du, ros):
    node, got, spin_until, wait_matched = ros
    up = du.Updater(node, period=100.0)
    up.setHardwareID("none")
    assert wait_matched()

    class Hot(du.DiagnosticTask):
        def __init__(self):
            super().__init__("hot")

        def run(self, stat):
            stat.summary(ERROR, "too hot")
            return stat
    up.add(Hot())
    assert spin_until(lambda: got)                # "Node starting up"
    got.clear()
    up.force_update()
    assert spin_until(lambda: got)
    assert [(s.name, s.level, s.message) for s in got[-1].status] == [("dut: hot", ERROR, "too hot")]


# ---- FrequencyStatus

def test_frequency_status(du):
    fs = du.FrequencyStatus(du.FrequencyStatusParam({"min": 10.0, "max": 10.0}, 0.1, 5))
    st = du.DiagnosticStatusWrapper()
    fs.run(st)                                    # first window: no events
    assert (st.level, st.message) == (ERROR, "No events recorded.")
    time.sleep(0.3)
    fs.tick()
    fs.tick()
    st = du.DiagnosticStatusWrapper()
    fs.run(st)                                    # 2 events over >= 0.3 s: at most 6.7 Hz < 9 Hz
    assert (st.level, st.message) == (WARN, "Frequency too low.")
    keys = [kv.key for kv in st.values]
    assert keys == ["Events in window", "Events since startup", "Duration of window (s)", "Actual frequency (Hz)",
                    "Target frequency (Hz)", "Minimum acceptable frequency (Hz)", "Maximum acceptable frequency (Hz)"]
    assert all(isinstance(kv.value, str) for kv in st.values)
    assert dict((kv.key, kv.value) for kv in st.values)["Events since startup"] == "2"
    fast = du.FrequencyStatus(du.FrequencyStatusParam({"min": 1.0, "max": 1.0}, 0.1, 5))
    time.sleep(0.05)
    for _ in range(50):
        fast.tick()
    st = du.DiagnosticStatusWrapper()
    fast.run(st)
    assert (st.level, st.message) == (WARN, "Frequency too high.")
    fast.clear()
    assert fast.count == 0


def test_frequency_status_needs_min(du):
    fs = du.FrequencyStatus(du.FrequencyStatusParam({"max": 5.0}))
    fs.tick()
    with pytest.raises(KeyError):
        fs.run(du.DiagnosticStatusWrapper())
