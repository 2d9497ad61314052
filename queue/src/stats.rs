//! Queue statistics: stable, serializable DTOs for `/stats`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::budget::{BucketKey, BucketView};
use crate::scheduler::Class;

/// How many recent samples percentiles are computed over. Older samples are forgotten, so the
/// figures describe the last few hours of a busy relay rather than its whole life.
pub const SAMPLE_CAPACITY: usize = 1024;

/// A bounded ring of recent durations.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    ring: VecDeque<Duration>,
    total: u64,
}

impl Samples {
    /// Adds a sample, forgetting the oldest beyond [`SAMPLE_CAPACITY`].
    pub fn push(&mut self, d: Duration) {
        if self.ring.len() == SAMPLE_CAPACITY {
            self.ring.pop_front();
        }
        self.ring.push_back(d);
        self.total += 1;
    }

    /// The sample at quantile `q` (0..=1, nearest rank) of the recent samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.ring.is_empty() {
            return None;
        }
        let mut sorted: Vec<Duration> = self.ring.iter().copied().collect();
        sorted.sort_unstable();
        Some(sorted[rank(q, sorted.len())])
    }

    /// p50, p90, p99 and max of the recent samples, in milliseconds.
    pub fn summary(&self) -> Percentiles {
        if self.ring.is_empty() {
            return Percentiles::default();
        }
        let mut sorted: Vec<Duration> = self.ring.iter().copied().collect();
        sorted.sort_unstable();
        let at = |q: f64| millis(sorted[rank(q, sorted.len())]);
        Percentiles {
            count: self.total,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Nearest-rank index of quantile `q` among `len` sorted samples (`len > 0`).
fn rank(q: f64, len: usize) -> usize {
    let q = q.clamp(0.0, 1.0);
    // Nearest rank: ceil(q × len), 1-based.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let r = (q * len as f64).ceil() as usize;
    r.clamp(1, len) - 1
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Percentiles of recent samples in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Percentiles {
    /// Samples ever taken (the percentiles cover the most recent ones only).
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest recent sample.
    pub max: u64,
}

/// A count per command class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ClassCounts {
    /// Stream extensions.
    pub extend: u64,
    /// Starts for waiting viewers.
    pub viewer_start: u64,
    /// Background starts.
    pub background_start: u64,
    /// Stops.
    pub stop: u64,
}

impl ClassCounts {
    /// The counter of `class`.
    pub fn get_mut(&mut self, class: Class) -> &mut u64 {
        match class {
            Class::Extend => &mut self.extend,
            Class::ViewerStart => &mut self.viewer_start,
            Class::BackgroundStart => &mut self.background_start,
            Class::Stop => &mut self.stop,
        }
    }

    /// The sum over classes.
    pub fn total(&self) -> u64 {
        self.extend + self.viewer_start + self.background_start + self.stop
    }
}

/// One budget bucket as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct BucketStats {
    /// `project`, `device:{id}:{command}` or `device:{id}:hour`.
    pub bucket: String,
    /// Limit per window.
    pub limit: u32,
    /// Window length in milliseconds, including the guard.
    pub window_ms: u64,
    /// Sends counting now.
    pub used: u32,
    /// Sends still possible now.
    pub remaining: u32,
    /// Milliseconds until one more send fits (0: now).
    pub next_free_in_ms: u64,
    /// Milliseconds the bucket stays blocked after a 429 (0: not blocked).
    pub blocked_for_ms: u64,
}

impl BucketStats {
    pub(crate) fn new(key: &BucketKey, view: &BucketView, now: Instant) -> Self {
        let used = u32::try_from(view.sends.len()).unwrap_or(u32::MAX);
        Self {
            bucket: key.to_string(),
            limit: view.limit,
            window_ms: millis(view.window),
            used,
            remaining: view.limit.saturating_sub(used),
            next_free_in_ms: millis(view.next_free.saturating_duration_since(now)),
            blocked_for_ms: view
                .blocked_until
                .map_or(0, |b| millis(b.saturating_duration_since(now))),
        }
    }
}

/// A snapshot of the command queue.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct QueueStats {
    /// Commands waiting, per class.
    pub depth: ClassCounts,
    /// Commands executing, per class.
    pub in_flight: ClassCounts,
    /// Commands ever submitted.
    pub submitted: u64,
    /// Commands sent to the API (a command re-sent after a 429 counts again).
    pub executed: u64,
    /// Commands the API answered successfully.
    pub succeeded: u64,
    /// Commands that failed for another reason than the rate limit.
    pub failed: u64,
    /// Commands the API answered with 429 (re-queued).
    pub rate_limited: u64,
    /// Failed commands the API did not process (503), whose budget slot was given back.
    pub refunded: u64,
    /// Commands dropped unsent because they expired in the queue.
    pub dropped: u64,
    /// Commands whose submitter gave up before they were sent.
    pub cancelled: u64,
    /// Live streams holding an admission slot.
    pub streams_admitted: u64,
    /// Live streams the budget can sustain.
    pub stream_capacity: u64,
    /// Streams ever admitted.
    pub admissions: u64,
    /// Stream requests refused as at capacity.
    pub admission_refusals: u64,
    /// Queue wait (submit to send) per class, ms.
    pub wait_ms: BTreeMap<Class, Percentiles>,
    /// API latency (send to answer), ms.
    pub latency_ms: Percentiles,
    /// How long after its due instant each deadline-bound command was sent, ms (0: on time).
    pub extend_lateness_ms: Percentiles,
    /// The project bucket and every device bucket in use.
    pub buckets: Vec<BucketStats>,
    /// Times the independent budget backstop held back a command the scheduler released
    /// (always 0 unless the scheduler has a bug).
    pub backstop_trips: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut s = Samples::default();
        for ms in 1..=100 {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.quantile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(s.quantile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(s.quantile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(s.quantile(0.0), Some(Duration::from_millis(1)));
        let p = s.summary();
        assert_eq!((p.count, p.p50, p.p90, p.max), (100, 50, 90, 100));
    }

    #[test]
    fn ring_forgets_old_samples() {
        let mut s = Samples::default();
        for _ in 0..SAMPLE_CAPACITY {
            s.push(Duration::from_secs(100));
        }
        for _ in 0..SAMPLE_CAPACITY {
            s.push(Duration::from_millis(1));
        }
        assert_eq!(s.quantile(1.0), Some(Duration::from_millis(1)));
        assert_eq!(s.summary().count, 2 * SAMPLE_CAPACITY as u64);
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(Samples::default().summary(), Percentiles::default());
        assert_eq!(Samples::default().quantile(0.5), None);
    }
}
