//! Synchronous Dynamixel transactions over a [`Transport`]: ping, read,
//! write, reboot, sync read and sync write, with per-call deadlines.

use crate::error::{DxlError, Result};
use crate::protocol::{self, ParseEvent, StatusPacket, StatusParser};
use crate::transport::Transport;
use std::time::{Duration, Instant};

/// How long a reboot's acknowledgement is waited for, at least. A servo
/// acknowledges at once; a later answer is the host's or the adapter's
/// latency (a starved process, a USB hiccup). A reboot is rare (a person, or
/// bounded recovery), so a longer wait costs at most one late cycle, while a
/// missed acknowledgement would have the caller reboot the motor again.
pub const REBOOT_REPLY_WAIT: Duration = Duration::from_millis(50);

/// Counters kept by the bus across transactions.
#[derive(Debug, Default, Clone)]
pub struct BusCounters {
    pub packets_ok: u64,
    pub timeouts: u64,
    pub crc_errors: u64,
    pub status_errors: u64,
    pub malformed: u64,
    pub garbage_bytes: u64,
    pub bytes_tx: u64,
    pub bytes_rx: u64,
    /// Replies that answered no pending request (a late answer to an earlier,
    /// timed-out transaction, or a wrong length): discarded, never an error.
    pub stray_replies: u64,
}

pub struct Bus {
    transport: Box<dyn Transport>,
    parser: StatusParser,
    baudrate: u32,
    /// Fixed slack added to every deadline (adapter latency, return delay).
    pub io_timeout: Duration,
    pub counters: BusCounters,
    rxbuf: Vec<u8>,
}

/// Result of one motor's part in a sync read.
pub type SyncReadItem = (u8, Result<StatusPacket>);

impl Bus {
    pub fn new(transport: Box<dyn Transport>, baudrate: u32, io_timeout: Duration) -> Self {
        Self {
            transport,
            parser: StatusParser::new(),
            baudrate,
            io_timeout,
            counters: BusCounters::default(),
            rxbuf: vec![0u8; 4096],
        }
    }

    pub fn port_name(&self) -> &str {
        self.transport.name()
    }

    pub fn baudrate(&self) -> u32 {
        self.baudrate
    }

    /// Time `n` bytes take on the wire (10 bits per byte).
    pub fn wire_time(&self, n: usize) -> Duration {
        Duration::from_nanos((n as u64) * 10 * 1_000_000_000 / self.baudrate.max(1) as u64)
    }

    fn send(&mut self, pkt: &[u8]) -> Result<()> {
        // Anything still buffered or waiting in the port belongs to an earlier,
        // finished transaction (e.g. a reply that came after its deadline).
        // They are drained (without waiting) and counted, not left to be read
        // as the answer to this one.
        loop {
            let n = self.transport.read_some(&mut self.rxbuf, Duration::from_micros(1))?;
            if n == 0 {
                break;
            }
            self.counters.bytes_rx += n as u64;
            let (buf, parser) = (&self.rxbuf[..n], &mut self.parser);
            parser.push(buf);
        }
        while let Some(ev) = self.parser.next_event() {
            if matches!(ev, ParseEvent::Packet(_)) {
                self.counters.stray_replies += 1;
            }
        }
        self.sync_garbage();
        self.parser.clear();
        self.transport.write_all(pkt)?;
        self.counters.bytes_tx += pkt.len() as u64;
        Ok(())
    }

    fn deadline_for(&self, tx_len: usize, rx_len: usize) -> Instant {
        self.deadline_within(tx_len, rx_len, self.io_timeout)
    }

    fn deadline_within(&self, tx_len: usize, rx_len: usize, slack: Duration) -> Instant {
        Instant::now() + slack + self.wire_time(tx_len + rx_len) * 2
    }

    /// Waits for the next status packet from any id, up to `deadline`.
    /// CRC errors and malformed frames are counted and returned as `Err`.
    fn next_status(&mut self, deadline: Instant, expect_id: u8) -> Result<StatusPacket> {
        loop {
            while let Some(ev) = self.parser.next_event() {
                match ev {
                    ParseEvent::Packet(p) => {
                        self.counters.packets_ok += 1;
                        return Ok(p);
                    }
                    ParseEvent::CrcMismatch { .. } => {
                        self.counters.crc_errors += 1;
                        self.sync_garbage();
                        return Err(DxlError::Crc { id: expect_id });
                    }
                    ParseEvent::NotStatus { .. } => continue,
                    ParseEvent::Malformed { id } => {
                        self.counters.malformed += 1;
                        return Err(DxlError::Malformed { id, reason: "no error byte".into() });
                    }
                }
            }
            self.sync_garbage();
            let now = Instant::now();
            if now >= deadline {
                self.counters.timeouts += 1;
                return Err(DxlError::Timeout { id: expect_id, waited_us: 0 });
            }
            let n = self.transport.read_some(&mut self.rxbuf, deadline - now)?;
            if n > 0 {
                self.counters.bytes_rx += n as u64;
                let (buf, parser) = (&self.rxbuf[..n], &mut self.parser);
                parser.push(buf);
            }
        }
    }

    fn sync_garbage(&mut self) {
        self.counters.garbage_bytes = self.parser.garbage_bytes;
    }

    /// One request, one answer from `id`.
    fn transact(&mut self, id: u8, pkt: &[u8], rx_params: usize) -> Result<StatusPacket> {
        self.transact_within(id, pkt, rx_params, self.io_timeout)
    }

    /// `transact`, with `slack` instead of `io_timeout` added to the deadline.
    fn transact_within(&mut self, id: u8, pkt: &[u8], rx_params: usize, slack: Duration) -> Result<StatusPacket> {
        let start = Instant::now();
        self.send(pkt)?;
        let deadline = self.deadline_within(pkt.len(), protocol::status_wire_len(rx_params), slack);
        loop {
            match self.next_status(deadline, id) {
                Ok(p) if p.id == id && (p.params.len() == rx_params || p.error_code() != 0) => {
                    if p.error_code() != 0 {
                        self.counters.status_errors += 1;
                        return Err(DxlError::Status { id, code: p.error_code() });
                    }
                    return Ok(p);
                }
                Ok(_) => {
                    // a late answer to an earlier request (another id, or this
                    // id with another length): not ours, keep waiting
                    self.counters.stray_replies += 1;
                    continue;
                }
                Err(DxlError::Timeout { id, .. }) => {
                    return Err(DxlError::Timeout { id, waited_us: start.elapsed().as_micros() as u64 })
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Ping: returns (model number, firmware version).
    pub fn ping(&mut self, id: u8) -> Result<(u16, u8)> {
        let p = self.transact(id, &protocol::ping(id), 3)?;
        if p.params.len() != 3 {
            self.counters.malformed += 1;
            return Err(DxlError::Malformed { id, reason: format!("ping answer has {} bytes", p.params.len()) });
        }
        Ok((u16::from_le_bytes([p.params[0], p.params[1]]), p.params[2]))
    }

    /// Reads `length` bytes at `address`. Returns the data and the alert flag.
    pub fn read(&mut self, id: u8, address: u16, length: u16) -> Result<(Vec<u8>, bool)> {
        let p = self.transact(id, &protocol::read(id, address, length), length as usize)?;
        if p.params.len() != length as usize {
            self.counters.malformed += 1;
            return Err(DxlError::Malformed {
                id,
                reason: format!("read {} bytes, got {}", length, p.params.len()),
            });
        }
        let alert = p.alert();
        Ok((p.params, alert))
    }

    /// Writes `data` at `address` and waits for the acknowledgement.
    /// Returns the alert flag of the answer.
    pub fn write(&mut self, id: u8, address: u16, data: &[u8]) -> Result<bool> {
        if id == protocol::BROADCAST_ID {
            self.send(&protocol::write(id, address, data))?;
            return Ok(false);
        }
        let p = self.transact(id, &protocol::write(id, address, data), 0)?;
        Ok(p.alert())
    }

    /// Reboots a motor (clears latched hardware errors). Its acknowledgement
    /// is waited for at least [`REBOOT_REPLY_WAIT`]; one that never comes
    /// (lost on the wire) is retried once: the reboot may or may not have
    /// run, and a second one is harmless.
    pub fn reboot(&mut self, id: u8) -> Result<()> {
        let (pkt, wait) = (protocol::reboot(id), self.io_timeout.max(REBOOT_REPLY_WAIT));
        match self.transact_within(id, &pkt, 0, wait) {
            Err(DxlError::Timeout { .. }) => self.transact_within(id, &pkt, 0, wait).map(|_| ()),
            r => r.map(|_| ()),
        }
    }

    /// Sync write (no answer on the wire). Fails only on transport errors.
    pub fn sync_write(&mut self, address: u16, length: u16, entries: &[(u8, &[u8])]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let pkt = protocol::sync_write(address, length, entries).map_err(DxlError::InvalidArgument)?;
        self.send(&pkt)
    }

    /// Sync read of `length` bytes at `address` from each id, in order.
    /// Every id gets its own result; a transport failure aborts the call.
    pub fn sync_read(&mut self, ids: &[u8], address: u16, length: u16) -> Result<Vec<SyncReadItem>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let pkt = protocol::sync_read(ids, address, length);
        let start = Instant::now();
        self.send(&pkt)?;
        let per = protocol::status_wire_len(length as usize);
        let deadline = self.deadline_for(pkt.len(), per * ids.len());
        let mut got: Vec<Option<Result<StatusPacket>>> = vec![None; ids.len()];
        let mut remaining = ids.len();
        let mut next_idx = 0usize;
        while remaining > 0 {
            let expect = ids[next_idx.min(ids.len() - 1)];
            match self.next_status(deadline, expect) {
                Ok(p) if p.error_code() == 0
                    && (p.params.len() != length as usize || !ids.contains(&p.id)) =>
                {
                    // a late answer to an earlier request: not ours, keep waiting
                    self.counters.stray_replies += 1;
                }
                Ok(p) => {
                    if let Some(i) = ids.iter().position(|&x| x == p.id) {
                        if got[i].is_none() {
                            let r = if p.error_code() != 0 {
                                self.counters.status_errors += 1;
                                Err(DxlError::Status { id: p.id, code: p.error_code() })
                            } else if p.params.len() != length as usize {
                                self.counters.malformed += 1;
                                Err(DxlError::Malformed {
                                    id: p.id,
                                    reason: format!("read {} bytes, got {}", length, p.params.len()),
                                })
                            } else {
                                Ok(p)
                            };
                            got[i] = Some(r);
                            remaining -= 1;
                            next_idx = i + 1;
                        }
                    }
                }
                Err(DxlError::Crc { .. }) => {
                    // Attribute the corrupt frame to the motor expected next.
                    let i = next_idx.min(ids.len() - 1);
                    if got[i].is_none() {
                        got[i] = Some(Err(DxlError::Crc { id: ids[i] }));
                        remaining -= 1;
                    }
                    next_idx = i + 1;
                }
                Err(DxlError::Timeout { .. }) => break,
                Err(e @ DxlError::Malformed { .. }) => {
                    let i = next_idx.min(ids.len() - 1);
                    if got[i].is_none() {
                        got[i] = Some(Err(e));
                        remaining -= 1;
                    }
                    next_idx = i + 1;
                }
                Err(e) => return Err(e),
            }
            if next_idx >= ids.len() {
                next_idx = ids.len() - 1;
            }
        }
        let waited = start.elapsed().as_micros() as u64;
        Ok(ids
            .iter()
            .zip(got)
            .map(|(&id, r)| (id, r.unwrap_or(Err(DxlError::Timeout { id, waited_us: waited }))))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode_status;
    use crate::transport::mock::MockTransport;

    fn bus() -> (Bus, MockTransport) {
        let t = MockTransport::default();
        (Bus::new(Box::new(t.clone()), 1_000_000, Duration::from_millis(2)), t)
    }

    #[test]
    fn a_late_reboot_acknowledgement_is_still_taken() {
        let (mut b, t) = bus(); // io_timeout 2 ms
        let late = |t: MockTransport, id: u8| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(15));
                t.feed(&encode_status(id, 0, &[]));
            })
        };
        let h = late(t.clone(), 11);
        assert!(b.reboot(11).is_ok(), "15 ms late is within REBOOT_REPLY_WAIT");
        h.join().unwrap();
        // an ordinary transaction keeps its io_timeout
        let h = late(t.clone(), 12);
        assert!(matches!(b.write(12, 65, &[1]), Err(DxlError::Timeout { id: 12, .. })));
        h.join().unwrap();
    }

    #[test]
    fn a_lost_reboot_acknowledgement_is_retried_once() {
        let (mut b, t) = bus();
        t.on_write(vec![]); // the first acknowledgement is lost
        t.on_write(encode_status(11, 0, &[]));
        assert!(b.reboot(11).is_ok());
        assert_eq!(t.written().len(), 2);
        assert_eq!(b.counters.timeouts, 1);
        // never answered: a timeout after the second try, not a third
        assert!(matches!(b.reboot(12), Err(DxlError::Timeout { id: 12, .. })));
        assert_eq!(t.written().len(), 4);
    }

    #[test]
    fn late_reply_waiting_before_the_request_is_drained_and_counted() {
        let (mut b, t) = bus();
        t.feed(&encode_status(11, 0, &[1, 2, 3, 4, 5, 6, 7])); // late answer to an earlier 7-byte read
        t.on_write(encode_status(11, 0, &[9, 8, 7, 6]));
        let (data, _) = b.read(11, 132, 4).unwrap();
        assert_eq!(data, vec![9, 8, 7, 6]);
        assert_eq!(b.counters.stray_replies, 1);
        assert_eq!(b.counters.malformed, 0);
    }

    #[test]
    fn late_reply_arriving_after_the_request_is_skipped() {
        let (mut b, t) = bus();
        let mut both = encode_status(11, 0, &[1, 2, 3, 4, 5, 6, 7]); // same id, wrong length
        both.extend(encode_status(12, 0, &[0, 0, 0, 0])); // another id
        both.extend(encode_status(11, 0, &[9, 8, 7, 6])); // the answer
        t.on_write(both);
        let (data, _) = b.read(11, 132, 4).unwrap();
        assert_eq!(data, vec![9, 8, 7, 6]);
        assert_eq!(b.counters.stray_replies, 2);
    }

    #[test]
    fn sync_read_skips_stray_replies_and_keeps_every_motor() {
        let (mut b, t) = bus();
        let mut rx = encode_status(10, 0, &[1; 7]); // late, wrong length
        rx.extend(encode_status(10, 0, &[1, 0, 0, 0]));
        rx.extend(encode_status(40, 0, &[2, 0, 0, 0])); // not asked
        rx.extend(encode_status(11, 0, &[3, 0, 0, 0]));
        t.on_write(rx);
        let out = b.sync_read(&[10, 11], 132, 4).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1.as_ref().unwrap().params, vec![1, 0, 0, 0]);
        assert_eq!(out[1].1.as_ref().unwrap().params, vec![3, 0, 0, 0]);
        assert_eq!(b.counters.stray_replies, 2);
        assert_eq!(b.counters.malformed, 0);
    }

    #[test]
    fn missing_reply_is_a_timeout_for_that_transaction_only() {
        let (mut b, t) = bus();
        assert!(matches!(b.read(11, 132, 4), Err(DxlError::Timeout { id: 11, .. })));
        t.on_write(encode_status(11, 0, &[4, 3, 2, 1]));
        assert_eq!(b.read(11, 132, 4).unwrap().0, vec![4, 3, 2, 1]);
        assert_eq!(b.counters.timeouts, 1);
    }

    #[test]
    fn status_error_is_reported_with_the_motor_id() {
        let (mut b, t) = bus();
        t.on_write(encode_status(13, 0x07, &[]));
        assert!(matches!(b.write(13, 64, &[1]), Err(DxlError::Status { id: 13, code: 7 })));
        assert_eq!(t.written().len(), 1);
    }
}
