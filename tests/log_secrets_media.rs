//! No camera password, relay password or stream token reaches the logs, `/stats` or the
//! camera list while real media flows: static cameras with right and wrong passwords, a relay
//! that asks its clients for credentials, and Nest streams that Google ends and the relay
//! replaces. In its own test binary: it installs a global log subscriber.

#![allow(clippy::unwrap_used)]

mod common;

use camrelay_sim::camera::{SimCamera, SimCameraConfig};
use camrelay_sim::sdm::FakeSdmConfig;
use common::media::{ffprobe, start_nest_relay};
use common::{Captured, assert_nothing_reveals, operator_views, stream_tokens};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_or_stream_token_leaks_while_media_flows() {
    let logs = Captured::install();

    let camera = SimCamera::start(SimCameraConfig {
        paths: vec!["/cam".into()],
        credentials: Some(("admin".into(), "Camera-Pass-71c3".into())),
        ..SimCameraConfig::default()
    })
    .await
    .unwrap();
    let cameras = format!("good={0};bad={0}", camera.url("/cam"));
    let fake = FakeSdmConfig {
        client_secret: "client-secret-4d7e21".into(),
        refresh_token: "refresh-token-9a0c55".into(),
        ..FakeSdmConfig::default()
    };
    let nest = start_nest_relay(
        fake,
        &[
            ("CAMRELAY_CAMERAS", &cameras),
            ("CAMRELAY_CAMERA_GOOD_USERNAME", "admin"),
            ("CAMRELAY_CAMERA_GOOD_PASSWORD", "Camera-Pass-71c3"),
            ("CAMRELAY_CAMERA_BAD_USERNAME", "admin"),
            ("CAMRELAY_CAMERA_BAD_PASSWORD", "Wrong-Pass-58e0"),
            ("CAMRELAY_RTSP_USERNAME", "viewer"),
            ("CAMRELAY_RTSP_PASSWORD", "Relay-Pass-2b9f"),
            ("CAMRELAY_RTSP_START_TIMEOUT", "3s"),
        ],
    )
    .await;
    let front = nest.camera("front-door").await;
    let relay_addr = nest.relay.rtsp.local_addr();
    let url = |id: &str| format!("rtsp://viewer:Relay-Pass-2b9f@{relay_addr}/{id}");

    ffprobe(&url("good"), "tcp", 1).await.assert_sim_camera(10);
    assert!(!ffprobe(&url("bad"), "tcp", 1).await.ok());
    let mut secrets = vec![
        "client-secret-4d7e21".to_owned(),
        "refresh-token-9a0c55".to_owned(),
        "Camera-Pass-71c3".to_owned(),
        "Wrong-Pass-58e0".to_owned(),
        "Relay-Pass-2b9f".to_owned(),
    ];
    // A Nest stream plays, Google ends it, the relay replaces it: both URLs' tokens count.
    let nest_url = url("front-door");
    let watching = tokio::spawn(async move { ffprobe(&nest_url, "tcp", 4).await });
    let mut live = front.media.watch_live();
    live.wait_for(|live| *live).await.unwrap();
    secrets.extend(stream_tokens(&nest.relay));
    nest.api.sdm().drop_rtsp_streams("device-001");
    live.wait_for(|live| !*live).await.unwrap();
    live.wait_for(|live| *live).await.unwrap();
    secrets.extend(stream_tokens(&nest.relay));
    watching.await.unwrap().assert_sim_camera(50);
    assert!(secrets.len() >= 5 + 2 * 2, "{secrets:?}");

    let (stats, listing) = operator_views(&nest.relay).await;
    let logs = logs.text();
    assert!(
        logs.contains("camera session failed"),
        "the logs were captured"
    );
    assert!(
        stats.contains("401"),
        "the wrong password's error is in the stats"
    );
    assert_nothing_reveals(
        &secrets,
        &[
            ("stats", &stats),
            ("camera list", &listing),
            ("logs", &logs),
        ],
    );
}
