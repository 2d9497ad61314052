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

/// A relay running against a fake SDM API.
pub struct Running {
    /// The relay.
    pub relay: Arc<Relay>,
    /// The fake Google.
    pub sdm: FakeSdmHandle,
    /// Cancels the relay.
    pub shutdown: CancellationToken,
}

pub async fn start(fake: FakeSdmConfig, extra: &[(&str, &str)]) -> Running {
    let sdm = sdm::start(fake.clone()).await.unwrap();
    let mut vars = camrelay::demo::fake_nest_env(&fake, &sdm);
    vars.push(("CAMRELAY_HTTP_ADDR".into(), "127.0.0.1:0".into()));
    vars.push(("CAMRELAY_RTSP_ADDR".into(), "127.0.0.1:0".into()));
    vars.push(("CAMRELAY_RTSP_RTP_ADDR".into(), "127.0.0.1:0".into()));
    vars.push(("CAMRELAY_RTSP_RTCP_ADDR".into(), "127.0.0.1:0".into()));
    for (k, v) in extra {
        vars.push(((*k).into(), (*v).into()));
    }
    let config = Config::from_vars(vars).unwrap();
    let shutdown = CancellationToken::new();
    let relay = Relay::start(config, shutdown.clone()).await.unwrap();
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

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
