//! Loop statistics: cycle-time and jitter windows with percentiles, the
//! achieved rate, the counters reported to the caller, and the sample clock
//! (a sequence number per completed position read, with a wait for the next).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Samples kept in each percentile window.
pub const RING: usize = 2048;

/// Fixed-size window of the most recent values.
#[derive(Debug, Default)]
pub struct Ring {
    data: Vec<f64>,
    pos: usize,
}

impl Ring {
    pub fn push(&mut self, v: f64) {
        if self.data.len() < RING {
            self.data.push(v);
        } else {
            self.data[self.pos] = v;
            self.pos = (self.pos + 1) % RING;
        }
    }
    #[cfg(test)]
    pub fn sorted(&self) -> Vec<f64> {
        let mut v = self.data.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Nearest-rank percentile of an ascending slice (0 when empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[rank(sorted.len(), q)]
}

fn rank(n: usize, q: f64) -> usize {
    (((n as f64 - 1.0) * q).round() as usize).min(n - 1)
}

/// `percentile` of the sorted `values` at each of `qs`, by selection
/// (O(n) each) instead of a sort: stats() runs ~12 times a second, under
/// the lock the control loop takes every cycle.
pub fn quantiles(mut values: Vec<f64>, qs: &[f64]) -> Vec<f64> {
    if values.is_empty() {
        return vec![0.0; qs.len()];
    }
    let n = values.len();
    qs.iter().map(|&q| *values.select_nth_unstable_by(rank(n, q), f64::total_cmp).1).collect()
}

/// Loop statistics, computed on request.
#[derive(Debug, Clone, Default)]
pub struct LoopStats {
    pub port: String,
    pub baudrate: u32,
    pub connected: bool,
    pub cycles: u64,
    pub achieved_rate_hz: f64,
    pub cycle_p50_us: f64,
    pub cycle_p99_us: f64,
    pub cycle_max_us: f64,
    pub jitter_p99_us: f64,
    pub jitter_max_us: f64,
    pub timeouts: u64,
    pub crc_errors: u64,
    pub status_errors: u64,
    pub garbage_bytes: u64,
    /// Late or unmatched replies, discarded (see Bus::stray_replies).
    pub stray_replies: u64,
    pub write_errors: u64,
    /// Goals replaced by a newer one before they were written.
    pub goals_merged: u64,
    /// Goals written at once on arrival: between cycles, or between two
    /// transactions of a cycle (not at its end).
    pub goals_immediate: u64,
    /// Trajectories executed to their last waypoint.
    pub trajectories_done: u64,
    /// Goals (or waypoint goals) clamped into their joint range.
    pub goals_clamped: u64,
    /// Commands refused because a goal was beyond its range (reject policy).
    pub limit_refusals: u64,
    pub reconnects: u64,
    pub disconnects: u64,
    pub events_dropped: u64,
    /// Completed position reads so far (see [`SampleClock`]).
    pub sample_seq: u64,
    /// What the scheduler granted the control thread (see realtime.rs).
    pub realtime: String,
    pub last_error: Option<String>,
    pub last_error_stamp: f64,
}

/// Cycle timing windows.
#[derive(Debug, Default)]
pub struct Timing {
    cycle_us: Ring,
    jitter_us: Ring,
    cycle_starts: VecDeque<Instant>,
    max_cycle_us: f64,
    max_jitter_us: f64,
}

impl Timing {
    pub fn record(&mut self, start: Instant, elapsed: Duration, jitter: Duration) {
        let us = elapsed.as_secs_f64() * 1e6;
        let jus = jitter.as_secs_f64() * 1e6;
        self.cycle_us.push(us);
        self.jitter_us.push(jus);
        if us > self.max_cycle_us {
            self.max_cycle_us = us;
        }
        if jus > self.max_jitter_us {
            self.max_jitter_us = jus;
        }
        self.cycle_starts.push_back(start);
        while self.cycle_starts.len() > RING {
            self.cycle_starts.pop_front();
        }
    }

    /// Clears the percentile windows and maxima (not the rate window).
    pub fn reset(&mut self) {
        self.cycle_us = Ring::default();
        self.jitter_us = Ring::default();
        self.max_cycle_us = 0.0;
        self.max_jitter_us = 0.0;
    }

    /// Fills the timing fields of `st`.
    pub fn fill(&self, st: &mut LoopStats, now: Instant) {
        let c = quantiles(self.cycle_us.data.clone(), &[0.5, 0.99]);
        st.cycle_p50_us = c[0];
        st.cycle_p99_us = c[1];
        st.cycle_max_us = self.max_cycle_us;
        st.jitter_p99_us = quantiles(self.jitter_us.data.clone(), &[0.99])[0];
        st.jitter_max_us = self.max_jitter_us;
        // Achieved rate over the last second of cycle starts.
        let recent: Vec<&Instant> =
            self.cycle_starts.iter().filter(|t| now.duration_since(**t) <= Duration::from_secs(1)).collect();
        st.achieved_rate_hz = if recent.len() >= 2 {
            let span = recent[recent.len() - 1].duration_since(*recent[0]).as_secs_f64();
            if span > 0.0 {
                (recent.len() - 1) as f64 / span
            } else {
                0.0
            }
        } else {
            0.0
        };
        if !st.connected {
            st.achieved_rate_hz = 0.0;
        }
    }
}

/// Driver samples kept for [`SampleClock::history_after`]: 2.56 s at 100 Hz.
pub const SAMPLE_HISTORY: usize = 256;

/// One driver sample: its sequence number, wall-clock stamp and each
/// motor's position (raw, in configured order; `None` before the first read).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub seq: u64,
    pub stamp: f64,
    pub positions: Vec<Option<i32>>,
}

/// Sequence number of the latest driver sample (one per completed position
/// read) and its wall-clock stamp, with a blocking wait for a newer one, and
/// the last [`SAMPLE_HISTORY`] samples' positions, so that a reader that
/// wakes less often than the loop still gets every sample.
#[derive(Debug, Default)]
pub struct SampleClock {
    /// The last SAMPLE_HISTORY samples, oldest first; the latest is its back.
    history: Mutex<VecDeque<Sample>>,
    cv: Condvar,
}

fn latest_of(h: &VecDeque<Sample>) -> (u64, f64) {
    h.back().map_or((0, 0.0), |s| (s.seq, s.stamp))
}

impl SampleClock {
    /// Records a new sample taken at `stamp_unix`; returns its sequence number.
    pub fn publish(&self, stamp_unix: f64, positions: Vec<Option<i32>>) -> u64 {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let seq = latest_of(&h).0 + 1;
        if h.len() >= SAMPLE_HISTORY {
            h.pop_front();
        }
        h.push_back(Sample { seq, stamp: stamp_unix, positions });
        drop(h);
        self.cv.notify_all();
        seq
    }

    /// (sequence, stamp) of the latest sample; (0, 0.0) before the first.
    pub fn latest(&self) -> (u64, f64) {
        latest_of(&self.history.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits until a sample newer than `after_seq` exists and returns the
    /// latest one, or `None` after `timeout`.
    pub fn wait_after(&self, after_seq: u64, timeout: Duration) -> Option<(u64, f64)> {
        let guard = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let (h, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |h| latest_of(h).0 <= after_seq)
            .unwrap_or_else(|p| p.into_inner());
        let latest = latest_of(&h);
        (latest.0 > after_seq).then_some(latest)
    }

    /// The kept samples newer than `after_seq`, oldest first, without
    /// waiting (empty when there is none). Samples older than the history
    /// are gone: the caller sees the gap in the sequence numbers.
    pub fn history_after(&self, after_seq: u64) -> Vec<Sample> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let newer = h.iter().rev().take_while(|s| s.seq > after_seq).count();
        h.iter().skip(h.len() - newer).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn ring_percentiles_and_sample_clock_in_lock_step() {
        let mut r = Ring::default();
        for i in 0..(RING + 10) {
            r.push(i as f64);
        }
        assert_eq!(r.len(), RING);
        let s = r.sorted();
        assert_eq!(s[0], 10.0);
        assert_eq!(percentile(&s, 1.0), (RING + 9) as f64);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(quantiles(vec![], &[0.5, 0.99]), vec![0.0, 0.0]);
        // selection gives what the sorted window gives, on shuffled data with repeats
        let mut x: u64 = 7;
        let mut shuffled = Ring::default();
        for _ in 0..(RING + 333) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.push(((x >> 33) % 1000) as f64 * 0.5);
        }
        let qs = [0.0, 0.01, 0.5, 0.9, 0.99, 1.0];
        let sorted = shuffled.sorted();
        assert_eq!(quantiles(shuffled.data.clone(), &qs), qs.iter().map(|&q| percentile(&sorted, q)).collect::<Vec<_>>());
        assert_eq!(quantiles(vec![3.0, 1.0, 2.0], &[0.5]), vec![2.0]);

        let clock = Arc::new(SampleClock::default());
        assert_eq!(clock.wait_after(0, Duration::from_millis(5)), None);
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let producer = {
            let clock = clock.clone();
            std::thread::spawn(move || {
                for i in 1..=20u64 {
                    // publish only once the consumer has seen the previous one
                    if rx.recv() != Ok(i - 1) {
                        return;
                    }
                    clock.publish(i as f64, vec![Some(i as i32), None]);
                }
            })
        };
        let mut seen = 0;
        for _ in 0..20 {
            tx.send(seen).unwrap();
            let (seq, stamp) = clock.wait_after(seen, Duration::from_secs(10)).expect("a sample");
            assert_eq!(seq, seen + 1);
            assert_eq!(stamp, seq as f64);
            seen = seq;
        }
        producer.join().unwrap();
        assert_eq!(clock.wait_after(5, Duration::ZERO), Some((20, 20.0)), "already newer: no wait");
        let h = clock.history_after(17);
        assert_eq!(h.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![18, 19, 20]);
        assert_eq!(h[0], Sample { seq: 18, stamp: 18.0, positions: vec![Some(18), None] });
        assert!(clock.history_after(20).is_empty());
        assert_eq!(clock.history_after(0).len(), 20);
    }

    #[test]
    fn sample_history_keeps_the_last_samples_only() {
        let clock = SampleClock::default();
        let n = SAMPLE_HISTORY as u64 + 44;
        for i in 1..=n {
            clock.publish(i as f64, vec![Some(i as i32)]);
        }
        let h = clock.history_after(0);
        assert_eq!(h.len(), SAMPLE_HISTORY);
        assert_eq!(h[0].seq, n - SAMPLE_HISTORY as u64 + 1, "the oldest are dropped; the gap shows in seq");
        assert_eq!(h.last().map(|s| s.seq), Some(n));
    }
}
