//! `camrelay demo`: the relay against offline stand-ins, with no configuration at all.
//!
//! It starts the fake SDM API (with its OAuth endpoint and a few simulated Nest cameras, at a
//! realistic API latency) and runs the relay against it, every camera always on, so the leases
//! can be watched generating and extending streams in `/stats`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use camrelay_config::Config;
use camrelay_sim::sdm::{self, FakeSdmConfig, FakeSdmHandle};
use tokio_util::sync::CancellationToken;

use crate::app::Relay;

/// API latency range of the demo's fake Google: typical of the real API from a cloud VM.
pub const DEMO_API_LATENCY: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_millis(300));

/// The `CAMRELAY_NEST_*` variables that point the relay at a running fake SDM API with the
/// fake's credentials (for the demo, the tests and the benchmarks).
pub fn fake_nest_env(fake: &FakeSdmConfig, sdm: &FakeSdmHandle) -> Vec<(String, String)> {
    [
        ("CAMRELAY_NEST_PROJECT_ID", fake.project_id.clone()),
        ("CAMRELAY_NEST_CLIENT_ID", fake.client_id.clone()),
        ("CAMRELAY_NEST_CLIENT_SECRET", fake.client_secret.clone()),
        ("CAMRELAY_NEST_REFRESH_TOKEN", fake.refresh_token.clone()),
        ("CAMRELAY_NEST_API_URL", sdm.api_url()),
        ("CAMRELAY_NEST_TOKEN_URL", sdm.token_url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Where the demo listens.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Viewer page, API, stats.
    pub http_addr: SocketAddr,
    /// RTSP server.
    pub rtsp_addr: SocketAddr,
}

/// A running demo.
#[derive(Debug)]
pub struct Demo {
    /// The relay.
    pub relay: Arc<Relay>,
    /// The fake Google API.
    pub sdm: FakeSdmHandle,
}

impl Demo {
    /// Starts the fake API and the relay.
    pub async fn start(options: &DemoOptions, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let fake = FakeSdmConfig {
            latency_min: DEMO_API_LATENCY.0,
            latency_max: DEMO_API_LATENCY.1,
            ..FakeSdmConfig::default()
        };
        let sdm = sdm::start(fake.clone())
            .await
            .context("cannot start the simulated Nest API")?;
        let mut vars = fake_nest_env(&fake, &sdm);
        vars.extend([
            ("CAMRELAY_ALWAYS_ON".to_owned(), "true".to_owned()),
            (
                "CAMRELAY_HTTP_ADDR".to_owned(),
                options.http_addr.to_string(),
            ),
            (
                "CAMRELAY_RTSP_ADDR".to_owned(),
                options.rtsp_addr.to_string(),
            ),
        ]);
        let config =
            Config::from_vars(vars).map_err(|e| anyhow::anyhow!("demo configuration: {e}"))?;
        let relay = Relay::start(config, shutdown).await?;
        Ok(Self { relay, sdm })
    }

    /// What to open, as (label, URL) pairs.
    pub fn urls(&self) -> Vec<(&'static str, String)> {
        let http = self.relay.http_addr;
        vec![
            ("cameras", format!("http://{http}/api/cameras")),
            ("relay stats", format!("http://{http}/stats")),
            (
                "fake Google API stats",
                format!("http://{}/sim/stats", self.sdm.addr()),
            ),
        ]
    }
}
