//! The goal watchdog: when goals stop arriving for `command_timeout`, the
//! loop either holds the present positions or turns torque off, once per
//! silence. Pure bookkeeping; the loop does the bus writes.

use std::time::{Duration, Instant};

/// What to do when goals stop arriving for `command_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutAction {
    /// Write goal = present position: motion stops where the motor is now.
    Hold,
    /// Turn torque off on every motor.
    TorqueOff,
}

impl TimeoutAction {
    /// Words used in the `command_timeout` event.
    pub const fn describe(self) -> &'static str {
        match self {
            TimeoutAction::Hold => "holding present positions",
            TimeoutAction::TorqueOff => "turning torque off",
        }
    }
}

/// Time of the last goal and whether the current silence was acted on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watchdog {
    last_goal_at: Option<Instant>,
    tripped: bool,
}

impl Watchdog {
    /// A goal arrived: restart the timer and re-arm.
    pub fn feed(&mut self, now: Instant) {
        self.last_goal_at = Some(now);
        self.tripped = false;
    }

    /// Decides whether `action` is due now. Returns it once per silence
    /// longer than `timeout`; never before the first goal; never when
    /// `timeout` is zero (watchdog disabled).
    pub fn check(&mut self, timeout: Duration, action: TimeoutAction, now: Instant) -> Option<TimeoutAction> {
        if timeout.is_zero() || self.tripped {
            return None;
        }
        let last = self.last_goal_at?;
        if now.saturating_duration_since(last) > timeout {
            self.tripped = true;
            Some(action)
        } else {
            None
        }
    }

    pub fn tripped(&self) -> bool {
        self.tripped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_once_per_silence_and_rearms_on_the_next_goal() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Watchdog::default();
        let to = ms(100);
        assert_eq!(w.check(to, TimeoutAction::Hold, t0 + ms(500)), None, "no goal yet");
        w.feed(t0);
        assert_eq!(w.check(to, TimeoutAction::Hold, t0 + ms(100)), None);
        assert_eq!(w.check(to, TimeoutAction::Hold, t0 + ms(101)), Some(TimeoutAction::Hold));
        assert!(w.tripped());
        assert_eq!(w.check(to, TimeoutAction::Hold, t0 + ms(900)), None, "once per silence");
        w.feed(t0 + ms(1000));
        assert!(!w.tripped());
        assert_eq!(w.check(to, TimeoutAction::TorqueOff, t0 + ms(1050)), None);
        assert_eq!(w.check(to, TimeoutAction::TorqueOff, t0 + ms(1200)), Some(TimeoutAction::TorqueOff));
        let mut off = Watchdog::default();
        off.feed(t0);
        assert_eq!(off.check(Duration::ZERO, TimeoutAction::Hold, t0 + ms(10_000)), None, "disabled");
    }
}
