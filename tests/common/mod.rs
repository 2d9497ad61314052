//! Helpers shared by the integration tests: a relay against the fake SDM API.

// Each test binary uses a different part of these helpers.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod media;

use std::sync::Arc;
use std::time::Duration;

use camrelay::app::Relay;
use camrelay::lease::Phase;
use camrelay::stats::Stats;
use camrelay_config::Config;
use camrelay_sim::sdm::{self, FakeSdmConfig, FakeSdmHandle, FakeSdmStats};
use tokio_util::sync::CancellationToken;

/// The Python with aiortc and the other test packages: `CAMRELAY_TEST_PYTHON`, else the venv
/// `.ci/run` makes.
pub fn test_python() -> String {
    std::env::var("CAMRELAY_TEST_PYTHON")
        .unwrap_or_else(|_| "/opt/camrelay-test-venv/bin/python".to_owned())
}

/// A relay running against a fake SDM API.
pub struct Running {
    /// The relay.
    pub relay: Arc<Relay>,
    /// The fake Google.
    pub sdm: FakeSdmHandle,
    /// Cancels the relay.
    pub shutdown: CancellationToken,
}

/// Starts a relay from `vars` (e.g. the fake Nest API's), every listener on a free loopback
/// port, and then `extra`.
pub async fn start_relay_from(
    mut vars: Vec<(String, String)>,
    extra: &[(&str, &str)],
) -> (Arc<Relay>, CancellationToken) {
    let loopback = [
        ("CAMRELAY_HTTP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_RTSP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_RTSP_RTP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_RTSP_RTCP_ADDR", "127.0.0.1:0"),
    ];
    let loopback = loopback.into_iter().chain([
        ("CAMRELAY_SFU_UDP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_WEBRTC_IP", "127.0.0.1"),
    ]);
    let given = |k: &str| extra.iter().any(|(e, _)| *e == k) || vars.iter().any(|(e, _)| e == k);
    let defaults: Vec<_> = loopback.filter(|(k, _)| !given(k)).collect();
    for (k, v) in defaults.iter().chain(extra) {
        vars.push(((*k).into(), (*v).into()));
    }
    let config = Config::from_vars(vars).unwrap();
    let shutdown = CancellationToken::new();
    let relay = Relay::start(config, shutdown.clone()).await.unwrap();
    (relay, shutdown)
}

pub async fn start(fake: FakeSdmConfig, extra: &[(&str, &str)]) -> Running {
    let sdm = sdm::start(fake.clone()).await.unwrap();
    let vars = camrelay::demo::fake_nest_env(&fake, &sdm);
    let (relay, shutdown) = start_relay_from(vars, extra).await;
    Running {
        relay,
        sdm,
        shutdown,
    }
}

pub async fn stats(r: &Running) -> Stats {
    camrelay::http::collect(&r.relay).await
}

pub fn phases(stats: &Stats) -> Vec<(String, Phase)> {
    stats
        .cameras
        .iter()
        .map(|c| (c.id.clone(), c.state))
        .collect()
}

/// Lets simulated time pass until `done` holds, checking every second, or panics after `limit`.
pub async fn until(r: &Running, limit: Duration, done: impl Fn(&Stats) -> bool) -> Stats {
    let start = tokio::time::Instant::now();
    loop {
        let s = stats(r).await;
        if done(&s) {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "not reached within {limit:?}: {:?}",
            phases(&s)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub fn all_live(n: usize) -> impl Fn(&Stats) -> bool {
    move |s| s.cameras.len() == n && s.cameras.iter().all(|c| c.state == Phase::Live)
}

pub fn realistic(fake: FakeSdmConfig) -> FakeSdmConfig {
    FakeSdmConfig {
        latency_min: Duration::from_millis(100),
        latency_max: Duration::from_millis(800),
        failure_rate: 0.01,
        seed: 7,
        ..fake
    }
}

pub fn no_stream_lost(sdm: &FakeSdmStats) {
    assert_eq!(sdm.expired_while_wanted, 0, "{sdm:?}");
    assert!(sdm.max_accepted_in_any_window <= 10, "{sdm:?}");
}

/// A `tracing` writer that keeps everything written to it.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Captures every event at DEBUG and above, process-wide (`tracing` caches per-callsite
    /// interest process-wide, so a thread-local subscriber would miss events when tests run in
    /// parallel): once per test binary.
    pub fn install() -> Self {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// The tokens in the Nest cameras' current stream URLs: the path's last segment and every query
/// value.
pub fn stream_tokens(relay: &Relay) -> Vec<String> {
    let mut tokens = Vec::new();
    for camera in relay.registry.all() {
        if let camrelay::camera::Source::Nest { lease, .. } = &camera.source
            && let Some(url) = lease.borrow().url.clone()
        {
            let url = url.expose();
            tokens.push(url.path().rsplit('/').next().unwrap().to_owned());
            tokens.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
        }
    }
    tokens
}

/// What an operator reads from the relay: `/stats` and the camera list, as text.
pub async fn operator_views(relay: &Relay) -> (String, String) {
    let stats = serde_json::to_string(&camrelay::http::collect(relay).await).unwrap();
    let listing = reqwest::get(format!("http://{}/api/cameras", relay.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (stats, listing)
}

/// Panics if any of `texts` (named) contains any of `secrets`.
pub fn assert_nothing_reveals(secrets: &[String], texts: &[(&str, &str)]) {
    for secret in secrets {
        for (what, text) in texts {
            let line = text.lines().find(|l| l.contains(secret.as_str()));
            assert!(line.is_none(), "{what} reveal {secret}: {line:?}");
        }
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
