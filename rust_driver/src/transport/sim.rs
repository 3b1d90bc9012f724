//! An in-memory bus of XL330 servos for tests: [`SimBus`] answers the
//! instruction packets written to it (ping, read, write, reboot, sync read,
//! sync write) from per-servo control tables laid out as in
//! [`crate::registers::xl330`], and can inject faults: silent servos, latched
//! hardware errors (alert bit), late replies, unplugging, failing opens and
//! a slow bus. A test can also hold one transaction on the wire
//! ([`SimBus::hold_next`]) to act while the loop is inside it.
//!
//! It is a [`Connector`]: every `connect` returns a fresh [`SimLink`]; an
//! `unplug` makes every open link fail like a pulled adapter.

use super::{Connector, Transport};
use crate::error::{DxlError, Result};
use crate::protocol::{self, inst, ALERT_BIT, BROADCAST_ID, HEADER};
use crate::registers::{xl330, RegValue, Register};
use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One simulated servo.
#[derive(Debug, Clone)]
pub struct Servo {
    pub table: [u8; xl330::TABLE_LEN],
    /// Answers nothing at all.
    pub silent: bool,
    /// Position ticks travelled towards the goal per read of the present
    /// position while torque is on.
    pub step: i32,
}

impl Servo {
    fn new(id: u8) -> Self {
        let mut s = Self { table: [0; xl330::TABLE_LEN], silent: false, step: i32::MAX };
        s.set(xl330::MODEL_NUMBER, xl330::MODEL_XL330_M288);
        s.set(xl330::FIRMWARE_VERSION, 52);
        s.set(xl330::ID, id);
        s.set(xl330::PRESENT_INPUT_VOLTAGE, 50);
        s.set(xl330::PRESENT_TEMPERATURE, 30);
        s
    }
    pub fn get<T: RegValue>(&self, r: Register<T>) -> T {
        r.decode_in(0, &self.table).expect("register inside the table")
    }
    pub fn set<T: RegValue>(&mut self, r: Register<T>, v: T) {
        let a = usize::from(r.address);
        self.table[a..a + usize::from(r.length)].copy_from_slice(&r.encode(v));
    }
    fn error_byte(&self) -> u8 {
        if self.get(xl330::HARDWARE_ERROR_STATUS) != 0 {
            ALERT_BIT
        } else {
            0
        }
    }
    fn advance(&mut self) {
        if !self.get(xl330::TORQUE_ENABLE) {
            return;
        }
        let (p, g) = (self.get(xl330::PRESENT_POSITION), self.get(xl330::GOAL_POSITION));
        let d = (g as i64 - p as i64).clamp(-(self.step as i64), self.step as i64);
        self.set(xl330::PRESENT_POSITION, (p as i64 + d) as i32);
    }
    /// Data of a read of `len` bytes at `addr`, or the e-manual error number.
    fn read(&mut self, addr: u16, len: u16) -> std::result::Result<Vec<u8>, u8> {
        let (a, n) = (usize::from(addr), usize::from(len));
        if a + n > self.table.len() {
            return Err(4); // data range error
        }
        if addr < xl330::PRESENT_POSITION.end() && xl330::PRESENT_POSITION.address < addr + len {
            self.advance();
        }
        Ok(self.table[a..a + n].to_vec())
    }
    fn write(&mut self, addr: u16, data: &[u8]) -> u8 {
        let a = usize::from(addr);
        if a + data.len() > self.table.len() {
            return 4;
        }
        self.table[a..a + data.len()].copy_from_slice(data);
        0
    }
}

/// One instruction received by the bus (decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: u8,
    pub instruction: u8,
    pub params: Vec<u8>,
}

impl Received {
    /// Address field of read / write / sync read / sync write instructions.
    pub fn address(&self) -> Option<u16> {
        match self.instruction {
            inst::READ | inst::WRITE | inst::SYNC_READ | inst::SYNC_WRITE if self.params.len() >= 2 => {
                Some(u16::from_le_bytes([self.params[0], self.params[1]]))
            }
            _ => None,
        }
    }
    /// Ids addressed by a sync read.
    pub fn sync_read_ids(&self) -> Vec<u8> {
        if self.instruction == inst::SYNC_READ && self.params.len() > 4 {
            self.params[4..].to_vec()
        } else {
            vec![]
        }
    }
}

#[derive(Debug, Default)]
pub struct SimState {
    pub servos: BTreeMap<u8, Servo>,
    input: VecDeque<u8>,
    /// Replies held back until the transaction that asked for them is over.
    late: Vec<u8>,
    late_armed: bool,
    /// (id, instruction or any) whose next reply is held back.
    delay_next: Vec<(u8, Option<u8>)>,
    generation: u64,
    open_failures: u32,
    pub open_attempts: Vec<Instant>,
    pub log: Vec<Received>,
    /// Sleep per written packet (a slow bus).
    pub write_delay: Duration,
    gate: Option<Gate>,
}

/// One transaction to hold on the wire (see [`SimBus::hold_next`]).
#[derive(Debug)]
struct Gate {
    instruction: u8,
    address: u16,
    reached: Sender<()>,
    release: Receiver<()>,
}

/// How long a held transaction waits for its release before going on.
const GATE_MAX: Duration = Duration::from_secs(10);

/// A shared handle to the simulated bus.
#[derive(Debug, Clone, Default)]
pub struct SimBus(Arc<Mutex<SimState>>);

impl SimBus {
    pub fn new(ids: &[u8]) -> Self {
        let bus = Self::default();
        bus.lock().servos = ids.iter().map(|&id| (id, Servo::new(id))).collect();
        bus
    }
    pub fn lock(&self) -> MutexGuard<'_, SimState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn servo<R>(&self, id: u8, f: impl FnOnce(&mut Servo) -> R) -> R {
        f(self.lock().servos.get_mut(&id).expect("simulated id"))
    }
    pub fn get<T: RegValue>(&self, id: u8, r: Register<T>) -> T {
        self.servo(id, |s| s.get(r))
    }
    pub fn set<T: RegValue>(&self, id: u8, r: Register<T>, v: T) {
        self.servo(id, |s| s.set(r, v))
    }
    pub fn set_silent(&self, id: u8, silent: bool) {
        self.servo(id, |s| s.silent = silent)
    }
    /// The next reply of `id` arrives only after its transaction timed out.
    pub fn delay_next_reply(&self, id: u8) {
        self.lock().delay_next.push((id, None));
    }
    /// Same, for the next reply of `id` to `instruction` only.
    pub fn delay_next_reply_to(&self, id: u8, instruction: u8) {
        self.lock().delay_next.push((id, Some(instruction)));
    }
    /// Every open link fails from now on; `connect` makes a new one.
    pub fn unplug(&self) {
        self.lock().generation += 1;
    }
    /// The next `n` calls to `connect` fail.
    pub fn fail_opens(&self, n: u32) {
        self.lock().open_failures = n;
    }
    pub fn set_write_delay(&self, d: Duration) {
        self.lock().write_delay = d;
    }
    /// Holds the next instruction `instruction` at `address` on the wire
    /// (not yet answered nor logged) until the test releases it: the first
    /// receiver says it has been reached, a send on the sender lets it go
    /// (or dropping it; it also goes on by itself after 10 s).
    pub fn hold_next(&self, instruction: u8, address: u16) -> (Receiver<()>, Sender<()>) {
        let (reached, reached_rx) = mpsc::channel();
        let (release_tx, release) = mpsc::channel();
        self.lock().gate = Some(Gate { instruction, address, reached, release });
        (reached_rx, release_tx)
    }
    pub fn log(&self) -> Vec<Received> {
        self.lock().log.clone()
    }
    pub fn open_attempts(&self) -> Vec<Instant> {
        self.lock().open_attempts.clone()
    }

    fn respond(s: &mut SimState, rx: &Received) {
        let mut replies: Vec<(u8, u8, Vec<u8>)> = vec![];
        let p = &rx.params;
        let u16_at = |i: usize| u16::from_le_bytes([p[i], p[i + 1]]);
        match rx.instruction {
            inst::PING => {
                if let Some(sv) = s.servos.get(&rx.id) {
                    let m = sv.get(xl330::MODEL_NUMBER).to_le_bytes();
                    replies.push((rx.id, sv.error_byte(), vec![m[0], m[1], sv.get(xl330::FIRMWARE_VERSION)]));
                }
            }
            inst::READ if p.len() == 4 => {
                if let Some(sv) = s.servos.get_mut(&rx.id) {
                    match sv.read(u16_at(0), u16_at(2)) {
                        Ok(d) => replies.push((rx.id, sv.error_byte(), d)),
                        Err(code) => replies.push((rx.id, sv.error_byte() | code, vec![])),
                    }
                }
            }
            inst::WRITE if p.len() >= 2 => {
                let targets: Vec<u8> =
                    if rx.id == BROADCAST_ID { s.servos.keys().copied().collect() } else { vec![rx.id] };
                for id in targets {
                    if let Some(sv) = s.servos.get_mut(&id) {
                        let code = sv.write(u16_at(0), &p[2..]);
                        if rx.id != BROADCAST_ID {
                            replies.push((id, sv.error_byte() | code, vec![]));
                        }
                    }
                }
            }
            inst::REBOOT => {
                if let Some(sv) = s.servos.get_mut(&rx.id) {
                    sv.set(xl330::HARDWARE_ERROR_STATUS, 0);
                    sv.set(xl330::TORQUE_ENABLE, false);
                    replies.push((rx.id, 0, vec![]));
                }
            }
            inst::SYNC_READ if p.len() >= 4 => {
                let (addr, len) = (u16_at(0), u16_at(2));
                for &id in &p[4..] {
                    if let Some(sv) = s.servos.get_mut(&id) {
                        if let Ok(d) = sv.read(addr, len) {
                            replies.push((id, sv.error_byte(), d));
                        }
                    }
                }
            }
            inst::SYNC_WRITE if p.len() >= 4 => {
                let (addr, len) = (u16_at(0), usize::from(u16_at(2)));
                for chunk in p[4..].chunks(len + 1) {
                    if chunk.len() == len + 1 {
                        if let Some(sv) = s.servos.get_mut(&chunk[0]) {
                            sv.write(addr, &chunk[1..]);
                        }
                    }
                }
            }
            _ => {}
        }
        for (id, err, data) in replies {
            if s.servos.get(&id).map(|sv| sv.silent).unwrap_or(true) {
                continue;
            }
            let pkt = protocol::encode_status(id, err, &data);
            let held = s.delay_next.iter().position(|&(i, ins)| i == id && ins.is_none_or(|ins| ins == rx.instruction));
            if let Some(k) = held {
                s.delay_next.remove(k);
                s.late.extend(pkt);
                s.late_armed = false;
            } else {
                s.input.extend(pkt);
            }
        }
    }
}

/// Decodes one instruction packet (header, id, length, stuffed payload, CRC).
pub fn decode_instruction(pkt: &[u8]) -> Option<Received> {
    if pkt.len() < 10 || pkt[..4] != HEADER {
        return None;
    }
    let len = usize::from(u16::from_le_bytes([pkt[5], pkt[6]]));
    if pkt.len() != 7 + len || len < 3 {
        return None;
    }
    let crc = u16::from_le_bytes([pkt[pkt.len() - 2], pkt[pkt.len() - 1]]);
    if protocol::crc16(&pkt[..pkt.len() - 2]) != crc {
        return None;
    }
    let payload = protocol::unstuff(&pkt[7..pkt.len() - 2]);
    Some(Received { id: pkt[4], instruction: payload[0], params: payload[1..].to_vec() })
}

/// One open link to a [`SimBus`].
pub struct SimLink {
    bus: SimBus,
    generation: u64,
}

impl SimLink {
    fn check(&self, s: &SimState) -> Result<()> {
        if s.generation != self.generation {
            return Err(DxlError::Disconnected { port: "sim".into(), cause: "unplugged".into() });
        }
        Ok(())
    }
}

impl Transport for SimLink {
    fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let delay = {
            let s = self.bus.lock();
            self.check(&s)?;
            s.write_delay
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let rx = decode_instruction(data);
        let held = {
            let mut s = self.bus.lock();
            let hit = |g: &Gate| rx.as_ref().is_some_and(|r| g.instruction == r.instruction && Some(g.address) == r.address());
            if s.gate.as_ref().is_some_and(hit) {
                s.gate.take()
            } else {
                None
            }
        };
        if let Some(g) = held {
            // Without the bus lock: the test acts meanwhile.
            let _ = g.reached.send(());
            let _ = g.release.recv_timeout(GATE_MAX);
        }
        let mut s = self.bus.lock();
        self.check(&s)?;
        if let Some(rx) = rx {
            SimBus::respond(&mut s, &rx);
            s.log.push(rx);
        }
        Ok(())
    }

    fn read_some(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        {
            let mut s = self.bus.lock();
            self.check(&s)?;
            if s.input.is_empty() && s.late_armed && !s.late.is_empty() {
                // The late reply shows up once its transaction has given up.
                let late = std::mem::take(&mut s.late);
                s.input.extend(late);
                s.late_armed = false;
            }
            if !s.input.is_empty() {
                let n = buf.len().min(s.input.len());
                for (b, v) in buf.iter_mut().zip(s.input.drain(..n)) {
                    *b = v;
                }
                return Ok(n);
            }
        }
        // Nothing to read: the whole timeout passes, like on a quiet line.
        std::thread::sleep(timeout);
        let mut s = self.bus.lock();
        self.check(&s)?;
        if !s.late.is_empty() {
            s.late_armed = true;
        }
        Ok(0)
    }

    fn clear_input(&mut self) -> Result<()> {
        let mut s = self.bus.lock();
        self.check(&s)?;
        s.input.clear();
        Ok(())
    }

    fn name(&self) -> &str {
        "sim"
    }
}

impl Connector for SimBus {
    type Link = SimLink;
    fn connect(&self) -> Result<SimLink> {
        let mut s = self.lock();
        s.open_attempts.push(Instant::now());
        if s.open_failures > 0 {
            s.open_failures -= 1;
            return Err(DxlError::Open { port: "sim".into(), cause: "no such device (simulated)".into() });
        }
        s.input.clear();
        s.late.clear();
        Ok(SimLink { bus: self.clone(), generation: s.generation })
    }
}
