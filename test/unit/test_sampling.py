"""core/motors/sampling.py: when motor_node's sample thread publishes at
once and when in bursts (only the flight recorder, or web_bridge's polling
reader, read)."""
from reachy_mini.core.health.recorder import RECORDER_NODE
from reachy_mini.core.motors.sampling import BATCH_PERIOD_S, POLL_PERIOD_S, RECHECK_S, WEB_READER_NODE, \
    SampleReaders, live, period
from reachy_mini.web.sdk_ws import STATE_PERIOD_S


def test_only_buffered_readers_allow_bursts():
    assert not live([], 0)
    assert not live([RECORDER_NODE, RECORDER_NODE], 0)
    assert live([RECORDER_NODE, "rviz"], 0)
    assert live([], 1), "a /tf listener wants every transform at once"


def test_web_bridges_polling_reader_gets_bursts_at_its_polling_period():
    assert not live([WEB_READER_NODE], 0)
    assert period([WEB_READER_NODE], 0) == POLL_PERIOD_S
    assert period([RECORDER_NODE, WEB_READER_NODE, RECORDER_NODE], 0) == POLL_PERIOD_S, "the shortest period wins"
    assert period([RECORDER_NODE], 0) == BATCH_PERIOD_S
    assert period([WEB_READER_NODE, "rviz"], 0) == 0.0, "a live reader beside it: at once"
    assert period([WEB_READER_NODE], 1) == 0.0, "a /tf listener beside it: at once"
    # the SDK's state stream takes the latest sample every STATE_PERIOD_S: a burst period
    # no longer than that adds at most one stream period to a sample's age
    assert POLL_PERIOD_S <= STATE_PERIOD_S


def test_graph_looked_up_on_count_change_and_every_recheck():
    calls = []
    names = [RECORDER_NODE]

    def lookup():
        calls.append(1)
        return list(names)
    r = SampleReaders()
    assert r.update((1, 1, 0), 0.0, lookup) == BATCH_PERIOD_S and len(calls) == 1 and not r.live
    assert r.update((1, 1, 0), 0.5, lookup) == BATCH_PERIOD_S and len(calls) == 1, "same counts: no graph query"
    names.append("rqt")
    assert r.update((2, 1, 0), 0.6, lookup) == 0.0 and len(calls) == 2, "a new subscriber: looked up at once"
    assert r.live
    # a reader replaced by another (counts unchanged) is seen at the recheck
    names.remove("rqt")
    assert r.update((2, 1, 0), 0.7, lookup) == 0.0
    assert r.update((2, 1, 0), 0.6 + RECHECK_S, lookup) == BATCH_PERIOD_S and len(calls) == 3
    names.append(WEB_READER_NODE)
    assert r.update((3, 2, 0), 2.7, lookup) == POLL_PERIOD_S, "web_bridge's reader subscribed"
    assert r.update((3, 2, 1), 3.0, lookup) == 0.0, "/tf subscribed"
    calls.clear()
    assert r.update((0, 0, 0), 3.1, lookup) == BATCH_PERIOD_S and calls == [], "nobody subscribed: no graph query"


def test_mode_is_named_for_the_diagnostics():
    from reachy_mini.core.motors.sampling import mode
    assert mode(0.0, True).startswith("at once")
    assert mode(BATCH_PERIOD_S, True).startswith("in bursts") and "flight recorder" in mode(BATCH_PERIOD_S, True)
    assert mode(POLL_PERIOD_S, True).startswith("in bursts every 0.02 s") and "web_bridge" in mode(POLL_PERIOD_S, True)
    assert mode(BATCH_PERIOD_S, False).startswith("none")


def test_polling_wakes_follow_the_driver_samples():
    from reachy_mini.core.motors.sampling import samples_per_wake
    assert samples_per_wake(0.0, 100.0) == 1, "at once: each sample"
    assert samples_per_wake(POLL_PERIOD_S, 100.0) == 2, "100 Hz loop, 20 ms: every second sample"
    assert samples_per_wake(POLL_PERIOD_S, 50.0) == 1, "50 Hz loop: each sample is 20 ms apart already"
    assert samples_per_wake(POLL_PERIOD_S, 30.0) == 1
    assert samples_per_wake(POLL_PERIOD_S, 1000.0) == 20
