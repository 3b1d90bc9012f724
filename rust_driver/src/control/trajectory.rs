//! Trajectories executed inside the control loop: waypoints at times from
//! the start, interpolated at loop rate (linear, or minimum jerk per
//! segment: zero velocity and acceleration at each waypoint). The first
//! segment starts from each joint's goal (or present position) when the
//! trajectory is taken. A new trajectory preempts the running one.

use std::time::{Duration, Instant};

use super::Shared;

/// How positions move between waypoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    Linear,
    /// s(τ) = 10τ³ − 15τ⁴ + 6τ⁵ on each segment.
    MinJerk,
}

impl Interpolation {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "linear" => Some(Self::Linear),
            "minjerk" => Some(Self::MinJerk),
            _ => None,
        }
    }

    /// Fraction of the segment covered at `tau` in [0, 1].
    pub fn shape(self, tau: f64) -> f64 {
        let t = tau.clamp(0.0, 1.0);
        match self {
            Self::Linear => t,
            Self::MinJerk => t * t * t * (10.0 - 15.0 * t + 6.0 * t * t),
        }
    }
}

/// One waypoint: time from the start and raw goals of some motors.
#[derive(Debug, Clone, PartialEq)]
pub struct Waypoint {
    pub at: Duration,
    pub goals: Vec<(u8, i32)>,
}

/// A trajectory as given: validated, not yet started.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub points: Vec<Waypoint>,
    pub interpolation: Interpolation,
}

/// The largest trajectory accepted: waypoints, and time of the last one.
pub const MAX_POINTS: usize = 10_000;
pub const MAX_DURATION: Duration = Duration::from_secs(120);

impl Trajectory {
    /// At most [`MAX_POINTS`] waypoints within [`MAX_DURATION`], strictly
    /// increasing in time, every one naming the same motors once each.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let first = self.points.first().ok_or("a trajectory needs at least one waypoint")?;
        if self.points.len() > MAX_POINTS {
            return Err(format!("{} waypoints; at most {MAX_POINTS} are accepted", self.points.len()));
        }
        if let Some(last) = self.points.last().filter(|p| p.at > MAX_DURATION) {
            return Err(format!(
                "lasts {:.3} s; at most {} s are accepted",
                last.at.as_secs_f64(),
                MAX_DURATION.as_secs()
            ));
        }
        let ids: Vec<u8> = first.goals.iter().map(|g| g.0).collect();
        if ids.is_empty() {
            return Err("waypoints must name at least one motor".into());
        }
        if let Some((i, id)) = ids.iter().enumerate().find(|(i, id)| ids[..*i].contains(id)) {
            return Err(format!("motor {id} is named twice (position {i})"));
        }
        let mut last = Duration::ZERO;
        for (i, p) in self.points.iter().enumerate() {
            if p.at <= last {
                return Err(format!("waypoint {i}: times must increase from > 0 (got {:?} after {last:?})", p.at));
            }
            if p.goals.iter().map(|g| g.0).collect::<Vec<_>>() != ids {
                return Err(format!("waypoint {i}: every waypoint must name the same motors in the same order"));
            }
            last = p.at;
        }
        Ok(())
    }
}

/// A trajectory being executed.
#[derive(Debug, Clone)]
pub struct Running {
    start: Instant,
    from: Vec<(u8, i32)>,
    plan: Trajectory,
}

impl Running {
    /// `from`: each named motor's position when the trajectory is taken.
    pub fn new(plan: Trajectory, from: Vec<(u8, i32)>, start: Instant) -> Self {
        Self { start, from, plan }
    }

    pub fn end(&self) -> Instant {
        self.start + self.plan.points.last().map_or(Duration::ZERO, |p| p.at)
    }

    /// The goals at `now`, and whether the trajectory is over.
    pub fn sample(&self, now: Instant) -> (Vec<(u8, i32)>, bool) {
        let t = now.saturating_duration_since(self.start);
        let pts = &self.plan.points;
        let k = pts.iter().position(|p| p.at > t);
        let Some(k) = k else {
            return (pts.last().map(|p| p.goals.clone()).unwrap_or_default(), true);
        };
        let (t0, a): (Duration, &[(u8, i32)]) = if k == 0 { (Duration::ZERO, &self.from) } else { (pts[k - 1].at, &pts[k - 1].goals) };
        let b = &pts[k].goals;
        let span = (pts[k].at - t0).as_secs_f64();
        let s = self.plan.interpolation.shape(if span > 0.0 { (t - t0).as_secs_f64() / span } else { 1.0 });
        let goals = b
            .iter()
            .map(|&(id, end)| {
                let begin = a.iter().find(|g| g.0 == id).map_or(end, |g| g.1);
                (id, (begin as f64 + s * (end - begin) as f64).round() as i32)
            })
            .collect();
        (goals, false)
    }
}

/// Starts a given trajectory (from each motor's goal, else its position) and
/// queues the running one's goals for now; feeds the watchdog until its end.
pub(super) fn advance(s: &mut Shared, now: Instant) {
    if let Some(plan) = s.pending_trajectory.take() {
        let from = plan.points[0]
            .goals
            .iter()
            .filter_map(|&(id, _)| s.motors.iter().find(|m| m.id == id).and_then(|m| m.goal.or(m.position)).map(|p| (id, p)))
            .collect();
        s.trajectory = Some(Running::new(plan, from, now));
    }
    let Some(run) = s.trajectory.as_ref() else { return };
    let (goals, done) = run.sample(now);
    for (id, v) in goals {
        s.pending_goals.insert(id, v);
    }
    s.watchdog.feed(now);
    if done {
        s.trajectory = None;
        s.stats.trajectories_done += 1;
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn minjerk_shape_and_sampling() {
        let mj = Interpolation::MinJerk;
        assert_eq!((mj.shape(0.0), mj.shape(0.5), mj.shape(1.0)), (0.0, 0.5, 1.0));
        assert!((mj.shape(0.25) - 0.103_515_625).abs() < 1e-12);
        let t0 = Instant::now();
        let plan = Trajectory {
            points: vec![Waypoint { at: ms(1000), goals: vec![(11, 1000)] }, Waypoint { at: ms(2000), goals: vec![(11, 0)] }],
            interpolation: Interpolation::Linear,
        };
        plan.validate().unwrap();
        let r = Running::new(plan, vec![(11, 0)], t0);
        assert_eq!(r.sample(t0 + ms(250)), (vec![(11, 250)], false));
        assert_eq!(r.sample(t0 + ms(1500)), (vec![(11, 500)], false));
        assert_eq!(r.sample(t0 + ms(2500)), (vec![(11, 0)], true));
    }

    #[test]
    fn invalid_trajectories_are_refused() {
        let p = |at, goals| Waypoint { at: ms(at), goals };
        let bad = [
            vec![],
            vec![p(0, vec![(11, 1)])],
            vec![p(100, vec![(11, 1)]), p(100, vec![(11, 2)])],
            vec![p(100, vec![(11, 1)]), p(200, vec![(12, 2)])],
            vec![p(100, vec![(11, 1), (11, 2)])],
            vec![p(120_001, vec![(11, 1)])],
            (1..=MAX_POINTS as u64 + 1).map(|k| p(k, vec![(11, 1)])).collect(),
        ];
        for points in bad {
            assert!(Trajectory { points, interpolation: Interpolation::Linear }.validate().is_err());
        }
        let longest: Vec<Waypoint> = (1..=MAX_POINTS as u64).map(|k| p(k * 12, vec![(11, 1)])).collect();
        assert_eq!(longest.last().unwrap().at, MAX_DURATION);
        assert!(Trajectory { points: longest, interpolation: Interpolation::Linear }.validate().is_ok());
    }
}
