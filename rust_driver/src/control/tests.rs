//! The control loop on the simulated XL330 bus (no pty, no serial port).
//! Timing assertions are lower bounds or generous deadlines: these tests
//! must pass on a loaded two-core machine.

use super::*;
use crate::protocol::inst;
use crate::registers::xl330;
use crate::transport::sim::SimBus;

const LONG: Duration = Duration::from_secs(10);

fn cfg(ids: &[u8]) -> LoopConfig {
    LoopConfig {
        port: "sim".into(),
        baudrate: 1_000_000,
        ids: ids.to_vec(),
        loop_rate_hz: 100.0,
        status_rate_hz: 0.5,
        io_timeout: Duration::from_millis(3),
        absent_after: 3,
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(80),
        command_timeout: Duration::ZERO,
        timeout_action: TimeoutAction::Hold,
        realtime_priority: 0,
        lock_memory: false,
        limits: vec![],
        limit_policy: LimitPolicy::Clamp,
    }
}

fn start(sim: &SimBus, cfg: LoopConfig) -> Controller<SimBus> {
    let c = Controller::with_connector(cfg, sim.clone()).expect("valid config");
    assert_eq!(c.start().expect("sim opens"), Vec::<u8>::new());
    c
}

/// Polls `cond` until it holds or `LONG` has passed.
fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + LONG;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}

fn motor<C: Connector>(c: &Controller<C>, id: u8) -> MotorState {
    c.snapshot().into_iter().find(|m| m.id == id).expect("configured id")
}

/// Waits for `n` more samples (completed position reads).
fn samples<C: Connector>(c: &Controller<C>, n: u64) {
    let (mut seq, _) = c.latest_sample();
    for _ in 0..n {
        seq = c.wait_sample(seq, LONG).expect("the loop keeps sampling").0;
    }
}

fn events_of(all: &[Event], kind: EventKind) -> Vec<Event> {
    all.iter().filter(|e| e.kind == kind).cloned().collect()
}

#[test]
fn cycle_reads_the_status_block_and_writes_goals() {
    let sim = SimBus::new(&[11, 12]);
    sim.set(12, xl330::PRESENT_POSITION, -1234);
    sim.set(12, xl330::PRESENT_CURRENT, -7);
    let c = start(&sim, cfg(&[11, 12]));
    samples(&c, 2);
    let m = motor(&c, 12);
    assert!(m.responding);
    assert_eq!(m.model, Some(xl330::MODEL_XL330_M288));
    assert_eq!((m.position, m.current, m.voltage, m.temperature), (Some(-1234), Some(-7), Some(50), Some(30)));
    assert_eq!((m.torque_enabled, m.hardware_error), (Some(false), 0));
    assert_eq!(c.set_torque(&[11, 12], true).unwrap(), vec![(11, None), (12, None)]);
    assert_eq!(sim.get(12, xl330::GOAL_POSITION), -1234, "torque on holds the present position");
    c.set_goals(&[(11, 2048), (12, -5)]).unwrap();
    assert!(wait_until(|| motor(&c, 11).position == Some(2048) && motor(&c, 12).position == Some(-5)));
    assert_eq!(sim.get(11, xl330::GOAL_POSITION), 2048);
    assert_eq!(motor(&c, 11).goal, Some(2048));
    assert!(c.set_goals(&[(99, 0)]).is_err());
    c.stop();
}

#[test]
fn watchdog_hold_sets_goal_to_present_position() {
    let sim = SimBus::new(&[11]);
    sim.servo(11, |s| s.step = 5);
    let mut cf = cfg(&[11]);
    cf.command_timeout = Duration::from_millis(300);
    let c = start(&sim, cf);
    samples(&c, 1);
    c.set_torque(&[11], true).unwrap();
    assert_eq!(sim.get(11, xl330::GOAL_POSITION), 0);
    c.set_goals(&[(11, 100_000)]).unwrap();
    // The motor heads for 100000 at 5 ticks per read; no more goals: after
    // command_timeout the goal becomes the position it has reached.
    let moved_then_held = || {
        let g = sim.get(11, xl330::GOAL_POSITION);
        g != 0 && g != 100_000
    };
    assert!(wait_until(moved_then_held), "watchdog never held");
    let held = sim.get(11, xl330::GOAL_POSITION);
    assert!(held > 0 && held < 100_000, "held at {held}");
    samples(&c, 5);
    assert_eq!(sim.get(11, xl330::PRESENT_POSITION), held, "motion stopped where the motor was");
    assert_eq!(motor(&c, 11).goal, Some(held));
    assert_eq!(motor(&c, 11).position, Some(held));
    assert!(sim.get(11, xl330::TORQUE_ENABLE), "hold keeps torque on");
    let ev = events_of(&c.drain_events(), EventKind::CommandTimeout);
    assert_eq!(ev.len(), 1, "once per silence");
    assert!(ev[0].message.contains("holding present positions"), "{}", ev[0].message);
    c.stop();
}

#[test]
fn watchdog_torque_off_disables_every_motor() {
    let sim = SimBus::new(&[11, 12]);
    let mut cf = cfg(&[11, 12]);
    cf.command_timeout = Duration::from_millis(100);
    cf.timeout_action = TimeoutAction::TorqueOff;
    let c = start(&sim, cf);
    samples(&c, 1);
    c.set_torque(&[], true).unwrap();
    assert!(sim.get(11, xl330::TORQUE_ENABLE) && sim.get(12, xl330::TORQUE_ENABLE));
    c.set_goals(&[(11, 10), (12, 20)]).unwrap();
    assert!(wait_until(|| !sim.get(11, xl330::TORQUE_ENABLE) && !sim.get(12, xl330::TORQUE_ENABLE)));
    assert_eq!(motor(&c, 11).torque_enabled, Some(false));
    assert_eq!(motor(&c, 12).torque_enabled, Some(false));
    let ev = events_of(&c.drain_events(), EventKind::CommandTimeout);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].message.contains("turning torque off"), "{}", ev[0].message);
    // A new goal re-arms the watchdog.
    c.set_torque(&[], true).unwrap();
    c.set_goals(&[(11, 30)]).unwrap();
    assert!(wait_until(|| !sim.get(11, xl330::TORQUE_ENABLE)));
    assert_eq!(events_of(&c.drain_events(), EventKind::CommandTimeout).len(), 1);
    c.stop();
}

#[test]
fn reconnects_with_backoff_after_the_link_fails() {
    let sim = SimBus::new(&[11, 12]);
    let c = start(&sim, cfg(&[11, 12]));
    samples(&c, 1);
    sim.fail_opens(3);
    sim.unplug();
    assert!(wait_until(|| c.stats().reconnects == 1 && c.stats().connected), "never reconnected");
    let st = c.stats();
    assert_eq!(st.disconnects, 1);
    // start + 3 failed opens + the one that worked
    let opens = sim.open_attempts();
    assert_eq!(opens.len(), 5);
    // Backoff: reconnect_min, then doubling up to reconnect_max (lower bounds only).
    let gap = |i: usize| opens[i + 1].duration_since(opens[i]);
    let ms = Duration::from_millis;
    assert!(gap(1) >= ms(20), "{:?}", gap(1));
    assert!(gap(2) >= ms(40), "{:?}", gap(2));
    assert!(gap(3) >= ms(80), "{:?}", gap(3));
    let ev = c.drain_events();
    assert_eq!(events_of(&ev, EventKind::Disconnected).len(), 1);
    assert!(ev.iter().any(|e| e.kind == EventKind::Info && e.message.starts_with("reconnected to sim")));
    // Working again: samples flow and commands are served.
    samples(&c, 3);
    assert_eq!(c.ping(12).unwrap(), (xl330::MODEL_XL330_M288, 52));
    assert!(c.stats().connected);
    c.stop();
}

#[test]
fn silent_motor_is_dropped_then_pinged_and_readmitted() {
    let sim = SimBus::new(&[11, 12, 13]);
    let mut cf = cfg(&[11, 12, 13]);
    cf.status_rate_hz = 5.0;
    let c = start(&sim, cf);
    samples(&c, 1);
    sim.set_silent(12, true);
    assert!(wait_until(|| !motor(&c, 12).responding), "never dropped");
    let m = motor(&c, 12);
    assert!(m.consecutive_failures >= 3 && m.timeouts >= 3);
    let lost = events_of(&c.drain_events(), EventKind::MotorLost);
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].motor_id, Some(12));
    let mark = sim.log().len();
    // Left out of sync reads, pinged at the status rate.
    assert!(wait_until(|| sim.log()[mark..].iter().any(|r| r.instruction == inst::PING && r.id == 12)));
    samples(&c, 3);
    let after: Vec<_> = sim.log()[mark..].iter().filter(|r| r.instruction == inst::SYNC_READ).cloned().collect();
    assert!(!after.is_empty());
    assert!(after.iter().all(|r| r.sync_read_ids() == vec![11, 13]), "{after:?}");
    assert!(motor(&c, 11).responding && motor(&c, 13).responding);
    assert_eq!(motor(&c, 13).comm_errors, 0, "the motor after a silent one is not blamed");
    // It answers again: re-admitted.
    sim.set_silent(12, false);
    assert!(wait_until(|| motor(&c, 12).responding), "never re-admitted");
    assert!(c.drain_events().iter().any(|e| e.motor_id == Some(12) && e.message.contains("answers again")));
    let mark = sim.log().len();
    samples(&c, 2);
    assert!(sim.log()[mark..].iter().any(|r| r.instruction == inst::SYNC_READ && r.sync_read_ids() == vec![11, 12, 13]));
    assert_eq!(motor(&c, 12).consecutive_failures, 0);
    c.stop();
}

#[test]
fn alert_bit_triggers_a_hardware_error_status_read() {
    let sim = SimBus::new(&[11, 12]);
    let mut cf = cfg(&[11, 12]);
    cf.status_rate_hz = 0.05; // the status block (which has the flags) only at start
    let c = start(&sim, cf);
    samples(&c, 2);
    let hw = xl330::HARDWARE_ERROR_STATUS;
    let reads_of_hw = |id: u8| {
        sim.log().iter().filter(|r| r.instruction == inst::READ && r.id == id && r.address() == Some(hw.address)).count()
    };
    sim.set(12, hw, 0x20); // overload latched: status packets carry the alert bit
    assert!(wait_until(|| motor(&c, 12).hardware_error == 0x20), "hardware error never read");
    assert!(motor(&c, 12).alert);
    assert_eq!(reads_of_hw(12), 1);
    samples(&c, 3);
    assert_eq!(reads_of_hw(12), 1, "read once, not every cycle");
    assert_eq!(reads_of_hw(11), 0);
    let ev = events_of(&c.drain_events(), EventKind::HardwareError);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].motor_id, Some(12));
    assert!(ev[0].message.contains("overload"), "{}", ev[0].message);
    assert_eq!(motor(&c, 12).last_error.as_deref(), Some("hardware error: overload"));
    // A reboot clears it; the next reads see no alert.
    c.reboot(12).unwrap();
    assert!(wait_until(|| motor(&c, 12).hardware_error == 0 && !motor(&c, 12).alert));
    c.stop();
}

#[test]
fn late_reply_is_counted_as_stray_not_misread() {
    let sim = SimBus::new(&[11, 12]);
    let c = start(&sim, cfg(&[11, 12]));
    samples(&c, 1);
    sim.set(11, xl330::PRESENT_TEMPERATURE, 77);
    sim.set(11, xl330::LED, false);
    // Only replies to a plain read are held back (not the loop's sync reads).
    sim.delay_next_reply_to(11, inst::READ);
    let t = xl330::PRESENT_TEMPERATURE;
    assert!(matches!(c.read(11, t.address, t.length), Err(DxlError::Timeout { id: 11, .. })));
    // Same id, same length: a misread would return the late 77.
    let led = xl330::LED;
    assert_eq!(c.read(11, led.address, led.length).unwrap(), vec![0]);
    assert!(wait_until(|| c.stats().stray_replies >= 1));
    assert_eq!(c.read(11, t.address, t.length).unwrap(), vec![77]);
    samples(&c, 3);
    let st = c.stats();
    assert_eq!(st.stray_replies, 1);
    assert_eq!(st.crc_errors, 0);
    assert!(motor(&c, 11).responding && motor(&c, 12).responding);
    c.stop();
}

#[test]
fn commands_are_served_when_the_bus_cannot_keep_the_loop_rate() {
    let sim = SimBus::new(&[11, 12, 13]);
    sim.set_write_delay(Duration::from_millis(3)); // every transaction >= 3 ms
    let mut cf = cfg(&[11, 12, 13]);
    cf.loop_rate_hz = 1000.0; // 1 ms period: always behind
    let c = start(&sim, cf);
    samples(&c, 2);
    for rate in [1000.0, 0.0] {
        let mut live = c.live_config();
        live.loop_rate_hz = rate; // 0: as fast as the bus allows
        c.configure(live).unwrap();
        samples(&c, 2);
        let cycles = c.stats().cycles;
        let t0 = Instant::now();
        let r = c.set_torque(&[12], rate > 0.0);
        assert_eq!(r.unwrap(), vec![(12, None)], "starved at loop rate {rate}");
        // Generous: a cycle is ~10 ms here; the old loop never answered (3 s timeout).
        assert!(t0.elapsed() < Duration::from_millis(1500), "{:?} at {rate} Hz", t0.elapsed());
        assert_eq!(sim.get(12, xl330::TORQUE_ENABLE), rate > 0.0);
        assert_eq!(c.ping(13).unwrap().0, xl330::MODEL_XL330_M288);
        samples(&c, 2);
        assert!(c.stats().cycles > cycles, "the loop kept cycling");
    }
    c.stop();
}

#[test]
fn consecutive_sample_waits_at_100_hz_advance_by_one() {
    let sim = SimBus::new(&[11]);
    let mut cf = cfg(&[11]);
    cf.loop_rate_hz = 100.0;
    let c = start(&sim, cf);
    let (mut seq, mut stamp) = c.wait_sample(0, LONG).expect("first sample");
    assert!(seq >= 1 && stamp > 0.0);
    let n = 50;
    let mut exact = 0;
    for _ in 0..n {
        let (s, st) = c.wait_sample(seq, LONG).expect("next sample");
        assert!(s > seq, "a wait never returns an old sample");
        assert!(st >= stamp);
        if s == seq + 1 {
            exact += 1;
        }
        (seq, stamp) = (s, st);
    }
    // The consumer does nothing else, so it keeps up: +1 each time. A few
    // misses are tolerated only for scheduler stalls of a loaded machine.
    assert!(exact >= n - 3, "only {exact} of {n} waits saw the next sample");
    assert_eq!(c.wait_sample(u64::MAX - 1, Duration::from_millis(30)), None);
    assert!(c.stats().sample_seq >= seq);
    c.stop();
    let (last, _) = c.latest_sample();
    assert_eq!(c.wait_sample(last, Duration::from_millis(30)), None, "stopped: no new samples");
}

#[test]
fn a_goal_is_written_at_once_not_at_the_next_cycle() {
    // 2 Hz: the next cycle is up to 500 ms away; the goal must not wait for it.
    let sim = SimBus::new(&[11, 12]);
    let c = start(&sim, LoopConfig { loop_rate_hz: 2.0, ..cfg(&[11, 12]) });
    samples(&c, 1);
    let mut immediate = 0;
    for k in 0..5 {
        std::thread::sleep(Duration::from_millis(37)); // somewhere between cycles
        let t = Instant::now();
        c.set_goals(&[(11, 100 + k)]).unwrap();
        assert!(wait_until(|| sim.get(11, xl330::GOAL_POSITION) == 100 + k), "goal {k} never written");
        if t.elapsed() < Duration::from_millis(200) {
            immediate += 1;
        }
    }
    // Lower bound only (a loaded machine may delay a wake-up), yet a 2 Hz
    // cycle could not have written more than one or two of them this fast.
    assert!(immediate >= 4, "only {immediate} of 5 goals went out before the next cycle");
    assert!(c.stats().goals_immediate >= 4);
    c.stop();
}

#[test]
fn goals_faster_than_the_bus_are_merged_latest_wins() {
    let sim = SimBus::new(&[11]);
    let c = start(&sim, LoopConfig { loop_rate_hz: 1.0, ..cfg(&[11]) });
    samples(&c, 1);
    sim.set_write_delay(Duration::from_millis(60)); // the first write holds the bus
    for k in 0..20 {
        c.set_goals(&[(11, 1000 + k)]).unwrap();
    }
    assert!(wait_until(|| sim.get(11, xl330::GOAL_POSITION) == 1019), "the latest goal wins");
    assert!(c.stats().goals_merged >= 1, "merged goals are counted");
    c.stop();
}

#[test]
fn a_trajectory_is_interpolated_in_the_loop_and_a_new_one_preempts_it() {
    use super::trajectory::{Interpolation, Trajectory, Waypoint};
    let sim = SimBus::new(&[11, 12]);
    let c = start(&sim, cfg(&[11, 12]));
    samples(&c, 2);
    c.set_goals(&[(11, 0), (12, 0)]).unwrap();
    assert!(wait_until(|| sim.get(11, xl330::GOAL_POSITION) == 0));
    let plan = Trajectory {
        points: vec![Waypoint { at: Duration::from_millis(800), goals: vec![(11, 2000), (12, -1000)] }],
        interpolation: Interpolation::MinJerk,
    };
    let t0 = Instant::now();
    c.set_trajectory(plan).unwrap();
    let expected = |t: f64, end: f64| end * Interpolation::MinJerk.shape(t / 0.8);
    let mut checked = 0;
    while t0.elapsed() < Duration::from_millis(750) {
        let t = t0.elapsed().as_secs_f64();
        let g = sim.get(11, xl330::GOAL_POSITION) as f64;
        // The goal follows the curve: between where it was a little earlier
        // (a late cycle on a loaded machine) and where it will be.
        let (lo, hi) = (expected((t - 0.15).max(0.0), 2000.0) - 2.0, expected(t + 0.02, 2000.0) + 2.0);
        assert!(lo <= g && g <= hi, "at {t:.3} s goal {g} not in [{lo:.0}, {hi:.0}]");
        checked += 1;
        std::thread::sleep(Duration::from_millis(23));
    }
    assert!(checked >= 10);
    assert!(wait_until(|| sim.get(11, xl330::GOAL_POSITION) == 2000 && sim.get(12, xl330::GOAL_POSITION) == -1000));
    assert!(wait_until(|| c.stats().trajectories_done == 1));
    // preemption: a long trajectory, then a new one; the first never finishes
    let slow = |to: i32| Trajectory {
        points: vec![Waypoint { at: Duration::from_secs(5), goals: vec![(11, to)] }],
        interpolation: Interpolation::Linear,
    };
    c.set_trajectory(slow(100_000)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    c.set_trajectory(Trajectory {
        points: vec![Waypoint { at: Duration::from_millis(200), goals: vec![(11, 1500)] }],
        interpolation: Interpolation::Linear,
    })
    .unwrap();
    assert!(wait_until(|| sim.get(11, xl330::GOAL_POSITION) == 1500));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sim.get(11, xl330::GOAL_POSITION), 1500, "the preempted trajectory does not come back");
    assert!(c.set_trajectory(slow(0)).is_ok() && c.trajectory_active());
    c.set_goals(&[(11, 7)]).unwrap();
    assert!(!c.trajectory_active(), "a streamed goal preempts a trajectory too");
    c.stop();
}

#[test]
fn torque_off_ends_a_trajectory_so_torque_on_does_not_jump() {
    use super::trajectory::{Interpolation, Trajectory, Waypoint};
    let sim = SimBus::new(&[11]);
    let c = start(&sim, cfg(&[11]));
    samples(&c, 2);
    assert_eq!(c.set_torque(&[11], true).unwrap(), vec![(11, None)]);
    c.set_trajectory(Trajectory {
        points: vec![Waypoint { at: Duration::from_secs(3), goals: vec![(11, 30_000)] }],
        interpolation: Interpolation::Linear,
    })
    .unwrap();
    assert!(wait_until(|| sim.get(11, xl330::GOAL_POSITION) > 500), "the trajectory runs");
    c.set_torque(&[11], false).unwrap();
    assert!(!c.trajectory_active(), "torque off ends the trajectory");
    std::thread::sleep(Duration::from_millis(100));
    c.set_torque(&[11], true).unwrap();
    let held = sim.get(11, xl330::GOAL_POSITION);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sim.get(11, xl330::GOAL_POSITION), held, "torque on holds where it is: no jump to the trajectory");
    c.stop();
}

#[test]
fn a_watchdog_trip_after_an_outage_ends_the_trajectory() {
    use super::trajectory::{Interpolation, Trajectory, Waypoint};
    let sim = SimBus::new(&[11]);
    let c = start(&sim, LoopConfig { command_timeout: Duration::from_millis(150), ..cfg(&[11]) });
    samples(&c, 2);
    assert_eq!(c.set_torque(&[11], true).unwrap(), vec![(11, None)]);
    c.set_trajectory(Trajectory {
        points: vec![Waypoint { at: Duration::from_secs(20), goals: vec![(11, 200_000)] }],
        interpolation: Interpolation::Linear,
    })
    .unwrap();
    assert!(wait_until(|| sim.get(11, xl330::GOAL_POSITION) > 300));
    // An outage longer than the command timeout: nothing feeds the watchdog.
    sim.fail_opens(12);
    sim.unplug();
    assert!(wait_until(|| c.stats().reconnects >= 1), "reconnects after the outage");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!c.trajectory_active(), "the watchdog's hold ends the trajectory (it would run for 20 s)");
    let held = sim.get(11, xl330::GOAL_POSITION);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sim.get(11, xl330::GOAL_POSITION), held, "the hold is not undone by the stale trajectory");
    c.stop();
}

/// Holds the loop inside the next `instruction` at `address`, sends goal
/// `raw` to motor 11 meanwhile (after `during`, still inside it), lets the
/// transaction go on and returns the transactions from the held one on, once
/// the goal and two more transactions are on the wire.
fn goal_during<C: Connector>(
    sim: &SimBus,
    c: &Controller<C>,
    instruction: u8,
    address: u16,
    raw: i32,
    during: impl FnOnce(),
) -> Vec<crate::transport::sim::Received> {
    let (reached, release) = sim.hold_next(instruction, address);
    reached.recv_timeout(LONG).expect("the loop reaches the held transaction");
    let mark = sim.log().len(); // the held transaction is logged once released
    during();
    c.set_goals(&[(11, raw)]).unwrap();
    release.send(()).expect("the held transaction is waiting");
    assert!(wait_until(|| sim.get(11, xl330::GOAL_POSITION) == raw), "goal {raw} never written");
    assert!(wait_until(|| sim.log().len() >= mark + 3), "the cycle goes on");
    sim.log()[mark..].to_vec()
}

fn is_goal_write(r: &crate::transport::sim::Received, raw: i32) -> bool {
    let g = xl330::GOAL_POSITION;
    // params: address (2), length (2), then id + 4 data bytes per motor
    r.instruction == inst::SYNC_WRITE
        && r.address() == Some(g.address)
        && r.params.len() == 9
        && r.params[4] == 11
        && r.params[5..9] == raw.to_le_bytes()
}

#[test]
fn a_goal_sent_during_the_status_reads_is_written_before_the_next_transaction() {
    // A status cycle has several transactions (status block, flag block,
    // pings of absent motors): a goal waits for the one in progress only.
    let sim = SimBus::new(&[11, 12]);
    let c = start(&sim, LoopConfig { status_rate_hz: 4.0, ..cfg(&[11, 12]) });
    samples(&c, 1);
    let immediate = c.stats().goals_immediate;
    let (st, fl) = (xl330::STATUS_BLOCK, xl330::FLAG_BLOCK);
    let log = goal_during(&sim, &c, inst::SYNC_READ, st.address, 4321, || {});
    assert!(log.len() >= 3, "{log:?}");
    assert_eq!((log[0].instruction, log[0].address()), (inst::SYNC_READ, Some(st.address)), "{log:?}");
    assert!(is_goal_write(&log[1], 4321), "the goal goes out right after the status block read: {log:?}");
    assert_eq!((log[2].instruction, log[2].address()), (inst::SYNC_READ, Some(fl.address)), "{log:?}");
    assert!(c.stats().goals_immediate > immediate, "counted as written at once");
    // The same inside the flag read: before the pings of an absent motor.
    sim.set_silent(12, true);
    assert!(wait_until(|| !motor(&c, 12).responding), "motor 12 left out");
    let log = goal_during(&sim, &c, inst::SYNC_READ, fl.address, 4322, || {});
    assert_eq!((log[0].instruction, log[0].address()), (inst::SYNC_READ, Some(fl.address)), "{log:?}");
    assert!(is_goal_write(&log[1], 4322), "the goal goes out before the ping: {log:?}");
    assert!(log[2..].iter().any(|r| r.instruction == inst::PING && r.id == 12), "{log:?}");
    sim.set_silent(12, false);
    assert!(wait_until(|| motor(&c, 12).responding));
    c.stop();
}

#[test]
fn a_goal_sent_during_the_position_read_goes_out_before_the_alert_read() {
    let sim = SimBus::new(&[11, 12]);
    let c = start(&sim, LoopConfig { status_rate_hz: 0.05, ..cfg(&[11, 12]) });
    samples(&c, 2);
    let hw = xl330::HARDWARE_ERROR_STATUS;
    // The held position read answers with the alert bit of motor 12: the
    // same cycle then reads its hardware error, after the goal.
    let log = goal_during(&sim, &c, inst::SYNC_READ, xl330::POSITION_BLOCK.address, 555, || sim.set(12, hw, 0x20));
    assert_eq!(log[0].address(), Some(xl330::POSITION_BLOCK.address), "{log:?}");
    assert!(is_goal_write(&log[1], 555), "the goal goes out right after the position read: {log:?}");
    assert!(wait_until(|| motor(&c, 12).hardware_error == 0x20));
    let log = sim.log();
    let read = log.iter().position(|r| r.instruction == inst::READ && r.id == 12 && r.address() == Some(hw.address));
    let goal = log.iter().position(|r| is_goal_write(r, 555));
    assert!(matches!((goal, read), (Some(g), Some(r)) if g < r), "{log:?}");
    c.stop();
}

#[test]
fn goals_streamed_faster_than_the_bus_starve_neither_reads_nor_commands() {
    // Goals written between transactions are at most one sync write after
    // each: the cycle's reads and the queued commands still get their turn.
    let sim = SimBus::new(&[11, 12]);
    sim.set_write_delay(Duration::from_millis(2)); // every transaction >= 2 ms
    let c = Arc::new(start(&sim, LoopConfig { loop_rate_hz: 1000.0, status_rate_hz: 20.0, ..cfg(&[11, 12]) }));
    samples(&c, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let streamer = {
        let (c, stop) = (c.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                c.set_goals(&[(11, k)]).expect("valid goal");
                std::thread::sleep(Duration::from_micros(200));
            }
            k
        })
    };
    // Reads go on: a cycle is a few transactions of >= 2 ms here, ~80 in a
    // second; a queue drain that served every goal wake ran 1-8.
    let (cycles, t0) = (c.stats().cycles, Instant::now());
    std::thread::sleep(Duration::from_millis(1000));
    let ran = c.stats().cycles - cycles;
    assert!(ran >= 25, "only {ran} cycles in {:?} while goals streamed", t0.elapsed());
    let t0 = Instant::now();
    assert_eq!(c.set_torque(&[12], true).unwrap(), vec![(12, None)]);
    assert!(t0.elapsed() < Duration::from_millis(1500), "torque waited {:?}", t0.elapsed());
    assert_eq!(c.ping(12).unwrap().0, xl330::MODEL_XL330_M288);
    samples(&c, 3);
    stop.store(true, Ordering::Relaxed);
    let last = streamer.join().expect("streamer");
    assert!(wait_until(|| sim.get(11, xl330::GOAL_POSITION) == last), "the latest goal wins");
    let st = c.stats();
    assert!(st.goals_merged > 0 && st.goals_immediate > 0, "merged {} immediate {}", st.goals_merged, st.goals_immediate);
    c.stop();
}

/// Every goal position sync-written so far, as (id, raw), in order.
fn written_goals(sim: &SimBus) -> Vec<(u8, i32)> {
    let mut out = vec![];
    for r in sim.log() {
        if r.instruction != inst::SYNC_WRITE || r.address() != Some(xl330::GOAL_POSITION.address) {
            continue;
        }
        // params: address (2), length (2), then (id, 4 bytes) per motor
        for e in r.params[4..].chunks(5) {
            if e.len() == 5 {
                out.push((e[0], i32::from_le_bytes([e[1], e[2], e[3], e[4]])));
            }
        }
    }
    out
}

fn limited(ids: &[u8], min: i32, max: i32, max_velocity: f64, policy: LimitPolicy) -> LoopConfig {
    let mut cf = cfg(ids);
    cf.limits = ids.iter().map(|&id| JointLimit { id, min, max, max_velocity }).collect();
    cf.limit_policy = policy;
    cf
}

#[test]
fn no_goal_beyond_the_joint_limits_reaches_the_bus_on_any_path() {
    use super::trajectory::{Interpolation, Trajectory, Waypoint};
    let sim = SimBus::new(&[11, 12]);
    sim.set(11, xl330::PRESENT_POSITION, 1000);
    sim.set(12, xl330::PRESENT_POSITION, 1000);
    let c = start(&sim, limited(&[11, 12], 500, 1500, 0.0, LimitPolicy::Clamp));
    samples(&c, 2);
    // streamed goals: clamped, and the caller is told
    assert_eq!(c.set_goals(&[(11, 5000), (12, -3)]).unwrap(), vec![(11, 5000, 1500), (12, -3, 500)]);
    assert!(wait_until(|| sim.get(11, xl330::GOAL_POSITION) == 1500 && sim.get(12, xl330::GOAL_POSITION) == 500));
    // a trajectory: every waypoint clamped (largest clamp per motor returned)
    let plan = Trajectory {
        points: vec![
            Waypoint { at: Duration::from_millis(100), goals: vec![(11, 9000), (12, 700)] },
            Waypoint { at: Duration::from_millis(200), goals: vec![(11, -9000), (12, 800)] },
        ],
        interpolation: Interpolation::Linear,
    };
    assert_eq!(c.set_trajectory(plan).unwrap(), vec![(11, -9000, 500)]);
    assert!(wait_until(|| c.stats().trajectories_done == 1));
    let st = c.stats();
    assert_eq!((st.goals_clamped, st.limit_refusals), (4, 0));
    assert_eq!(motor(&c, 11).limit_clamps, 3);
    c.stop();
    let goals = written_goals(&sim);
    assert!(goals.len() > 5, "{goals:?}");
    assert!(goals.iter().all(|&(_, v)| (500..=1500).contains(&v)), "{goals:?}");
}

#[test]
fn the_reject_policy_refuses_the_whole_command_naming_the_motor() {
    use super::trajectory::{Interpolation, Trajectory, Waypoint};
    let sim = SimBus::new(&[11, 12]);
    sim.set(11, xl330::PRESENT_POSITION, 1000);
    let c = start(&sim, limited(&[11, 12], 500, 1500, 0.0, LimitPolicy::Reject));
    samples(&c, 2);
    let e = c.set_goals(&[(11, 1200), (12, 1600)]).unwrap_err();
    assert_eq!(e.motor_id(), Some(12));
    assert!(e.to_string().contains("[500, 1500]"), "{e}");
    let plan = Trajectory {
        points: vec![
            Waypoint { at: Duration::from_millis(100), goals: vec![(11, 1000)] },
            Waypoint { at: Duration::from_millis(200), goals: vec![(11, 1501)] },
        ],
        interpolation: Interpolation::Linear,
    };
    let e = c.set_trajectory(plan).unwrap_err();
    assert!(e.to_string().starts_with("waypoint 1: motor 11"), "{e}");
    assert_eq!(c.stats().limit_refusals, 2);
    samples(&c, 3);
    c.stop();
    assert!(written_goals(&sim).is_empty(), "nothing of a refused command is written");
}

#[test]
fn far_goals_are_reached_at_the_maximum_velocity() {
    let sim = SimBus::new(&[11]);
    sim.servo(11, |s| s.step = 100_000); // the simulated servo follows its goal at once
    // 2000 ticks/s at 100 Hz: at most 20 ticks per cycle
    let c = start(&sim, limited(&[11], -10_000, 10_000, 2000.0, LimitPolicy::Clamp));
    samples(&c, 1);
    c.set_torque(&[11], true).unwrap();
    let t0 = Instant::now();
    c.set_goals(&[(11, 1000)]).unwrap();
    assert!(wait_until(|| sim.get(11, xl330::GOAL_POSITION) == 1000));
    let took = t0.elapsed();
    c.stop();
    // 1000 ticks at 2000 ticks/s: 0.5 s at least (a loaded machine only makes it slower)
    assert!(took >= Duration::from_millis(450), "reached in {took:?}");
    let goals: Vec<i32> = written_goals(&sim).into_iter().map(|g| g.1).collect();
    assert!(goals.len() >= 40, "{goals:?}");
    for w in goals.windows(2) {
        assert!((w[1] - w[0]).abs() <= 20, "a step of {} ticks: {goals:?}", w[1] - w[0]);
    }
}

#[test]
fn the_watchdog_hold_brings_a_motor_beyond_its_range_back_slowly() {
    let sim = SimBus::new(&[11]);
    sim.servo(11, |s| s.step = 100_000);
    sim.set(11, xl330::PRESENT_POSITION, 3000); // moved by hand beyond the range
    let mut cf = limited(&[11], 0, 2000, 2000.0, LimitPolicy::Clamp);
    cf.command_timeout = Duration::from_millis(200);
    let c = start(&sim, cf);
    samples(&c, 1);
    c.set_torque(&[11], true).unwrap();
    c.set_goals(&[(11, 2500)]).unwrap(); // clamped to 2000, approached at 20 ticks per cycle
    assert!(wait_until(|| c.drain_events().iter().any(|e| e.kind == EventKind::CommandTimeout)));
    assert!(wait_until(|| sim.get(11, xl330::GOAL_POSITION) == 2000));
    c.stop();
    let goals: Vec<i32> = written_goals(&sim).into_iter().map(|g| g.1).collect();
    for w in goals.windows(2) {
        // (the hold writes the position last read: up to a cycle or two behind)
        assert!((w[1] - w[0]).abs() <= 60, "a step of {} ticks: {goals:?}", w[1] - w[0]);
    }
}
