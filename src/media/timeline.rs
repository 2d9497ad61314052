//! One continuous RTP timeline per track, across upstream sessions.
//!
//! Every RTSP session with a camera starts its own timestamps (RFC 3550 §5.1: a random
//! offset). Clients of the relay must not notice a reconnect beyond a short freeze, so output
//! timestamps continue from the last one sent, advanced by the wall-clock gap: a decoder sees
//! time pass, not a jump back or forward by hours.

use std::time::{Duration, Instant};

/// The longest gap a reconnect may put into the timeline. Beyond it, timestamps advance by this
/// much only: clients then see a long pause, not a wrap of the 32-bit timestamp.
pub const MAX_GAP: Duration = Duration::from_secs(60);

/// The output timeline of one track.
#[derive(Debug, Clone)]
pub struct Timeline {
    clock_rate: u32,
    base: u32,
    /// `output = input + offset`, in ticks; `None` until the current session's first frame.
    offset: Option<i64>,
    /// The last output (ticks since the first frame ever) and when it was produced.
    last: Option<(i64, Instant)>,
}

impl Timeline {
    /// A timeline at `clock_rate` whose RTP timestamps start at `base`.
    pub fn new(clock_rate: u32, base: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            base,
            offset: None,
            last: None,
        }
    }

    /// A new upstream session begins: its first frame continues the timeline.
    pub fn new_session(&mut self) {
        self.offset = None;
    }

    /// The RTP timestamp for a frame at `input` ticks of the current session, produced at `now`.
    pub fn map(&mut self, input: i64, now: Instant) -> u32 {
        let offset = *self.offset.get_or_insert_with(|| {
            let target = match self.last {
                None => 0,
                Some((last, at)) => {
                    let gap = now.saturating_duration_since(at).min(MAX_GAP);
                    let ticks = gap.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000;
                    // At least one tick: the first frame of a session is a new frame.
                    last + i64::try_from(ticks).unwrap_or(i64::MAX / 2).max(1)
                }
            };
            target.saturating_sub(input)
        });
        let output = input.saturating_add(offset);
        self.last = Some((output, now));
        // RTP timestamps wrap modulo 2^32 (RFC 3550 §5.1).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let wrapped = output as u32;
        self.base.wrapping_add(wrapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_across_sessions_by_the_wall_clock_gap() {
        let t0 = Instant::now();
        let mut t = Timeline::new(90_000, 1000);
        assert_eq!(t.map(5_000_000, t0), 1000);
        assert_eq!(t.map(5_003_600, t0 + Duration::from_millis(40)), 4600);
        // The camera reconnects 2 s later with unrelated timestamps.
        t.new_session();
        let t1 = t0 + Duration::from_millis(2040);
        assert_eq!(t.map(77, t1), 4600 + 180_000);
        assert_eq!(
            t.map(77 + 3600, t1 + Duration::from_millis(40)),
            4600 + 183_600
        );
    }

    #[test]
    fn long_gaps_are_capped_and_timestamps_wrap() {
        let t0 = Instant::now();
        let mut t = Timeline::new(48_000, u32::MAX - 10);
        assert_eq!(t.map(0, t0), u32::MAX - 10);
        assert_eq!(t.map(1024, t0), 1013);
        t.new_session();
        let after_hour = t.map(-500, t0 + Duration::from_secs(3600));
        assert_eq!(after_hour, 1013u32.wrapping_add(60 * 48_000));
    }
}
