//! Log output: `tracing` to stderr, human-readable or JSON lines (`CAMRELAY_LOG_FORMAT`),
//! filtered by `CAMRELAY_LOG`.

use anyhow::Context;
use camrelay_config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Fails on a bad filter, or if one is already installed.
pub fn init(log: &LogConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&log.filter)
        .with_context(|| format!("CAMRELAY_LOG: {:?} is not a valid log filter", log.filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// How often an [`Aggregated`] problem is logged at most.
pub const AGGREGATE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// A problem that can happen per packet or per frame, logged as a count and the last error
/// once per [`AGGREGATE_INTERVAL`] instead of once per occurrence: a broken stream must not
/// flood the log, and must not go unseen either.
#[derive(Debug)]
pub struct Aggregated {
    what: &'static str,
    count: u64,
    last: Option<String>,
    since: Option<tokio::time::Instant>,
    logged: u64,
}

impl Aggregated {
    /// A counter for occurrences of `what` (e.g. "AAC frames not transcoded").
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            count: 0,
            last: None,
            since: None,
            logged: 0,
        }
    }

    /// Records one occurrence; logs the count and the last error when the interval is over.
    pub fn record(&mut self, error: &dyn std::fmt::Display) {
        let now = tokio::time::Instant::now();
        // The very first occurrence is logged at once; later ones once per interval.
        let first = self.since.is_none();
        let since = *self.since.get_or_insert(now);
        self.count += 1;
        self.last = Some(error.to_string());
        if first || now.saturating_duration_since(since) >= AGGREGATE_INTERVAL {
            self.flush(now);
        }
    }

    /// Logs what was counted since the last line, if anything.
    pub fn flush(&mut self, now: tokio::time::Instant) {
        if self.count == 0 {
            return;
        }
        let last = self.last.take().unwrap_or_default();
        tracing::warn!(count = self.count, last_error = %last, "{}", self.what);
        self.logged += 1;
        self.count = 0;
        self.since = Some(now);
    }

    /// Lines logged so far.
    pub fn lines(&self) -> u64 {
        self.logged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flood_becomes_one_line_per_interval() {
        let mut a = Aggregated::new("frames not transcoded");
        for _ in 0..1000 {
            a.record(&"bad frame");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // 100 s of errors: the first at once, then one line per 10 s.
        assert_eq!(a.lines(), 1 + 9);
        a.flush(tokio::time::Instant::now());
        assert_eq!(a.lines(), 11);
        a.flush(tokio::time::Instant::now());
        assert_eq!(a.lines(), 11, "nothing new, nothing logged");
    }
}
