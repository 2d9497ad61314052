//! Pulling media from cameras: when a camera session counts as dead, how
//! reconnects back off, and which extra certificate authorities `rtsps://`
//! cameras may be signed by.
//!
//! These apply to every camera, static or Nest. The CA file is only named
//! here: this crate reads nothing but the environment, so whether the file
//! exists and holds PEM certificates is checked by whoever loads it, at
//! start-up.

use std::path::PathBuf;
use std::time::Duration;

use crate::defaults as d;
use crate::parse::{self, Check};
use crate::vars::{RawVars, var};

/// Camera session liveness and reconnect backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestConfig {
    /// `CAMRELAY_INGEST_TIMEOUT`: no media for this long means the session
    /// is dead and is reconnected.
    pub timeout: Duration,
    /// `CAMRELAY_INGEST_RETRY_INITIAL`: first reconnect delay; doubles with
    /// jitter up to `retry_max`.
    pub retry_initial: Duration,
    /// `CAMRELAY_INGEST_RETRY_MAX`: cap of the reconnect delay;
    /// `retry_initial <= retry_max`.
    pub retry_max: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            timeout: d::INGEST_TIMEOUT,
            retry_initial: d::INGEST_RETRY_INITIAL,
            retry_max: d::INGEST_RETRY_MAX,
        }
    }
}

/// Parses the ingest settings; `None` means a recorded problem.
pub(crate) fn parse(check: &mut Check, raw: &RawVars) -> Option<IngestConfig> {
    let timeout = check.value(
        var::INGEST_TIMEOUT,
        raw.ingest_timeout.as_deref(),
        d::INGEST_TIMEOUT,
        parse::duration_in(d::INGEST_TIMEOUT_MIN, d::INGEST_TIMEOUT_MAX),
    );
    let retry_initial = check.value(
        var::INGEST_RETRY_INITIAL,
        raw.ingest_retry_initial.as_deref(),
        d::INGEST_RETRY_INITIAL,
        parse::duration_in(d::INGEST_RETRY_FLOOR, d::INGEST_RETRY_CEILING),
    );
    let retry_max = check.value(
        var::INGEST_RETRY_MAX,
        raw.ingest_retry_max.as_deref(),
        d::INGEST_RETRY_MAX,
        parse::duration_in(d::INGEST_RETRY_FLOOR, d::INGEST_RETRY_CEILING),
    );
    let retry_initial = retry_initial.and_then(|initial| match retry_max {
        Some(max) if initial > max => {
            let message = format!(
                "{} must not exceed CAMRELAY_INGEST_RETRY_MAX ({})",
                parse::fmt_duration(initial),
                parse::fmt_duration(max)
            );
            check.error(var::INGEST_RETRY_INITIAL, message);
            None
        }
        _ => Some(initial),
    });
    Some(IngestConfig {
        timeout: timeout?,
        retry_initial: retry_initial?,
        retry_max: retry_max?,
    })
}

/// `CAMRELAY_EXTRA_CA_FILE`: `Some(None)` when unset, `None` after a
/// recorded problem.
pub(crate) fn extra_ca_file(check: &mut Check, raw: &RawVars) -> Option<Option<PathBuf>> {
    let path = check.optional(var::EXTRA_CA_FILE, raw.extra_ca_file.as_deref(), ca_path);
    match (raw.extra_ca_file.is_some(), path) {
        (false, _) => Some(None),
        (true, path) => path.map(Some),
    }
}

/// A path to open later: not empty, and without the NUL byte no file name
/// can hold. Nothing is read here.
fn ca_path(value: &str) -> Result<PathBuf, String> {
    if value.contains('\0') {
        return Err("is not a file path (it contains a NUL byte)".to_owned());
    }
    parse::text(value)
        .map(PathBuf::from)
        .map_err(|_| "must name a PEM file of CA certificates, not be empty".to_owned())
}
