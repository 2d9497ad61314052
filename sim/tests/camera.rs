//! The simulated camera, read by real clients (ffprobe).

use std::process::Output;

use camrelay_sim::camera::{SimCamera, SimCameraConfig};
use serde_json::Value;

/// Runs ffprobe on `url` for `seconds` of video and returns its JSON report and stderr.
async fn ffprobe(url: &str, args: &[&str], seconds: u32) -> (Value, String, Output) {
    let interval = format!("%+{seconds}");
    let output = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-rtsp_transport", "tcp"])
        .args(args)
        .args([
            "-count_frames",
            "-show_entries",
            "stream=codec_name,codec_type,width,height,nb_read_frames,sample_rate",
            "-read_intervals",
            &interval,
            "-of",
            "json",
            url,
        ])
        .output()
        .await
        .expect("ffprobe runs (apt-get install ffmpeg)");
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (json, stderr, output)
}

fn stream<'a>(report: &'a Value, kind: &str) -> &'a Value {
    report["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["codec_type"] == kind))
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_decodes_the_simulated_camera() {
    let camera = SimCamera::start(SimCameraConfig {
        paths: vec!["/cam".into()],
        ..SimCameraConfig::default()
    })
    .await
    .expect("starts");
    let (report, stderr, output) = ffprobe(&camera.url("/cam"), &[], 3).await;
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "decode errors: {stderr}");
    let video = stream(&report, "video");
    assert_eq!(video["codec_name"], "h264", "{report}");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(640), Some(360))
    );
    let frames: u64 = video["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(frames >= 50, "{frames} frames in 3 s: {report}");
    let audio = stream(&report, "audio");
    assert_eq!(audio["codec_name"], "aac", "{report}");
    assert_eq!(audio["sample_rate"], "48000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_camera_wants_credentials() {
    let camera = SimCamera::start(SimCameraConfig {
        paths: vec!["/cam".into()],
        credentials: Some(("admin".into(), "s3cret".into())),
        ..SimCameraConfig::default()
    })
    .await
    .expect("starts");
    let (_, stderr, output) = ffprobe(&camera.url("/cam"), &[], 1).await;
    assert!(!output.status.success());
    assert!(stderr.contains("401"), "{stderr}");
    let url = format!("rtsp://admin:s3cret@{}/cam", camera.addr());
    let (report, stderr, output) = ffprobe(&url, &[], 2).await;
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "{stderr}");
    assert_eq!(stream(&report, "video")["width"].as_u64(), Some(640));
    assert!(
        camera
            .server()
            .stats()
            .unauthorized
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_path_is_404() {
    let camera = SimCamera::start(SimCameraConfig {
        paths: vec!["/cam".into()],
        ..SimCameraConfig::default()
    })
    .await
    .expect("starts");
    let (_, stderr, output) = ffprobe(&camera.url("/nope"), &[], 1).await;
    assert!(!output.status.success());
    assert!(stderr.contains("404"), "{stderr}");
}
