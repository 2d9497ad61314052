//! Capacity benchmark: how many always-on Nest cameras one Google project's budget keeps live.
//!
//! For each camera count it runs the whole relay (discovery, admission, command queue, leases,
//! the SDM client over loopback HTTP) against the fake SDM API for 24 simulated hours on paused
//! tokio time, at 10 commands per minute, a 5-minute stream lifetime, 100–800 ms API latency and
//! 1% transient 503s, and prints what Google would have seen.
//!
//! ```text
//! cargo run --release --example capacity                    # 24 h, 40,45,46,48,50 cameras
//! cargo run --release --example capacity -- 6 45,48 0       # hours, counts, budget reserve
//! cargo run --release --example capacity -- 24 45 0.5 45     # exit 1 unless 45 hold (CI)
//! cargo run --release --example capacity -- 24 47 0 0 3      # fifth argument: random seed
//! ```
//!
//! Results and the machine they came from are recorded in docs/BENCHMARKS.md.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use camrelay::app::Relay;
use camrelay::lease::Phase;
use camrelay_config::Config;
use camrelay_sim::sdm::{self, FakeSdmConfig};
use tokio_util::sync::CancellationToken;

/// One run's figures.
struct Figures {
    cameras: usize,
    live: usize,
    refused: usize,
    expired_while_wanted: u64,
    lost: u64,
    max_in_window: u64,
    extensions_per_camera_hour: f64,
    min_margin: Option<Duration>,
    regenerated: u64,
    rate_limited: u64,
    injected_503: u64,
    wall: Duration,
}

async fn run(cameras: usize, hours: u64, reserve: &str, seed: u64) -> Figures {
    let wall = Instant::now();
    let fake = FakeSdmConfig {
        latency_min: Duration::from_millis(100),
        latency_max: Duration::from_millis(800),
        failure_rate: 0.01,
        seed,
        ..FakeSdmConfig::with_rtsp_cameras(cameras)
    };
    let sdm = sdm::start(fake.clone()).await.unwrap();
    let mut vars = camrelay::demo::fake_nest_env(&fake, &sdm);
    vars.extend([
        ("CAMRELAY_NEST_BUDGET_RESERVE".into(), reserve.into()),
        ("CAMRELAY_ALWAYS_ON".into(), "true".into()),
        ("CAMRELAY_HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("CAMRELAY_RTSP_ADDR".into(), "127.0.0.1:0".into()),
        ("CAMRELAY_RTSP_UDP".into(), "false".into()),
    ]);
    let shutdown = CancellationToken::new();
    let relay = Relay::start(Config::from_vars(vars).unwrap(), shutdown.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(hours * 3600)).await;
    let stats = camrelay::http::collect(&relay).await;
    let google = sdm.stats();
    let live = stats
        .cameras
        .iter()
        .filter(|c| c.state == Phase::Live)
        .count();
    let leases = stats.cameras.iter().filter_map(|c| c.lease.as_ref());
    let (lost, generated) = leases.fold((0, 0), |(l, g), s| (l + s.lost, g + s.generated));
    shutdown.cancel();
    relay.stopped().await;
    #[allow(clippy::cast_precision_loss)]
    let per_hour = google.extends as f64 / live.max(1) as f64 / hours as f64;
    Figures {
        cameras,
        live,
        refused: stats
            .cameras
            .iter()
            .filter(|c| c.state == Phase::AtCapacity)
            .count(),
        expired_while_wanted: google.expired_while_wanted,
        lost,
        max_in_window: google.max_accepted_in_any_window,
        extensions_per_camera_hour: per_hour,
        min_margin: google.min_margin_at_extension,
        regenerated: generated.saturating_sub(live as u64),
        rate_limited: google.rate_limited.project + google.rate_limited.device_command,
        injected_503: google.injected_failures,
        wall: wall.elapsed(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let hours: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(24);
    let counts: Vec<usize> = args
        .get(1)
        .map(|a| a.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![40, 45, 46, 48, 50]);
    let reserve = args.get(2).cloned().unwrap_or_else(|| "0.5".into());
    let required: Option<usize> = args.get(3).and_then(|a| a.parse().ok());
    let seed: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(7);
    println!(
        "capacity: {hours} simulated hours, 10 commands/min, 300 s streams, 100-800 ms latency, 1% 503s, budget reserve {reserve}/min"
    );
    println!(
        "{:>7} {:>5} {:>8} {:>8} {:>5} {:>10} {:>12} {:>11} {:>6} {:>5} {:>5} {:>7}",
        "cameras",
        "live",
        "refused",
        "expired",
        "lost",
        "max/60s",
        "ext/cam-hour",
        "min margin",
        "regen",
        "429s",
        "503s",
        "wall"
    );
    let mut largest = None;
    for &n in &counts {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let f = runtime.block_on(run(n, hours, &reserve, seed));
        println!(
            "{:>7} {:>5} {:>8} {:>8} {:>5} {:>10} {:>12.2} {:>11} {:>6} {:>5} {:>5} {:>6.1}s",
            f.cameras,
            f.live,
            f.refused,
            f.expired_while_wanted,
            f.lost,
            f.max_in_window,
            f.extensions_per_camera_hour,
            f.min_margin
                .map_or_else(|| "-".to_owned(), |m| format!("{:.2} s", m.as_secs_f64())),
            f.regenerated,
            f.rate_limited,
            f.injected_503,
            f.wall.as_secs_f64(),
        );
        if f.live == f.cameras && f.expired_while_wanted == 0 && f.max_in_window <= 10 {
            largest = Some(largest.map_or(n, |l: usize| l.max(n)));
        }
    }
    match largest {
        Some(n) => println!("largest camera count fully live with zero expirations: {n}"),
        None => println!("no camera count was fully live with zero expirations"),
    }
    if let Some(required) = required
        && largest.is_none_or(|n| n < required)
    {
        eprintln!("capacity: fewer than {required} cameras held");
        std::process::exit(1);
    }
}
