//! Byte transport: a serial port (real adapter or pseudo-terminal), with a
//! timeout on every read so that nothing can block forever; and the
//! [`Connector`] that opens (and, after a disconnect, reopens) it.
//!
//! For tests: [`mock`] (a scripted byte link) and [`sim`] (an in-memory bus
//! of XL330 servos that answers instruction packets).

use crate::error::{DxlError, Result};
use std::io::{self, Read, Write};
use std::time::Duration;

/// What the bus needs from a byte link.
pub trait Transport: Send {
    /// Writes the whole buffer.
    fn write_all(&mut self, data: &[u8]) -> Result<()>;
    /// Reads what is available, waiting at most `timeout`. `Ok(0)` on timeout.
    fn read_some(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize>;
    /// Drops unread input.
    fn clear_input(&mut self) -> Result<()>;
    /// Human-readable name (port path).
    fn name(&self) -> &str;
}

/// A serial port opened with the `serialport` crate, 8N1, no flow control.
pub struct SerialTransport {
    port: Box<dyn serialport::SerialPort>,
    path: String,
}

impl SerialTransport {
    pub fn open(path: &str, baudrate: u32) -> Result<Self> {
        if baudrate == 0 {
            return Err(DxlError::InvalidArgument("baudrate must be > 0".into()));
        }
        let port = serialport::new(path, baudrate)
            .data_bits(serialport::DataBits::Eight)
            .parity(serialport::Parity::None)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(Duration::from_millis(10))
            .open()
            .map_err(|e| DxlError::Open { port: path.to_string(), cause: e.to_string() })?;
        Ok(Self { port, path: path.to_string() })
    }

    fn disconnected(&self, e: impl ToString) -> DxlError {
        DxlError::Disconnected { port: self.path.clone(), cause: e.to_string() }
    }
}

impl Transport for SerialTransport {
    fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.port.write_all(data).map_err(|e| self.disconnected(e))?;
        self.port.flush().map_err(|e| self.disconnected(e))
    }

    fn read_some(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        if timeout.is_zero() {
            return Ok(0);
        }
        self.port.set_timeout(timeout).map_err(|e| self.disconnected(e))?;
        match self.port.read(buf) {
            Ok(0) => Err(self.disconnected("end of file")),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(self.disconnected(e)),
        }
    }

    fn clear_input(&mut self) -> Result<()> {
        self.port
            .clear(serialport::ClearBuffer::Input)
            .map_err(|e| self.disconnected(e))
    }

    fn name(&self) -> &str {
        &self.path
    }
}

/// Opens the link the control loop talks over; called again to reconnect
/// after the link failed.
pub trait Connector: Send + Sync + 'static {
    type Link: Transport + 'static;
    fn connect(&self) -> Result<Self::Link>;
}

/// Opens a serial port (the production connector).
#[derive(Debug, Clone)]
pub struct SerialConnector {
    pub port: String,
    pub baudrate: u32,
}

impl Connector for SerialConnector {
    type Link = SerialTransport;
    fn connect(&self) -> Result<SerialTransport> {
        SerialTransport::open(&self.port, self.baudrate)
    }
}

/// Any `Fn() -> Result<impl Transport>` is a connector.
impl<F, T> Connector for F
where
    F: Fn() -> Result<T> + Send + Sync + 'static,
    T: Transport + 'static,
{
    type Link = T;
    fn connect(&self) -> Result<T> {
        self()
    }
}

#[cfg(test)]
pub mod mock;
#[cfg(test)]
pub mod sim;
