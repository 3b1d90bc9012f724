//! The control loop: a background thread that owns the bus, sync-reads
//! positions every cycle, sync-writes pending goals, reads the slow status
//! block at a lower rate, reacts to alert bits, drops and re-admits silent
//! motors, and reopens the port with backoff when it disappears.

use crate::bus::Bus;
use crate::error::{DxlError, Result};
use crate::protocol::{self, decode_hardware_error};
use crate::transport::SerialTransport;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// XL330 / XC330 control table addresses used by the loop.
pub mod addr {
    pub const TORQUE_ENABLE: u16 = 64;
    pub const HARDWARE_ERROR_STATUS: u16 = 70;
    pub const GOAL_POSITION: u16 = 116;
    pub const PRESENT_CURRENT: u16 = 126;
    pub const PRESENT_POSITION: u16 = 132;
    pub const PRESENT_INPUT_VOLTAGE: u16 = 144;
    pub const PRESENT_TEMPERATURE: u16 = 146;
    /// Slow block: present_current (126) .. present_temperature (146).
    pub const SLOW_BLOCK: (u16, u16) = (126, 21);
    /// Torque/error block: torque_enable (64) .. hardware_error_status (70).
    pub const FLAG_BLOCK: (u16, u16) = (64, 7);
}

/// What to do when goals stop arriving for `command_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutAction {
    /// Write goal = present position: motion stops where the motor is now.
    Hold,
    /// Turn torque off on every motor.
    TorqueOff,
}

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
    pub comm_errors: u64,
    pub timeouts: u64,
    pub crc_errors: u64,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

/// One reported event (errors, state changes). Drained by the caller.
#[derive(Debug, Clone)]
pub struct Event {
    pub stamp: f64,
    pub kind: String,
    pub motor_id: Option<u8>,
    pub message: String,
}

const RING: usize = 2048;
const EVENT_CAP: usize = 1024;

#[derive(Debug, Default)]
struct Ring {
    data: Vec<f64>,
    pos: usize,
}

impl Ring {
    fn push(&mut self, v: f64) {
        if self.data.len() < RING {
            self.data.push(v);
        } else {
            self.data[self.pos] = v;
            self.pos = (self.pos + 1) % RING;
        }
    }
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.data.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Loop statistics, computed on request.
#[derive(Debug, Clone, Default)]
pub struct LoopStats {
    pub port: String,
    pub baudrate: u32,
    pub connected: bool,
    pub cycles: u64,
    pub achieved_rate_hz: f64,
    pub cycle_p50_us: f64,
    pub cycle_p99_us: f64,
    pub cycle_max_us: f64,
    pub jitter_p99_us: f64,
    pub jitter_max_us: f64,
    pub timeouts: u64,
    pub crc_errors: u64,
    pub status_errors: u64,
    pub garbage_bytes: u64,
    /// Late or unmatched replies, discarded (see Bus::stray_replies).
    pub stray_replies: u64,
    pub write_errors: u64,
    pub reconnects: u64,
    pub disconnects: u64,
    pub events_dropped: u64,
    pub last_error: Option<String>,
    pub last_error_stamp: f64,
}

#[derive(Default)]
struct Shared {
    motors: Vec<MotorState>,
    pending_goals: HashMap<u8, i32>,
    last_goal_at: Option<Instant>,
    watchdog_tripped: bool,
    events: VecDeque<Event>,
    stats: LoopStats,
    cycle_us: Ring,
    jitter_us: Ring,
    cycle_starts: VecDeque<Instant>,
    max_cycle_us: f64,
    max_jitter_us: f64,
    /// Set by Controller::configure, taken by the loop at its next iteration.
    pending_live: Option<LiveConfig>,
    live: Option<LiveConfig>,
}

impl Shared {
    fn motor(&mut self, id: u8) -> Option<&mut MotorState> {
        self.motors.iter_mut().find(|m| m.id == id)
    }
    fn event(&mut self, kind: &str, motor_id: Option<u8>, message: String) {
        if self.events.len() >= EVENT_CAP {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        if kind != "info" {
            self.stats.last_error = Some(message.clone());
            self.stats.last_error_stamp = now_unix();
        }
        self.events.push_back(Event { stamp: now_unix(), kind: kind.to_string(), motor_id, message });
    }
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

enum Command {
    Torque { ids: Vec<u8>, enable: bool, reply: Sender<Result<Reply>> },
    Reboot { id: u8, reply: Sender<Result<Reply>> },
    Ping { id: u8, reply: Sender<Result<Reply>> },
    Read { id: u8, address: u16, length: u16, reply: Sender<Result<Reply>> },
    Write { id: u8, address: u16, data: Vec<u8>, reply: Sender<Result<Reply>> },
}

/// Handle to a running control loop.
pub struct Controller {
    cfg: LoopConfig,
    shared: Arc<Mutex<Shared>>,
    tx: Mutex<Option<Sender<Command>>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic in the loop thread must not take every caller down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Controller {
    pub fn new(cfg: LoopConfig) -> Result<Self> {
        cfg.validate()?;
        let mut shared = Shared::default();
        shared.motors = cfg.ids.iter().map(|&id| MotorState { id, ..Default::default() }).collect();
        shared.stats.port = cfg.port.clone();
        shared.stats.baudrate = cfg.baudrate;
        Ok(Self {
            cfg,
            shared: Arc::new(Mutex::new(shared)),
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
        let transport = SerialTransport::open(&self.cfg.port, self.cfg.baudrate)?;
        let mut bus = Bus::new(Box::new(transport), self.cfg.baudrate, self.cfg.io_timeout);
        let missing = ping_all(&mut bus, &self.shared, &self.cfg.ids)?;
        {
            let mut s = lock(&self.shared);
            s.stats.connected = true;
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(|i| i.to_string()).collect();
                s.event("missing", None, format!("motors not answering at start: {}", list.join(", ")));
            }
        }
        let (tx, rx) = mpsc::channel();
        *self.tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        self.stop.store(false, Ordering::SeqCst);
        let mut cfg = self.cfg.clone();
        if let Some(live) = lock(&self.shared).live.clone() {
            cfg.apply(&live);
        }
        let (shared, stop) = (self.shared.clone(), self.stop.clone());
        let handle = std::thread::Builder::new()
            .name("dxl-control".into())
            .spawn(move || LoopThread::new(cfg, shared, rx, stop, Some(bus)).run())
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
        let c = s.cycle_us.sorted();
        let j = s.jitter_us.sorted();
        st.cycle_p50_us = percentile(&c, 0.5);
        st.cycle_p99_us = percentile(&c, 0.99);
        st.cycle_max_us = s.max_cycle_us;
        st.jitter_p99_us = percentile(&j, 0.99);
        st.jitter_max_us = s.max_jitter_us;
        // Achieved rate over the last second of cycle starts.
        let now = Instant::now();
        let recent: Vec<&Instant> =
            s.cycle_starts.iter().filter(|t| now.duration_since(**t) <= Duration::from_secs(1)).collect();
        st.achieved_rate_hz = if recent.len() >= 2 {
            let span = recent[recent.len() - 1].duration_since(*recent[0]).as_secs_f64();
            if span > 0.0 {
                (recent.len() - 1) as f64 / span
            } else {
                0.0
            }
        } else {
            0.0
        };
        if !st.connected {
            st.achieved_rate_hz = 0.0;
        }
        st
    }

    /// Clears the percentile windows (used by benchmarks between phases).
    pub fn reset_timing(&self) {
        let mut s = lock(&self.shared);
        s.cycle_us = Ring::default();
        s.jitter_us = Ring::default();
        s.max_cycle_us = 0.0;
        s.max_jitter_us = 0.0;
    }

    pub fn drain_events(&self) -> Vec<Event> {
        lock(&self.shared).events.drain(..).collect()
    }

    /// Queues goal positions (raw). Coalesced: the latest per motor wins.
    pub fn set_goals(&self, goals: &[(u8, i32)]) -> Result<()> {
        let mut s = lock(&self.shared);
        for &(id, _) in goals {
            if !self.cfg.ids.contains(&id) {
                return Err(DxlError::InvalidArgument(format!("motor id {id} is not on this bus")));
            }
        }
        for &(id, v) in goals {
            s.pending_goals.insert(id, v);
        }
        s.last_goal_at = Some(Instant::now());
        s.watchdog_tripped = false;
        Ok(())
    }

    fn call(&self, make: impl FnOnce(Sender<Result<Reply>>) -> Command, wait: Duration) -> Result<Reply> {
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

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ping_all(bus: &mut Bus, shared: &Arc<Mutex<Shared>>, ids: &[u8]) -> Result<Vec<u8>> {
    let mut missing = vec![];
    for &id in ids {
        let r = bus.ping(id);
        let mut s = lock(shared);
        let m = s.motor(id).expect("configured id");
        match r {
            Ok((model, _fw)) => {
                m.responding = true;
                m.model = Some(model);
                m.consecutive_failures = 0;
            }
            Err(e) if e.is_disconnect() => return Err(e),
            Err(e) => {
                m.responding = false;
                m.last_error = Some(e.to_string());
                missing.push(id);
            }
        }
    }
    Ok(missing)
}

struct LoopThread {
    cfg: LoopConfig,
    shared: Arc<Mutex<Shared>>,
    rx: Receiver<Command>,
    stop: Arc<AtomicBool>,
    bus: Option<Bus>,
    backoff: Duration,
    next_reconnect: Instant,
    next_status: Instant,
    force_status: bool,
    last_counters: crate::bus::BusCounters,
}

impl LoopThread {
    fn new(cfg: LoopConfig, shared: Arc<Mutex<Shared>>, rx: Receiver<Command>, stop: Arc<AtomicBool>, bus: Option<Bus>) -> Self {
        let now = Instant::now();
        Self {
            backoff: cfg.reconnect_min,
            cfg,
            shared,
            rx,
            stop,
            bus,
            next_reconnect: now,
            next_status: now,
            force_status: true,
            last_counters: Default::default(),
        }
    }

    fn periods(&self) -> (Option<Duration>, Duration) {
        let period = if self.cfg.loop_rate_hz > 0.0 {
            Some(Duration::from_secs_f64(1.0 / self.cfg.loop_rate_hz))
        } else {
            None
        };
        (period, Duration::from_secs_f64(1.0 / self.cfg.status_rate_hz))
    }

    fn run(mut self) {
        let (mut period, mut status_period) = self.periods();
        let mut next_cycle = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let pending = lock(&self.shared).pending_live.take();
            if let Some(live) = pending {
                self.cfg.apply(&live);
                (period, status_period) = self.periods();
                next_cycle = Instant::now();
                self.next_status = Instant::now();
                lock(&self.shared).event(
                    "info",
                    None,
                    format!(
                        "configured: loop {:.1} Hz, status {:.1} Hz, command timeout {:.2} s ({:?})",
                        live.loop_rate_hz,
                        live.status_rate_hz,
                        live.command_timeout.as_secs_f64(),
                        live.timeout_action
                    ),
                );
            }
            if self.bus.is_none() {
                self.try_reconnect();
                if self.bus.is_none() {
                    let wait = self.next_reconnect.saturating_duration_since(Instant::now()).min(Duration::from_millis(50));
                    if !self.wait_commands(Instant::now() + wait) {
                        return;
                    }
                    continue;
                }
                next_cycle = Instant::now();
            }
            // Sleep until the cycle is due, serving commands meanwhile.
            if period.is_some() && !self.wait_commands(next_cycle) {
                return;
            }
            if self.bus.is_none() {
                continue; // a command found the port gone
            }
            let start = Instant::now();
            let jitter = if period.is_some() { start.saturating_duration_since(next_cycle) } else { Duration::ZERO };
            let status_due = self.force_status || start >= self.next_status;
            if status_due {
                self.force_status = false;
                self.next_status = start + status_period;
            }
            let res = self.cycle(status_due);
            let elapsed = start.elapsed();
            self.record(start, elapsed, jitter);
            if let Err(e) = res {
                if e.is_disconnect() {
                    self.on_disconnect(e);
                }
            }
            if let Some(p) = period {
                next_cycle += p;
                let now = Instant::now();
                if next_cycle + p < now {
                    next_cycle = now; // fell behind: don't burst to catch up
                }
            }
        }
    }

    /// Serves commands until `until`. Returns false when the owner is gone.
    fn wait_commands(&mut self, until: Instant) -> bool {
        loop {
            let now = Instant::now();
            if now >= until || self.stop.load(Ordering::Relaxed) {
                return true;
            }
            match self.rx.recv_timeout(until - now) {
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return !self.stop.load(Ordering::Relaxed),
            }
        }
    }

    fn record(&mut self, start: Instant, elapsed: Duration, jitter: Duration) {
        let counters = self.bus.as_ref().map(|b| b.counters.clone());
        let mut s = lock(&self.shared);
        s.stats.cycles += 1;
        let us = elapsed.as_secs_f64() * 1e6;
        let jus = jitter.as_secs_f64() * 1e6;
        s.cycle_us.push(us);
        s.jitter_us.push(jus);
        if us > s.max_cycle_us {
            s.max_cycle_us = us;
        }
        if jus > s.max_jitter_us {
            s.max_jitter_us = jus;
        }
        s.cycle_starts.push_back(start);
        while s.cycle_starts.len() > RING {
            s.cycle_starts.pop_front();
        }
        if let Some(c) = counters {
            // Bus counters restart with each reconnection: accumulate deltas.
            let l = &self.last_counters;
            s.stats.timeouts += c.timeouts.saturating_sub(l.timeouts);
            s.stats.crc_errors += c.crc_errors.saturating_sub(l.crc_errors);
            s.stats.status_errors += c.status_errors.saturating_sub(l.status_errors);
            s.stats.garbage_bytes += c.garbage_bytes.saturating_sub(l.garbage_bytes);
            s.stats.stray_replies += c.stray_replies.saturating_sub(l.stray_replies);
            self.last_counters = c;
        }
    }

    fn on_disconnect(&mut self, e: DxlError) {
        self.bus = None;
        self.last_counters = Default::default();
        self.next_reconnect = Instant::now() + self.backoff;
        let mut s = lock(&self.shared);
        s.stats.connected = false;
        s.stats.disconnects += 1;
        s.event("disconnected", None, e.to_string());
    }

    fn try_reconnect(&mut self) {
        if Instant::now() < self.next_reconnect {
            return;
        }
        match SerialTransport::open(&self.cfg.port, self.cfg.baudrate) {
            Ok(t) => {
                let mut bus = Bus::new(Box::new(t), self.cfg.baudrate, self.cfg.io_timeout);
                match ping_all(&mut bus, &self.shared, &self.cfg.ids) {
                    Ok(missing) => {
                        self.bus = Some(bus);
                        self.backoff = self.cfg.reconnect_min;
                        self.force_status = true;
                        let mut s = lock(&self.shared);
                        s.stats.connected = true;
                        s.stats.reconnects += 1;
                        let msg = if missing.is_empty() {
                            format!("reconnected to {}", self.cfg.port)
                        } else {
                            format!("reconnected to {}; motors not answering: {:?}", self.cfg.port, missing)
                        };
                        s.event("info", None, msg);
                    }
                    Err(e) => self.failed_reconnect(e),
                }
            }
            Err(e) => self.failed_reconnect(e),
        }
    }

    fn failed_reconnect(&mut self, e: DxlError) {
        self.next_reconnect = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.reconnect_max);
        let mut s = lock(&self.shared);
        s.stats.last_error = Some(e.to_string());
        s.stats.last_error_stamp = now_unix();
    }

    fn handle(&mut self, cmd: Command) {
        let Some(bus) = self.bus.as_mut() else {
            let err = || Err(DxlError::Disconnected { port: self.cfg.port.clone(), cause: "port is not open".into() });
            let _ = match cmd {
                Command::Torque { reply, .. }
                | Command::Reboot { reply, .. }
                | Command::Ping { reply, .. }
                | Command::Read { reply, .. }
                | Command::Write { reply, .. } => reply.send(err()),
            };
            return;
        };
        let (res, reply) = match cmd {
            Command::Torque { ids, enable, reply } => (torque(bus, &self.shared, &ids, enable), reply),
            Command::Reboot { id, reply } => {
                let r = bus.reboot(id).map(|_| Reply::Done);
                if r.is_ok() {
                    self.force_status = true;
                    let mut s = lock(&self.shared);
                    s.event("info", Some(id), format!("motor {id} rebooted"));
                }
                (r, reply)
            }
            Command::Ping { id, reply } => (bus.ping(id).map(|(m, f)| Reply::Ping(m, f)), reply),
            Command::Read { id, address, length, reply } => {
                (bus.read(id, address, length).map(|(d, _)| Reply::Data(d)), reply)
            }
            Command::Write { id, address, data, reply } => {
                let r = bus.write(id, address, &data).map(|_| Reply::Done);
                if let Err(e) = &r {
                    let mut s = lock(&self.shared);
                    s.stats.write_errors += 1;
                    s.event("write_error", Some(id), format!("write of {} bytes at {address} failed: {e}", data.len()));
                }
                (r, reply)
            }
        };
        if let Err(e) = &res {
            if e.is_disconnect() {
                self.on_disconnect(e.clone());
            }
        }
        let _ = reply.send(res);
    }

    fn cycle(&mut self, status_due: bool) -> Result<()> {
        let bus = self.bus.as_mut().ok_or_else(|| DxlError::NotRunning("no bus".into()))?;
        // 1. Watchdog and goals.
        let (goals, active) = {
            let mut s = lock(&self.shared);
            let timed_out = !self.cfg.command_timeout.is_zero()
                && !s.watchdog_tripped
                && s.last_goal_at.map(|t| t.elapsed() > self.cfg.command_timeout).unwrap_or(false);
            if timed_out {
                s.watchdog_tripped = true;
                s.pending_goals.clear();
                let what = match self.cfg.timeout_action {
                    TimeoutAction::Hold => "holding present positions",
                    TimeoutAction::TorqueOff => "turning torque off",
                };
                s.event(
                    "command_timeout",
                    None,
                    format!("no goal for {:.2} s: {what}", self.cfg.command_timeout.as_secs_f64()),
                );
            }
            let goals: Vec<(u8, i32)> = s.pending_goals.drain().collect();
            let active: Vec<u8> = s.motors.iter().filter(|m| m.responding).map(|m| m.id).collect();
            if timed_out {
                drop(s);
                match self.cfg.timeout_action {
                    TimeoutAction::Hold => {
                        let hold: Vec<(u8, i32)> = {
                            let s = lock(&self.shared);
                            s.motors.iter().filter_map(|m| m.position.map(|p| (m.id, p))).collect()
                        };
                        write_goals(bus, &self.shared, &hold)?;
                    }
                    TimeoutAction::TorqueOff => {
                        let ids = self.cfg.ids.clone();
                        torque(bus, &self.shared, &ids, false)?;
                    }
                }
                (vec![], active)
            } else {
                (goals, active)
            }
        };
        if !goals.is_empty() {
            write_goals(bus, &self.shared, &goals)?;
        }
        // 2. Reads.
        let mut alerts = vec![];
        if !active.is_empty() {
            if status_due {
                let (a, n) = addr::SLOW_BLOCK;
                let items = bus.sync_read(&active, a, n)?;
                let (fa, fn_) = addr::FLAG_BLOCK;
                let flags = bus.sync_read(&active, fa, fn_)?;
                let mut s = lock(&self.shared);
                let now = now_unix();
                apply_results(&mut s, &items, self.cfg.absent_after, |m, p| {
                    let d = &p.params;
                    m.current = Some(i16::from_le_bytes([d[0], d[1]]));
                    m.position = Some(i32::from_le_bytes([d[6], d[7], d[8], d[9]]));
                    m.position_stamp = now;
                    m.voltage = Some(u16::from_le_bytes([d[18], d[19]]));
                    m.temperature = Some(d[20]);
                    m.status_stamp = now;
                });
                apply_results(&mut s, &flags, self.cfg.absent_after, |m, p| {
                    let d = &p.params;
                    m.torque_enabled = Some(d[0] != 0);
                    let hw = d[6];
                    m.hardware_error = hw;
                });
                for (id, r) in flags.iter() {
                    if let Ok(p) = r {
                        if p.params[6] != 0 {
                            let names = decode_hardware_error(p.params[6]).join(", ");
                            let m = s.motor(*id).expect("configured id");
                            if m.last_error.as_deref() != Some(&format!("hardware error: {names}")) {
                                m.last_error = Some(format!("hardware error: {names}"));
                                s.event("hardware_error", Some(*id), format!("motor {id}: hardware error: {names}"));
                            }
                        }
                    }
                }
            } else {
                let items = bus.sync_read(&active, addr::PRESENT_POSITION, 4)?;
                let mut s = lock(&self.shared);
                let now = now_unix();
                apply_results(&mut s, &items, self.cfg.absent_after, |m, p| {
                    let d = &p.params;
                    m.position = Some(i32::from_le_bytes([d[0], d[1], d[2], d[3]]));
                    m.position_stamp = now;
                });
                // An alert bit with no hardware error known yet: read it now.
                for m in s.motors.iter() {
                    if m.alert && m.hardware_error == 0 && m.responding {
                        alerts.push(m.id);
                    }
                }
            }
        }
        for id in alerts {
            match bus.read(id, addr::HARDWARE_ERROR_STATUS, 1) {
                Ok((d, _)) => {
                    let mut s = lock(&self.shared);
                    let names = decode_hardware_error(d[0]).join(", ");
                    let m = s.motor(id).expect("configured id");
                    m.hardware_error = d[0];
                    m.status_stamp = now_unix();
                    if d[0] != 0 {
                        m.last_error = Some(format!("hardware error: {names}"));
                        s.event("hardware_error", Some(id), format!("motor {id}: hardware error: {names}"));
                    }
                }
                Err(e) if e.is_disconnect() => return Err(e),
                Err(_) => {}
            }
        }
        // 3. Absent motors: try to bring them back at the status rate.
        if status_due {
            let absent: Vec<u8> = {
                let s = lock(&self.shared);
                s.motors.iter().filter(|m| !m.responding).map(|m| m.id).collect()
            };
            for id in absent {
                match bus.ping(id) {
                    Ok((model, _)) => {
                        let mut s = lock(&self.shared);
                        let m = s.motor(id).expect("configured id");
                        m.responding = true;
                        m.model = Some(model);
                        m.consecutive_failures = 0;
                        s.event("info", Some(id), format!("motor {id} answers again"));
                        self.force_status = true;
                    }
                    Err(e) if e.is_disconnect() => return Err(e),
                    Err(_) => {}
                }
            }
        }
        Ok(())
    }
}

fn write_goals(bus: &mut Bus, shared: &Arc<Mutex<Shared>>, goals: &[(u8, i32)]) -> Result<()> {
    let data: Vec<(u8, [u8; 4])> = goals.iter().map(|&(id, v)| (id, v.to_le_bytes())).collect();
    let entries: Vec<(u8, &[u8])> = data.iter().map(|(id, d)| (*id, &d[..])).collect();
    match bus.sync_write(addr::GOAL_POSITION, 4, &entries) {
        Ok(()) => {
            let mut s = lock(shared);
            for &(id, v) in goals {
                if let Some(m) = s.motor(id) {
                    m.goal = Some(v);
                }
            }
            Ok(())
        }
        Err(e) => {
            let mut s = lock(shared);
            s.stats.write_errors += 1;
            // Not dropped: goals go back in the queue unless newer ones arrived.
            for &(id, v) in goals {
                s.pending_goals.entry(id).or_insert(v);
            }
            s.event("write_error", None, format!("goal sync write for {} motors failed: {e}", goals.len()));
            Err(e)
        }
    }
}

fn torque(bus: &mut Bus, shared: &Arc<Mutex<Shared>>, ids: &[u8], enable: bool) -> Result<Reply> {
    if enable {
        // Avoid a jump: goal = present position before torque comes on.
        let hold: Vec<(u8, i32)> = {
            let s = lock(shared);
            s.motors.iter().filter(|m| ids.contains(&m.id)).filter_map(|m| m.position.map(|p| (m.id, p))).collect()
        };
        write_goals(bus, shared, &hold)?;
    }
    let mut out = vec![];
    for &id in ids {
        let r = bus.write(id, addr::TORQUE_ENABLE, &[enable as u8]);
        let mut s = lock(shared);
        match r {
            Ok(_) => {
                if let Some(m) = s.motor(id) {
                    m.torque_enabled = Some(enable);
                }
                out.push((id, None));
            }
            Err(e) => {
                s.stats.write_errors += 1;
                s.event("write_error", Some(id), format!("motor {id}: torque {} failed: {e}", if enable { "on" } else { "off" }));
                if e.is_disconnect() {
                    return Err(e);
                }
                out.push((id, Some(e)));
            }
        }
    }
    if !enable {
        lock(shared).pending_goals.retain(|id, _| !ids.contains(id));
    }
    Ok(Reply::PerMotor(out))
}

/// Applies sync-read results. The first silent motor in a read is blamed;
/// motors after it that are also silent were most likely blocked by it
/// (X-series devices answer a sync read in turn), so they are not counted.
fn apply_results(
    s: &mut Shared,
    items: &[(u8, Result<protocol::StatusPacket>)],
    absent_after: u32,
    mut update: impl FnMut(&mut MotorState, &protocol::StatusPacket),
) {
    let mut blocked = false;
    for (id, r) in items {
        let mut ev: Option<(String, Option<u8>, String)> = None;
        {
            let m = s.motor(*id).expect("configured id");
            match r {
                Ok(p) => {
                    update(m, p);
                    m.alert = p.alert();
                    m.consecutive_failures = 0;
                    if !p.alert() && m.hardware_error != 0 {
                        // Alert gone (after reboot): the error is cleared.
                        m.hardware_error = 0;
                        m.last_error = None;
                        ev = Some(("info".into(), Some(*id), format!("motor {id}: hardware error cleared")));
                    }
                    blocked = false;
                }
                Err(DxlError::Timeout { .. }) if blocked => {}
                Err(e) => {
                    if matches!(e, DxlError::Timeout { .. }) {
                        blocked = true;
                        m.timeouts += 1;
                    }
                    if matches!(e, DxlError::Crc { .. }) {
                        m.crc_errors += 1;
                    }
                    m.comm_errors += 1;
                    m.consecutive_failures += 1;
                    m.last_error = Some(e.to_string());
                    if m.consecutive_failures >= absent_after && m.responding {
                        m.responding = false;
                        ev = Some((
                            "motor_lost".into(),
                            Some(*id),
                            format!("motor {id} stopped answering ({e}); left out of sync reads, pinged at the status rate"),
                        ));
                    }
                }
            }
        }
        if let Some((k, id, msg)) = ev {
            s.event(&k, id, msg);
        }
    }
}
