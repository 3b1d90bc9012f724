//! Byte transport: a serial port (real adapter or pseudo-terminal), with a
//! timeout on every read so that nothing can block forever.

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

/// A scripted in-memory link for tests: bytes queued with `feed` (already
/// waiting, e.g. a late reply) or `on_write` (answers to the next writes).
#[cfg(test)]
pub mod mock {
    use super::Transport;
    use crate::error::Result;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Default)]
    pub struct Script {
        pub input: VecDeque<u8>,
        pub replies: VecDeque<Vec<u8>>,
        pub written: Vec<Vec<u8>>,
    }

    #[derive(Clone, Default)]
    pub struct MockTransport(pub Arc<Mutex<Script>>);

    impl MockTransport {
        /// Bytes already waiting in the port.
        pub fn feed(&self, bytes: &[u8]) {
            self.0.lock().unwrap().input.extend(bytes);
        }
        /// Bytes that arrive after the next write.
        pub fn on_write(&self, bytes: Vec<u8>) {
            self.0.lock().unwrap().replies.push_back(bytes);
        }
        pub fn written(&self) -> Vec<Vec<u8>> {
            self.0.lock().unwrap().written.clone()
        }
    }

    impl Transport for MockTransport {
        fn write_all(&mut self, data: &[u8]) -> Result<()> {
            let mut s = self.0.lock().unwrap();
            s.written.push(data.to_vec());
            if let Some(r) = s.replies.pop_front() {
                s.input.extend(r);
            }
            Ok(())
        }
        fn read_some(&mut self, buf: &mut [u8], _timeout: Duration) -> Result<usize> {
            let mut s = self.0.lock().unwrap();
            let n = buf.len().min(s.input.len());
            for b in buf.iter_mut().take(n) {
                *b = s.input.pop_front().unwrap_or(0);
            }
            Ok(n)
        }
        fn clear_input(&mut self) -> Result<()> {
            self.0.lock().unwrap().input.clear();
            Ok(())
        }
        fn name(&self) -> &str {
            "mock"
        }
    }
}
