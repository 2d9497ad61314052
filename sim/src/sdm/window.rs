//! Rolling-window request counting.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// One minute, the window of every QPM budget.
pub(super) const MINUTE: Duration = Duration::from_secs(60);
/// One hour, the window of every QPH budget.
pub(super) const HOUR: Duration = Duration::from_secs(60 * 60);

/// The accepted requests of one budget within its window.
///
/// A request at `now` sees every accepted request in `(now − span, now]`.
/// Times must be recorded in non-decreasing order, which holds because they are
/// read under the fake's lock.
#[derive(Debug, Clone)]
pub(super) struct RollingWindow {
    span: Duration,
    times: VecDeque<Instant>,
}

impl RollingWindow {
    pub(super) fn new(span: Duration) -> Self {
        Self {
            span,
            times: VecDeque::new(),
        }
    }

    /// Accepted requests in `(now − span, now]`.
    pub(super) fn count(&mut self, now: Instant) -> usize {
        self.prune(now);
        self.times.len()
    }

    /// Whether one more request at `now` stays within `limit`.
    pub(super) fn has_room(&mut self, now: Instant, limit: u32) -> bool {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.count(now) < limit
    }

    /// Records an accepted request at `now`; returns how many the window now holds.
    pub(super) fn record(&mut self, now: Instant) -> usize {
        self.prune(now);
        self.times.push_back(now);
        self.times.len()
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&oldest) = self.times.front() {
            if now.saturating_duration_since(oldest) >= self.span {
                self.times.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_open_at_the_old_end_and_closed_at_now() {
        let t0 = Instant::now();
        let mut w = RollingWindow::new(MINUTE);
        assert_eq!(w.record(t0), 1);
        assert_eq!(w.record(t0 + Duration::from_secs(30)), 2);
        assert!(!w.has_room(t0 + Duration::from_secs(59), 2));
        // At exactly t0 + 60 s the request at t0 has left the window.
        assert!(w.has_room(t0 + MINUTE, 2));
        assert_eq!(w.count(t0 + MINUTE), 1);
        assert_eq!(w.count(t0 + Duration::from_secs(90)), 0);
    }

    #[test]
    fn zero_limit_never_has_room() {
        let mut w = RollingWindow::new(HOUR);
        assert!(!w.has_room(Instant::now(), 0));
    }
}
