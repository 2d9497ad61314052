//! Time from a viewer's click to the first decoded frame in headless Chromium, through the
//! relay and its embedded SFU, for a live camera and for an idle on-demand Nest camera whose
//! API answers after 300 ms.
//!
//! ```sh
//! cargo run --release --example first_frame_bench [-- TRIES]
//! ```
//!
//! Needs what the browser tests need: Debian's `chromium` and a Python with `websockets`
//! (`CAMRELAY_TEST_PYTHON`, default `/opt/camrelay-test-venv/bin/python`, which `.ci/run`
//! makes). The fake Google API answers every request after exactly 300 ms. Each idle try
//! starts a camera that has never run (the simulated project has one camera per try), so every
//! sample pays the whole cold path: admission, `GenerateRtspStream`, the `rtsps://` session, the
//! first keyframe, the publisher's SFU session, the viewer's session and its ICE/DTLS. The
//! project's command budget is raised above Google's 10/min only so that 2×TRIES starts and
//! stops fit in one run; an admitted start does not wait for the budget either way.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use camrelay::app::Relay;
use camrelay::camera::Camera;
use camrelay_config::Config;
use camrelay_sim::sdm::FakeSdmConfig;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const DEFAULT_TRIES: usize = 20;
const API_LATENCY: Duration = Duration::from_millis(300);
/// Commands per minute in this run (Google's default is 10; see the module docs).
const BENCH_QPM: u32 = 200;

fn python() -> String {
    std::env::var("CAMRELAY_TEST_PYTHON")
        .unwrap_or_else(|_| "/opt/camrelay-test-venv/bin/python".to_owned())
}

/// Runs the Chromium driver's `first-frame` command and returns its samples in ms.
async fn first_frame(page: &str, camera: &str, tries: usize) -> Result<Vec<f64>> {
    let output = tokio::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/chromium_viewer.py"
        ))
        .args(["first-frame", "--url", page, "--camera", camera])
        .args(["--tries", &tries.to_string(), "--timeout", "20"])
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run the Chromium driver")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .with_context(|| {
            format!(
                "the driver said {stdout}; {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    if !output.status.success() {
        bail!("the driver failed: {result}");
    }
    Ok(result["samples_ms"]
        .as_array()
        .context("no samples")?
        .iter()
        .filter_map(Value::as_f64)
        .collect())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn report(what: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "{what:<40} n={:<3} p50 {:>7.0} ms  p95 {:>7.0} ms  min {:>6.0}  max {:>6.0}",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 95.0),
        samples.first().copied().unwrap_or_default(),
        samples.last().copied().unwrap_or_default(),
    );
}

fn idle(camera: &Camera) -> bool {
    !camera.media.is_live()
        && camera.viewers.load(std::sync::atomic::Ordering::Relaxed) == 0
        && camera.publish.snapshot().session_id.is_none()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let tries: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("TRIES must be a number")?
        .unwrap_or(DEFAULT_TRIES);
    // One camera held live, one per idle try.
    let mut fake = FakeSdmConfig::with_rtsp_cameras(tries + 1);
    fake.latency_min = API_LATENCY;
    fake.latency_max = API_LATENCY;
    fake.command_qpm = BENCH_QPM;
    let (api, _streams) = camrelay_sim::start_nest(fake.clone()).await?;
    let mut vars = camrelay::demo::fake_nest_env(&fake, &api);
    for (k, v) in [
        ("CAMRELAY_HTTP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_RTSP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_RTSP_RTP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_RTSP_RTCP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_SFU", "embedded"),
        ("CAMRELAY_SFU_UDP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_WEBRTC_IP", "127.0.0.1"),
        ("CAMRELAY_EXTRA_CA_FILE", camrelay_sim::camera::TEST_CA_FILE),
        ("CAMRELAY_IDLE_GRACE", "2s"),
        ("CAMRELAY_VIEWER_TIMEOUT", "3s"),
        ("CAMRELAY_LOG", "warn"),
    ] {
        vars.push((k.to_owned(), v.to_owned()));
    }
    vars.push(("CAMRELAY_NEST_QPM".to_owned(), BENCH_QPM.to_string()));
    let shutdown = CancellationToken::new();
    let relay = Relay::start(Config::from_vars(vars)?, shutdown.clone()).await?;
    let page = format!("http://{}/", relay.http_addr);
    let cameras = wait_cameras(&relay, tries + 1).await?;

    println!(
        "first decoded frame in Chromium after the click; Nest API latency {} ms",
        API_LATENCY.as_millis()
    );
    // Live: a camera already up and published (someone else is watching it).
    let live = &cameras[0];
    let _demand = live.acquire(false);
    let _published = live.want_published();
    tokio::time::timeout(Duration::from_secs(30), live.publish.published())
        .await
        .context("the live camera was not published")?;
    let samples = first_frame(&page, &live.id, tries).await?;
    report("live camera (already published)", samples);

    // Idle: each try clicks a camera that has never run.
    let mut samples = Vec::new();
    for camera in &cameras[1..] {
        if !idle(camera) {
            bail!("camera {} is not idle before its try", camera.id);
        }
        let mut sample = first_frame(&page, &camera.id, 1).await?;
        samples.append(&mut sample);
    }
    report("idle on-demand Nest camera (cold start)", samples);
    let sdm = api.stats();
    println!(
        "Google commands: {} generates, {} stops; run on {} cores",
        sdm.generates,
        sdm.stops,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    shutdown.cancel();
    relay.stopped().await;
    Ok(())
}

async fn wait_cameras(relay: &Arc<Relay>, n: usize) -> Result<Vec<Arc<Camera>>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = relay.registry.all();
        if all.len() >= n {
            return Ok(all);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("discovery found {} of {n} cameras", all.len());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
