//! The budgets a command spends, and where their accounting is stored.
//!
//! Google's Device Access limits (research/nest-sdm.md §3) that bind a camera relay:
//! - `executeCommand`: 10 per minute **per project and authorized user**, shared by every device;
//! - each trait command: 5 per minute per project, user and **device**;
//! - each camera: 100 per hour across all projects.
//!
//! A command is charged to every bucket it belongs to. The accounting sits behind
//! [`BudgetStore`] so that several relay instances behind one Google project can share one budget
//! through a distributed store (a Redis sorted set per bucket, with the check-and-record of
//! [`BudgetStore::try_acquire`] done atomically in one script). [`MemoryBudget`] is the
//! single-instance store.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::window::SlidingWindow;

/// Length of Google's per-minute windows.
pub const MINUTE: Duration = Duration::from_secs(60);
/// Length of Google's per-hour windows.
pub const HOUR: Duration = Duration::from_secs(3600);

/// One budget a command is charged to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BucketKey {
    /// The project + user budget shared by every command (`executeCommand` per minute).
    Project,
    /// One command name on one device, per minute.
    DeviceCommand {
        /// Device id.
        device: Arc<str>,
        /// Command short name, e.g. `GenerateRtspStream`.
        command: Arc<str>,
    },
    /// All commands to one device, per hour.
    DeviceHour {
        /// Device id.
        device: Arc<str>,
    },
}

impl fmt::Display for BucketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BucketKey::Project => f.write_str("project"),
            BucketKey::DeviceCommand { device, command } => write!(f, "device:{device}:{command}"),
            BucketKey::DeviceHour { device } => write!(f, "device:{device}:hour"),
        }
    }
}

/// The limits of every bucket. All configurable; defaults are Google's published Sandbox limits.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    /// Commands per project + user per minute.
    pub project_per_minute: u32,
    /// Commands per device per command name per minute.
    pub device_command_per_minute: u32,
    /// Commands per device per hour.
    pub device_per_hour: u32,
    /// Added to every window to absorb the difference between when we send and when Google
    /// counts (network latency jitter). Costs `guard / 60 s` of the budget.
    pub guard: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            project_per_minute: 10,
            device_command_per_minute: 5,
            device_per_hour: 100,
            guard: Duration::from_secs(1),
        }
    }
}

impl BudgetConfig {
    /// Limit and window length of `bucket`.
    pub fn limit(&self, bucket: &BucketKey) -> (u32, Duration) {
        match bucket {
            BucketKey::Project => (self.project_per_minute, MINUTE + self.guard),
            BucketKey::DeviceCommand { .. } => {
                (self.device_command_per_minute, MINUTE + self.guard)
            }
            BucketKey::DeviceHour { .. } => (self.device_per_hour, HOUR + self.guard),
        }
    }

    /// The project window including the guard.
    pub fn project_window(&self) -> Duration {
        MINUTE + self.guard
    }

    /// Sustainable project commands per minute once the guard is paid for.
    pub fn effective_per_minute(&self) -> f64 {
        f64::from(self.project_per_minute) * MINUTE.as_secs_f64()
            / self.project_window().as_secs_f64()
    }

    /// The buckets a command for `device` named `command` is charged to, project first.
    pub fn buckets_for(device: &Arc<str>, command: &Arc<str>) -> [BucketKey; 3] {
        [
            BucketKey::Project,
            BucketKey::DeviceCommand {
                device: device.clone(),
                command: command.clone(),
            },
            BucketKey::DeviceHour {
                device: device.clone(),
            },
        ]
    }
}

/// A read-only view of one bucket at some instant.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketView {
    /// Configured limit per window.
    pub limit: u32,
    /// Window length including the guard.
    pub window: Duration,
    /// Sends still counting, oldest first.
    pub sends: Vec<Instant>,
    /// The API said the bucket is exhausted; nothing before this instant.
    pub blocked_until: Option<Instant>,
    /// Earliest instant at which one more send fits.
    pub next_free: Instant,
}

/// Where budget accounting lives.
///
/// Implementations must make [`Self::try_acquire`] atomic across everyone sharing the store: it
/// either records the send in every bucket or in none. Instants are this process's monotonic
/// clock; a store shared between processes converts them to a shared clock (wall-clock
/// milliseconds from an anchor taken at start-up) and keeps a guard for the clocks' skew.
pub trait BudgetStore: Send + 'static {
    /// Records a send at `at` in every bucket if each has room, or returns the earliest instant
    /// at which all of them might have room.
    fn try_acquire(&mut self, buckets: &[BucketKey], at: Instant) -> Result<(), Instant>;

    /// The earliest instant at or after `now` at which every bucket has room.
    fn next_free(&mut self, buckets: &[BucketKey], now: Instant) -> Instant;

    /// A view of one bucket at `now`.
    fn view(&mut self, bucket: &BucketKey, now: Instant) -> BucketView;

    /// Gives back the send recorded at `at` in every bucket: the API did not accept it.
    fn refund(&mut self, buckets: &[BucketKey], at: Instant);

    /// Treats `bucket` as full until `until`.
    fn block_until(&mut self, bucket: &BucketKey, until: Instant);

    /// Buckets with sends or blocks still counting at `now` (for stats), project first.
    fn active(&mut self, now: Instant) -> Vec<BucketKey>;
}

/// How many acquisitions pass between sweeps of idle buckets: device buckets are created on
/// demand and would otherwise accumulate for every device ever seen.
pub const SWEEP_EVERY: u32 = 256;

/// In-process budget store for a single relay instance.
#[derive(Debug)]
pub struct MemoryBudget {
    config: BudgetConfig,
    windows: HashMap<BucketKey, SlidingWindow>,
    until_sweep: u32,
}

impl MemoryBudget {
    /// An empty store with the given limits.
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            config,
            windows: HashMap::new(),
            until_sweep: SWEEP_EVERY,
        }
    }

    /// Forgets buckets with nothing counting at `now`.
    fn sweep(&mut self, now: Instant) {
        self.windows.retain(|key, w| {
            *key == BucketKey::Project || w.used(now) > 0 || w.blocked_until(now).is_some()
        });
    }

    fn window(&mut self, bucket: &BucketKey) -> &mut SlidingWindow {
        let config = &self.config;
        self.windows.entry(bucket.clone()).or_insert_with(|| {
            let (limit, length) = config.limit(bucket);
            SlidingWindow::new(limit, length)
        })
    }
}

impl BudgetStore for MemoryBudget {
    fn try_acquire(&mut self, buckets: &[BucketKey], at: Instant) -> Result<(), Instant> {
        self.until_sweep = self.until_sweep.saturating_sub(1);
        if self.until_sweep == 0 {
            self.until_sweep = SWEEP_EVERY;
            self.sweep(at);
        }
        let free = self.next_free(buckets, at);
        if free > at {
            return Err(free);
        }
        for bucket in buckets {
            self.window(bucket).record(at);
        }
        Ok(())
    }

    fn next_free(&mut self, buckets: &[BucketKey], now: Instant) -> Instant {
        buckets
            .iter()
            .map(|b| self.window(b).next_free(now))
            .max()
            .unwrap_or(now)
    }

    fn view(&mut self, bucket: &BucketKey, now: Instant) -> BucketView {
        let window = self.window(bucket);
        let next_free = window.next_free(now);
        BucketView {
            limit: window.limit(),
            window: window.length(),
            sends: window.sends().collect(),
            blocked_until: window.blocked_until(now),
            next_free,
        }
    }

    fn refund(&mut self, buckets: &[BucketKey], at: Instant) {
        for bucket in buckets {
            self.window(bucket).refund(at);
        }
    }

    fn block_until(&mut self, bucket: &BucketKey, until: Instant) {
        self.window(bucket).block_until(until);
    }

    fn active(&mut self, now: Instant) -> Vec<BucketKey> {
        self.sweep(now);
        let mut keys: Vec<BucketKey> = self.windows.keys().cloned().collect();
        if !keys.contains(&BucketKey::Project) {
            keys.push(BucketKey::Project);
        }
        keys.sort();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn acquire_charges_every_bucket_or_none() {
        let t0 = Instant::now();
        let config = BudgetConfig {
            project_per_minute: 10,
            device_command_per_minute: 2,
            device_per_hour: 100,
            guard: Duration::ZERO,
        };
        let mut store = MemoryBudget::new(config);
        let generate = dev("GenerateRtspStream");
        let a = BudgetConfig::buckets_for(&dev("a"), &generate);
        assert!(store.try_acquire(&a, t0).is_ok());
        assert!(store.try_acquire(&a, t0).is_ok());
        // Third generate on the same device in the minute: the device bucket refuses, and the
        // project bucket is not charged for the refusal.
        assert_eq!(store.try_acquire(&a, t0), Err(t0 + MINUTE));
        assert_eq!(store.view(&BucketKey::Project, t0).sends.len(), 2);
        // Another device is unaffected.
        let b = BudgetConfig::buckets_for(&dev("b"), &generate);
        assert!(store.try_acquire(&b, t0).is_ok());
        assert_eq!(store.view(&BucketKey::Project, t0).sends.len(), 3);
    }

    #[test]
    fn hour_bucket_binds_after_a_hundred() {
        let t0 = Instant::now();
        let mut store = MemoryBudget::new(BudgetConfig {
            project_per_minute: 1000,
            device_command_per_minute: 1000,
            ..BudgetConfig::default()
        });
        let buckets = BudgetConfig::buckets_for(&dev("a"), &dev("ExtendRtspStream"));
        for i in 0..100 {
            assert!(
                store
                    .try_acquire(&buckets, t0 + Duration::from_secs(i))
                    .is_ok()
            );
        }
        let now = t0 + Duration::from_secs(100);
        let free = store.next_free(&buckets, now);
        assert_eq!(free, t0 + HOUR + Duration::from_secs(1));
    }

    #[test]
    fn active_lists_project_and_busy_buckets() {
        let t0 = Instant::now();
        let mut store = MemoryBudget::new(BudgetConfig::default());
        assert_eq!(store.active(t0), vec![BucketKey::Project]);
        let buckets = BudgetConfig::buckets_for(&dev("a"), &dev("StopRtspStream"));
        store.try_acquire(&buckets, t0).unwrap();
        assert_eq!(store.active(t0).len(), 3);
        assert_eq!(store.active(t0 + HOUR * 2).len(), 1);
    }

    #[test]
    fn effective_rate_pays_for_the_guard() {
        let config = BudgetConfig::default();
        let rate = config.effective_per_minute();
        assert!((rate - 600.0 / 61.0).abs() < 1e-9);
    }
}
