//! As-late-as-possible planning of deadline-bound commands.
//!
//! Extending a Nest stream restarts its five minutes, so an extension sent early wastes budget;
//! one sent late loses the stream. The planner places every pending deadline-bound command as
//! late as possible, walking backwards from the latest deadline:
//!
//! - [`Plan::spaced`] keeps planned sends at least a spacing apart. The scheduler tries the
//!   spacings of [`spacing_tiers`] widest first: `window / (limit − 1)` leaves a slot per window
//!   free for a retry or a viewer, `window / limit` uses every slot, and the steps between keep as
//!   much slack as the load allows. Spacing also spreads the clusters a start-up burst creates:
//!   ten streams generated in one second would otherwise need ten extensions in one second
//!   forever, and clusters strand budget between them (in the scheduler's simulation a
//!   burst-only planner started 40 of 44 always-on streams on 10/min; a spaced one all 47).
//! - [`Plan::rolling`] allows bursts up to the limit per window: the fallback when no spacing
//!   fits (after a retry or a 429), and the most room-leaving plan for the present.
//!
//! A plan must also fit the sends already made: for every recent send `h`, the window
//! `[h, h + window)` may hold at most `limit` past and planned sends together ([`Plan::fits`]).
//! Planned sends that fall in the past count as sent now: lateness alone does not make a plan
//! infeasible, overfull windows do.

use std::time::{Duration, Instant};

/// A plan for deadline-bound commands: planned send instants, latest deadline first.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Planned send instants in the order of the deadlines given.
    pub times: Vec<Instant>,
    /// Planned instants sorted ascending, for window counting.
    ascending: Vec<Instant>,
}

impl Plan {
    /// Plans commands with the given deadlines, which must be sorted latest first, keeping
    /// planned sends at least `spacing` apart. This is the smooth plan: it spreads clusters.
    pub fn spaced(deadlines_latest_first: &[Instant], spacing: Duration) -> Option<Self> {
        Self::backwards(deadlines_latest_first, |t, _| t.checked_sub(spacing))
    }

    /// Plans commands with the given deadlines, which must be sorted latest first, allowing
    /// bursts: at most `limit` planned sends in any `window`. This is the tight plan, for when
    /// the smooth one does not fit (after a retry or a 429).
    pub fn rolling(
        deadlines_latest_first: &[Instant],
        limit: u32,
        window: Duration,
    ) -> Option<Self> {
        let limit = limit.max(1) as usize;
        Self::backwards(deadlines_latest_first, |previous, ascending| {
            // All sends planned so far are at or after `previous`; the window starting at the new
            // send must hold fewer than `limit` of them, so the limit-th earliest must lie at or
            // beyond its end.
            match ascending.get(limit - 1) {
                Some(&nth) => Some(previous.min(nth.checked_sub(window)?)),
                None => Some(previous),
            }
        })
    }

    /// Walks the deadlines latest first, placing each at its deadline or at the latest instant
    /// `bound(previous, planned_ascending)` allows, whichever is earlier.
    fn backwards(
        deadlines_latest_first: &[Instant],
        bound: impl Fn(Instant, &[Instant]) -> Option<Instant>,
    ) -> Option<Self> {
        let mut times = Vec::with_capacity(deadlines_latest_first.len());
        let mut ascending: std::collections::VecDeque<Instant> =
            std::collections::VecDeque::with_capacity(deadlines_latest_first.len());
        for &deadline in deadlines_latest_first {
            let t = match ascending.front() {
                None => deadline,
                // Before the process start there is nothing to plan against: infeasible.
                Some(&previous) => deadline.min(bound(previous, ascending.make_contiguous())?),
            };
            times.push(t);
            ascending.push_front(t);
        }
        Some(Self {
            times,
            ascending: ascending.into(),
        })
    }

    /// The earliest planned send, if any.
    pub fn earliest(&self) -> Option<Instant> {
        self.ascending.first().copied()
    }

    /// Whether the plan fits after `history` (recent sends, ascending, all at or before
    /// `not_before`) under `limit` sends per `window`, sending nothing before `not_before`.
    ///
    /// Planned sends that fall before `not_before` (late commands, or a driver that woke a
    /// millisecond after the planned instant) are taken as sent at `not_before`: being late is
    /// not what makes a plan infeasible, overfull windows are.
    pub fn fits(
        &self,
        history: &[Instant],
        not_before: Instant,
        limit: u32,
        window: Duration,
    ) -> bool {
        let limit = limit as usize;
        let clamped: Vec<Instant> = self.ascending.iter().map(|&t| t.max(not_before)).collect();
        let planned_before = |end: Instant| clamped.partition_point(|&t| t < end);
        // The window starting at `not_before` holds every clamped send.
        let at_start = history.iter().filter(|&&h| h >= not_before).count();
        if at_start + planned_before(not_before + window) > limit {
            return false;
        }
        history.iter().enumerate().all(|(i, &h)| {
            let end = h + window;
            let past = history[i..].iter().take_while(|&&x| x < end).count();
            past + planned_before(end) <= limit
        })
    }

    /// The planned instant of each command (in the order of the deadlines given), as the plan
    /// would send it from `not_before` on.
    pub fn send_times(&self, not_before: Instant) -> impl Iterator<Item = Instant> + '_ {
        self.times.iter().map(move |&t| t.max(not_before))
    }
}

/// The minimum spacing that keeps any window at `limit` planned sends: `window / limit` rounded
/// up to the nanosecond.
pub fn spacing(limit: u32, window: Duration) -> Duration {
    let limit = u128::from(limit.max(1));
    let nanos = window.as_nanos().div_ceil(limit);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Steps between the smoothest spacing and the tightest, see [`spacing_tiers`].
pub const SPACING_STEPS: u32 = 4;

/// Spacings to try, widest first: from `window / (limit − spare)` (a slot per window left free)
/// down to `window / limit` (every slot used) in [`SPACING_STEPS`] equal steps of sends per
/// window. The widest that fits is used, so the plan keeps as much slack for retries and starts
/// as the load allows instead of jumping from "a slot free" to "full".
pub fn spacing_tiers(limit: u32, spare: u32, window: Duration) -> impl Iterator<Item = Duration> {
    let limit = limit.max(1);
    let spare = spare.min(limit - 1);
    let steps = if spare == 0 { 0 } else { SPACING_STEPS };
    (0..=steps).map(move |step| {
        // Sends per window at this step: limit − spare + spare × step / steps, as a fraction.
        let per_window_x = u128::from(limit - spare) * u128::from(steps.max(1))
            + u128::from(spare) * u128::from(step);
        let nanos = (window.as_nanos() * u128::from(steps.max(1))).div_ceil(per_window_x.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(61);

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    #[test]
    fn spacing_rounds_up() {
        assert_eq!(spacing(10, W), Duration::from_millis(6100));
        let s = spacing(7, W);
        assert!(s * 7 >= W);
    }

    #[test]
    fn spacing_tiers_go_from_a_free_slot_to_full() {
        let tiers: Vec<Duration> = spacing_tiers(10, 1, W).collect();
        assert_eq!(tiers.len(), 5);
        assert_eq!(tiers[0], spacing(9, W));
        assert_eq!(tiers[4], spacing(10, W));
        assert!(tiers.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(
            spacing_tiers(10, 0, W).collect::<Vec<_>>(),
            vec![spacing(10, W)]
        );
        assert_eq!(spacing_tiers(1, 1, W).collect::<Vec<_>>(), vec![W]);
    }

    #[test]
    fn cluster_is_spread_backwards() {
        let t0 = Instant::now();
        let deadlines = vec![secs(t0, 300.0); 10];
        let plan = Plan::spaced(&deadlines, spacing(10, W)).unwrap();
        assert_eq!(plan.times[0], secs(t0, 300.0));
        assert_eq!(plan.times[9], secs(t0, 300.0 - 9.0 * 6.1));
        assert!(plan.fits(&[], t0, 10, W));
    }

    #[test]
    fn late_deadlines_do_not_move_when_spread() {
        let t0 = Instant::now();
        let deadlines: Vec<_> = (0..5)
            .rev()
            .map(|i| secs(t0, 100.0 + 20.0 * f64::from(i)))
            .collect();
        let plan = Plan::spaced(&deadlines, spacing(10, W)).unwrap();
        assert_eq!(plan.times, deadlines);
    }

    #[test]
    fn history_blocks_an_extra_send() {
        let t0 = Instant::now();
        let now = secs(t0, 50.0);
        // Nine sends in the last minute and one planned send 5 s from now: the window from the
        // oldest send already holds ten.
        let history: Vec<_> = (0..9).map(|i| secs(t0, f64::from(i))).collect();
        let plan = Plan::spaced(&[secs(t0, 55.0)], spacing(10, W)).unwrap();
        assert!(plan.fits(&history, now, 10, W));
        let mut with_extra = history.clone();
        with_extra.push(now);
        assert!(!plan.fits(&with_extra, now, 10, W));
        // Once the planned send moves past the oldest window it fits again.
        let plan = Plan::spaced(&[secs(t0, 61.0)], spacing(10, W)).unwrap();
        assert!(plan.fits(&with_extra, now, 10, W));
    }

    #[test]
    fn rolling_plan_allows_bursts_up_to_the_limit() {
        let t0 = Instant::now();
        let deadlines = vec![secs(t0, 300.0); 12];
        let plan = Plan::rolling(&deadlines, 10, W).unwrap();
        assert!(plan.times[..10].iter().all(|&t| t == secs(t0, 300.0)));
        assert_eq!(plan.times[10], secs(t0, 239.0));
        assert_eq!(plan.times[11], secs(t0, 239.0));
        assert!(plan.fits(&[], t0, 10, W));
    }

    #[test]
    fn a_retry_due_now_fits_both_plans() {
        let t0 = Instant::now();
        let now = secs(t0, 100.0);
        let deadlines = [secs(t0, 103.0), now];
        // Spacing would want the retry 3.1 s ago; it goes now instead.
        let spaced = Plan::spaced(&deadlines, spacing(10, W)).unwrap();
        assert!(spaced.fits(&[], now, 10, W));
        assert_eq!(spaced.send_times(now).collect::<Vec<_>>(), deadlines);
        let rolling = Plan::rolling(&deadlines, 10, W).unwrap();
        assert!(rolling.fits(&[], now, 10, W));
        assert_eq!(rolling.times, deadlines);
    }

    #[test]
    fn late_sends_count_as_sent_now() {
        let t0 = Instant::now();
        // Three commands due at 10 s, spaced: 10, 3.9 and −2.2 s. At 0 s the last is late and
        // counts as sent at 0 s: three sends in one window fit a limit of three, not of two.
        let deadlines = vec![secs(t0, 10.0); 3];
        let plan = Plan::spaced(&deadlines, spacing(10, W)).unwrap();
        assert!(plan.fits(&[], t0, 3, W));
        assert!(!plan.fits(&[], t0, 2, W));
        let sends: Vec<_> = plan.send_times(t0).collect();
        assert_eq!(sends[2], t0);
        // A driver that wakes a moment after the planned instant still sees the plan fit.
        let plan = Plan::spaced(&[secs(t0, 300.0); 10], spacing(9, W)).unwrap();
        let late = plan.times[9] + Duration::from_millis(1);
        assert!(plan.fits(&[], late, 10, W));
    }

    #[test]
    fn many_late_sends_overfill_the_first_window() {
        let t0 = Instant::now();
        let deadlines = vec![secs(t0, 0.0); 11];
        let plan = Plan::rolling(&deadlines, 10, W).unwrap();
        assert!(!plan.fits(&[], secs(t0, 1.0), 10, W));
    }
}
