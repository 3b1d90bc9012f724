//! Reachy Mini Dynamixel Protocol 2.0 driver.
//!
//! Layers: [`protocol`] (packets, CRC, stuffing; pure), [`transport`]
//! (serial port with read timeouts), [`bus`] (transactions), [`control`]
//! (background control loop) and, with the `python` feature, PyO3 bindings.

pub mod bus;
pub mod control;
pub mod error;
pub mod protocol;
pub mod transport;

#[cfg(feature = "python")]
mod python;
