//! A camera's availability and bitrate over time, for `/stats`: how long it has been live, how
//! long it was wanted but not live (downtime), and its incoming bitrate now, on average and at
//! its peak. A small task per camera ([`monitor`]) feeds an [`Availability`] from the camera's
//! live and demand watches and samples its byte counter once per [`BITRATE_WINDOW`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::camera::Camera;

/// The window over which the current bitrate is measured.
pub const BITRATE_WINDOW: Duration = Duration::from_secs(1);

/// Time accounting and bitrate of one camera. Pure: the caller says what time it is.
#[derive(Debug)]
pub struct Availability {
    state: State,
    since: Instant,
    up: Duration,
    down: Duration,
    last_sample: Option<(Instant, u64)>,
    current_bps: u64,
    peak_bps: u64,
}

/// What the camera is doing, for the accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Delivering.
    Live,
    /// Wanted but not delivering: downtime.
    Down,
    /// Not wanted and not delivering: neither.
    Idle,
}

/// The figures as `/stats` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AvailabilitySnapshot {
    /// Milliseconds live (delivering) since the relay started.
    pub uptime_ms: u64,
    /// Milliseconds wanted (by a client, a viewer or always-on) but not live: starting,
    /// reconnecting, refused, at capacity.
    pub downtime_ms: u64,
    /// Milliseconds the current live period has lasted; `null` while not live.
    pub live_for_ms: Option<u64>,
    /// Incoming media bitrate over the last second, bits per second.
    pub bitrate_bps: u64,
    /// Average incoming bitrate while live, bits per second.
    pub bitrate_average_bps: u64,
    /// Highest one-second bitrate seen, bits per second.
    pub bitrate_peak_bps: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Availability {
    /// A camera neither live nor wanted at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            state: State::Idle,
            since: now,
            up: Duration::ZERO,
            down: Duration::ZERO,
            last_sample: None,
            current_bps: 0,
            peak_bps: 0,
        }
    }

    /// The camera is (not) live and (not) wanted from `now` on.
    pub fn set(&mut self, now: Instant, live: bool, wanted: bool) {
        let next = match (live, wanted) {
            (true, _) => State::Live,
            (false, true) => State::Down,
            (false, false) => State::Idle,
        };
        if next == self.state {
            return;
        }
        self.close(now);
        self.state = next;
        self.since = now;
        if next != State::Live {
            // No media while not live: the current rate is 0, not the last sample's.
            self.current_bps = 0;
            self.last_sample = None;
        }
    }

    fn close(&mut self, now: Instant) {
        let spent = now.saturating_duration_since(self.since);
        match self.state {
            State::Live => self.up += spent,
            State::Down => self.down += spent,
            State::Idle => {}
        }
        self.since = now;
    }

    /// The camera has received `bytes` in total by `now`.
    pub fn sample(&mut self, now: Instant, bytes: u64) {
        if let Some((at, before)) = self.last_sample {
            let elapsed = now.saturating_duration_since(at);
            if !elapsed.is_zero() && self.state == State::Live {
                let bits = bytes.saturating_sub(before).saturating_mul(8);
                let bps = u64::try_from(u128::from(bits) * 1_000_000 / elapsed.as_micros().max(1))
                    .unwrap_or(u64::MAX);
                self.current_bps = bps;
                self.peak_bps = self.peak_bps.max(bps);
            }
        }
        self.last_sample = Some((now, bytes));
    }

    /// The figures at `now`, with `bytes_in` the camera's byte counter.
    pub fn snapshot(&self, now: Instant, bytes_in: u64) -> AvailabilitySnapshot {
        let current = now.saturating_duration_since(self.since);
        let (up, down) = match self.state {
            State::Live => (self.up + current, self.down),
            State::Down => (self.up, self.down + current),
            State::Idle => (self.up, self.down),
        };
        let average =
            u64::try_from(u128::from(bytes_in.saturating_mul(8)) * 1000 / up.as_millis().max(1))
                .unwrap_or(u64::MAX);
        AvailabilitySnapshot {
            uptime_ms: millis(up),
            downtime_ms: millis(down),
            live_for_ms: (self.state == State::Live).then(|| millis(current)),
            bitrate_bps: self.current_bps,
            bitrate_average_bps: if up.is_zero() { 0 } else { average },
            bitrate_peak_bps: self.peak_bps,
        }
    }
}

/// Feeds `camera.availability` until `cancel`.
pub async fn monitor(camera: Arc<Camera>, cancel: CancellationToken) {
    let mut live = camera.media.watch_live();
    let mut demand = camera.watch_demand();
    let mut tick = tokio::time::interval(BITRATE_WINDOW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        {
            let now = Instant::now();
            let is_live = *live.borrow_and_update();
            let wanted = demand.borrow_and_update().holders > 0;
            lock(&camera.availability).set(now, is_live, wanted);
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = live.changed() => if changed.is_err() { return },
            changed = demand.changed() => if changed.is_err() { return },
            _ = tick.tick() => {
                let bytes = camera.media.stats.bytes_in.load(Ordering::Relaxed);
                lock(&camera.availability).sample(Instant::now(), bytes);
            }
        }
    }
}

fn lock(a: &Mutex<Availability>) -> std::sync::MutexGuard<'_, Availability> {
    a.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_down_time_add_up_and_idle_time_does_not_count() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut a = Availability::new(t0);
        a.set(at(10), false, true); // wanted: starting
        a.set(at(12), true, true); // live
        a.sample(at(12), 0);
        a.sample(at(13), 500_000); // 4 Mb/s
        a.sample(at(14), 1_000_000); // 4 Mb/s
        a.set(at(20), false, true); // reconnecting
        a.set(at(23), true, true);
        a.sample(at(23), 1_000_000);
        a.sample(at(24), 2_000_000); // 8 Mb/s peak
        a.set(at(30), false, false); // released
        let s = a.snapshot(at(100), 2_000_000);
        assert_eq!(s.uptime_ms, 15_000);
        assert_eq!(s.downtime_ms, 5_000);
        assert_eq!(s.live_for_ms, None);
        assert_eq!(s.bitrate_bps, 0, "not live: nothing flows");
        assert_eq!(s.bitrate_peak_bps, 8_000_000);
        assert_eq!(s.bitrate_average_bps, 2_000_000 * 8 * 1000 / 15_000);
    }

    #[test]
    fn the_current_period_counts_while_it_lasts() {
        let t0 = Instant::now();
        let mut a = Availability::new(t0);
        a.set(t0, true, false);
        let s = a.snapshot(t0 + Duration::from_millis(1500), 0);
        assert_eq!((s.uptime_ms, s.live_for_ms), (1500, Some(1500)));
        a.set(t0 + Duration::from_secs(2), false, true);
        let s = a.snapshot(t0 + Duration::from_secs(5), 0);
        assert_eq!((s.uptime_ms, s.downtime_ms), (2000, 3000));
    }
}
