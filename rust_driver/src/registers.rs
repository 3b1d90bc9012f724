//! XL330 (and XC330) control table, Protocol 2.0: named registers with
//! their address, length and a typed decoder/encoder, in the style of
//! pollen-robotics/rustypot's per-model register maps.
//!
//! Addresses are those of the ROBOTIS e-manual (XL330-M077 / XL330-M288
//! control table). Values stay raw (device units); conversions to SI are
//! the caller's. Decoders never panic: a slice of the wrong length gives
//! `None`.

use std::marker::PhantomData;

/// A fixed-size little-endian register value.
pub trait RegValue: Sized + Copy {
    /// Size in bytes in the control table.
    const LEN: u16;
    /// Decodes exactly `LEN` bytes; `None` for any other length.
    fn decode(bytes: &[u8]) -> Option<Self>;
    /// Encodes to `LEN` little-endian bytes.
    fn encode(self) -> Vec<u8>;
}

macro_rules! int_reg_value {
    ($($t:ty),*) => {$(
        impl RegValue for $t {
            const LEN: u16 = std::mem::size_of::<$t>() as u16;
            fn decode(bytes: &[u8]) -> Option<Self> {
                Some(<$t>::from_le_bytes(bytes.try_into().ok()?))
            }
            fn encode(self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }
        }
    )*};
}
int_reg_value!(u8, i16, u16, i32, u32);

impl RegValue for bool {
    const LEN: u16 = 1;
    fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [b] => Some(*b != 0),
            _ => None,
        }
    }
    fn encode(self) -> Vec<u8> {
        vec![self as u8]
    }
}

/// Whether the host may write the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// One control-table entry holding a `T`.
#[derive(Debug, Clone, Copy)]
pub struct Register<T> {
    pub name: &'static str,
    pub address: u16,
    pub length: u16,
    pub access: Access,
    _value: PhantomData<T>,
}

impl<T: RegValue> Register<T> {
    pub const fn new(name: &'static str, address: u16, access: Access) -> Self {
        Self { name, address, length: T::LEN, access, _value: PhantomData }
    }

    /// Decodes the register's own bytes (e.g. the data of a single read).
    pub fn decode(&self, bytes: &[u8]) -> Option<T> {
        T::decode(bytes)
    }

    /// Decodes the register out of a block read starting at `block_start`.
    pub fn decode_in(&self, block_start: u16, block: &[u8]) -> Option<T> {
        let off = usize::from(self.address.checked_sub(block_start)?);
        T::decode(block.get(off..off + usize::from(self.length))?)
    }

    pub fn encode(&self, value: T) -> Vec<u8> {
        value.encode()
    }

    /// The last address covered, exclusive.
    pub const fn end(&self) -> u16 {
        self.address + self.length
    }
}

/// A contiguous span of the control table read in one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub address: u16,
    pub length: u16,
}

/// XL330 / XC330 control table (Protocol 2.0).
pub mod xl330 {
    use super::{Access::*, Block, Register};

    /// Model numbers answered to a ping.
    pub const MODEL_XL330_M077: u16 = 1190;
    pub const MODEL_XL330_M288: u16 = 1200;

    // EEPROM area (written only with torque off).
    pub const MODEL_NUMBER: Register<u16> = Register::new("model_number", 0, ReadOnly);
    pub const FIRMWARE_VERSION: Register<u8> = Register::new("firmware_version", 6, ReadOnly);
    pub const ID: Register<u8> = Register::new("id", 7, ReadWrite);
    pub const BAUD_RATE: Register<u8> = Register::new("baud_rate", 8, ReadWrite);
    pub const RETURN_DELAY_TIME: Register<u8> = Register::new("return_delay_time", 9, ReadWrite);
    pub const OPERATING_MODE: Register<u8> = Register::new("operating_mode", 11, ReadWrite);
    pub const TEMPERATURE_LIMIT: Register<u8> = Register::new("temperature_limit", 31, ReadWrite);
    pub const MAX_VOLTAGE_LIMIT: Register<u16> = Register::new("max_voltage_limit", 32, ReadWrite);
    pub const MIN_VOLTAGE_LIMIT: Register<u16> = Register::new("min_voltage_limit", 34, ReadWrite);
    pub const CURRENT_LIMIT: Register<u16> = Register::new("current_limit", 38, ReadWrite);
    pub const MAX_POSITION_LIMIT: Register<u32> = Register::new("max_position_limit", 48, ReadWrite);
    pub const MIN_POSITION_LIMIT: Register<u32> = Register::new("min_position_limit", 52, ReadWrite);
    pub const SHUTDOWN: Register<u8> = Register::new("shutdown", 63, ReadWrite);

    // RAM area.
    pub const TORQUE_ENABLE: Register<bool> = Register::new("torque_enable", 64, ReadWrite);
    pub const LED: Register<bool> = Register::new("led", 65, ReadWrite);
    pub const STATUS_RETURN_LEVEL: Register<u8> = Register::new("status_return_level", 68, ReadWrite);
    pub const REGISTERED_INSTRUCTION: Register<u8> = Register::new("registered_instruction", 69, ReadOnly);
    pub const HARDWARE_ERROR_STATUS: Register<u8> = Register::new("hardware_error_status", 70, ReadOnly);
    pub const GOAL_CURRENT: Register<i16> = Register::new("goal_current", 102, ReadWrite);
    pub const PROFILE_ACCELERATION: Register<u32> = Register::new("profile_acceleration", 108, ReadWrite);
    pub const PROFILE_VELOCITY: Register<u32> = Register::new("profile_velocity", 112, ReadWrite);
    pub const GOAL_POSITION: Register<i32> = Register::new("goal_position", 116, ReadWrite);
    pub const MOVING: Register<bool> = Register::new("moving", 122, ReadOnly);
    pub const PRESENT_CURRENT: Register<i16> = Register::new("present_current", 126, ReadOnly);
    pub const PRESENT_VELOCITY: Register<i32> = Register::new("present_velocity", 128, ReadOnly);
    pub const PRESENT_POSITION: Register<i32> = Register::new("present_position", 132, ReadOnly);
    pub const PRESENT_INPUT_VOLTAGE: Register<u16> = Register::new("present_input_voltage", 144, ReadOnly);
    pub const PRESENT_TEMPERATURE: Register<u8> = Register::new("present_temperature", 146, ReadOnly);

    /// Size of the control table image (the last register ends at 147).
    pub const TABLE_LEN: usize = 148;

    /// Read every fast cycle: present_position only.
    pub const POSITION_BLOCK: Block = Block { address: PRESENT_POSITION.address, length: PRESENT_POSITION.length };
    /// Read at the status rate: present_current (126) .. present_temperature (146).
    pub const STATUS_BLOCK: Block =
        Block { address: PRESENT_CURRENT.address, length: PRESENT_TEMPERATURE.end() - PRESENT_CURRENT.address };
    /// Read at the status rate: torque_enable (64) .. hardware_error_status (70).
    pub const FLAG_BLOCK: Block =
        Block { address: TORQUE_ENABLE.address, length: HARDWARE_ERROR_STATUS.end() - TORQUE_ENABLE.address };
}

/// Decoded [`xl330::STATUS_BLOCK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusBlock {
    pub current: i16,
    pub velocity: i32,
    pub position: i32,
    pub voltage: u16,
    pub temperature: u8,
}

impl StatusBlock {
    pub fn decode(block: &[u8]) -> Option<Self> {
        use xl330::*;
        let b = STATUS_BLOCK;
        if block.len() != usize::from(b.length) {
            return None;
        }
        Some(Self {
            current: PRESENT_CURRENT.decode_in(b.address, block)?,
            velocity: PRESENT_VELOCITY.decode_in(b.address, block)?,
            position: PRESENT_POSITION.decode_in(b.address, block)?,
            voltage: PRESENT_INPUT_VOLTAGE.decode_in(b.address, block)?,
            temperature: PRESENT_TEMPERATURE.decode_in(b.address, block)?,
        })
    }
}

/// Decoded [`xl330::FLAG_BLOCK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagBlock {
    pub torque_enabled: bool,
    pub hardware_error: u8,
}

impl FlagBlock {
    pub fn decode(block: &[u8]) -> Option<Self> {
        use xl330::*;
        let b = FLAG_BLOCK;
        if block.len() != usize::from(b.length) {
            return None;
        }
        Some(Self {
            torque_enabled: TORQUE_ENABLE.decode_in(b.address, block)?,
            hardware_error: HARDWARE_ERROR_STATUS.decode_in(b.address, block)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::xl330::*;
    use super::*;

    #[test]
    fn blocks_match_the_e_manual_offsets() {
        // The spans the loop has always read: (126, 21) and (64, 7).
        assert_eq!(STATUS_BLOCK, Block { address: 126, length: 21 });
        assert_eq!(FLAG_BLOCK, Block { address: 64, length: 7 });
        assert_eq!(POSITION_BLOCK, Block { address: 132, length: 4 });
        let mut raw = [0u8; 21];
        raw[0..2].copy_from_slice(&(-12i16).to_le_bytes());
        raw[6..10].copy_from_slice(&(-123_456i32).to_le_bytes());
        raw[18..20].copy_from_slice(&74u16.to_le_bytes());
        raw[20] = 41;
        let s = StatusBlock::decode(&raw).unwrap();
        assert_eq!((s.current, s.position, s.voltage, s.temperature), (-12, -123_456, 74, 41));
        assert!(StatusBlock::decode(&raw[..20]).is_none());
        let f = FlagBlock::decode(&[1, 0, 0, 0, 2, 0, 0x24]).unwrap();
        assert_eq!(f, FlagBlock { torque_enabled: true, hardware_error: 0x24 });
        assert_eq!(GOAL_POSITION.encode(-2), vec![0xFE, 0xFF, 0xFF, 0xFF]);
        assert_eq!(PRESENT_POSITION.decode(&[1, 0, 0]), None);
        assert_eq!(HARDWARE_ERROR_STATUS.decode_in(64, &[0; 6]), None);
    }
}
