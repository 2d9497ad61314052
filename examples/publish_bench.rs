//! Publish benchmark: what publishing costs the relay per camera (1080p30 ~4 Mbps H.264 +
//! 48 kHz AAC, transcoded to Opus).
//!
//! N simulated cameras run in this process. For each N the relay runs twice as a child process
//! pulling all of them (always on): once with `CAMRELAY_SFU=off` (ingest only: the baseline),
//! once publishing every camera into an SFU — a second camrelay child serving the embedded SFU,
//! spoken to through the Calls API exactly as Cloudflare would be. Over a fixed window it
//! measures the relay process's CPU seconds and its RSS; publishing's share is the difference.
//! The transcoding share comes from `examples/transcode_bench.rs` (one camera's AAC → Opus on
//! one thread).
//!
//! ```text
//! cargo run --release --example publish_bench                  # 1, 10, 50 cameras
//! cargo run --release --example publish_bench -- 1 10 --seconds 30
//! cargo run --release --example publish_bench -- 1 --repeat 5       # median of five pairs
//! ```
//!
//! A single pair moves by a few tenths of a point between runs on a shared 2-core VM (the
//! camera, the relay and the SFU share it); `--repeat N` alternates N ingest-only and N
//! publishing runs per level and also prints the median and range.
//!
//! Needs ffmpeg (the fixture is generated into `target/bench-fixtures/` on first use). Results
//! and the machine are recorded in docs/BENCHMARKS.md.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use camrelay_sim::camera::{Fixture, SimCamera, SimCameraConfig};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

#[path = "support/bench.rs"]
mod bench;
use bench::{FPS, build_relay, clock_ticks, fixture_files, free_port, load_average, sample};

/// AAC frames in one fixture loop (8 s at 48 kHz).
const AUDIO_FRAMES: usize = 375;
/// Camera counts measured by default.
const DEFAULT_LEVELS: [usize; 3] = [1, 10, 50];
/// Default measurement window (three fixture loops).
const DEFAULT_WINDOW: Duration = Duration::from_secs(24);
/// From the relay's start to the window: sessions set up, GOP bursts over.
const WARMUP: Duration = Duration::from_secs(8);
/// How long every camera may take to be published.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);
/// The SFU's app credentials (loopback only).
const APP_ID: &str = "bench";
const APP_SECRET: &str = "bench-secret-0123456789";

struct Child2 {
    child: Child,
    pid: String,
    http: u16,
}

fn clean(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CAMRELAY_") {
            command.env_remove(key);
        }
    }
}

async fn spawn(vars: &[(&str, String)], log: &str) -> Result<Child2> {
    let http = free_port()?;
    let log_path = bench::target_dir().join(log);
    let log_file = std::fs::File::create(&log_path)?;
    let mut command = Command::new(bench::target_dir().join("release/camrelay"));
    clean(&mut command);
    command
        .arg("run")
        .env("CAMRELAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("CAMRELAY_RTSP_ADDR", "127.0.0.1:0")
        .env("CAMRELAY_RTSP_UDP", "false")
        .env("CAMRELAY_WEBRTC_IP", "127.0.0.1")
        .env("CAMRELAY_SFU_UDP_ADDR", "127.0.0.1:0")
        .env("CAMRELAY_LOG", "warn");
    for (k, v) in vars {
        command.env(k, v);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .context("starting target/release/camrelay")?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("exited at once"))?
        .to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", http))
        .await
        .is_err()
    {
        if tokio::time::Instant::now() > deadline {
            bail!("camrelay did not listen; see {}", log_path.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Child2 { child, pid, http })
}

async fn published(http: u16) -> Result<usize> {
    let list: Value = reqwest::get(format!("http://127.0.0.1:{http}/api/cameras"))
        .await?
        .json()
        .await?;
    Ok(list
        .as_array()
        .map_or(0, |l| l.iter().filter(|c| !c["sfu"].is_null()).count()))
}

/// What one run of the relay used over the window.
struct Usage {
    /// CPU seconds, user + kernel.
    cpu: f64,
    /// Of them, in the kernel (on loopback this includes delivering to the SFU process).
    sys: f64,
    /// RSS at the end, KiB.
    rss_kib: u64,
    /// Of it private (RssAnon): without the code and libraries paged in once.
    anon_kib: u64,
    /// The embedded SFU's CPU seconds over the same window (a process of its own), when
    /// publishing.
    sfu_cpu: Option<f64>,
}

/// Runs the relay over `cameras` with or without publishing.
async fn measure(
    cameras: &str,
    n: usize,
    publish: bool,
    window: Duration,
    ticks: f64,
) -> Result<Usage> {
    let mut sfu = None;
    let mut vars = vec![
        ("CAMRELAY_CAMERAS", cameras.to_owned()),
        ("CAMRELAY_ALWAYS_ON", "true".to_owned()),
    ];
    if publish {
        let s = spawn(
            &[
                ("CAMRELAY_SFU", "embedded".to_owned()),
                ("CAMRELAY_CALLS_APP_ID", APP_ID.to_owned()),
                ("CAMRELAY_CALLS_APP_SECRET", APP_SECRET.to_owned()),
            ],
            "publish-bench-sfu.log",
        )
        .await?;
        vars.extend([
            ("CAMRELAY_SFU", "cloudflare".to_owned()),
            ("CAMRELAY_CALLS_APP_ID", APP_ID.to_owned()),
            ("CAMRELAY_CALLS_APP_SECRET", APP_SECRET.to_owned()),
            (
                "CAMRELAY_CALLS_API_URL",
                format!("http://127.0.0.1:{}/sfu/v1", s.http),
            ),
        ]);
        sfu = Some(s);
    } else {
        vars.push(("CAMRELAY_SFU", "off".to_owned()));
    }
    let mut relay = spawn(&vars, "publish-bench-relay.log").await?;
    if publish {
        let deadline = tokio::time::Instant::now() + PUBLISH_TIMEOUT;
        while published(relay.http).await.unwrap_or(0) < n {
            if tokio::time::Instant::now() > deadline {
                bail!("not every camera was published; see target/publish-bench-relay.log");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(WARMUP).await;
    let before = sample(&relay.pid)?;
    let sfu_before = sfu.as_ref().map(|s| sample(&s.pid)).transpose()?;
    tokio::time::sleep(window).await;
    let after = sample(&relay.pid)?;
    let sfu_after = sfu.as_ref().map(|s| sample(&s.pid)).transpose()?;
    if publish && published(relay.http).await? < n {
        bail!("cameras stopped being published during the window");
    }
    let _ = relay.child.kill().await;
    if let Some(mut s) = sfu {
        let _ = s.child.kill().await;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(Usage {
        cpu: (after.cpu_ticks - before.cpu_ticks) as f64 / ticks,
        sys: (after.sys_ticks - before.sys_ticks) as f64 / ticks,
        rss_kib: after.rss_kib,
        anon_kib: after.anon_kib,
        sfu_cpu: sfu_before
            .zip(sfu_after)
            .map(|(b, a)| (a.cpu_ticks - b.cpu_ticks) as f64 / ticks),
    })
}

/// One ingest-only run and one publishing run of the same cameras, per camera.
struct Pair {
    cpu: f64,
    ingest_cpu: f64,
    publish_cpu: f64,
    publish_sys: f64,
    rss_kib: u64,
    ingest_rss_kib: u64,
    publish_mib: f64,
    publish_private_mib: f64,
    sfu_cpu: Option<f64>,
}

impl Pair {
    #[allow(clippy::cast_precision_loss)]
    fn new(n: usize, base: &Usage, with: &Usage, window: Duration) -> Self {
        let secs = window.as_secs_f64();
        let per = |v: f64| v / secs / n as f64 * 100.0;
        let mem = |kib: u64| kib as f64 / 1024.0 / n as f64;
        Self {
            cpu: per(with.cpu),
            ingest_cpu: per(base.cpu),
            publish_cpu: per(with.cpu - base.cpu),
            publish_sys: per(with.sys - base.sys),
            rss_kib: with.rss_kib,
            ingest_rss_kib: base.rss_kib,
            publish_mib: mem(with.rss_kib.saturating_sub(base.rss_kib)),
            publish_private_mib: mem(with.anon_kib.saturating_sub(base.anon_kib)),
            sfu_cpu: with.sfu_cpu.map(per),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn print(&self, n: usize, label: &str) {
        println!(
            "{n:>3} cameras{label}: relay {:.2}% of a core per camera ({:.2}% ingest only, {:.2}% \
             publishing, of which {:.2}% in the kernel); RSS {:.1} MiB ({:.1} ingest only): {:.2} \
             MiB per published camera above ingest, of it private {:.2} MiB",
            self.cpu,
            self.ingest_cpu,
            self.publish_cpu,
            self.publish_sys,
            self.rss_kib as f64 / 1024.0,
            self.ingest_rss_kib as f64 / 1024.0,
            self.publish_mib,
            self.publish_private_mib,
        );
        if let Some(sfu) = self.sfu_cpu {
            println!(
                "{n:>3} cameras{label}: the embedded SFU receiving them (a process of its own, no \
                 viewers): {sfu:.2}% of a core per camera"
            );
        }
    }

    fn json(&self, n: usize) -> Value {
        json!({
            "cameras": n,
            "cpu_pct_per_camera": self.cpu,
            "ingest_cpu_pct_per_camera": self.ingest_cpu,
            "publish_cpu_pct_per_camera": self.publish_cpu,
            "publish_kernel_cpu_pct_per_camera": self.publish_sys,
            "rss_kib": self.rss_kib,
            "ingest_rss_kib": self.ingest_rss_kib,
            "publish_mib_per_camera": self.publish_mib,
            "publish_private_mib_per_camera": self.publish_private_mib,
            "sfu_cpu_pct_per_camera": self.sfu_cpu,
        })
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => values[mid],
        _ => f64::midpoint(values[mid - 1], values[mid]),
    }
}

struct Args {
    levels: Vec<usize>,
    window: Duration,
    repeat: usize,
}

fn parse_args() -> Result<Args> {
    let mut levels = Vec::new();
    let mut window = DEFAULT_WINDOW;
    let mut repeat = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            let s: u64 = args.next().context("--seconds N")?.parse()?;
            window = Duration::from_secs(s);
        } else if arg == "--repeat" {
            repeat = args.next().context("--repeat N")?.parse()?;
            if repeat == 0 {
                bail!("--repeat must be at least 1");
            }
        } else {
            levels.push(arg.parse().with_context(|| format!("not a count: {arg}"))?);
        }
    }
    if levels.is_empty() {
        levels = DEFAULT_LEVELS.to_vec();
    }
    Ok(Args {
        levels,
        window,
        repeat,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let Args {
        levels,
        window,
        repeat,
    } = parse_args()?;
    build_relay()?;
    let (video, audio) = fixture_files()?;
    let fixture = Arc::new(Fixture::parse(&video, &audio, FPS, AUDIO_FRAMES));
    let ticks = clock_ticks();
    let max = levels.iter().copied().max().unwrap_or(1);
    let paths: Vec<String> = (0..max).map(|i| format!("/cam{i}")).collect();
    let camera = SimCamera::start(SimCameraConfig {
        paths: paths.clone(),
        fixture: Some(fixture),
        ..SimCameraConfig::default()
    })
    .await?;
    println!(
        "window {} s after {} s warm-up; load average {}",
        window.as_secs(),
        WARMUP.as_secs(),
        load_average()
    );
    let mut results = Vec::new();
    for &n in &levels {
        let cameras = paths[..n]
            .iter()
            .enumerate()
            .map(|(i, p)| format!("c{i}={}", camera.url(p)))
            .collect::<Vec<_>>()
            .join(";");
        // Ingest-only and publishing runs alternate, so slow drifts in the machine's load
        // fall on both alike.
        let mut pairs = Vec::with_capacity(repeat);
        for run in 1..=repeat {
            let base = measure(&cameras, n, false, window, ticks).await?;
            let with = measure(&cameras, n, true, window, ticks).await?;
            let pair = Pair::new(n, &base, &with, window);
            let label = if repeat > 1 {
                format!(" (run {run} of {repeat})")
            } else {
                String::new()
            };
            pair.print(n, &label);
            pairs.push(pair);
        }
        let mut level = json!({
            "cameras": n,
            "runs": pairs.iter().map(|p| p.json(n)).collect::<Vec<_>>(),
        });
        if repeat > 1 {
            let of = |f: fn(&Pair) -> f64| {
                let values: Vec<f64> = pairs.iter().map(f).collect();
                let (low, high) = values
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                        (l.min(*v), h.max(*v))
                    });
                (median(values), low, high)
            };
            let (publish, low, high) = of(|p| p.publish_cpu);
            let (sys, _, _) = of(|p| p.publish_sys);
            let (mib, mib_low, mib_high) = of(|p| p.publish_mib);
            let (private, _, _) = of(|p| p.publish_private_mib);
            println!(
                "{n:>3} cameras, median of {repeat}: publishing {publish:.2}% of a core per camera \
                 ({low:.2}–{high:.2}), of which {sys:.2}% in the kernel; {mib:.2} MiB per camera \
                 ({mib_low:.2}–{mib_high:.2}), of it private {private:.2} MiB"
            );
            level["median"] = json!({
                "publish_cpu_pct_per_camera": publish,
                "publish_kernel_cpu_pct_per_camera": sys,
                "publish_mib_per_camera": mib,
                "publish_private_mib_per_camera": private,
            });
        }
        results.push(level);
    }
    println!("SUMMARY {}", json!({ "levels": results }));
    Ok(())
}
