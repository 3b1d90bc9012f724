//! Synchronous Dynamixel transactions over a [`Transport`]: ping, read,
//! write, reboot, sync read and sync write, with per-call deadlines.

use crate::error::{DxlError, Result};
use crate::protocol::{self, ParseEvent, StatusPacket, StatusParser};
use crate::transport::Transport;
use std::time::{Duration, Instant};

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
        // Anything still buffered belongs to an earlier, finished transaction.
        if self.parser.buffered() > 0 {
            self.parser.clear();
        }
        self.transport.write_all(pkt)?;
        self.counters.bytes_tx += pkt.len() as u64;
        Ok(())
    }

    fn deadline_for(&self, tx_len: usize, rx_len: usize) -> Instant {
        Instant::now() + self.io_timeout + self.wire_time(tx_len + rx_len) * 2
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
        let start = Instant::now();
        self.send(pkt)?;
        let deadline = self.deadline_for(pkt.len(), protocol::status_wire_len(rx_params));
        loop {
            match self.next_status(deadline, id) {
                Ok(p) if p.id == id => {
                    if p.error_code() != 0 {
                        self.counters.status_errors += 1;
                        return Err(DxlError::Status { id, code: p.error_code() });
                    }
                    return Ok(p);
                }
                Ok(_) => continue, // a late answer from someone else
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

    /// Reboots a motor (clears latched hardware errors).
    pub fn reboot(&mut self, id: u8) -> Result<()> {
        self.transact(id, &protocol::reboot(id), 0).map(|_| ())
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
