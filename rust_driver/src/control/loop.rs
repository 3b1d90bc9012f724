//! The loop thread: paces cycles, serves commands between (and, when
//! behind schedule, before) cycles, runs each cycle (watchdog, goals,
//! position / status reads, alert reads, re-admission of silent motors) and
//! reopens the link with exponential backoff after a disconnect. New goals
//! are also written inside a cycle, between any two of its transactions.

use super::writes::{hold_goals, take_goals, take_woken_goals, torque, write_goals, write_woken_goals};
use super::{lock, now_unix, Command, EventKind, LoopConfig, MotorState, Reply, SampleClock, Shared};
use crate::bus::{Bus, BusCounters, SyncReadItem};
use crate::error::{DxlError, Result};
use crate::protocol::decode_hardware_error;
use crate::registers::{xl330, FlagBlock, StatusBlock};
use crate::transport::Connector;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Opens the link with `connector` and wraps it in a bus.
pub(super) fn open_bus<C: Connector>(connector: &C, cfg: &LoopConfig) -> Result<Bus> {
    let link = connector.connect()?;
    Ok(Bus::new(Box::new(link), cfg.baudrate, cfg.io_timeout))
}

/// Pings every id; returns those that did not answer. Fails only when the
/// link itself fails.
pub(super) fn ping_all(bus: &mut Bus, shared: &Arc<Mutex<Shared>>, ids: &[u8]) -> Result<Vec<u8>> {
    let mut missing = vec![];
    for &id in ids {
        let r = bus.ping(id);
        let mut s = lock(shared);
        let Some(m) = s.motor(id) else { continue };
        match r {
            Ok((model, _fw)) => {
                m.responding = true;
                m.model = Some(model);
                m.consecutive_failures = 0;
                drop(s);
                read_eeprom_limits(bus, shared, id)?;
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

/// Reads a motor's EEPROM position limits (max at 48, min at 52): the
/// servo's own last line of defence, compared with the configured limits
/// by the caller. A failed read leaves them unknown.
fn read_eeprom_limits(bus: &mut Bus, shared: &Arc<Mutex<Shared>>, id: u8) -> Result<()> {
    let (hi, lo) = (xl330::MAX_POSITION_LIMIT, xl330::MIN_POSITION_LIMIT);
    let r = bus.read(id, hi.address, lo.end() - hi.address);
    let mut s = lock(shared);
    let Some(m) = s.motor(id) else { return Ok(()) };
    match r {
        Ok((d, _)) => {
            m.eeprom_max = hi.decode_in(hi.address, &d).map(|v| v as i32);
            m.eeprom_min = lo.decode_in(hi.address, &d).map(|v| v as i32);
            Ok(())
        }
        Err(e) if e.is_disconnect() => Err(e),
        Err(_) => Ok(()),
    }
}

pub(super) struct LoopThread<C: Connector> {
    cfg: LoopConfig,
    connector: Arc<C>,
    shared: Arc<Mutex<Shared>>,
    samples: Arc<SampleClock>,
    rx: Receiver<Command>,
    stop: Arc<AtomicBool>,
    bus: Option<Bus>,
    backoff: Duration,
    next_reconnect: Instant,
    next_status: Instant,
    force_status: bool,
    last_counters: BusCounters,
}

impl<C: Connector> LoopThread<C> {
    pub(super) fn new(
        cfg: LoopConfig,
        connector: Arc<C>,
        shared: Arc<Mutex<Shared>>,
        samples: Arc<SampleClock>,
        rx: Receiver<Command>,
        stop: Arc<AtomicBool>,
        bus: Bus,
    ) -> Self {
        let now = Instant::now();
        Self {
            backoff: cfg.reconnect_min,
            cfg,
            connector,
            shared,
            samples,
            rx,
            stop,
            bus: Some(bus),
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

    pub(super) fn run(mut self) {
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
                    EventKind::Info,
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
            // Sleep until the cycle is due, serving commands meanwhile. When
            // free-running or behind schedule this only serves the commands
            // already queued, so that callers are never starved.
            let due = if period.is_some() { next_cycle } else { Instant::now() };
            if !self.wait_commands(due) {
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

    /// Serves the commands already queued, then more until `until`.
    /// Returns false when the owner is gone.
    ///
    /// Goal wakes are the one command nobody waits on, and a new one comes
    /// in during each goal write when goals stream faster than the bus: once
    /// one has been served and the cycle is due, the next is left to the
    /// cycle (which writes the pending goals first), so the queue always
    /// drains and the reads are never starved.
    fn wait_commands(&mut self, until: Instant) -> bool {
        let mut goals_served = false;
        while !self.stop.load(Ordering::Relaxed) {
            match self.rx.try_recv() {
                Ok(Command::Goals) if goals_served && Instant::now() >= until => {}
                Ok(cmd) => {
                    goals_served |= matches!(cmd, Command::Goals);
                    self.handle(cmd)
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
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
        s.timing.record(start, elapsed, jitter);
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
        s.event(EventKind::Disconnected, None, e.to_string());
    }

    fn try_reconnect(&mut self) {
        if Instant::now() < self.next_reconnect {
            return;
        }
        let opened = open_bus(&*self.connector, &self.cfg)
            .and_then(|mut bus| ping_all(&mut bus, &self.shared, &self.cfg.ids).map(|missing| (bus, missing)));
        match opened {
            Ok((bus, missing)) => {
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
                s.event(EventKind::Info, None, msg);
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
        if let Command::Goals = cmd {
            self.write_goals_now();
            return;
        }
        let Some(bus) = self.bus.as_mut() else {
            let err = DxlError::Disconnected { port: self.cfg.port.clone(), cause: "port is not open".into() };
            if let Some(reply) = cmd.into_reply() {
                let _ = reply.send(Err(err));
            }
            return;
        };
        let (res, reply) = match cmd {
            Command::Goals => return,
            Command::Torque { ids, enable, reply } => (torque(bus, &self.shared, &ids, enable), reply),
            Command::Reboot { id, reply } => {
                let r = bus.reboot(id).map(|_| Reply::Done);
                if r.is_ok() {
                    self.force_status = true;
                    let mut s = lock(&self.shared);
                    s.event(EventKind::Info, Some(id), format!("motor {id} rebooted"));
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
                    let msg = format!("write of {} bytes at {address} failed: {e}", data.len());
                    s.event(EventKind::WriteError, Some(id), msg);
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

    /// New goals, between cycles: written at once (the bus is free here), so
    /// a goal reaches the wire within one transaction, not at the next cycle.
    fn write_goals_now(&mut self) {
        let goals = take_woken_goals(&mut lock(&self.shared));
        let Some(bus) = self.bus.as_mut() else {
            lock(&self.shared).requeue(&goals); // written after the reconnect
            return;
        };
        if goals.is_empty() {
            return;
        }
        match write_goals(bus, &self.shared, &goals) {
            Ok(()) => lock(&self.shared).stats.goals_immediate += goals.len() as u64,
            Err(e) if e.is_disconnect() => self.on_disconnect(e),
            Err(_) => {} // re-queued and reported by write_goals
        }
    }

    fn cycle(&mut self, status_due: bool) -> Result<()> {
        let bus = self.bus.as_mut().ok_or_else(|| DxlError::NotRunning("no bus".into()))?;
        // 1. Watchdog and goals.
        let (tripped, goals, active) = {
            let mut s = lock(&self.shared);
            let tripped = s.watchdog.check(self.cfg.command_timeout, self.cfg.timeout_action, Instant::now());
            if let Some(action) = tripped {
                s.pending_goals.clear();
                s.slewing.clear();
                s.trajectory = None; // the watchdog's hold must not be undone by a stale trajectory
                s.pending_trajectory = None;
                let msg =
                    format!("no goal for {:.2} s: {}", self.cfg.command_timeout.as_secs_f64(), action.describe());
                s.event(EventKind::CommandTimeout, None, msg);
            }
            let goals = if tripped.is_none() { take_goals(&mut s, Instant::now()) } else { vec![] };
            s.goals_wake_sent = false; // a queued wake finds nothing: harmless
            let active: Vec<u8> = s.motors.iter().filter(|m| m.responding).map(|m| m.id).collect();
            (tripped, goals, active)
        };
        match tripped {
            Some(super::TimeoutAction::Hold) => {
                let hold: Vec<(u8, i32)> = {
                    let mut s = lock(&self.shared);
                    let hold: Vec<(u8, i32)> = s.motors.iter().filter_map(|m| m.position.map(|p| (m.id, p))).collect();
                    hold_goals(&mut s, &hold);
                    hold
                };
                write_goals(bus, &self.shared, &hold)?;
            }
            Some(super::TimeoutAction::TorqueOff) => {
                let ids = self.cfg.ids.clone();
                torque(bus, &self.shared, &ids, false)?;
            }
            None if !goals.is_empty() => write_goals(bus, &self.shared, &goals)?,
            None => {}
        }
        // 2. Reads. After each transaction, goals given meanwhile go out at
        // once (write_woken_goals), not at the end of the cycle.
        write_woken_goals(bus, &self.shared)?;
        let mut alerts = vec![];
        if !active.is_empty() {
            if status_due {
                let b = xl330::STATUS_BLOCK;
                let items = bus.sync_read(&active, b.address, b.length)?;
                write_woken_goals(bus, &self.shared)?;
                let f = xl330::FLAG_BLOCK;
                let flags = bus.sync_read(&active, f.address, f.length)?;
                write_woken_goals(bus, &self.shared)?;
                let mut s = lock(&self.shared);
                let now = now_unix();
                let fresh = apply_results(&mut s, &items, self.cfg.absent_after, |m, data| {
                    if let Some(st) = StatusBlock::decode(data) {
                        m.current = Some(st.current);
                        m.position = Some(st.position);
                        m.position_stamp = now;
                        m.voltage = Some(st.voltage);
                        m.temperature = Some(st.temperature);
                        m.status_stamp = now;
                    }
                });
                apply_results(&mut s, &flags, self.cfg.absent_after, |m, data| {
                    if let Some(fl) = FlagBlock::decode(data) {
                        m.torque_enabled = Some(fl.torque_enabled);
                        m.hardware_error = fl.hardware_error;
                    }
                });
                for (id, r) in flags.iter() {
                    let Some(fl) = r.as_ref().ok().and_then(|p| FlagBlock::decode(&p.params)) else { continue };
                    if fl.hardware_error != 0 {
                        let what = format!("hardware error: {}", decode_hardware_error(fl.hardware_error).join(", "));
                        let Some(m) = s.motor(*id) else { continue };
                        if m.last_error.as_deref() != Some(&what) {
                            m.last_error = Some(what.clone());
                            s.event(EventKind::HardwareError, Some(*id), format!("motor {id}: {what}"));
                        }
                    }
                }
                let positions: Vec<Option<i32>> = s.motors.iter().map(|m| m.position).collect();
                drop(s);
                if fresh {
                    self.samples.publish(now, positions);
                }
            } else {
                let b = xl330::POSITION_BLOCK;
                let items = bus.sync_read(&active, b.address, b.length)?;
                write_woken_goals(bus, &self.shared)?;
                let mut s = lock(&self.shared);
                let now = now_unix();
                let fresh = apply_results(&mut s, &items, self.cfg.absent_after, |m, data| {
                    if let Some(p) = xl330::PRESENT_POSITION.decode(data) {
                        m.position = Some(p);
                        m.position_stamp = now;
                    }
                });
                // An alert bit with no hardware error known yet: read it now.
                for m in s.motors.iter() {
                    if m.alert && m.hardware_error == 0 && m.responding {
                        alerts.push(m.id);
                    }
                }
                let positions: Vec<Option<i32>> = s.motors.iter().map(|m| m.position).collect();
                drop(s);
                if fresh {
                    self.samples.publish(now, positions);
                }
            }
        }
        let hw = xl330::HARDWARE_ERROR_STATUS;
        for id in alerts {
            let r = bus.read(id, hw.address, hw.length);
            between_transactions(bus, &self.shared, &r)?;
            match r {
                Ok((d, _)) => {
                    let Some(code) = hw.decode(&d) else { continue };
                    let mut s = lock(&self.shared);
                    let names = decode_hardware_error(code).join(", ");
                    let Some(m) = s.motor(id) else { continue };
                    m.hardware_error = code;
                    m.status_stamp = now_unix();
                    if code != 0 {
                        m.last_error = Some(format!("hardware error: {names}"));
                        s.event(EventKind::HardwareError, Some(id), format!("motor {id}: hardware error: {names}"));
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
                let r = bus.ping(id);
                between_transactions(bus, &self.shared, &r)?;
                match r {
                    Ok((model, _)) => {
                        let mut s = lock(&self.shared);
                        let Some(m) = s.motor(id) else { continue };
                        m.responding = true;
                        m.model = Some(model);
                        m.consecutive_failures = 0;
                        s.event(EventKind::Info, Some(id), format!("motor {id} answers again"));
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

/// After a transaction whose result is `r`: a lost link ends the cycle
/// (no goal write on it); otherwise goals given meanwhile go out now.
fn between_transactions<T>(bus: &mut Bus, shared: &Arc<Mutex<Shared>>, r: &Result<T>) -> Result<()> {
    match r {
        Err(e) if e.is_disconnect() => Err(e.clone()),
        _ => write_woken_goals(bus, shared),
    }
}

/// Applies sync-read results; returns true if at least one motor answered.
/// The first silent motor in a read is blamed; motors after it that are
/// also silent were most likely blocked by it (X-series devices answer a
/// sync read in turn), so they are not counted.
fn apply_results(
    s: &mut Shared,
    items: &[SyncReadItem],
    absent_after: u32,
    mut update: impl FnMut(&mut MotorState, &[u8]),
) -> bool {
    let mut blocked = false;
    let mut answered = false;
    for (id, r) in items {
        let mut ev: Option<(EventKind, String)> = None;
        {
            let Some(m) = s.motor(*id) else { continue };
            match r {
                Ok(p) => {
                    answered = true;
                    update(m, &p.params);
                    m.alert = p.alert();
                    m.consecutive_failures = 0;
                    if !p.alert() && m.hardware_error != 0 {
                        // Alert gone (after reboot): the error is cleared.
                        m.hardware_error = 0;
                        m.last_error = None;
                        ev = Some((EventKind::Info, format!("motor {id}: hardware error cleared")));
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
                            EventKind::MotorLost,
                            format!("motor {id} stopped answering ({e}); left out of sync reads, pinged at the status rate"),
                        ));
                    }
                }
            }
        }
        if let Some((k, msg)) = ev {
            s.event(k, Some(*id), msg);
        }
    }
    answered
}
