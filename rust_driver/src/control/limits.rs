//! The safety envelope's part that lives in the driver: each motor's joint
//! range (raw ticks) and maximum velocity (ticks per second), enforced on
//! every goal that reaches the bus, whatever path it came by (streamed
//! goals, trajectories at every interpolated sample, the watchdog's hold).
//!
//! * At the door ([`Envelope::admit`]): with [`LimitPolicy::Clamp`] a goal
//!   beyond its range is clamped and reported to the caller; with
//!   [`LimitPolicy::Reject`] the whole command is refused with the reason.
//! * At the wire ([`shape`]): every goal is clamped again (a trajectory
//!   starting from a position beyond the range stays inside it) and moved
//!   towards its target by at most `max_velocity × dt` per write, the rest
//!   of the way being taken at the next cycles.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Shared;
use crate::error::DxlError;

/// What happens to a command with a goal beyond a joint's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitPolicy {
    /// Clamp the goal into the range and carry the command out.
    #[default]
    Clamp,
    /// Refuse the whole command; nothing of it is executed.
    Reject,
}

impl LimitPolicy {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "clamp" => Some(Self::Clamp),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Clamp => "clamp",
            Self::Reject => "reject",
        }
    }
}

/// One motor's envelope, in raw units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JointLimit {
    pub id: u8,
    pub min: i32,
    pub max: i32,
    /// Ticks per second; 0 leaves the speed to the servo.
    pub max_velocity: f64,
}

/// A goal clamped into its range: (motor id, requested, written instead).
pub type Clamped = (u8, i32, i32);

/// Per-motor limits and the policy. A motor without an entry is unbounded.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    limits: HashMap<u8, JointLimit>,
    pub policy: LimitPolicy,
}

impl Envelope {
    pub fn new(limits: &[JointLimit], policy: LimitPolicy) -> std::result::Result<Self, String> {
        let mut map = HashMap::new();
        for l in limits {
            if l.min > l.max {
                return Err(format!("motor {}: joint limit min {} > max {}", l.id, l.min, l.max));
            }
            if !(l.max_velocity.is_finite() && l.max_velocity >= 0.0) {
                return Err(format!("motor {}: max velocity must be finite and >= 0, got {}", l.id, l.max_velocity));
            }
            if map.insert(l.id, *l).is_some() {
                return Err(format!("motor {}: joint limits given twice", l.id));
            }
        }
        Ok(Self { limits: map, policy })
    }

    pub fn get(&self, id: u8) -> Option<&JointLimit> {
        self.limits.get(&id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &u8> {
        self.limits.keys()
    }

    /// `v` clamped into motor `id`'s range.
    pub fn clamp(&self, id: u8, v: i32) -> i32 {
        self.limits.get(&id).map_or(v, |l| v.clamp(l.min, l.max))
    }

    /// Applies the policy to a command's goals in place. Returns what was
    /// clamped, or (reject policy) the reason the command is refused.
    pub fn admit(&self, goals: &mut [(u8, i32)]) -> crate::error::Result<Vec<Clamped>> {
        let mut clamped = vec![];
        for g in goals.iter_mut() {
            let c = self.clamp(g.0, g.1);
            if c != g.1 {
                if self.policy == LimitPolicy::Reject {
                    let l = self.limits[&g.0];
                    return Err(DxlError::OutOfLimits { id: g.0, goal: g.1, min: l.min, max: l.max, waypoint: None });
                }
                clamped.push((g.0, g.1, c));
                g.1 = c;
            }
        }
        Ok(clamped)
    }
}

/// Goals towards the wire: `goals` (new targets, clamped) join the targets
/// not reached yet; each motor moves towards its target by at most
/// `max_velocity × dt` from its last goal, `dt` being the time since its
/// last write, at most `cap` (one cycle). Returns the goals to write now.
/// A motor whose last goal and position are both unknown waits.
pub(super) fn shape(s: &mut Shared, goals: Vec<(u8, i32)>, now: Instant, cap: Duration) -> Vec<(u8, i32)> {
    for (id, v) in goals {
        let v = s.envelope.clamp(id, v);
        s.slewing.insert(id, v);
    }
    if s.slewing.is_empty() {
        return vec![];
    }
    let mut out = Vec::with_capacity(s.slewing.len());
    let mut reached = vec![];
    for (&id, &target) in s.slewing.iter() {
        let vmax = s.envelope.get(id).map_or(0.0, |l| l.max_velocity);
        let from = s.motors.iter().find(|m| m.id == id).and_then(|m| m.goal.or(m.position));
        let cmd = match from {
            _ if vmax <= 0.0 => target,
            None => continue,
            Some(f) => {
                let dt = s.last_write.get(&id).map_or(cap, |t| now.saturating_duration_since(*t).min(cap));
                let step = (vmax * dt.as_secs_f64()).floor().max(1.0) as i64;
                let d = (target as i64 - f as i64).clamp(-step, step);
                (f as i64 + d) as i32
            }
        };
        s.last_write.insert(id, now);
        if cmd == target {
            reached.push(id);
        }
        out.push((id, cmd));
    }
    for id in reached {
        s.slewing.remove(&id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(policy: LimitPolicy) -> Envelope {
        Envelope::new(&[JointLimit { id: 11, min: 1500, max: 2900, max_velocity: 0.0 }], policy).unwrap()
    }

    #[test]
    fn clamp_policy_clamps_and_reports() {
        let e = env(LimitPolicy::Clamp);
        let mut g = vec![(11, 4000), (12, 99_999), (11, -7)];
        assert_eq!(e.admit(&mut g).unwrap(), vec![(11, 4000, 2900), (11, -7, 1500)]);
        assert_eq!(g, vec![(11, 2900), (12, 99_999), (11, 1500)], "motor 12 has no limits");
    }

    #[test]
    fn reject_policy_refuses_the_command_naming_the_motor() {
        let e = env(LimitPolicy::Reject);
        let mut g = vec![(11, 2000), (11, 3000)];
        let err = e.admit(&mut g).unwrap_err();
        assert_eq!(err.motor_id(), Some(11));
        let err = err.to_string();
        assert!(err.contains("motor 11") && err.contains("3000") && err.contains("[1500, 2900]"), "{err}");
        assert!(e.admit(&mut [(11, 2000)]).unwrap().is_empty());
    }

    #[test]
    fn invalid_limits_are_refused() {
        let l = |min, max, v| JointLimit { id: 1, min, max, max_velocity: v };
        assert!(Envelope::new(&[l(10, 5, 0.0)], LimitPolicy::Clamp).is_err());
        assert!(Envelope::new(&[l(0, 5, f64::NAN)], LimitPolicy::Clamp).is_err());
        assert!(Envelope::new(&[l(0, 5, -1.0)], LimitPolicy::Clamp).is_err());
        assert!(Envelope::new(&[l(0, 5, 1.0), l(0, 6, 1.0)], LimitPolicy::Clamp).is_err());
    }
}
