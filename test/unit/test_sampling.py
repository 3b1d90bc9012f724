"""core/motors/sampling.py: when motor_node's sample thread publishes at
once and when in bursts (only the flight recorder reads)."""
from reachy_mini.core.health.recorder import RECORDER_NODE
from reachy_mini.core.motors.sampling import RECHECK_S, SampleReaders, live


def test_only_buffered_readers_allow_bursts():
    assert not live([], 0)
    assert not live([RECORDER_NODE, RECORDER_NODE], 0)
    assert live([RECORDER_NODE, "rviz"], 0)
    assert live(["web_bridge_reader"], 0)
    assert live([], 1), "a /tf listener wants every transform at once"


def test_graph_looked_up_on_count_change_and_every_recheck():
    calls = []
    names = [RECORDER_NODE]

    def lookup():
        calls.append(1)
        return list(names)
    r = SampleReaders()
    assert not r.update((1, 1, 0), 0.0, lookup) and len(calls) == 1
    assert not r.update((1, 1, 0), 0.5, lookup) and len(calls) == 1, "same counts: no graph query"
    names.append("rqt")
    assert r.update((2, 1, 0), 0.6, lookup) and len(calls) == 2, "a new subscriber: looked up at once"
    # a reader replaced by another (counts unchanged) is seen at the recheck
    names.remove("rqt")
    assert r.update((2, 1, 0), 0.7, lookup)
    assert not r.update((2, 1, 0), 0.6 + RECHECK_S, lookup) and len(calls) == 3
    assert r.update((1, 1, 1), 3.0, lookup), "/tf subscribed"
    calls.clear()
    assert not r.update((0, 0, 0), 3.1, lookup) and calls == [], "nobody subscribed: no graph query"


def test_mode_is_named_for_the_diagnostics():
    from reachy_mini.core.motors.sampling import mode
    assert mode(True, True).startswith("at once")
    assert mode(False, True).startswith("in bursts") and "flight recorder" in mode(False, True)
    assert mode(False, False).startswith("none")
