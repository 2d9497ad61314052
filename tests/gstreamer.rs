//! GStreamer on both sides of the relay: gst-rtsp-server as a third-party camera (Digest
//! authentication, TLS) and `rtspsrc` as a client.

#![allow(clippy::unwrap_used)]

mod common;

use camrelay_sim::camera::{SimCamera, SimCameraConfig, TEST_CA_FILE};
use common::media::{GstCamera, ffprobe, gst_play, start_relay};

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sim/fixtures/tls/cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sim/fixtures/tls/key.pem");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_protected_gstreamer_camera_is_relayed() {
    let camera = GstCamera::start(&["--digest", "admin:Digest-Secret-42"]).await;
    let cameras = format!("gst={}", camera.url());
    let relay = start_relay(&[
        ("CAMRELAY_CAMERAS", &cameras),
        ("CAMRELAY_CAMERA_GST_USERNAME", "admin"),
        ("CAMRELAY_CAMERA_GST_PASSWORD", "Digest-Secret-42"),
        ("CAMRELAY_RTSP_START_TIMEOUT", "10s"),
    ])
    .await;
    ffprobe(&relay.url("gst"), "tcp", 3)
        .await
        .assert_sim_camera(50);
    ffprobe(&relay.url("gst"), "udp", 2)
        .await
        .assert_sim_camera(25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsps_gstreamer_camera_is_relayed() {
    let camera = GstCamera::start(&["--tls-cert", CERT, "--tls-key", KEY]).await;
    let cameras = format!("gst={}", camera.url());
    let relay = start_relay(&[
        ("CAMRELAY_CAMERAS", &cameras),
        ("CAMRELAY_EXTRA_CA_FILE", TEST_CA_FILE),
        ("CAMRELAY_RTSP_START_TIMEOUT", "10s"),
    ])
    .await;
    ffprobe(&relay.url("gst"), "tcp", 3)
        .await
        .assert_sim_camera(50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsps_gstreamer_camera_with_digest_is_relayed() {
    let camera = GstCamera::start(&[
        "--tls-cert",
        CERT,
        "--tls-key",
        KEY,
        "--digest",
        "admin:Digest-Secret-42",
    ])
    .await;
    let cameras = format!("gst={}", camera.url());
    let relay = start_relay(&[
        ("CAMRELAY_CAMERAS", &cameras),
        ("CAMRELAY_CAMERA_GST_USERNAME", "admin"),
        ("CAMRELAY_CAMERA_GST_PASSWORD", "Digest-Secret-42"),
        ("CAMRELAY_EXTRA_CA_FILE", TEST_CA_FILE),
        ("CAMRELAY_RTSP_START_TIMEOUT", "10s"),
    ])
    .await;
    relay.assert_relays_sim_camera("gst").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_rtspsrc_plays_the_relay() {
    let camera = SimCamera::start(SimCameraConfig {
        paths: vec!["/cam".into()],
        ..SimCameraConfig::default()
    })
    .await
    .unwrap();
    let cameras = format!("cam={}", camera.url("/cam"));
    let relay = start_relay(&[("CAMRELAY_CAMERAS", &cameras)]).await;
    let output = gst_play(&relay.url("cam"), 50).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
