//! `camrelay demo` with no configuration: every camera it prints plays over RTSP.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use camrelay::demo::{DEMO_CAMERA_ID, Demo, DemoOptions};
use common::media::{eventually, ffprobe};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_its_plain_and_nest_cameras_over_rtsp() {
    let shutdown = CancellationToken::new();
    let demo = Demo::start(
        &DemoOptions {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            rtsp_addr: "127.0.0.1:0".parse().unwrap(),
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let rtsp = demo.relay.rtsp.local_addr();
    let printed = demo.urls();
    assert!(
        printed
            .iter()
            .any(|(_, url)| *url == format!("rtsp://{rtsp}/{DEMO_CAMERA_ID}")),
        "{printed:?}"
    );
    ffprobe(&format!("rtsp://{rtsp}/{DEMO_CAMERA_ID}"), "tcp", 2)
        .await
        .assert_sim_camera(25);

    eventually(Duration::from_secs(10), "Nest discovery", || {
        demo.relay.registry.get("front-door").is_some()
    })
    .await;
    ffprobe(&format!("rtsp://{rtsp}/front-door"), "tcp", 2)
        .await
        .assert_sim_camera(25);
    shutdown.cancel();
    demo.relay.stopped().await;
}
