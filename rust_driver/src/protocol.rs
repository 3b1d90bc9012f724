//! Dynamixel Protocol 2.0 framing: CRC-16, byte stuffing, instruction
//! encoding and a resynchronising status-packet parser.
//!
//! Pure functions and a byte-fed state machine: no I/O happens here.

/// Packet header shared by instruction and status packets.
pub const HEADER: [u8; 4] = [0xFF, 0xFF, 0xFD, 0x00];
/// Broadcast id (sync read / sync write / broadcast ping).
pub const BROADCAST_ID: u8 = 0xFE;
/// Largest LENGTH field we accept in a status packet. Anything larger is a
/// false header (garbage on the line) and triggers a resync.
pub const MAX_STATUS_LEN: usize = 512;

/// Instruction codes used by this driver.
pub mod inst {
    pub const PING: u8 = 0x01;
    pub const READ: u8 = 0x02;
    pub const WRITE: u8 = 0x03;
    pub const REBOOT: u8 = 0x08;
    pub const STATUS: u8 = 0x55;
    pub const SYNC_READ: u8 = 0x82;
    pub const SYNC_WRITE: u8 = 0x83;
}

/// Bit 7 of the status error byte: the device has a hardware error latched.
pub const ALERT_BIT: u8 = 0x80;

const CRC_TABLE: [u16; 256] = build_crc_table();

const fn build_crc_table() -> [u16; 256] {
    // CRC-16/BUYPASS: poly 0x8005, init 0, not reflected (the e-manual table).
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x8005 } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// CRC-16 as defined by the Dynamixel Protocol 2.0 e-manual.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        let idx = ((crc >> 8) as u8 ^ b) as usize;
        crc = (crc << 8) ^ CRC_TABLE[idx];
    }
    crc
}

/// Byte stuffing: every `FF FF FD` inside the payload gets an extra `FD`,
/// so that a header can never appear inside a packet.
pub fn stuff(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    for &b in payload {
        out.push(b);
        let n = out.len();
        if n >= 3 && out[n - 3] == 0xFF && out[n - 2] == 0xFF && out[n - 1] == 0xFD {
            out.push(0xFD);
        }
    }
    // The inserted FD must not itself start a new FF FF FD match: it cannot,
    // because the check looks at the last three bytes which now end in FD FD.
    out
}

/// Removes the stuffing added by [`stuff`].
pub fn unstuff(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut i = 0;
    while i < payload.len() {
        let b = payload[i];
        out.push(b);
        let n = out.len();
        if n >= 3
            && out[n - 3] == 0xFF
            && out[n - 2] == 0xFF
            && out[n - 1] == 0xFD
            && i + 1 < payload.len()
            && payload[i + 1] == 0xFD
        {
            i += 1; // skip the stuffing byte
        }
        i += 1;
    }
    out
}

/// Encodes one instruction packet (header, id, length, stuffed payload, CRC).
pub fn encode_instruction(id: u8, instruction: u8, params: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(params.len() + 1);
    raw.push(instruction);
    raw.extend_from_slice(params);
    let body = stuff(&raw);
    let length = (body.len() + 2) as u16;
    let mut pkt = Vec::with_capacity(body.len() + 9);
    pkt.extend_from_slice(&HEADER);
    pkt.push(id);
    pkt.extend_from_slice(&length.to_le_bytes());
    pkt.extend_from_slice(&body);
    let crc = crc16(&pkt);
    pkt.extend_from_slice(&crc.to_le_bytes());
    pkt
}

/// Encodes a status packet (used by tests and tools; devices send these).
pub fn encode_status(id: u8, error: u8, params: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(params.len() + 1);
    p.push(error);
    p.extend_from_slice(params);
    encode_instruction(id, inst::STATUS, &p)
}

pub fn ping(id: u8) -> Vec<u8> {
    encode_instruction(id, inst::PING, &[])
}

pub fn read(id: u8, address: u16, length: u16) -> Vec<u8> {
    let a = address.to_le_bytes();
    let l = length.to_le_bytes();
    encode_instruction(id, inst::READ, &[a[0], a[1], l[0], l[1]])
}

pub fn write(id: u8, address: u16, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(data.len() + 2);
    p.extend_from_slice(&address.to_le_bytes());
    p.extend_from_slice(data);
    encode_instruction(id, inst::WRITE, &p)
}

pub fn reboot(id: u8) -> Vec<u8> {
    encode_instruction(id, inst::REBOOT, &[])
}

pub fn sync_read(ids: &[u8], address: u16, length: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(ids.len() + 4);
    p.extend_from_slice(&address.to_le_bytes());
    p.extend_from_slice(&length.to_le_bytes());
    p.extend_from_slice(ids);
    encode_instruction(BROADCAST_ID, inst::SYNC_READ, &p)
}

/// Sync write: `entries` are (id, data) with every data exactly `length` bytes.
pub fn sync_write(address: u16, length: u16, entries: &[(u8, &[u8])]) -> Result<Vec<u8>, String> {
    let mut p = Vec::with_capacity(4 + entries.len() * (1 + length as usize));
    p.extend_from_slice(&address.to_le_bytes());
    p.extend_from_slice(&length.to_le_bytes());
    for (id, data) in entries {
        if data.len() != length as usize {
            return Err(format!(
                "sync_write: motor {} has {} data bytes, expected {}",
                id,
                data.len(),
                length
            ));
        }
        p.push(*id);
        p.extend_from_slice(data);
    }
    Ok(encode_instruction(BROADCAST_ID, inst::SYNC_WRITE, &p))
}

/// Number of bytes a status packet carrying `n_params` unstuffed parameter
/// bytes occupies on the wire (without stuffing, which is rare).
pub fn status_wire_len(n_params: usize) -> usize {
    11 + n_params
}

/// A decoded status packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPacket {
    pub id: u8,
    /// The raw error byte: bit 7 alert, bits 0..6 the error number.
    pub error: u8,
    pub params: Vec<u8>,
}

impl StatusPacket {
    /// Bit 7: a hardware error is latched in the device.
    pub fn alert(&self) -> bool {
        self.error & ALERT_BIT != 0
    }
    /// Bits 0..6: the processing error of this instruction (0 = none).
    pub fn error_code(&self) -> u8 {
        self.error & 0x7F
    }
}

/// Name of a status packet error number (e-manual "Error" field).
pub fn error_code_name(code: u8) -> &'static str {
    match code {
        0 => "none",
        1 => "result_fail",
        2 => "instruction_error",
        3 => "crc_error",
        4 => "data_range_error",
        5 => "data_length_error",
        6 => "data_limit_error",
        7 => "access_error",
        _ => "unknown_error",
    }
}

/// Hardware error status (address 70) bits of X-series servos.
pub const HW_ERROR_BITS: [(u8, &str); 5] = [
    (0x01, "input_voltage"),
    (0x04, "overheating"),
    (0x08, "motor_encoder"),
    (0x10, "electrical_shock"),
    (0x20, "overload"),
];

/// Decodes the hardware_error_status byte into names of the set bits.
pub fn decode_hardware_error(status: u8) -> Vec<&'static str> {
    HW_ERROR_BITS
        .iter()
        .filter(|(bit, _)| status & bit != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// What the parser found besides valid packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseEvent {
    Packet(StatusPacket),
    /// A complete frame whose CRC did not match. `id` is as received (may be corrupt).
    CrcMismatch { id: u8 },
    /// A complete, CRC-valid frame that is not a status packet (e.g. an echo
    /// of our own instruction on adapters that echo); it is skipped.
    NotStatus { id: u8, instruction: u8 },
    /// A CRC-valid status frame too short to hold an error byte.
    Malformed { id: u8 },
}

/// Incremental status-packet parser. Feed it bytes as they arrive; it
/// returns packets and resynchronises on garbage, partial or corrupt frames.
#[derive(Debug, Default)]
pub struct StatusParser {
    buf: Vec<u8>,
    /// Bytes discarded while hunting for a header.
    pub garbage_bytes: u64,
}

impl StatusParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Drops everything buffered (counted as garbage).
    pub fn clear(&mut self) {
        self.garbage_bytes += self.buf.len() as u64;
        self.buf.clear();
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn discard(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.garbage_bytes += n as u64;
        self.buf.drain(..n);
    }

    /// Returns the next event, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Option<ParseEvent> {
        loop {
            // Hunt for the header.
            let start = find_header(&self.buf);
            match start {
                Some(s) if s > 0 => self.discard(s),
                Some(_) => {}
                None => {
                    // Keep a possible partial header at the end.
                    let keep = partial_header_suffix(&self.buf);
                    let drop = self.buf.len() - keep;
                    self.discard(drop);
                    return None;
                }
            }
            if self.buf.len() < 7 {
                return None;
            }
            let id = self.buf[4];
            let length = u16::from_le_bytes([self.buf[5], self.buf[6]]) as usize;
            if !(3..=MAX_STATUS_LEN).contains(&length) {
                // Implausible length: false header. Skip one byte and rescan.
                self.discard(1);
                continue;
            }
            let total = 7 + length;
            // A real header can't appear inside a stuffed frame: if one
            // does, the current frame was truncated; drop it and resync.
            let span = total.min(self.buf.len());
            if let Some(next) = find_header(&self.buf[4..span]) {
                self.discard(4 + next);
                continue;
            }
            if self.buf.len() < total {
                return None;
            }
            let crc_rx = u16::from_le_bytes([self.buf[total - 2], self.buf[total - 1]]);
            if crc16(&self.buf[..total - 2]) != crc_rx {
                // Maybe the length byte itself was corrupt: resync one byte later.
                self.discard(1);
                return Some(ParseEvent::CrcMismatch { id });
            }
            let payload = unstuff(&self.buf[7..total - 2]);
            self.buf.drain(..total);
            let instruction = payload[0];
            if instruction != inst::STATUS {
                return Some(ParseEvent::NotStatus { id, instruction });
            }
            if payload.len() < 2 {
                return Some(ParseEvent::Malformed { id });
            }
            return Some(ParseEvent::Packet(StatusPacket {
                id,
                error: payload[1],
                params: payload[2..].to_vec(),
            }));
        }
    }
}

fn find_header(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == HEADER)
}

/// Length of the longest suffix of `buf` that is a prefix of the header.
fn partial_header_suffix(buf: &[u8]) -> usize {
    for k in (1..=3usize).rev() {
        if buf.len() >= k && buf[buf.len() - k..] == HEADER[..k] {
            return k;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Vec<ParseEvent> {
        let mut p = StatusParser::new();
        p.push(bytes);
        let mut out = vec![];
        while let Some(e) = p.next_event() {
            out.push(e);
        }
        out
    }

    // Byte-exact vectors from the ROBOTIS Protocol 2.0 e-manual examples.
    #[test]
    fn ping_instruction() {
        assert_eq!(ping(1), [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x03, 0x00, 0x01, 0x19, 0x4E]);
    }

    #[test]
    fn ping_status() {
        let s = [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x07, 0x00, 0x55, 0x00, 0x06, 0x04, 0x26, 0x65, 0x5D];
        assert_eq!(encode_status(1, 0, &[0x06, 0x04, 0x26]), s);
        assert_eq!(
            parse_all(&s),
            vec![ParseEvent::Packet(StatusPacket { id: 1, error: 0, params: vec![0x06, 0x04, 0x26] })]
        );
    }

    #[test]
    fn read_instruction_and_status() {
        assert_eq!(
            read(1, 132, 4),
            [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x07, 0x00, 0x02, 0x84, 0x00, 0x04, 0x00, 0x1D, 0x15]
        );
        let s = [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x08, 0x00, 0x55, 0x00, 0xA6, 0x00, 0x00, 0x00, 0x8C, 0xC0];
        assert_eq!(encode_status(1, 0, &166u32.to_le_bytes()), s);
    }

    #[test]
    fn write_instruction_and_status() {
        assert_eq!(
            write(1, 116, &512u32.to_le_bytes()),
            [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x09, 0x00, 0x03, 0x74, 0x00, 0x00, 0x02, 0x00, 0x00, 0xCA, 0x89]
        );
        assert_eq!(encode_status(1, 0, &[]), [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x04, 0x00, 0x55, 0x00, 0xA1, 0x0C]);
    }

    #[test]
    fn reboot_instruction() {
        assert_eq!(reboot(1), [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x03, 0x00, 0x08, 0x2F, 0x4E]);
    }

    #[test]
    fn sync_read_instruction() {
        assert_eq!(
            sync_read(&[1, 2], 132, 4),
            [0xFF, 0xFF, 0xFD, 0x00, 0xFE, 0x09, 0x00, 0x82, 0x84, 0x00, 0x04, 0x00, 0x01, 0x02, 0xCE, 0xFA]
        );
    }

    #[test]
    fn sync_write_instruction() {
        let a = 150u32.to_le_bytes();
        let b = 170u32.to_le_bytes();
        assert_eq!(
            sync_write(116, 4, &[(1, &a), (2, &b)]).unwrap(),
            [
                0xFF, 0xFF, 0xFD, 0x00, 0xFE, 0x11, 0x00, 0x83, 0x74, 0x00, 0x04, 0x00, 0x01, 0x96, 0x00, 0x00,
                0x00, 0x02, 0xAA, 0x00, 0x00, 0x00, 0x82, 0x87
            ]
        );
        assert!(sync_write(116, 4, &[(1, &[1, 2])]).is_err());
    }

    #[test]
    fn crc_of_manual_table_entries() {
        // First entries of the e-manual's crc_table.
        assert_eq!(CRC_TABLE[1], 0x8005);
        assert_eq!(CRC_TABLE[2], 0x800F);
        assert_eq!(CRC_TABLE[255], 0x0202);
    }

    #[test]
    fn stuffing_round_trip() {
        let raw = [0x03, 0xFF, 0xFF, 0xFD, 0x00, 0xFF, 0xFF, 0xFD];
        let s = stuff(&raw);
        assert_eq!(s, [0x03, 0xFF, 0xFF, 0xFD, 0xFD, 0x00, 0xFF, 0xFF, 0xFD, 0xFD]);
        assert_eq!(unstuff(&s), raw);
        // A status packet whose params need stuffing parses back exactly.
        let pkt = encode_status(7, 0, &[0xFF, 0xFF, 0xFD, 0x01]);
        assert_eq!(pkt[5], 9); // length counts the stuffing byte
        assert_eq!(
            parse_all(&pkt),
            vec![ParseEvent::Packet(StatusPacket { id: 7, error: 0, params: vec![0xFF, 0xFF, 0xFD, 0x01] })]
        );
    }

    #[test]
    fn alert_bit_and_error_code() {
        let p = StatusPacket { id: 1, error: 0x84, params: vec![] };
        assert!(p.alert());
        assert_eq!(p.error_code(), 4);
        assert_eq!(error_code_name(p.error_code()), "data_range_error");
        assert_eq!(decode_hardware_error(0x25), vec!["input_voltage", "overheating", "overload"]);
    }

    #[test]
    fn resync_after_garbage_and_partial() {
        let good = encode_status(3, 0, &[1, 2]);
        let mut stream = vec![0x00, 0xFF, 0x12, 0xFF, 0xFF];
        stream.extend_from_slice(&good[..9]); // truncated frame...
        stream.extend_from_slice(&good); // ...then a full one
        let ev = parse_all(&stream);
        assert_eq!(ev, vec![ParseEvent::Packet(StatusPacket { id: 3, error: 0, params: vec![1, 2] })]);
    }

    #[test]
    fn byte_by_byte_feed() {
        let good = encode_status(4, 0x80, &[9, 9, 9]);
        let mut p = StatusParser::new();
        let mut got = vec![];
        for b in &good {
            p.push(&[*b]);
            while let Some(e) = p.next_event() {
                got.push(e);
            }
        }
        assert_eq!(got, vec![ParseEvent::Packet(StatusPacket { id: 4, error: 0x80, params: vec![9, 9, 9] })]);
    }

    #[test]
    fn crc_error_reported_then_next_packet_found() {
        let mut bad = encode_status(5, 0, &[1, 2, 3, 4]);
        let n = bad.len();
        bad[n - 1] ^= 0x55;
        let good = encode_status(6, 0, &[4]);
        let mut stream = bad.clone();
        stream.extend_from_slice(&good);
        let ev = parse_all(&stream);
        assert_eq!(ev[0], ParseEvent::CrcMismatch { id: 5 });
        assert_eq!(ev.last().unwrap(), &ParseEvent::Packet(StatusPacket { id: 6, error: 0, params: vec![4] }));
    }

    #[test]
    fn instruction_echo_is_skipped() {
        let mut stream = ping(1);
        stream.extend(encode_status(1, 0, &[0x06, 0x04, 0x26]));
        let ev = parse_all(&stream);
        assert_eq!(ev[0], ParseEvent::NotStatus { id: 1, instruction: inst::PING });
        assert!(matches!(ev[1], ParseEvent::Packet(_)));
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..16)) {
            let mut p = StatusParser::new();
            for c in chunks {
                p.push(&c);
                while p.next_event().is_some() {}
            }
        }

        #[test]
        fn status_round_trip(id in 0u8..0xFD, err in proptest::prelude::any::<u8>(), params in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20)) {
            let mut stream = junk.clone();
            stream.extend(encode_status(id, err, &params));
            let mut p = StatusParser::new();
            p.push(&stream);
            let mut found = false;
            while let Some(e) = p.next_event() {
                if e == ParseEvent::Packet(StatusPacket { id, error: err, params: params.clone() }) { found = true; }
            }
            proptest::prop_assert!(found);
        }

        #[test]
        fn stuffing_inverse(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            proptest::prop_assert_eq!(unstuff(&stuff(&raw)), raw);
        }
    }
}
