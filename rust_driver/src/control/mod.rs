//! The control loop: a background thread that owns the bus, sync-reads
//! positions every cycle, sync-writes pending goals, reads the slow status
//! block at a lower rate, reacts to alert bits, drops and re-admits silent
//! motors, and reopens the port with backoff when it disappears.
//!
//! This module holds the [`Controller`] API, the configuration types and the
//! commands sent to the thread; the thread itself is in [`r#loop`], the
//! goal watchdog in [`watchdog`], statistics in [`stats`] and the event
//! queue in [`events`].

pub mod events;
pub mod limits;
mod r#loop;
pub mod realtime;
pub mod trajectory;
mod writes;
pub mod stats;
pub mod watchdog;

#[cfg(test)]
mod tests;

use crate::error::{DxlError, Result};
use crate::transport::{Connector, SerialConnector};
pub use events::{Event, EventKind};
use events::EventQueue;
pub use limits::{Clamped, Envelope, JointLimit, LimitPolicy};
use r#loop::{ping_all, LoopThread};
pub use stats::LoopStats;
use stats::{SampleClock, Timing};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub use watchdog::TimeoutAction;
use watchdog::Watchdog;

#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub port: String,
    pub baudrate: u32,
    pub ids: Vec<u8>,
    /// Cycles per second; 0 runs as fast as the bus allows.
    pub loop_rate_hz: f64,
    pub status_rate_hz: f64,
    pub io_timeout: Duration,
    /// Consecutive failed cycles before a motor is left out of sync reads.
    pub absent_after: u32,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Zero disables the goal watchdog.
    pub command_timeout: Duration,
    pub timeout_action: TimeoutAction,
    /// SCHED_FIFO priority of the control thread (1..=99); 0 keeps the
    /// normal scheduler. Refusal (no CAP_SYS_NICE / RLIMIT_RTPRIO) is
    /// reported in [`LoopStats::realtime`], never fatal.
    pub realtime_priority: i32,
    /// mlockall(MCL_CURRENT | MCL_FUTURE): no page fault in the loop.
    pub lock_memory: bool,
    /// Joint range and maximum velocity per motor (see [`limits`]).
    pub limits: Vec<JointLimit>,
    pub limit_policy: LimitPolicy,
}

/// The part of the configuration that can change while the loop runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    pub loop_rate_hz: f64,
    pub status_rate_hz: f64,
    pub command_timeout: Duration,
    pub timeout_action: TimeoutAction,
}

impl LoopConfig {
    pub fn live(&self) -> LiveConfig {
        LiveConfig {
            loop_rate_hz: self.loop_rate_hz,
            status_rate_hz: self.status_rate_hz,
            command_timeout: self.command_timeout,
            timeout_action: self.timeout_action,
        }
    }

    fn apply(&mut self, live: &LiveConfig) {
        self.loop_rate_hz = live.loop_rate_hz;
        self.status_rate_hz = live.status_rate_hz;
        self.command_timeout = live.command_timeout;
        self.timeout_action = live.timeout_action;
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DxlError::InvalidArgument(m));
        if !(0..=99).contains(&self.realtime_priority) {
            return bad(format!("realtime_priority must be 0 (off) or 1..99, got {}", self.realtime_priority));
        }
        if self.ids.is_empty() {
            return bad("ids must not be empty".into());
        }
        let mut seen = std::collections::HashSet::new();
        for &id in &self.ids {
            if id > 252 {
                return bad(format!("motor id {id} is out of range 0..252"));
            }
            if !seen.insert(id) {
                return bad(format!("motor id {id} appears twice"));
            }
        }
        if self.baudrate == 0 {
            return bad("baudrate must be > 0".into());
        }
        if !(self.loop_rate_hz >= 0.0 && self.loop_rate_hz <= 5000.0) {
            return bad(format!("loop_rate_hz {} must be within 0..5000", self.loop_rate_hz));
        }
        if !(self.status_rate_hz > 0.0 && self.status_rate_hz <= 1000.0) {
            return bad(format!("status_rate_hz {} must be within (0, 1000]", self.status_rate_hz));
        }
        if self.io_timeout.is_zero() {
            return bad("io_timeout must be > 0".into());
        }
        if let Some(l) = self.limits.iter().find(|l| !self.ids.contains(&l.id)) {
            return bad(format!("joint limits given for motor {}, which is not on this bus", l.id));
        }
        Envelope::new(&self.limits, self.limit_policy).map_err(DxlError::InvalidArgument)?;
        Ok(())
    }
}

/// Latest known state of one motor. Raw units; conversion is the caller's.
#[derive(Debug, Clone, Default)]
pub struct MotorState {
    pub id: u8,
    /// Answering on the bus (not dropped from sync reads).
    pub responding: bool,
    pub model: Option<u16>,
    pub position: Option<i32>,
    pub position_stamp: f64,
    pub current: Option<i16>,
    pub voltage: Option<u16>,
    pub temperature: Option<u8>,
    pub torque_enabled: Option<bool>,
    pub hardware_error: u8,
    pub status_stamp: f64,
    pub alert: bool,
    pub goal: Option<i32>,
    /// The servo's own EEPROM position limits, read at connect.
    pub eeprom_min: Option<i32>,
    pub eeprom_max: Option<i32>,
    /// Goals of this motor clamped into its joint range.
    pub limit_clamps: u64,
    pub comm_errors: u64,
    pub timeouts: u64,
    pub crc_errors: u64,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

/// State shared between the loop thread and the [`Controller`] handle.
#[derive(Default)]
struct Shared {
    motors: Vec<MotorState>,
    /// Goal targets given and not taken by the loop yet (latest wins).
    pending_goals: HashMap<u8, i32>,
    /// Targets being approached at the motors' maximum velocity.
    slewing: HashMap<u8, i32>,
    /// When each motor's goal was last handed to the wire.
    last_write: HashMap<u8, Instant>,
    /// The longest step of the velocity limit: one loop period.
    slew_cap: Duration,
    envelope: Envelope,
    /// A Command::Goals is on its way to the loop (one per batch).
    goals_wake_sent: bool,
    /// Given by set_trajectory, started by the loop at its next turn.
    pending_trajectory: Option<trajectory::Trajectory>,
    trajectory: Option<trajectory::Running>,
    watchdog: Watchdog,
    events: EventQueue,
    stats: LoopStats,
    timing: Timing,
    /// Set by Controller::configure, taken by the loop at its next iteration.
    pending_live: Option<LiveConfig>,
    live: Option<LiveConfig>,
}

impl Shared {
    fn motor(&mut self, id: u8) -> Option<&mut MotorState> {
        self.motors.iter_mut().find(|m| m.id == id)
    }
    fn event(&mut self, kind: EventKind, motor_id: Option<u8>, message: String) {
        if kind.is_error() {
            self.stats.last_error = Some(message.clone());
            self.stats.last_error_stamp = now_unix();
        }
        if self.events.push(Event { stamp: now_unix(), kind, motor_id, message }) {
            self.stats.events_dropped += 1;
        }
    }
    /// Counts the clamps of a command (per motor and in total).
    fn count_clamps(&mut self, clamped: &[Clamped]) {
        for &(id, _, _) in clamped {
            self.stats.goals_clamped += 1;
            if let Some(m) = self.motor(id) {
                m.limit_clamps += 1;
            }
        }
    }
    /// Goals whose write failed or found no bus go back in the queue unless
    /// newer ones arrived; a target still being approached stays where it is.
    fn requeue(&mut self, goals: &[(u8, i32)]) {
        for &(id, v) in goals {
            if !self.slewing.contains_key(&id) {
                self.pending_goals.entry(id).or_insert(v);
            }
        }
    }
}

/// One loop period (10 ms when free-running): the longest time a velocity
/// step may cover.
fn slew_cap(loop_rate_hz: f64) -> Duration {
    if loop_rate_hz > 0.0 { Duration::from_secs_f64(1.0 / loop_rate_hz) } else { Duration::from_millis(10) }
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic in the loop thread must not take every caller down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Replies to commands sent to the loop thread.
#[derive(Debug)]
pub enum Reply {
    Done,
    Ping(u16, u8),
    Data(Vec<u8>),
    /// Per-motor outcome of a multi-motor command.
    PerMotor(Vec<(u8, Option<DxlError>)>),
}

type ReplyTx = Sender<Result<Reply>>;

/// Requests served by the loop thread between cycles.
enum Command {
    /// New goals are pending: write them in the next free bus slot instead
    /// of at the next cycle (sent once per batch; no reply).
    Goals,
    Torque { ids: Vec<u8>, enable: bool, reply: ReplyTx },
    Reboot { id: u8, reply: ReplyTx },
    Ping { id: u8, reply: ReplyTx },
    Read { id: u8, address: u16, length: u16, reply: ReplyTx },
    Write { id: u8, address: u16, data: Vec<u8>, reply: ReplyTx },
}

impl Command {
    fn into_reply(self) -> Option<ReplyTx> {
        match self {
            Command::Goals => None,
            Command::Torque { reply, .. }
            | Command::Reboot { reply, .. }
            | Command::Ping { reply, .. }
            | Command::Read { reply, .. }
            | Command::Write { reply, .. } => Some(reply),
        }
    }
}

/// Handle to a running control loop. `C` opens the link (a serial port by
/// default) at start and again to reconnect.
pub struct Controller<C: Connector = SerialConnector> {
    cfg: LoopConfig,
    connector: Arc<C>,
    shared: Arc<Mutex<Shared>>,
    samples: Arc<SampleClock>,
    tx: Mutex<Option<Sender<Command>>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Controller<SerialConnector> {
    /// A controller on the serial port named in `cfg`.
    pub fn new(cfg: LoopConfig) -> Result<Self> {
        let connector = SerialConnector { port: cfg.port.clone(), baudrate: cfg.baudrate };
        Self::with_connector(cfg, connector)
    }
}

impl<C: Connector> Controller<C> {
    /// A controller whose link is opened by `connector`.
    pub fn with_connector(cfg: LoopConfig, connector: C) -> Result<Self> {
        cfg.validate()?;
        let shared = Shared {
            motors: cfg.ids.iter().map(|&id| MotorState { id, ..Default::default() }).collect(),
            stats: LoopStats { port: cfg.port.clone(), baudrate: cfg.baudrate, ..Default::default() },
            envelope: Envelope::new(&cfg.limits, cfg.limit_policy).map_err(DxlError::InvalidArgument)?,
            slew_cap: slew_cap(cfg.loop_rate_hz),
            ..Default::default()
        };
        Ok(Self {
            cfg,
            connector: Arc::new(connector),
            shared: Arc::new(Mutex::new(shared)),
            samples: Arc::new(SampleClock::default()),
            tx: Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
            thread: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &LoopConfig {
        &self.cfg
    }

    /// The live part of the configuration in force (or about to be).
    pub fn live_config(&self) -> LiveConfig {
        let s = lock(&self.shared);
        s.pending_live.clone().or_else(|| s.live.clone()).unwrap_or_else(|| self.cfg.live())
    }

    /// Changes rates and the goal watchdog of the running loop (or of the
    /// next start). Validated like the start-up configuration.
    pub fn configure(&self, live: LiveConfig) -> Result<()> {
        let mut check = self.cfg.clone();
        check.apply(&live);
        check.validate()?;
        let mut s = lock(&self.shared);
        s.slew_cap = slew_cap(live.loop_rate_hz);
        s.pending_live = Some(live.clone());
        s.live = Some(live);
        Ok(())
    }

    /// Opens the port, pings every motor and starts the loop thread.
    /// Returns the ids that did not answer the ping. Fails if the port
    /// cannot be opened.
    pub fn start(&self) -> Result<Vec<u8>> {
        let mut th = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if th.is_some() {
            return Err(DxlError::InvalidArgument("controller already started".into()));
        }
        let mut bus = r#loop::open_bus(&*self.connector, &self.cfg)?;
        let missing = ping_all(&mut bus, &self.shared, &self.cfg.ids)?;
        {
            let mut s = lock(&self.shared);
            s.stats.connected = true;
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(|i| i.to_string()).collect();
                s.event(EventKind::Missing, None, format!("motors not answering at start: {}", list.join(", ")));
            }
        }
        let (tx, rx) = mpsc::channel();
        lock(&self.shared).goals_wake_sent = false;
        *self.tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        self.stop.store(false, Ordering::SeqCst);
        let mut cfg = self.cfg.clone();
        if let Some(live) = lock(&self.shared).live.clone() {
            cfg.apply(&live);
        }
        let cfg_rt = (cfg.realtime_priority, cfg.lock_memory);
        let lt = LoopThread::new(
            cfg,
            self.connector.clone(),
            self.shared.clone(),
            self.samples.clone(),
            rx,
            self.stop.clone(),
            bus,
        );
        let (prio, lock_mem, shared) = (cfg_rt.0, cfg_rt.1, self.shared.clone());
        let handle = std::thread::Builder::new()
            .name("dxl-control".into())
            .spawn(move || {
                let granted = realtime::apply(prio, lock_mem);
                lock(&shared).stats.realtime = granted;
                lt.run()
            })
            .map_err(|e| DxlError::NotRunning(format!("cannot spawn thread: {e}")))?;
        *th = Some(handle);
        Ok(missing)
    }

    /// Stops the loop thread (idempotent). Torque is left as it is.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        *self.tx.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(h) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }

    pub fn is_running(&self) -> bool {
        self.thread.lock().map(|t| t.as_ref().map(|h| !h.is_finished()).unwrap_or(false)).unwrap_or(false)
    }

    pub fn snapshot(&self) -> Vec<MotorState> {
        lock(&self.shared).motors.clone()
    }

    pub fn stats(&self) -> LoopStats {
        let s = lock(&self.shared);
        let mut st = s.stats.clone();
        s.timing.fill(&mut st, Instant::now());
        st.sample_seq = self.samples.latest().0;
        st
    }

    /// Sequence number and wall-clock stamp of the latest sample (one per
    /// completed position read); (0, 0.0) before the first.
    pub fn latest_sample(&self) -> (u64, f64) {
        self.samples.latest()
    }

    /// Blocks until a sample newer than `after_seq` exists and returns the
    /// latest (seq, stamp_unix), or `None` after `timeout`.
    pub fn wait_sample(&self, after_seq: u64, timeout: Duration) -> Option<(u64, f64)> {
        self.samples.wait_after(after_seq, timeout)
    }

    /// The kept samples (positions, raw) newer than `after_seq`, oldest
    /// first, without waiting; see [`stats::SampleClock::history_after`].
    pub fn samples_after(&self, after_seq: u64) -> Vec<stats::Sample> {
        self.samples.history_after(after_seq)
    }

    /// Clears the percentile windows (used by benchmarks between phases).
    pub fn reset_timing(&self) {
        lock(&self.shared).timing.reset();
    }

    pub fn drain_events(&self) -> Vec<Event> {
        lock(&self.shared).events.drain()
    }

    /// The joint limits in force.
    pub fn envelope(&self) -> Envelope {
        lock(&self.shared).envelope.clone()
    }

    /// Queues goal positions (raw). Coalesced: the latest per motor wins.
    /// Goals beyond a joint's range are clamped (returned) or, with the
    /// reject policy, the whole command is refused.
    pub fn set_goals(&self, goals: &[(u8, i32)]) -> Result<Vec<Clamped>> {
        let mut s = lock(&self.shared);
        for &(id, _) in goals {
            if !self.cfg.ids.contains(&id) {
                return Err(DxlError::InvalidArgument(format!("motor id {id} is not on this bus")));
            }
        }
        let mut goals = goals.to_vec();
        let clamped = match s.envelope.admit(&mut goals) {
            Ok(c) => c,
            Err(e) => {
                s.stats.limit_refusals += 1;
                return Err(e);
            }
        };
        s.count_clamps(&clamped);
        for &(id, v) in &goals {
            if s.pending_goals.insert(id, v).is_some() {
                s.stats.goals_merged += 1; // faster than the bus: the latest wins
            }
        }
        // Streamed goals are the newest command: they preempt a trajectory.
        s.trajectory = None;
        s.pending_trajectory = None;
        s.watchdog.feed(Instant::now());
        self.wake(&mut s);
        Ok(clamped)
    }

    /// Executes `plan` in the loop, interpolated at loop rate; preempts the
    /// running trajectory. The goal watchdog is fed until its last waypoint.
    /// Waypoints beyond a joint's range are clamped or refused as in
    /// [`Self::set_goals`]; returns the clamps, the largest one per motor.
    pub fn set_trajectory(&self, mut plan: trajectory::Trajectory) -> Result<Vec<Clamped>> {
        plan.validate().map_err(DxlError::InvalidArgument)?;
        if let Some((id, _)) = plan.points[0].goals.iter().find(|(id, _)| !self.cfg.ids.contains(id)) {
            return Err(DxlError::InvalidArgument(format!("motor id {id} is not on this bus")));
        }
        let mut s = lock(&self.shared);
        let mut worst: Vec<Clamped> = vec![];
        for (i, p) in plan.points.iter_mut().enumerate() {
            match s.envelope.admit(&mut p.goals) {
                Ok(c) => {
                    s.count_clamps(&c);
                    for c in c {
                        match worst.iter_mut().find(|w| w.0 == c.0) {
                            Some(w) if (c.1 - c.2).unsigned_abs() > (w.1 - w.2).unsigned_abs() => *w = c,
                            Some(_) => {}
                            None => worst.push(c),
                        }
                    }
                }
                Err(e) => {
                    s.stats.limit_refusals += 1;
                    return Err(match e {
                        DxlError::OutOfLimits { id, goal, min, max, .. } => {
                            DxlError::OutOfLimits { id, goal, min, max, waypoint: Some(i) }
                        }
                        e => e,
                    });
                }
            }
        }
        s.pending_trajectory = Some(plan);
        s.watchdog.feed(Instant::now());
        self.wake(&mut s);
        Ok(worst)
    }

    /// True while a trajectory is given or running.
    pub fn trajectory_active(&self) -> bool {
        let s = lock(&self.shared);
        s.pending_trajectory.is_some() || s.trajectory.is_some()
    }

    /// Wakes the loop (once per batch): new goals go out in the next free bus slot.
    fn wake(&self, s: &mut Shared) {
        if !s.goals_wake_sent {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            s.goals_wake_sent = tx.as_ref().is_some_and(|tx| tx.send(Command::Goals).is_ok());
        }
    }

    fn call(&self, make: impl FnOnce(ReplyTx) -> Command, wait: Duration) -> Result<Reply> {
        let (rtx, rrx) = mpsc::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            let tx = tx.as_ref().ok_or_else(|| DxlError::NotRunning("controller is not started".into()))?;
            tx.send(make(rtx)).map_err(|_| DxlError::NotRunning("control thread has exited".into()))?;
        }
        match rrx.recv_timeout(wait) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                Err(DxlError::NotRunning(format!("no answer from the control thread within {wait:?}")))
            }
            Err(RecvTimeoutError::Disconnected) => Err(DxlError::NotRunning("control thread has exited".into())),
        }
    }

    const WAIT: Duration = Duration::from_secs(3);

    pub fn set_torque(&self, ids: &[u8], enable: bool) -> Result<Vec<(u8, Option<DxlError>)>> {
        for id in ids {
            if !self.cfg.ids.contains(id) {
                return Err(DxlError::InvalidArgument(format!("motor id {id} is not on this bus")));
            }
        }
        let ids = if ids.is_empty() { self.cfg.ids.clone() } else { ids.to_vec() };
        match self.call(|reply| Command::Torque { ids, enable, reply }, Self::WAIT)? {
            Reply::PerMotor(v) => Ok(v),
            other => Err(DxlError::NotRunning(format!("unexpected reply {other:?}"))),
        }
    }

    pub fn reboot(&self, id: u8) -> Result<()> {
        self.call(|reply| Command::Reboot { id, reply }, Self::WAIT).map(|_| ())
    }

    pub fn ping(&self, id: u8) -> Result<(u16, u8)> {
        match self.call(|reply| Command::Ping { id, reply }, Self::WAIT)? {
            Reply::Ping(m, f) => Ok((m, f)),
            other => Err(DxlError::NotRunning(format!("unexpected reply {other:?}"))),
        }
    }

    pub fn read(&self, id: u8, address: u16, length: u16) -> Result<Vec<u8>> {
        match self.call(|reply| Command::Read { id, address, length, reply }, Self::WAIT)? {
            Reply::Data(d) => Ok(d),
            other => Err(DxlError::NotRunning(format!("unexpected reply {other:?}"))),
        }
    }

    pub fn write(&self, id: u8, address: u16, data: Vec<u8>) -> Result<()> {
        self.call(|reply| Command::Write { id, address, data, reply }, Self::WAIT).map(|_| ())
    }
}

impl<C: Connector> Drop for Controller<C> {
    fn drop(&mut self) {
        self.stop();
    }
}
