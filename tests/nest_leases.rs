//! The relay's Nest path end to end against the offline fake of Google's API, on paused tokio
//! time: discovery, admission, leases, extensions, failures and shutdown, hours in seconds.

// Tests may panic on unexpected values; that is how they fail.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use camrelay::app::Relay;
use camrelay::lease::Phase;
use camrelay::stats::Stats;
use camrelay_config::Config;
use camrelay_sim::sdm::{self, FakeSdmConfig, FakeSdmHandle, FakeSdmStats, Fault};
use tokio_util::sync::CancellationToken;

struct Running {
    relay: Arc<Relay>,
    sdm: FakeSdmHandle,
    shutdown: CancellationToken,
}

async fn start(fake: FakeSdmConfig, extra: &[(&str, &str)]) -> Running {
    let sdm = sdm::start(fake.clone()).await.unwrap();
    let mut vars = camrelay::demo::fake_nest_env(&fake, &sdm);
    vars.push(("CAMRELAY_HTTP_ADDR".into(), "127.0.0.1:0".into()));
    vars.push(("CAMRELAY_RTSP_ADDR".into(), "127.0.0.1:0".into()));
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

async fn stats(r: &Running) -> Stats {
    camrelay::http::collect(&r.relay).await
}

fn phases(stats: &Stats) -> Vec<(String, Phase)> {
    stats
        .cameras
        .iter()
        .map(|c| (c.id.clone(), c.state))
        .collect()
}

/// Lets simulated time pass until `done` holds, checking every second, or panics after `limit`.
async fn until(r: &Running, limit: Duration, done: impl Fn(&Stats) -> bool) -> Stats {
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

fn all_live(n: usize) -> impl Fn(&Stats) -> bool {
    move |s| s.cameras.len() == n && s.cameras.iter().all(|c| c.state == Phase::Live)
}

fn realistic(fake: FakeSdmConfig) -> FakeSdmConfig {
    FakeSdmConfig {
        latency_min: Duration::from_millis(100),
        latency_max: Duration::from_millis(800),
        failure_rate: 0.01,
        seed: 7,
        ..fake
    }
}

fn no_stream_lost(sdm: &FakeSdmStats) {
    assert_eq!(sdm.expired_while_wanted, 0, "{sdm:?}");
    assert!(sdm.max_accepted_in_any_window <= 10, "{sdm:?}");
}

#[tokio::test(start_paused = true)]
async fn always_on_cameras_stay_live_for_hours_on_just_in_time_extensions() {
    let r = start(
        realistic(FakeSdmConfig::default()),
        &[("CAMRELAY_ALWAYS_ON", "true")],
    )
    .await;
    // Three RTSP cameras; the WebRTC-only one is not a relay camera.
    until(&r, Duration::from_secs(60), all_live(3)).await;
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    let s = stats(&r).await;
    assert!(all_live(3)(&s), "{:?}", phases(&s));
    let sdm = r.sdm.stats();
    no_stream_lost(&sdm);
    for camera in &s.cameras {
        let lease = camera.lease.as_ref().unwrap();
        assert_eq!(
            lease.generated, 1,
            "{} needed a new stream: {lease:?}",
            camera.id
        );
        assert_eq!(lease.lost, 0);
        // Just in time: one extension per (300 s − margin); 3 h / ~295 s ≈ 36.6.
        assert!((35..=38).contains(&lease.extended), "{lease:?}");
        assert!(lease.margin_ms < 10_000, "{lease:?}");
    }
    // Google saw every extension before expiry, none absurdly early.
    let margin = sdm.min_margin_at_extension.unwrap();
    assert!(
        margin > Duration::ZERO && margin < Duration::from_secs(10),
        "{margin:?}"
    );
    // The hourly access token was refreshed before it lapsed.
    assert!(s.nest.as_ref().unwrap().token_refreshes >= 3);
    assert_eq!(sdm.unauthenticated, 0);
}

#[tokio::test(start_paused = true)]
async fn a_budget_smaller_than_configured_is_absorbed_through_429s() {
    // Google allows only 2 commands a minute, the relay believes 10: the queue learns from 429s.
    let fake = FakeSdmConfig {
        command_qpm: 2,
        ..realistic(FakeSdmConfig::default())
    };
    let r = start(fake, &[("CAMRELAY_ALWAYS_ON", "true")]).await;
    until(&r, Duration::from_secs(300), all_live(3)).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let s = stats(&r).await;
    assert!(all_live(3)(&s), "{:?}", phases(&s));
    let sdm = r.sdm.stats();
    assert_eq!(sdm.expired_while_wanted, 0, "{sdm:?}");
    assert!(sdm.rate_limited.project >= 1, "{sdm:?}");
    assert!(s.queue.as_ref().unwrap().rate_limited >= 1);
}

#[tokio::test(start_paused = true)]
async fn garbled_answers_server_errors_and_refused_tokens_are_survived() {
    let r = start(FakeSdmConfig::default(), &[("CAMRELAY_ALWAYS_ON", "true")]).await;
    until(&r, Duration::from_secs(60), all_live(3)).await;

    // A 500 on the next extension: maybe processed, so retried with the same token.
    r.sdm.inject(Fault::Status(500), 1);
    tokio::time::sleep(Duration::from_secs(300)).await;
    // Access tokens stop working: the 401 drops ours, the retry fetches a new one.
    r.sdm.inject(Fault::ExpireAccessTokens, 1);
    tokio::time::sleep(Duration::from_secs(300)).await;
    // A garbled answer to an extension: the token is spent and the new one unknown, so the
    // camera needs a new stream (the orphaned one expires on Google's side).
    r.sdm.inject(Fault::MalformedJson, 1);
    tokio::time::sleep(Duration::from_secs(600)).await;

    let s = until(&r, Duration::from_secs(60), all_live(3)).await;
    let lost: u64 = s
        .cameras
        .iter()
        .map(|c| c.lease.as_ref().unwrap().lost)
        .sum();
    let generated: u64 = s
        .cameras
        .iter()
        .map(|c| c.lease.as_ref().unwrap().generated)
        .sum();
    assert_eq!(lost, 1, "only the garbled extension cost a stream");
    assert_eq!(generated, 4);
    let errors: Vec<&str> = s
        .cameras
        .iter()
        .filter_map(|c| c.lease.as_ref().unwrap().last_error.as_deref())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("malformed response")),
        "{errors:?}"
    );
    assert_eq!(r.sdm.stats().expired_while_wanted, 1);
}

#[tokio::test(start_paused = true)]
async fn admission_refuses_the_stream_the_budget_cannot_keep() {
    // 2 commands a minute keep floor((2 × 60/61 − 0.5) / (60 / 294)) = 7 streams alive.
    let fake = FakeSdmConfig {
        command_qpm: 2,
        ..realistic(FakeSdmConfig::with_rtsp_cameras(8))
    };
    let r = start(
        fake,
        &[("CAMRELAY_ALWAYS_ON", "true"), ("CAMRELAY_NEST_QPM", "2")],
    )
    .await;
    let s = until(&r, Duration::from_secs(900), |s| {
        s.cameras.iter().filter(|c| c.state == Phase::Live).count() == 7
    })
    .await;
    let refused: Vec<_> = s
        .cameras
        .iter()
        .filter(|c| c.state == Phase::AtCapacity)
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", phases(&s));
    let queue = s.queue.as_ref().unwrap();
    assert_eq!((queue.stream_capacity, queue.streams_admitted), (7, 7));
    assert!(queue.admission_refusals >= 1);
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    let s = stats(&r).await;
    assert_eq!(
        s.cameras.iter().filter(|c| c.state == Phase::Live).count(),
        7
    );
    no_stream_lost(&r.sdm.stats());
}

#[tokio::test(start_paused = true)]
async fn on_demand_cameras_start_when_wanted_and_stop_after_the_grace() {
    let r = start(FakeSdmConfig::default(), &[]).await;
    let s = until(&r, Duration::from_secs(30), |s| s.cameras.len() == 3).await;
    assert!(s.cameras.iter().all(|c| c.state == Phase::Idle));
    assert_eq!(
        r.sdm.stats().generates,
        0,
        "nobody watches: no budget spent"
    );

    let camera = r.relay.registry.get("front-door").unwrap();
    let guard = camera.acquire(true);
    let s = until(&r, Duration::from_secs(10), |s| {
        s.cameras
            .iter()
            .any(|c| c.id == "front-door" && c.state == Phase::Live)
    })
    .await;
    assert_eq!(
        s.queue.as_ref().unwrap().wait_ms[&camrelay_queue::Class::ViewerStart].count,
        1
    );
    drop(guard);
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(
        stats(&r)
            .await
            .cameras
            .iter()
            .find(|c| c.id == "front-door")
            .unwrap()
            .state,
        Phase::Live,
        "still within the idle grace"
    );
    until(&r, Duration::from_secs(30), |s| {
        s.cameras.iter().all(|c| c.state == Phase::Idle)
    })
    .await;
    let sdm = r.sdm.stats();
    assert_eq!(
        (sdm.generates, sdm.stops),
        (1, 1),
        "stopped with budget to spare"
    );
    assert_eq!(sdm.expired_while_wanted, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_live_streams_within_the_bound() {
    let r = start(FakeSdmConfig::default(), &[("CAMRELAY_ALWAYS_ON", "true")]).await;
    until(&r, Duration::from_secs(60), all_live(3)).await;
    let started = tokio::time::Instant::now();
    r.shutdown.cancel();
    r.relay.stopped().await;
    assert!(started.elapsed() <= camrelay::app::SHUTDOWN_TIMEOUT);
    let sdm = r.sdm.stats();
    assert_eq!(sdm.stops, 3, "{sdm:?}");
    assert_eq!(sdm.streams_live, 0);
}

#[tokio::test(start_paused = true)]
async fn the_device_allow_list_limits_discovery() {
    let r = start(
        FakeSdmConfig::default(),
        &[("CAMRELAY_NEST_DEVICES", "device-002")],
    )
    .await;
    let s = until(&r, Duration::from_secs(30), |s| !s.cameras.is_empty()).await;
    assert_eq!(phases(&s), vec![("backyard".to_owned(), Phase::Idle)]);
    assert!(r.relay.ready());
}

#[tokio::test(start_paused = true)]
async fn a_revoked_refresh_token_keeps_the_relay_unready_and_says_why() {
    let fake = FakeSdmConfig::default();
    let r = start(fake, &[]).await;
    // The first discovery already ran with a good token; revoke, and let the token lapse.
    r.sdm.inject(Fault::RevokeRefreshToken, 1);
    r.sdm.inject(Fault::ExpireAccessTokens, 1);
    tokio::time::sleep(Duration::from_secs(601)).await;
    let s = until(&r, Duration::from_secs(60), |s| {
        s.nest.as_ref().is_some_and(|n| !n.discovered)
    })
    .await;
    let error = s.nest.unwrap().discovery_error.unwrap();
    assert!(error.contains("Partner Connections Manager"), "{error}");
    assert!(!r.relay.ready());
}

/// A `tracing` writer that keeps everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn no_secret_or_stream_token_reaches_logs_or_stats() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = FakeSdmConfig {
        client_secret: "client-secret-4d7e21".into(),
        refresh_token: "refresh-token-9a0c55".into(),
        ..FakeSdmConfig::default()
    };
    let r = start(fake, &[("CAMRELAY_ALWAYS_ON", "true")]).await;
    until(&r, Duration::from_secs(60), all_live(3)).await;
    // Errors and extensions happen too, so their messages are covered.
    r.sdm.inject(Fault::MalformedJson, 1);
    tokio::time::sleep(Duration::from_secs(900)).await;

    let mut secrets = vec![
        "client-secret-4d7e21".to_owned(),
        "refresh-token-9a0c55".to_owned(),
    ];
    for camera in r.relay.registry.all() {
        if let camrelay::camera::Source::Nest { lease, .. } = &camera.source {
            let url = lease.borrow().url.clone().expect("a live stream has a URL");
            let url = url.expose();
            secrets.push(url.path().rsplit('/').next().unwrap().to_owned());
            secrets.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
        }
    }
    assert!(secrets.len() >= 2 + 3 * 2, "{secrets:?}");
    let stats = serde_json::to_string(&stats(&r).await).unwrap();
    let listing = reqwest::get(format!("http://{}/api/cameras", r.relay.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("lease changed"), "the logs were captured");
    for secret in &secrets {
        for (what, text) in [
            ("stats", &stats),
            ("camera list", &listing),
            ("logs", &logs),
        ] {
            assert!(!text.contains(secret.as_str()), "{what} reveal {secret}");
        }
    }
}
