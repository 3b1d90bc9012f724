"""The Python driver against the simulator, through the real pty, no mocks.
Every injected fault must show up as the right error or status, and the
driver must recover when the fault clears."""
import time

import pytest

from reachy_mini.driver import CommTimeout, Driver, PortError, StatusError
from reachy_mini.core.motors.map import MotorMap

from conftest import wait_for

MAP = MotorMap.load()


def make(sim, **kw):
    kw.setdefault("loop_rate_hz", 100.0)
    kw.setdefault("status_rate_hz", 5.0)
    # the simulator is a Python process: beside two CPU hogs it answers several ms late at times, which the
    # 5 ms default slack counts as timeouts; tests that are not about timeouts give it room (those that are
    # set io_timeout_ms themselves)
    kw.setdefault("io_timeout_ms", 25.0)
    # the control thread at a real-time priority, as motor_node's realtime_priority gives it on the robot
    # (the systemd unit grants LimitRTPRIO): granted as root (CI), else the normal scheduler (reported)
    kw.setdefault("realtime_priority", 20)
    return Driver(sim.link, MAP, **kw)


def by_name(drv, name):
    return next(m for m in drv.snapshot() if m.name == name)


def test_motor_map_conversion_and_validation():
    m = MAP.by_name["stewart_1"]
    assert m.id == 11 and MAP.ids == list(range(10, 19))
    assert m.raw_to_rad(2048) == pytest.approx(0.0)
    assert m.rad_to_raw(m.raw_to_rad(3000)) == 3000
    with pytest.raises(ValueError, match="duplicate id"):
        MotorMap.from_dict({"motors": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]})
    with pytest.raises(ValueError, match="direction"):
        MotorMap.from_dict({"motors": [{"id": 1, "name": "a", "direction": 2}]})


def test_missing_port_raises_port_error(tmp_path):
    d = Driver(str(tmp_path / "nope"), MAP)
    with pytest.raises(PortError) as ei:
        d.start()
    assert ei.value.cause == "open_failed" and "nope" in str(ei.value)


def test_positions_and_goals_converge(sim):
    with make(sim) as drv:
        wait_for(lambda: all(m.position_rad is not None for m in drv.snapshot()))
        assert all(m.temperature_c is not None for m in wait_for(
            lambda: [m for m in drv.snapshot() if m.temperature_c is not None] == drv.snapshot() and drv.snapshot()))
        assert all(err is None for err in drv.set_torque(True).values())
        goals = {"stewart_1": 0.3, "right_antenna": -0.5, "body_rotation": 0.1}
        drv.set_goals(goals)
        for name, g in goals.items():
            wait_for(lambda: abs(by_name(drv, name).position_rad - g) < 0.01, timeout=10)
        st = drv.stats()
        assert st["connected"] and st["timeouts"] == 0 and st["write_errors"] == 0
        assert st["achieved_rate_hz"] > 90


def test_unknown_motor_and_bad_goal_rejected(sim):
    with make(sim) as drv:
        with pytest.raises(ValueError, match="unknown motor 'neck'"):
            drv.set_goals({"neck": 0.0})
        with pytest.raises(ValueError, match="not finite"):
            drv.set_goals({"stewart_1": float("nan")})


def test_missing_motor_named_at_start(sim):
    sim.inject("mute", id=14)
    drv = make(sim)
    try:
        assert drv.start() == [14]
        events = drv.events()
        assert any("14" in e.message and e.kind == "missing" for e in events)
        assert not by_name(drv, "stewart_4").responding
        sim.inject("unmute", id=14)
        wait_for(lambda: by_name(drv, "stewart_4").responding, timeout=10)
        wait_for(lambda: by_name(drv, "stewart_4").position_raw is not None)
    finally:
        drv.stop()


@pytest.mark.parametrize("fault,name", [("overheat", "overheating"), ("overload", "overload"),
                                        ("voltage", "input_voltage")])
def test_hardware_fault_detected_and_recovered(sim, fault, name):
    # Slow status rate: detection must come from the alert bit, not the poll.
    with make(sim, status_rate_hz=0.5) as drv:
        drv.set_torque(True)
        time.sleep(0.3)
        drv.events()
        t0 = time.monotonic()
        sim.inject(fault, id=12)
        m = wait_for(lambda: (r := by_name(drv, "stewart_2")).hardware_error and r, timeout=10)
        assert time.monotonic() - t0 < 1.0
        assert name in m.hardware_error_names and m.alert
        ev = wait_for(lambda: [e for e in drv.events() if e.kind == "hardware_error"])
        assert ev[0].motor_id == 12 and name in ev[0].message
        # Reboot while the cause is still there: the error latches again.
        drv.reboot("stewart_2")
        time.sleep(0.3)
        assert by_name(drv, "stewart_2").hardware_error
        sim.inject("clear", id=12)
        drv.reboot("stewart_2")
        wait_for(lambda: by_name(drv, "stewart_2").hardware_error == 0, timeout=10)
        assert sim.state()["motors"]["12"]["hardware_error"] == 0


def test_silent_motor_dropped_and_readmitted(sim):
    with make(sim) as drv:
        wait_for(lambda: all(m.position_raw is not None for m in drv.snapshot()))
        sim.inject("mute", id=13)
        m = wait_for(lambda: (r := by_name(drv, "stewart_3")) and not r.responding and r, timeout=10)
        assert m.timeouts >= 3 and "no status packet" in m.last_error
        lost = [e for e in drv.events() if e.kind == "motor_lost"]
        assert lost and lost[0].motor_id == 13
        # Motors after it in the sync read keep updating once it is left out.
        t = time.time()
        wait_for(lambda: by_name(drv, "left_antenna").position_stamp > t + 0.05)
        assert by_name(drv, "left_antenna").comm_errors == 0, "the blocked ones are not blamed"
        sim.inject("unmute", id=13)
        wait_for(lambda: by_name(drv, "stewart_3").responding, timeout=10)


def test_corrupt_bytes_counted_and_survived(sim):
    with make(sim) as drv:
        wait_for(lambda: drv.stats()["cycles"] > 10)
        sim.inject("corrupt", count=5)
        sim.inject("garbage", count=200)
        wait_for(lambda: drv.stats()["crc_errors"] >= 5, timeout=10)
        wait_for(lambda: drv.stats()["garbage_bytes"] > 0, timeout=10)
        crc_motor = sum(m.crc_errors for m in drv.snapshot())
        assert crc_motor >= 5
        t = time.time()
        wait_for(lambda: all(m.position_stamp > t and m.responding for m in drv.snapshot()), timeout=10)


def test_latency_spike_times_out_then_recovers(sim):
    with make(sim, io_timeout_ms=5.0) as drv:
        wait_for(lambda: drv.stats()["cycles"] > 10)
        sim.inject("latency", ms=30, duration=0.5)
        wait_for(lambda: drv.stats()["timeouts"] > 0, timeout=10)
        time.sleep(0.6)
        t = time.time()
        wait_for(lambda: all(m.position_stamp > t and m.responding for m in drv.snapshot()), timeout=10)
        # Once the latency is gone, timeouts stop: during the spike every
        # transaction timed out; now at most one in 20 cycles may, for a
        # simulator starved of CPU past the 5 ms bound (two CPU hogs do that),
        # over 200 cycles (2 s) so that one burst of starvation is not the verdict.
        st0 = drv.stats()
        st1 = wait_for(lambda: (s := drv.stats())["cycles"] >= st0["cycles"] + 200 and s, timeout=20)
        stray = st1["timeouts"] - st0["timeouts"]
        cycles = st1["cycles"] - st0["cycles"]
        assert stray <= cycles // 20, f"timeouts went on once latency was gone: {stray} in {cycles} cycles"
        assert all(m.responding for m in drv.snapshot())


def test_port_vanishes_and_returns(sim):
    with make(sim, reconnect_min_s=0.05, reconnect_max_s=0.4) as drv:
        wait_for(lambda: drv.stats()["cycles"] > 10)
        sim.inject("vanish", duration=1.0)
        wait_for(lambda: not drv.stats()["connected"], timeout=10)
        ev = wait_for(lambda: [e for e in drv.events() if e.kind == "disconnected"])
        assert "disconnected" in ev[0].message
        assert drv.stats()["achieved_rate_hz"] == 0
        wait_for(lambda: drv.stats()["connected"], timeout=10)
        st = drv.stats()
        assert st["reconnects"] >= 1 and st["disconnects"] >= 1
        t = time.time()
        wait_for(lambda: all(m.position_stamp > t for m in drv.snapshot()), timeout=10)
        assert drv.running


def test_write_errors_raise_with_motor_and_cause(sim):
    with make(sim) as drv:
        with pytest.raises(StatusError) as ei:
            drv.write(11, 132, b"\x00\x00\x00\x00")  # present_position is read-only
        assert ei.value.motor_id == 11 and ei.value.cause == "access_error"
        sim.inject("mute", id=15)
        with pytest.raises(CommTimeout) as ei:
            drv.write(15, 65, b"\x01")
        assert ei.value.motor_id == 15 and ei.value.cause == "timeout"
        assert drv.stats()["write_errors"] == 2
        kinds = [e.kind for e in drv.events()]
        assert kinds.count("write_error") == 2
        res = drv.set_torque(True, ["stewart_5", "stewart_1"])
        assert res["stewart_1"] is None and "motor 15" in res["stewart_5"]


@pytest.mark.parametrize("action", ["hold", "torque_off"])
def test_command_timeout(sim, action):
    with make(sim, command_timeout_s=0.3, timeout_action=action) as drv:
        drv.set_torque(True)
        drv.set_goals({"stewart_1": 0.5})
        time.sleep(0.15)
        drv.set_goals({"stewart_1": 0.5})
        ev = wait_for(lambda: [e for e in drv.events() if e.kind == "command_timeout"], timeout=10)
        assert "no goal for 0.30 s" in ev[0].message
        if action == "torque_off":
            wait_for(lambda: sim.state()["motors"]["11"]["torque"] is False)
        else:
            s = sim.state()["motors"]["11"]
            assert s["torque"] is True


def test_invalid_controller_arguments():
    from reachy_mini import _driver
    with pytest.raises(ValueError, match="motor id 10 appears twice"):
        _driver.Controller("/dev/null", [10, 11, 10])
    with pytest.raises(ValueError, match="loop_rate_hz"):
        Driver("/dev/null", MAP, loop_rate_hz=-1)
    with pytest.raises(ValueError, match="timeout_action"):
        Driver("/dev/null", MAP, timeout_action="explode")


def test_late_replies_are_discarded_not_motor_lost(sim):
    """A reply that comes after its deadline (USB or CPU hiccup) is dropped
    and counted as stray; it is never read as the answer to the next
    transaction, and no motor is marked lost for it."""
    with make(sim, status_rate_hz=10.0, io_timeout_ms=5.0) as drv:   # the production slack: 12 ms is late
        # (beside two CPU hogs this test still fails at times: the driver's loop and the simulator are starved
        # past the 5 ms slack, several transactions in a row; see the issue 28 report)
        wait_for(lambda: all(m.responding and m.temperature_c is not None for m in drv.snapshot()), timeout=10)
        drv.events()
        for _ in range(5):                     # five late replies in 5 s (the case seen in the field)
            sim.inject("late", ms=12, count=1)
            time.sleep(1.0)
        wait_for(lambda: sim.state()["counters"]["late_tx"] == 5, timeout=10)
        time.sleep(0.3)
        lost = [e for e in drv.events() if e.kind == "motor_lost"]
        assert lost == [], [e.message for e in lost]
        assert all(m.responding for m in drv.snapshot())
        st = drv.stats()
        assert st["stray_replies"] >= 5, st       # each late reply seen and dropped
        assert 5 <= st["timeouts"] <= 10, st      # only the transactions that really timed out
        # positions keep flowing at the loop rate
        assert st["achieved_rate_hz"] > 80.0


def _beyond(goals):
    lim = {m.id: m.raw_limits() for m in MAP.motors}
    return [(i, v) for _, i, v in goals if not lim[i][0] <= v <= lim[i][1]]


def test_the_python_api_and_raw_goals_go_through_the_joint_limits(sim):
    """set_goals, set_goals_raw, goto/follow: every path is limited in the driver."""
    with make(sim) as drv:
        wait_for(lambda: all(m.position_rad is not None for m in drv.snapshot()))
        drv.set_torque(True)
        sim.inject("goals")
        assert drv.set_goals({"left_antenna": 5.0, "right_antenna": 0.1}) == [("left_antenna", 5.0, 3.05)]
        s1 = MAP.by_name["stewart_1"]
        assert drv.set_goals_raw({s1.id: 4000}) == [(s1.id, 4000, 2958)]
        (name, requested, applied), = drv.goto({"body_rotation": -9.0}, 0.3)
        assert (name, applied) == ("body_rotation", -2.793) and requested == pytest.approx(-9.0, abs=0.01)
        with pytest.raises(ValueError, match=r"goal for stewart_1 \(1e\+12 rad\) is out of any servo's range"):
            drv.set_goals({"stewart_1": 1e12})
        with pytest.raises(ValueError, match="out of any servo's range"):
            drv.set_goals_raw({s1.id: 2 ** 40})
        wait_for(lambda: by_name(drv, "body_rotation").goal_rad == pytest.approx(-2.793, abs=0.002), timeout=5)
        assert drv.stats()["goals_clamped"] == 3 and by_name(drv, "left_antenna").limit_clamps == 1
        lims, policy = drv.limits()
        assert policy == "clamp" and (s1.id, 1502, 2958) == lims[1][:3]
    goals = sim.inject("goals")["goals"]
    assert len(goals) > 10 and _beyond(goals) == []


def test_the_reject_policy_refuses_python_goals_naming_the_joint(sim):
    with make(sim, limit_policy="reject") as drv:
        wait_for(lambda: all(m.position_rad is not None for m in drv.snapshot()))
        sim.inject("goals")
        with pytest.raises(ValueError, match=r"^stewart_2: goal beyond its joint limits \[-1.396, 1.222\] rad"):
            drv.set_goals({"stewart_1": 0.1, "stewart_2": 1.3})
        with pytest.raises(ValueError, match=r"^waypoint 1: left_antenna: goal beyond"):
            drv.follow([(0.1, {"left_antenna": 0.0}), (0.2, {"left_antenna": 3.1})])
        assert drv.stats()["limit_refusals"] == 2
        time.sleep(0.2)
    assert sim.inject("goals")["goals"] == []
    with pytest.raises(ValueError, match="limit_policy must be 'clamp' or 'reject'"):
        make(sim, limit_policy="maybe")


def test_servo_eeprom_limits_are_read_at_connect(sim):
    sim.inject("position_limits", id=12, min=1000, max=3000)
    with make(sim) as drv:
        wait_for(lambda: by_name(drv, "stewart_2").eeprom_limits_raw is not None)
        assert by_name(drv, "stewart_2").eeprom_limits_raw == (1000, 3000)
        assert by_name(drv, "stewart_1").eeprom_limits_raw == (0, 4095)


def test_sample_history_gives_every_sample_to_a_late_reader(sim):
    """samples_after: a reader that wakes every 300 ms still gets every
    sample, once, in order, each with its own stamp and the positions of
    its time (a goal in between shows up part way through)."""
    with make(sim) as drv:
        first = wait_for(lambda: (got := drv.wait_sample(0, 1.0)) and got[0], timeout=10)
        drv.set_torque(True)
        seen = [first]
        stamps, positions = [], []
        for i in range(6):
            if i == 2:
                drv.set_goals({"right_antenna": -0.6})
            time.sleep(0.3)
            got = drv.samples_after(seen[-1])
            assert got, "no sample in 300 ms"
            seen += [s for s, _, _ in got]
            stamps += [t for _, t, _ in got]
            positions += [dict(p)["right_antenna"] for _, _, p in got]
        assert seen == list(range(first, first + len(seen))), "a sample missing or given twice"
        assert len(seen) > 100 and all(b > a for a, b in zip(stamps, stamps[1:]))
        assert abs(positions[0]) < 0.05 and abs(positions[-1] + 0.6) < 0.02, (positions[0], positions[-1])
        assert any(-0.55 < p < -0.05 for p in positions), "the move is in the samples, not only its end"
        assert drv.samples_after(seen[-1] + 10**6) == []
