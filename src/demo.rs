//! `camrelay demo`: the relay against offline stand-ins, with no configuration at all.
//!
//! It starts the fake SDM API (with its OAuth endpoint and a few simulated Nest cameras, at a
//! realistic API latency) with its simulated stream server (`rtsps://`, token-checked), a plain
//! simulated RTSP camera, and runs the relay against them, every camera always on, so the
//! leases can be watched generating and extending streams in `/stats` and every camera played
//! over RTSP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use camrelay_config::Config;
use camrelay_sim::camera::{SimCamera, SimCameraConfig, TEST_CA_PEM};
use camrelay_sim::sdm::{FakeSdmConfig, FakeSdmHandle};
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

/// Id of the demo's plain RTSP camera.
pub const DEMO_CAMERA_ID: &str = "lobby";

/// A running demo.
#[derive(Debug)]
pub struct Demo {
    /// The relay.
    pub relay: Arc<Relay>,
    /// The fake Google API.
    pub sdm: FakeSdmHandle,
    /// Its simulated Nest stream server.
    pub nest_streams: SimCamera,
    /// The plain simulated RTSP camera.
    pub camera: SimCamera,
    /// The stream server's CA, written out for `CAMRELAY_EXTRA_CA_FILE`.
    _ca_file: TempFile,
}

/// A file removed when dropped.
#[derive(Debug)]
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Demo {
    /// Starts the fake API and the relay.
    pub async fn start(options: &DemoOptions, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let fake = FakeSdmConfig {
            latency_min: DEMO_API_LATENCY.0,
            latency_max: DEMO_API_LATENCY.1,
            ..FakeSdmConfig::default()
        };
        let (sdm, nest_streams) = camrelay_sim::start_nest(fake.clone())
            .await
            .context("cannot start the simulated Nest API")?;
        let camera = SimCamera::start(SimCameraConfig {
            paths: vec![format!("/{DEMO_CAMERA_ID}")],
            ..SimCameraConfig::default()
        })
        .await
        .context("cannot start the simulated RTSP camera")?;
        // The stream server's certificate is the simulator's own: trust its CA, as an operator
        // would trust a LAN camera's.
        let ca_file = TempFile(
            std::env::temp_dir().join(format!("camrelay-demo-ca-{}.pem", std::process::id())),
        );
        std::fs::write(&ca_file.0, TEST_CA_PEM)
            .with_context(|| format!("cannot write {}", ca_file.0.display()))?;
        let mut vars = fake_nest_env(&fake, &sdm);
        vars.extend([
            (
                "CAMRELAY_HTTP_ADDR".to_owned(),
                options.http_addr.to_string(),
            ),
            (
                "CAMRELAY_RTSP_ADDR".to_owned(),
                options.rtsp_addr.to_string(),
            ),
            // RTP over UDP on the RTSP server's address, on free ports.
            (
                "CAMRELAY_RTSP_RTP_ADDR".to_owned(),
                SocketAddr::new(options.rtsp_addr.ip(), 0).to_string(),
            ),
            (
                "CAMRELAY_RTSP_RTCP_ADDR".to_owned(),
                SocketAddr::new(options.rtsp_addr.ip(), 0).to_string(),
            ),
            (
                "CAMRELAY_CAMERAS".to_owned(),
                format!(
                    "{DEMO_CAMERA_ID}={}",
                    camera.url(&format!("/{DEMO_CAMERA_ID}"))
                ),
            ),
            (
                "CAMRELAY_EXTRA_CA_FILE".to_owned(),
                ca_file.0.display().to_string(),
            ),
            // The embedded SFU on the same address, on a free port. Cameras start, and publish
            // into it, when a viewer or an RTSP client asks (on demand, as in production).
            ("CAMRELAY_SFU".to_owned(), "embedded".to_owned()),
            (
                "CAMRELAY_SFU_UDP_ADDR".to_owned(),
                SocketAddr::new(options.rtsp_addr.ip(), 0).to_string(),
            ),
        ]);
        if !options.rtsp_addr.ip().is_unspecified() {
            vars.push((
                "CAMRELAY_WEBRTC_IP".to_owned(),
                options.rtsp_addr.ip().to_string(),
            ));
        }
        let config =
            Config::from_vars(vars).map_err(|e| anyhow::anyhow!("demo configuration: {e}"))?;
        let relay = Relay::start(config, shutdown).await?;
        Ok(Self {
            relay,
            sdm,
            nest_streams,
            camera,
            _ca_file: ca_file,
        })
    }

    /// What to open, as (label, URL) pairs.
    pub fn urls(&self) -> Vec<(&'static str, String)> {
        let http = self.relay.http_addr;
        let rtsp = self.relay.rtsp.local_addr();
        vec![
            ("viewer page", format!("http://{http}/")),
            ("cameras", format!("http://{http}/api/cameras")),
            (
                "RTSP, plain camera",
                format!("rtsp://{rtsp}/{DEMO_CAMERA_ID}"),
            ),
            (
                "RTSP, Nest cameras",
                format!("rtsp://{rtsp}/{{camera id}} (ids in /api/cameras)"),
            ),
            ("relay stats", format!("http://{http}/stats")),
            (
                "embedded SFU (Calls API base URL)",
                format!("http://{http}{}", crate::sfu::api::BASE_PATH),
            ),
            (
                "fake Google API stats",
                format!("http://{}/sim/stats", self.sdm.addr()),
            ),
        ]
    }
}
