"""Alarm quality rules (core/health/alarm.py and their users), with an
injected clock: hysteresis, sustain, flap detection, host CPU never ERROR
alone, motor temperature/voltage per motor."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from reachy_mini.core.health.alarm import Alarm, Band, FlapDetector, Flaps
from reachy_mini.core.health.config import HealthConfig
from reachy_mini.core.health.system import HostAlarms, Thresholds, rate_symptoms
from reachy_mini.core.levels import ERROR, OK, WARN
from reachy_mini.core.motors.config import MotorConfig
from reachy_mini.core.motors.health import MotorAlarms, Thresholds as MotorThresholds, motor_health
from reachy_mini.core.motors.reading import MotorReading


def cpu_alarm():
    return Alarm([Band(WARN, 90, 80, 30), Band(ERROR, 98, 90, 30)])


def test_alarm_enters_only_after_sustain():
    a = cpu_alarm()
    assert a.update(95, 0) == OK
    assert a.update(95, 29.9) == OK and a.pending(29.9) == (WARN, pytest.approx(29.9))
    assert a.update(95, 30.0) == WARN


def test_alarm_burst_shorter_than_sustain_never_alarms():
    a = cpu_alarm()
    t = 0.0
    for burst in range(20):            # 20 s bursts at 100 %, 5 s quiet gaps
        for _ in range(20):
            assert a.update(100, t) == OK
            t += 1
        for _ in range(5):
            assert a.update(30, t) == OK
            t += 1


def test_alarm_clears_only_below_clear_threshold():
    a = cpu_alarm()
    for t in range(31):
        a.update(92, t)
    assert a.level == WARN
    assert a.update(85, 31) == WARN, "between clear (80) and enter (90): holds"
    assert a.update(89.9, 32) == WARN
    assert a.update(79.9, 33) == OK
    assert a.update(85, 34) == OK, "below enter: stays OK"


def test_alarm_error_falls_back_to_warn_then_ok():
    a = cpu_alarm()
    for t in range(31):
        a.update(99, t)
    assert a.level == ERROR
    assert a.update(95, 31) == ERROR, "above the ERROR band's clear (90)"
    assert a.update(85, 32) == WARN, "below 90 but above 80"
    assert a.update(70, 33) == OK


def test_alarm_sustain_restarts_after_a_dip():
    a = cpu_alarm()
    a.update(95, 0)
    a.update(50, 20)         # the dip resets the sustain timer
    a.update(95, 21)
    assert a.update(95, 50) == OK
    assert a.update(95, 51) == WARN


def test_low_alarm_for_voltage():
    a = Alarm([Band(WARN, 4.5, 4.7, 2), Band(ERROR, 3.8, 4.5, 2)], higher=False)
    assert a.update(4.0, 0) == OK
    assert a.update(4.0, 2) == WARN
    assert a.update(4.6, 3) == WARN, "inside the range but not by the margin"
    assert a.update(4.8, 4) == OK
    assert a.update(None, 5) == OK


def test_band_check():
    assert Band(WARN, 90, 80).check() is None
    assert "below" in Band(WARN, 90, 90).check()
    assert "above" in Band(WARN, 4.5, 4.5).check(higher=False)


def test_flap_detector_reports_once_at_worst_and_settles():
    d = FlapDetector(max_changes=4, window_s=600, settle_s=120)
    events = [d.observe(lv, t) for t, lv in enumerate([OK, ERROR, OK, WARN, OK])]
    assert events == [None] * 5 and not d.flapping, "4 changes: not yet"
    assert d.observe(ERROR, 5) == "start" and d.flapping
    assert d.worst == ERROR and d.describe() == "flapping (5 changes in 10 min)"
    assert d.observe(OK, 6) is None and d.observe(WARN, 7) is None, "no new report while flapping"
    assert d.suppressed == 2
    assert d.observe(WARN, 126) is None, "settle counts from the last change"
    assert d.observe(WARN, 127) == "end" and not d.flapping


def test_flap_detector_window_forgets_old_changes():
    d = FlapDetector(max_changes=2, window_s=60, settle_s=10)
    for t, lv in [(0, OK), (1, WARN), (2, OK)]:
        d.observe(lv, t)
    assert d.observe(WARN, 100) is None, "the first two changes left the window"
    assert d.count(100) == 1


def test_flaps_bounded_and_configurable():
    f = Flaps(2, 60, 10, max_items=3)
    for i in range(10):
        f.get(f"n{i}")
    assert len(f.items) <= 3
    f.configure(5, 30, 5)
    assert f.get("n9").max_changes == 5


def snap(cpu=10.0, mem=30.0, disk=10.0, temps=None):
    return {"cpu_pct": cpu, "mem_pct": mem, "disk_pct": disk, "temps": temps or {}}


def test_host_cpu_alone_is_never_error():
    h, th = HostAlarms(), Thresholds()
    for t in range(120):
        lv, msg = h.evaluate(snap(cpu=100.0), th, float(t))
    assert lv == WARN and "CPU 100 %" in msg and "clears below 80" in msg


def test_host_cpu_error_only_with_a_symptom():
    h, th = HostAlarms(), Thresholds()
    for t in range(31):
        lv, msg = h.evaluate(snap(cpu=99.0), th, float(t), ["motor loop at 50 of 100 Hz"])
    assert lv == ERROR and "motor loop at 50 of 100 Hz" in msg
    lv, _ = h.evaluate(snap(cpu=99.0), th, 32.0, [])
    assert lv == WARN, "the symptom went away: back to WARN"


def test_host_bursty_cpu_gives_no_alarm_and_memory_hysteresis():
    h, th = HostAlarms(), Thresholds()
    t = 0.0
    levels = set()
    for _ in range(30):      # bursts of 2..20 s at 100 %, quiet gaps
        for burst in (2, 20, 7):
            for _ in range(burst):
                levels.add(h.evaluate(snap(cpu=100.0), th, t)[0])
                t += 1
            for _ in range(4):
                levels.add(h.evaluate(snap(cpu=20.0), th, t)[0])
                t += 1
    assert levels == {OK}
    for i in range(31):
        lv, msg = h.evaluate(snap(mem=96.0), th, t + i)
    assert lv == ERROR and "memory 96 %" in msg
    assert h.evaluate(snap(mem=90.0), th, t + 40)[0] == ERROR, "ERROR clears below the WARN threshold (85)"
    assert h.evaluate(snap(mem=84.0), th, t + 40.5)[0] == WARN
    assert h.evaluate(snap(mem=79.0), th, t + 41)[0] == OK


def test_host_temperature_and_disk():
    h, th = HostAlarms(), Thresholds(temp_sustain_s=0.0)
    lv, msg = h.evaluate(snap(temps={"cpu/core0": 80.0, "gpu/temp": 40.0}), th, 0.0)
    assert lv == WARN and "cpu/core0 80 C" in msg
    assert h.evaluate(snap(temps={"cpu/core0": 72.0}), th, 1.0)[0] == WARN
    assert h.evaluate(snap(temps={"cpu/core0": 69.0}), th, 2.0)[0] == OK
    assert h.evaluate(snap(disk=96.0), th, 3.0)[0] == ERROR


def status(values):
    return SimpleNamespace(values=values)


def test_rate_symptoms_from_aggregated_items():
    items = {"motor_node: bus": status([("target rate (Hz)", "100.0"), ("achieved rate (Hz)", "60.0")]),
             "/robot1/camera_node: camera": status([("target fps", "30.0"), ("measured fps", "29.5")]),
             "web_bridge: http": status([])}
    assert rate_symptoms(items) == ["motor loop at 60 of 100 Hz"]
    items["/robot1/camera_node: camera"] = status([("target fps", "30.0"), ("measured fps", "12.0")])
    assert rate_symptoms(items) == ["motor loop at 60 of 100 Hz", "camera at 12 of 30 Hz"]
    assert rate_symptoms({"motor_node: bus": status([("target rate (Hz)", "n/a")])}) == []
    # closed for want of a reader (capture on demand): 0 fps is no symptom of a host that cannot keep up
    idle = {"camera_node: camera": status([("target fps", "30.0"), ("measured fps", "0.00"), ("device open", "false")])}
    assert rate_symptoms(idle) == []
    idle["camera_node: camera"].values[2] = ("device open", "true")
    assert rate_symptoms(idle) == ["camera at 0 of 30 Hz"]


@pytest.mark.parametrize("changes, needle", [
    ({"cpu_clear_pct": 95.0}, "need cpu_clear_pct < cpu_warn_pct"),
    ({"mem_clear_pct": 85.0}, "need mem_clear_pct < mem_warn_pct"),
    ({"temp_warn_c": 90.0}, "need temp_warn_c < temp_error_c"),
    ({"cpu_warn_pct": 99.5}, "need cpu_warn_pct < cpu_error_pct"),
])
def test_health_config_cross_rules(changes, needle):
    assert any(needle in e for e in HealthConfig().replaced(changes).validate())
    assert HealthConfig().validate() == []


def reading(**kw):
    base = dict(name="stewart_1", id=11, responding=True, position_rad=0.0, position_raw=2048, goal_rad=0.0,
                temperature_c=40.0, voltage_v=5.0, current_ma=10.0, torque_enabled=True, hardware_error=0,
                hardware_error_names=[], alert=False, comm_errors=0, timeouts=0, crc_errors=0, last_error="")
    stamp = kw.pop("stamp", 100.0)
    base.update(kw, position_stamp=stamp, status_stamp=stamp)
    return MotorReading(**base)


def test_motor_temperature_hysteresis_per_motor():
    th = MotorThresholds()
    a1, a2 = MotorAlarms(), MotorAlarms()
    assert motor_health(reading(temperature_c=70.0), th, True, 100.0, alarms=a1)[0] == OK, "not sustained yet"
    assert motor_health(reading(temperature_c=40.0, name="stewart_2"), th, True, 100.0, alarms=a2)[0] == OK
    lv, msg, _ = motor_health(reading(temperature_c=70.0, stamp=103.0), th, True, 103.0, alarms=a1)
    assert lv == ERROR and "temperature 70 C (>= 65 C for 3 s" in msg
    assert motor_health(reading(temperature_c=60.0, stamp=104.0), th, True, 104.0, alarms=a1)[0] == ERROR
    assert motor_health(reading(temperature_c=54.0, stamp=104.5), th, True, 104.5, alarms=a1)[0] == WARN
    assert motor_health(reading(temperature_c=52.0, stamp=105.0), th, True, 105.0, alarms=a1)[0] == WARN
    assert motor_health(reading(temperature_c=49.0, stamp=106.0), th, True, 106.0, alarms=a1)[0] == OK
    assert a2.temp.level == OK, "the other motor's alarm is its own"


def test_motor_alarms_follow_new_thresholds_and_the_watch_gets_the_same_level_without_values():
    """The alarms' bands are set once per Thresholds (the 10 Hz watch does not
    rebuild them); a parameter change (a new Thresholds) applies at once."""
    th, a = MotorThresholds(), MotorAlarms()
    for t in (100.0, 104.0):
        lv, msg, vals = motor_health(reading(temperature_c=52.0, stamp=t), th, True, t, alarms=a, values=False)
        assert (lv, msg, vals) == (OK, "OK", [])
    lower = MotorThresholds(temperature_warn_c=50.0, temperature_clear_c=45.0,
                            comm_errors_warn=1, comm_errors_sustain_s=0.0)
    assert motor_health(reading(temperature_c=52.0, stamp=105.0), lower, True, 105.0, alarms=a)[0] == OK, "sustain"
    full = motor_health(reading(temperature_c=52.0, stamp=108.0), lower, True, 108.0, alarms=a)
    assert full[0] == WARN and "temperature 52 C (>= 50 C" in full[1] and ("temperature (C)", "52") in full[2]
    lv, msg, vals = motor_health(reading(temperature_c=52.0, stamp=108.5, comm_errors=3), lower, True, 108.5,
                                 alarms=a, values=False)
    assert lv == WARN and vals == [] and "3 communication errors in the last 10 s" in msg, "comm band: lower's"
    motor_health(reading(temperature_c=52.0, stamp=109.0, comm_errors=3), th, True, 109.0, alarms=a, values=False)
    assert (a.temp.bands[0].enter, a.comm_alarm.bands[0].enter) == (55.0, 5), "the defaults again"


def test_motor_voltage_dip_is_not_an_alarm():
    th, a = MotorThresholds(), MotorAlarms()
    assert motor_health(reading(voltage_v=3.5), th, True, 100.0, alarms=a)[0] == OK
    assert motor_health(reading(voltage_v=5.0, stamp=101.0), th, True, 101.0, alarms=a)[0] == OK
    motor_health(reading(voltage_v=7.5, stamp=102.0), th, True, 102.0, alarms=a)
    lv, msg, _ = motor_health(reading(voltage_v=7.5, stamp=104.0), th, True, 104.0, alarms=a)
    assert lv == ERROR and "input voltage 7.5 V out of [3.8, 7.0] V" in msg
    assert motor_health(reading(voltage_v=6.4, stamp=105.0), th, True, 105.0, alarms=a)[0] == WARN, "margin 0.2"
    assert motor_health(reading(voltage_v=6.2, stamp=106.0), th, True, 106.0, alarms=a)[0] == OK


def test_motor_alarm_config_rules():
    assert MotorConfig().validate() == []
    assert any("temperature_clear_c" in e for e in MotorConfig(temperature_clear_c=60.0).validate())
    assert any("voltage_clear_margin_v" in e for e in MotorConfig(voltage_clear_margin_v=1.5).validate())
    th = MotorConfig(temperature_sustain_s=7.0).thresholds()
    assert th.temperature_sustain_s == 7.0 and th.temperature_clear_c == 50.0


def test_motor_communication_errors_warn_only_when_they_accumulate_and_last():
    th, a = MotorThresholds(comm_errors_sustain_s=20.0), MotorAlarms()
    assert motor_health(reading(comm_errors=0), th, True, 100.0, alarms=a)[0] == OK
    assert motor_health(reading(comm_errors=2, stamp=101.0), th, True, 101.0, alarms=a)[0] == OK, "a lone timeout"
    assert motor_health(reading(comm_errors=5, stamp=105.0), th, True, 105.0, alarms=a)[0] == OK, "a burst"
    assert motor_health(reading(comm_errors=5, stamp=111.0), th, True, 111.0, alarms=a)[0] == OK, "it aged out"
    t, n = 120.0, 5
    for _ in range(30):              # a bad cable: errors all the time
        lv, msg, _ = motor_health(reading(comm_errors=n, stamp=t), th, True, t, alarms=a)
        t, n = t + 1.0, n + 1
    assert lv == WARN and msg in ("10 communication errors in the last 10 s (>= 5 for 20 s)",
                                  "11 communication errors in the last 10 s (>= 5 for 20 s)"), msg
    n -= 1                           # the cable fixed: no new errors
    assert motor_health(reading(comm_errors=n, stamp=t + 5), th, True, t + 5, alarms=a)[0] == WARN, "hysteresis"
    assert motor_health(reading(comm_errors=n, stamp=t + 11), th, True, t + 11, alarms=a)[0] == OK


def test_motor_not_answering_is_error_only_when_it_lasts():
    th, a = MotorThresholds(), MotorAlarms()
    silent = dict(responding=False, last_error="motor 11: no status packet within 9.1 ms")
    assert motor_health(reading(**silent), th, True, 99.0, alarms=a)[0] == ERROR, "never answered: no grace"
    assert motor_health(reading(stamp=99.5), th, True, 99.5, alarms=a)[0] == OK
    assert motor_health(reading(**silent), th, True, 100.0, alarms=a)[0] == OK, "a missed reply"
    assert motor_health(reading(stamp=100.5), th, True, 100.5, alarms=a)[0] == OK
    motor_health(reading(**silent), th, True, 101.0, alarms=a)
    lv, msg, _ = motor_health(reading(**silent), th, True, 103.0, alarms=a)
    assert lv == ERROR and msg == "not answering for 2.0 s (motor 11: no status packet within 9.1 ms)"
    assert motor_health(reading(**silent), th, False, 103.0, alarms=a)[1] == "bus disconnected"
    lv, msg, _ = motor_health(reading(**silent), th, True, 103.0)
    assert lv == ERROR and msg.startswith("not answering ("), "without alarms: the raw rule"


def test_bus_rate_warn_only_when_it_lasts():
    from reachy_mini.core.motors.health import RateAlarm, bus_health

    stats = {"connected": True, "achieved_rate_hz": 80.0, "port": "p", "baudrate": 1, "cycle_p50_us": 0,
             "cycle_p99_us": 0, "cycle_max_us": 0, "jitter_p99_us": 0, "timeouts": 0, "crc_errors": 0,
             "garbage_bytes": 0, "write_errors": 0, "disconnects": 0, "reconnects": 0}
    assert bus_health(stats, 100.0)[0] == WARN, "without an alarm: at once"
    r = RateAlarm()
    assert bus_health(stats, 100.0, rate_alarm=r, now=0.0, sustain_s=30.0)[0] == OK
    lv, msg, _ = bus_health(stats, 100.0, rate_alarm=r, now=30.0, sustain_s=30.0)
    assert lv == WARN and msg == "requested 100 Hz, achieving 80 Hz for 30 s or more"
    assert bus_health(dict(stats, achieved_rate_hz=93.0), 100.0, rate_alarm=r, now=31.0, sustain_s=30.0)[0] == WARN
    assert bus_health(dict(stats, achieved_rate_hz=96.0), 100.0, rate_alarm=r, now=32.0, sustain_s=30.0)[0] == OK


def test_flaps_admit_records_once_then_settled():
    f = Flaps(2, 60, 10)
    got = [f.admit("m", lv, f"msg {i}", "hw", float(i)) for i, lv in enumerate([WARN, OK, ERROR, OK, WARN])]
    assert got[:3] == [(WARN, "msg 0"), (OK, "msg 1"), (ERROR, "msg 2")]
    assert got[3] == (ERROR, "flapping (3 changes in 1 min); now: msg 3"), "its worst level of the window"
    assert got[4] is None
    assert f.held("m", WARN, "now") == (ERROR, "flapping (4 changes in 1 min); now: now")
    assert f.settled(10.0) == []
    assert f.settled(14.0) == [("m", WARN, ERROR, "settled after flapping (1 changes not recorded); msg 4", "hw")]
    assert f.settled(15.0) == [] and f.held("m", OK, "x") == (OK, "x")
