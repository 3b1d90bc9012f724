"""The log level of a servo-bus event follows its alarm rule
(core/motors/events.py): a blip is a WARN, ERROR only after the sustain."""
from reachy_mini.core.levels import ERROR, OK, WARN
from reachy_mini.core.motors.events import BusEventLog


def test_a_missed_reply_answered_again_is_never_an_error():
    log = BusEventLog(sustain_s=2.0)
    lv, text = log.event("motor_lost", "motor 10 stopped answering (no status packet within 8.4 ms)",
                         "body_rotation", now=100.0)
    assert lv == WARN and "motor 10 stopped answering" in text and "after 2 s" in text
    assert log.poll({"body_rotation": False}, 101.9) == []
    assert log.event("info", "motor 10 answers again", "body_rotation", 102.0) == (OK, "[info] motor 10 answers again")
    assert log.poll({"body_rotation": True}, 102.0) == []
    assert log.poll({"body_rotation": False}, 110.0) == [], "forgotten once it answered"


def test_silent_past_the_sustain_is_one_error_then_info_when_back():
    log = BusEventLog(sustain_s=2.0)
    log.event("motor_lost", "motor 12 stopped answering", "stewart_2", 10.0)
    assert log.poll({"stewart_2": False}, 11.0) == []
    (lv, text), = log.poll({"stewart_2": False}, 12.0)
    assert lv == ERROR and text.startswith("stewart_2 not answering for 2.0 s")
    assert log.poll({"stewart_2": False}, 13.0) == [], "once"
    (lv, text), = log.poll({"stewart_2": True}, 14.5)
    assert lv == OK and "answers again after 4.5 s" in text


def test_not_answering_at_start_follows_the_same_rule():
    log = BusEventLog(sustain_s=2.0)
    lv, text = log.missing_at_start(["body_rotation"], ["body_rotation (id 10)"], 0.0)
    assert lv == WARN and text.startswith("motors not answering at start: body_rotation (id 10)")
    assert log.poll({"body_rotation": True}, 0.4) == [], "a straggler: no ERROR"
    log.missing_at_start(["left_antenna"], ["left_antenna (id 18)"], 5.0)
    assert [lv for lv, _ in log.poll({"left_antenna": False}, 7.1)] == [ERROR]


def test_other_events_keep_their_alarm_level():
    log = BusEventLog()
    assert log.event("disconnected", "port gone", None, 0)[0] == ERROR
    assert log.event("hardware_error", "motor 12: overheating", "stewart_2", 0)[0] == ERROR
    assert log.event("write_error", "motor 12: timeout", "stewart_2", 0)[0] == WARN
    assert log.event("command_timeout", "no goal for 1 s: hold", None, 0)[0] == WARN
    assert log.event("info", "reconnected", None, 0)[0] == OK
    assert log.event("something_new", "?", None, 0)[0] == ERROR, "an unknown kind is not hidden"
