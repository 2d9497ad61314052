//! The whole Nest path offline: fake SDM API → simulated Nest stream server (`rtsps://`,
//! `?auth=` token checked, one client per URL) → relay → ffprobe.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use camrelay_sim::sdm::FakeSdmConfig;
use common::media::{eventually, ffprobe, start_nest_relay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nest_camera_is_started_on_demand_relayed_and_stopped() {
    let nest = start_nest_relay(FakeSdmConfig::default(), &[("CAMRELAY_IDLE_GRACE", "1s")]).await;
    let camera = nest.camera("front-door").await;
    assert_eq!(nest.api.stats().generates, 0, "nothing before a client");

    ffprobe(&nest.url("front-door"), "tcp", 3)
        .await
        .assert_sim_camera(50);
    let stats = nest.api.stats();
    assert_eq!(stats.generates, 1, "{stats:?}");
    assert_eq!(camera.media.stats.sessions.load(Ordering::Relaxed), 1);

    // The client left: after the grace the lease stops the stream.
    eventually(Duration::from_secs(10), "the stream stopped", || {
        nest.api.stats().stops == 1
    })
    .await;
    assert!(!camera.media.is_live());
    assert_eq!(nest.api.stats().expired_while_wanted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_google_ends_is_regenerated_while_clients_stay_connected() {
    let nest = start_nest_relay(FakeSdmConfig::default(), &[]).await;
    let camera = nest.camera("front-door").await;
    let url = nest.url("front-door");
    let client = tokio::spawn(async move { ffprobe(&url, "tcp", 8).await });
    let mut live = camera.media.watch_live();
    live.wait_for(|live| *live).await.unwrap();
    // The simulated stream server is as strict as Google's: while the relay plays the URL,
    // a second client of it gets 404.
    let url = match &camera.source {
        camrelay::camera::Source::Nest { lease, .. } => lease.borrow().url.clone().unwrap(),
        camrelay::camera::Source::Static { .. } => unreachable!("a Nest camera"),
    };
    let second = ffprobe(url.expose().as_str(), "tcp", 1).await;
    assert!(second.stderr.contains("404"), "{}", second.stderr);

    // Google ends the stream: the session drops, the old URL answers 404, and the relay
    // asks for a new stream instead of retrying the dead one.
    assert_eq!(nest.api.sdm().drop_rtsp_streams("device-001"), 1);
    live.wait_for(|live| !*live).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), live.wait_for(|live| *live))
        .await
        .expect("live again")
        .unwrap();
    let probe = client.await.unwrap();
    // Replaced at once (no backoff for a first loss): most of the 8 s were played.
    probe.assert_sim_camera(150);
    let stats = nest.api.stats();
    assert_eq!(stats.generates, 2, "{stats:?}");
    assert_eq!(camera.media.stats.sessions.load(Ordering::Relaxed), 2);
}

/// Sends one DESCRIBE and returns the response head.
async fn describe(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let parsed = url::Url::parse(url).unwrap();
    let addr = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap());
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut byte))
            .await
            .expect("an answer, not a hang")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed after {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_beyond_the_budget_gets_503_with_retry_after_at_once() {
    // One command a minute with a 0.7 reserve sustains one stream:
    // floor((1 × 60/61 − 0.7) / (60/294)) = 1.
    let nest = start_nest_relay(
        FakeSdmConfig::default(),
        &[
            ("CAMRELAY_NEST_QPM", "1"),
            ("CAMRELAY_NEST_BUDGET_RESERVE", "0.7"),
        ],
    )
    .await;
    let first = nest.camera("front-door").await;
    nest.camera("backyard").await;
    let url = nest.url("front-door");
    let watching = tokio::spawn(async move { ffprobe(&url, "tcp", 4).await });
    first
        .media
        .watch_live()
        .wait_for(|live| *live)
        .await
        .unwrap();

    let head = describe(&nest.url("backyard")).await;
    assert!(head.starts_with("RTSP/1.0 503"), "{head}");
    let retry_after = head
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s >= 1), "{head}");
    // The refusal cost no command and did not disturb the live camera.
    assert_eq!(nest.api.stats().generates, 1);
    watching.await.unwrap().assert_sim_camera(50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_is_kept_across_extensions() {
    // Streams of 30 s (the shortest the relay accepts), so an extension comes within the test.
    let lifetime = Duration::from_secs(30);
    let nest = start_nest_relay(
        FakeSdmConfig {
            stream_lifetime: lifetime,
            ..FakeSdmConfig::default()
        },
        &[("CAMRELAY_NEST_STREAM_LIFETIME", "30s")],
    )
    .await;
    let camera = nest.camera("front-door").await;
    let url = nest.url("front-door");
    let watching = tokio::spawn(async move { ffprobe(&url, "tcp", 36).await });
    eventually(Duration::from_secs(45), "an extension", || {
        nest.api.stats().extends >= 1
    })
    .await;
    let probe = watching.await.unwrap();
    probe.assert_sim_camera(36 * 25 * 9 / 10);
    let stats = nest.api.stats();
    assert_eq!(stats.generates, 1, "{stats:?}");
    assert_eq!(stats.expired_while_wanted, 0, "{stats:?}");
    // One upstream session throughout: the new token did not cost a reconnect.
    assert_eq!(camera.media.stats.sessions.load(Ordering::Relaxed), 1);
    assert_eq!(
        camera.media.stats.session_failures.load(Ordering::Relaxed),
        0
    );
}
