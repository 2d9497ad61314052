//! SIGHUP re-reads `CAMRELAY_ENV_FILE`: static cameras come and go without a restart and
//! without disturbing the others, a broken file is refused and the relay keeps running, and
//! settings that need a restart are named.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use camrelay_sim::camera::{SimCamera, SimCameraConfig};
use common::media::ffprobe;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

fn signal(pid: u32, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

async fn camera_ids(http: &str) -> Vec<String> {
    // The token the relay started with: a rotated one takes effect at the next restart.
    let list: Value = reqwest::Client::new()
        .get(format!("http://{http}/api/cameras"))
        .bearer_auth("viewer-token-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn until_ids(http: &str, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ids = camera_ids(http).await;
        if ids == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cameras {ids:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_the_static_camera_list_without_a_restart() {
    let camera = SimCamera::start(SimCameraConfig {
        paths: vec!["/a".into(), "/b".into()],
        ..SimCameraConfig::default()
    })
    .await
    .unwrap();
    let (url_a, url_b) = (camera.url("/a"), camera.url("/b"));
    let dir = std::env::temp_dir().join(format!("camrelay-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("camrelay.env");
    std::fs::write(
        &file,
        format!("CAMRELAY_CAMERAS=a={url_a}\nCAMRELAY_VIEWER_TOKEN=viewer-token-1\n"),
    )
    .unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_camrelay"))
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("CAMRELAY_ENV_FILE", file.to_str().unwrap()),
            ("CAMRELAY_HTTP_ADDR", "127.0.0.1:0"),
            ("CAMRELAY_RTSP_ADDR", "127.0.0.1:0"),
            ("CAMRELAY_RTSP_RTP_ADDR", "127.0.0.1:0"),
            ("CAMRELAY_RTSP_RTCP_ADDR", "127.0.0.1:0"),
            ("CAMRELAY_SFU", "off"),
            ("CAMRELAY_LOG_FORMAT", "json"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Value>();
    let reader = {
        let log = Arc::clone(&log);
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            let mut started = Some(started_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && event["message"] == "camrelay started"
                    && let Some(tx) = started.take()
                {
                    let _ = tx.send(event);
                }
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        })
    };
    let started = tokio::time::timeout(Duration::from_secs(20), started_rx)
        .await
        .unwrap()
        .unwrap();
    let http = started["http"].as_str().unwrap().to_owned();
    let rtsp = started["rtsp"].as_str().unwrap().to_owned();
    assert_eq!(camera_ids(&http).await, ["a"]);

    // A client of `a` plays across the reload that adds `b` (and changes a setting and a
    // secret that need a restart).
    let watching_a = {
        let url = format!("rtsp://{rtsp}/a");
        tokio::spawn(async move { ffprobe(&url, "tcp", 5).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(
        &file,
        format!(
            "CAMRELAY_CAMERAS=a={url_a};b={url_b}\nCAMRELAY_IDLE_GRACE=5s\n\
             CAMRELAY_VIEWER_TOKEN=viewer-token-2\n"
        ),
    )
    .unwrap();
    signal(pid, "HUP");
    until_ids(&http, &["a", "b"]).await;
    watching_a.await.unwrap().assert_sim_camera(100);
    ffprobe(&format!("rtsp://{rtsp}/b"), "tcp", 2)
        .await
        .assert_sim_camera(25);
    {
        let log = log.lock().unwrap();
        let named = log
            .lines()
            .find(|l| l.contains("take effect at the next restart"))
            .unwrap_or_else(|| panic!("restart-only settings named: {log}"));
        assert!(named.contains("CAMRELAY_IDLE_GRACE"), "{named}");
        assert!(
            named.contains("CAMRELAY_VIEWER_TOKEN"),
            "a rotated secret too: {named}"
        );
        assert!(!log.contains("viewer-token-"), "by name only");
    }

    // A broken file is refused; the relay keeps what it has.
    std::fs::write(&file, "CAMRELAY_CAMERAS=b=nowhere\n").unwrap();
    signal(pid, "HUP");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !log.lock().unwrap().contains("keeping the current one") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refusal is logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(camera_ids(&http).await, ["a", "b"]);

    // Removing a camera.
    std::fs::write(&file, format!("CAMRELAY_CAMERAS=b={url_b}\n")).unwrap();
    signal(pid, "HUP");
    until_ids(&http, &["b"]).await;

    signal(pid, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    reader.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
