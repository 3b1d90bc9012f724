//! Reachy Mini Dynamixel Protocol 2.0 driver.
//!
//! Layers, bottom up:
//! - [`protocol`] — packets, CRC, stuffing, status parser (pure, no I/O);
//! - [`transport`] — the byte link (serial port with read timeouts) and the
//!   [`transport::Connector`] that (re)opens it; for tests `transport::mock`
//!   (scripted bytes) and `transport::sim` (an in-memory XL330 bus);
//! - [`bus`] — transactions (ping, read, write, reboot, sync read/write)
//!   with deadlines and stray-reply accounting;
//! - [`registers`] — the XL330 control table (addresses, lengths, typed
//!   decoders, the blocks the loop reads);
//! - [`control`] — the background control loop: `control/loop.rs` (the
//!   thread: cycles, commands, reconnect with backoff), [`control::stats`]
//!   (timing windows, counters, sample clock), [`control::watchdog`] (goal
//!   timeout decision), [`control::events`] (typed event queue) — and the
//!   [`control::Controller`] handle;
//! - `python` (feature `python`) — the PyO3 bindings `reachy_mini._driver`.

pub mod bus;
pub mod control;
pub mod error;
pub mod protocol;
pub mod registers;
pub mod transport;

#[cfg(feature = "python")]
mod python;
