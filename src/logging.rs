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
