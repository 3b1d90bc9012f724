//! Events reported by the control loop (errors and state changes), kept in
//! a bounded queue that the caller drains.

use std::collections::VecDeque;

/// What an [`Event`] is about. Its spelling towards Python is [`EventKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A state change that is not an error (reconnected, motor back, ...).
    Info,
    /// Motors not answering the ping at start.
    Missing,
    /// The port went away.
    Disconnected,
    /// A motor stopped answering and was left out of sync reads.
    MotorLost,
    /// A hardware error is latched in a motor.
    HardwareError,
    /// A write (goal sync write, torque, raw write) failed.
    WriteError,
    /// No goal arrived within the command timeout.
    CommandTimeout,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::Info,
        EventKind::Missing,
        EventKind::Disconnected,
        EventKind::MotorLost,
        EventKind::HardwareError,
        EventKind::WriteError,
        EventKind::CommandTimeout,
    ];

    /// The name the Python side sees (unchanged from the string kinds).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Info => "info",
            EventKind::Missing => "missing",
            EventKind::Disconnected => "disconnected",
            EventKind::MotorLost => "motor_lost",
            EventKind::HardwareError => "hardware_error",
            EventKind::WriteError => "write_error",
            EventKind::CommandTimeout => "command_timeout",
        }
    }

    /// Every kind but `Info` updates `last_error`.
    pub const fn is_error(self) -> bool {
        !matches!(self, EventKind::Info)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reported event. Drained by the caller.
#[derive(Debug, Clone)]
pub struct Event {
    pub stamp: f64,
    pub kind: EventKind,
    pub motor_id: Option<u8>,
    pub message: String,
}

/// Bounded FIFO of events: the oldest is dropped (and counted) when full.
#[derive(Debug)]
pub struct EventQueue {
    events: VecDeque<Event>,
    cap: usize,
    pub dropped: u64,
}

/// Events kept before the oldest are dropped.
pub const EVENT_CAP: usize = 1024;

impl Default for EventQueue {
    fn default() -> Self {
        Self::with_capacity(EVENT_CAP)
    }
}

impl EventQueue {
    pub fn with_capacity(cap: usize) -> Self {
        Self { events: VecDeque::new(), cap: cap.max(1), dropped: 0 }
    }

    /// Appends an event; returns true if an old one had to be dropped.
    pub fn push(&mut self, ev: Event) -> bool {
        let full = self.events.len() >= self.cap;
        if full {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(ev);
        full
    }

    pub fn drain(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_their_python_spelling_and_the_queue_is_bounded() {
        let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["info", "missing", "disconnected", "motor_lost", "hardware_error", "write_error", "command_timeout"]
        );
        assert!(!EventKind::Info.is_error() && EventKind::MotorLost.is_error());
        let mut q = EventQueue::with_capacity(2);
        for i in 0..3 {
            q.push(Event { stamp: 0.0, kind: EventKind::Info, motor_id: Some(i), message: String::new() });
        }
        assert_eq!(q.dropped, 1);
        let ids: Vec<Option<u8>> = q.drain().into_iter().map(|e| e.motor_id).collect();
        assert_eq!(ids, [Some(1), Some(2)]);
        assert!(q.is_empty());
    }
}
