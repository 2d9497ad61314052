//! Exact rolling-window accounting.
//!
//! Google enforces "N per minute" limits on the SDM API. Whether it counts fixed minutes or a
//! rolling window is not documented, so we assume the stricter one: at most `limit` accepted
//! requests in *any* interval of `length`. A GCRA limiter such as `governor` with burst N admits
//! up to 2N−1 requests in a rolling minute (research/crates.md §5.4), so we keep the send log
//! ourselves: the sends of the last window, oldest first.
//!
//! Windows are half-open: a send at `s` occupies `[s, s + length)`. At `now` the sends that still
//! count are those with `s > now - length`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The send log of one budget bucket.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    limit: u32,
    length: Duration,
    /// Send instants still inside the window, oldest first.
    sends: VecDeque<Instant>,
    /// Set after the API said this bucket is exhausted (HTTP 429): no send before this instant.
    blocked_until: Option<Instant>,
    /// The latest `now` seen. Time only moves forward here: a query with an earlier instant is
    /// answered as of this one, because pruning has already forgotten what it would need.
    latest: Option<Instant>,
}

impl SlidingWindow {
    /// A window that admits `limit` sends in any interval of `length`. A limit of 0 is taken
    /// as 1: a bucket that never admits anything would starve every command charged to it.
    pub fn new(limit: u32, length: Duration) -> Self {
        Self {
            limit: limit.max(1),
            length,
            // Not preallocated: limits can be large (per-hour buckets), and most buckets hold
            // a few sends.
            sends: VecDeque::new(),
            blocked_until: None,
            latest: None,
        }
    }

    /// The configured number of sends per window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The configured window length.
    pub fn length(&self) -> Duration {
        self.length
    }

    /// Forgets sends that no longer count at `now`, and an expired block.
    pub fn prune(&mut self, now: Instant) {
        let now = self.advance(now);
        while let Some(&oldest) = self.sends.front() {
            if oldest + self.length <= now {
                self.sends.pop_front();
            } else {
                break;
            }
        }
        if self.blocked_until.is_some_and(|until| until <= now) {
            self.blocked_until = None;
        }
    }

    /// `now`, or the latest instant seen if that is later.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |latest| latest.max(now));
        self.latest = Some(now);
        now
    }

    /// Sends counting against the limit at `now`.
    pub fn used(&mut self, now: Instant) -> u32 {
        self.prune(now);
        u32::try_from(self.sends.len()).unwrap_or(u32::MAX)
    }

    /// The earliest instant at or after `now` at which one more send fits.
    pub fn next_free(&mut self, now: Instant) -> Instant {
        self.prune(now);
        let now = self.advance(now);
        let blocked = self.blocked_until.unwrap_or(now).max(now);
        let used = self.sends.len();
        let limit = self.limit as usize;
        if used < limit {
            return blocked;
        }
        // One slot frees when the (used - limit + 1)-th oldest send leaves the window.
        let freeing = self.sends[used - limit] + self.length;
        freeing.max(blocked)
    }

    /// Whether one more send fits at `now`.
    pub fn has_room(&mut self, now: Instant) -> bool {
        let free = self.next_free(now);
        free <= self.advance(now)
    }

    /// Records a send at `at`. Sends must be recorded in non-decreasing order.
    pub fn record(&mut self, at: Instant) {
        debug_assert!(self.sends.back().is_none_or(|&last| last <= at));
        self.sends.push_back(at);
    }

    /// Forgets one send recorded at `at` (the API did not accept it). Returns whether one was
    /// found.
    pub fn refund(&mut self, at: Instant) -> bool {
        match self.sends.iter().rposition(|&s| s == at) {
            Some(i) => {
                self.sends.remove(i);
                true
            }
            None => false,
        }
    }

    /// Treats the bucket as full until `until` (after the API answered 429).
    pub fn block_until(&mut self, until: Instant) {
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// The block set by [`Self::block_until`], if still in force at `now`.
    pub fn blocked_until(&mut self, now: Instant) -> Option<Instant> {
        self.prune(now);
        self.blocked_until
    }

    /// The sends still counting, oldest first (call [`Self::prune`] first for an exact view).
    pub fn sends(&self) -> impl ExactSizeIterator<Item = Instant> + '_ {
        self.sends.iter().copied()
    }

    /// The instant at which the oldest send still counting at `now` leaves the window.
    pub fn oldest_leaves_at(&mut self, now: Instant) -> Option<Instant> {
        self.prune(now);
        self.sends.front().map(|&oldest| oldest + self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn admits_limit_then_waits_for_oldest_to_leave() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(3, MIN);
        for i in 0..3 {
            let at = t0 + Duration::from_secs(i * 10);
            assert!(w.has_room(at));
            w.record(at);
        }
        let at = t0 + Duration::from_secs(30);
        assert!(!w.has_room(at));
        assert_eq!(w.next_free(at), t0 + MIN);
        // Half-open: the send at t0 no longer counts at exactly t0 + 60 s.
        assert!(!w.has_room(t0 + MIN - Duration::from_millis(1)));
        assert!(w.has_room(t0 + MIN));
        assert_eq!(w.used(t0 + MIN), 2);
    }

    #[test]
    fn time_never_runs_backwards() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(1, MIN);
        w.record(t0);
        assert!(w.has_room(t0 + MIN + Duration::from_secs(1)));
        // Asking about an earlier instant afterwards is answered as of the later one.
        assert!(w.has_room(t0 + Duration::from_secs(30)));
        assert_eq!(
            w.next_free(t0 + Duration::from_secs(30)),
            t0 + MIN + Duration::from_secs(1)
        );
    }

    #[test]
    fn zero_and_huge_limits_are_safe() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(0, MIN);
        assert_eq!(w.limit(), 1);
        assert!(w.has_room(t0));
        let mut w = SlidingWindow::new(u32::MAX, MIN);
        w.record(t0);
        assert!(w.has_room(t0));
    }

    #[test]
    fn refund_frees_the_slot() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(1, MIN);
        w.record(t0);
        assert!(!w.has_room(t0));
        assert!(w.refund(t0));
        assert!(w.has_room(t0));
        assert!(!w.refund(t0));
    }

    #[test]
    fn block_overrides_room() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(3, MIN);
        w.block_until(t0 + Duration::from_secs(5));
        assert_eq!(w.next_free(t0), t0 + Duration::from_secs(5));
        assert!(w.has_room(t0 + Duration::from_secs(5)));
        assert_eq!(w.blocked_until(t0 + Duration::from_secs(6)), None);
    }

    #[test]
    fn oldest_leaves_at_tracks_the_log() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(3, MIN);
        assert_eq!(w.oldest_leaves_at(t0), None);
        w.record(t0);
        w.record(t0 + Duration::from_secs(1));
        assert_eq!(
            w.oldest_leaves_at(t0 + Duration::from_secs(2)),
            Some(t0 + MIN)
        );
        assert_eq!(
            w.oldest_leaves_at(t0 + MIN),
            Some(t0 + MIN + Duration::from_secs(1))
        );
    }

    #[test]
    fn never_more_than_limit_in_any_window_when_obeyed() {
        // Greedy sender that sends whenever next_free allows, with random request times.
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(10, MIN);
        let mut sends = Vec::new();
        let mut rng = 12345u64;
        let mut now = t0;
        for _ in 0..2000 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            now += Duration::from_millis(rng >> 54);
            let at = w.next_free(now);
            now = at;
            w.record(at);
            sends.push(at);
        }
        for (i, &s) in sends.iter().enumerate() {
            let in_window = sends[i..].iter().take_while(|&&x| x < s + MIN).count();
            assert!(
                in_window <= 10,
                "{in_window} sends in the window from send {i}"
            );
        }
    }
}
