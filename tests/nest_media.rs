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
    tokio::time::sleep(Duration::from_secs(2)).await;

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
