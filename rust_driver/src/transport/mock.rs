//! A scripted in-memory link for tests: bytes queued with `feed` (already
//! waiting, e.g. a late reply) or `on_write` (answers to the next writes).

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
