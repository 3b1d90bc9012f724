"""core/motors/watch.WatchGate: motor_node's watch evaluates the motors when
the driver reports something, and otherwise every FULL_EVERY_S."""
from reachy_mini.core.motors.watch import CHANGE_COUNTERS, FULL_EVERY_S, WatchGate

QUIET = {"connected": True, "timeouts": 0, "crc_errors": 0, "status_errors": 0, "garbage_bytes": 0,
         "stray_replies": 0, "write_errors": 0, "reconnects": 0, "disconnects": 0, "events_dropped": 0,
         "last_error_stamp": 0.0, "cycles": 100, "achieved_rate_hz": 100.0}


def test_first_call_evaluates_then_quiet_calls_wait_for_the_period():
    g = WatchGate()
    assert g.due(0, QUIET, 9.9)
    assert g.due(0, QUIET, 10.0)   # not known calm yet: every watch tick, as before
    g.calm = True
    assert not g.due(0, dict(QUIET, cycles=110, achieved_rate_hz=99.0), 10.1)   # the loop running is no change
    assert not g.due(0, QUIET, 10.0 + FULL_EVERY_S - 0.01)
    assert g.due(0, QUIET, 10.0 + FULL_EVERY_S)
    assert not g.due(0, QUIET, 10.0 + FULL_EVERY_S + 0.1)


def test_anything_not_ok_means_every_tick():
    g = WatchGate()
    g.calm = True
    g.due(0, QUIET, 0.0)
    assert not g.due(0, QUIET, 0.1)
    g.calm = False   # e.g. a latched hardware error being recovered: its retries must not wait
    assert all(g.due(0, QUIET, 0.1 + i * 0.1) for i in range(1, 5))


def test_events_or_any_change_counter_evaluate_at_once():
    g = WatchGate()
    g.calm = True
    g.due(0, QUIET, 0.0)
    assert g.due(1, QUIET, 0.1)   # an event (motor lost, hardware error, ...)
    for i, k in enumerate(CHANGE_COUNTERS):
        changed = dict(QUIET, **{k: False if k == "connected" else 1})
        t = 0.2 + i * 0.01
        assert g.due(0, changed, t), k
        assert not g.due(0, changed, t + 0.001), k   # seen once
        g.due(0, QUIET, t + 0.002)                     # back to the quiet key for the next one
