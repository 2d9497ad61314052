//! The relay as operators run it: the `camrelay run` process with every kind of secret
//! configured and debug logging in JSON, serving RTSP clients, a viewer and the operator's
//! endpoints, then stopped with SIGTERM. Its whole log holds none of the secrets, and it exits
//! cleanly within the shutdown bound.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camrelay_sim::camera::{SimCamera, SimCameraConfig, TEST_CA_FILE};
use camrelay_sim::sdm::FakeSdmConfig;
use common::media::ffprobe;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const CLIENT_SECRET: &str = "client-secret-b07a13";
const REFRESH_TOKEN: &str = "refresh-token-5e2c90";
const APP_SECRET: &str = "sfu-app-secret-c4d1";
const CAMERA_PASSWORD: &str = "Camera-Pass-90f2";
const RTSP_PASSWORD: &str = "Relay-Pass-1a7e";
const VIEWER_TOKEN: &str = "viewer-token-3f88";
const ADMIN_TOKEN: &str = "admin-token-77d0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_keeps_every_secret_out_of_its_logs_and_stops_on_sigterm() {
    let fake = FakeSdmConfig {
        client_secret: CLIENT_SECRET.into(),
        refresh_token: REFRESH_TOKEN.into(),
        ..FakeSdmConfig::default()
    };
    let (api, _streams) = camrelay_sim::start_nest(fake.clone()).await.unwrap();
    let camera = SimCamera::start(SimCameraConfig {
        paths: vec!["/lobby".into()],
        credentials: Some(("admin".into(), CAMERA_PASSWORD.into())),
        ..SimCameraConfig::default()
    })
    .await
    .unwrap();
    let lobby = camera
        .url("/lobby")
        .replace("rtsp://", &format!("rtsp://admin:{CAMERA_PASSWORD}@"));

    let mut env = camrelay::demo::fake_nest_env(&fake, &api);
    for (k, v) in [
        ("CAMRELAY_HTTP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_RTSP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_RTSP_RTP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_RTSP_RTCP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_SFU", "embedded"),
        ("CAMRELAY_SFU_UDP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_WEBRTC_IP", "127.0.0.1"),
        ("CAMRELAY_CALLS_APP_SECRET", APP_SECRET),
        ("CAMRELAY_RTSP_USERNAME", "family"),
        ("CAMRELAY_RTSP_PASSWORD", RTSP_PASSWORD),
        ("CAMRELAY_VIEWER_TOKEN", VIEWER_TOKEN),
        ("CAMRELAY_ADMIN_TOKEN", ADMIN_TOKEN),
        ("CAMRELAY_EXTRA_CA_FILE", TEST_CA_FILE),
        ("CAMRELAY_ALWAYS_ON", "true"),
        ("CAMRELAY_LOG", "debug"),
        ("CAMRELAY_LOG_FORMAT", "json"),
    ] {
        env.push((k.into(), v.into()));
    }
    env.push(("CAMRELAY_CAMERAS".into(), format!("lobby={lobby}")));

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_camrelay"))
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
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
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let started = tokio::time::timeout(Duration::from_secs(20), started_rx)
        .await
        .expect("the relay logs its start")
        .unwrap();
    let http = started["http"].as_str().unwrap().to_owned();
    let rtsp = started["rtsp"].as_str().unwrap().to_owned();

    // RTSP clients with the relay's credentials, and one with a wrong password.
    ffprobe(
        &format!("rtsp://family:{RTSP_PASSWORD}@{rtsp}/lobby"),
        "tcp",
        2,
    )
    .await
    .assert_sim_camera(25);
    let refused = ffprobe(&format!("rtsp://family:wrong@{rtsp}/lobby"), "tcp", 1).await;
    assert!(!refused.ok());
    // A viewer (retried until discovery has found the camera), and the operator.
    let client = reqwest::Client::new();
    let mut watched = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !watched && tokio::time::Instant::now() < deadline {
        let response = client
            .post(format!("http://{http}/api/cameras/front-door/watch"))
            .bearer_auth(VIEWER_TOKEN)
            .send()
            .await
            .unwrap();
        watched = response.status() == 200;
        if !watched {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(watched, "a viewer watched a Nest camera");
    for path in ["/stats", "/metrics"] {
        let response = client
            .get(format!("http://{http}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    ffprobe(
        &format!("rtsp://family:{RTSP_PASSWORD}@{rtsp}/front-door"),
        "tcp",
        2,
    )
    .await
    .assert_sim_camera(25);

    // SIGTERM: a clean exit within the bound.
    let pid = child.id().unwrap().to_string();
    let stop = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(
        camrelay::app::SHUTDOWN_TIMEOUT + Duration::from_secs(2),
        child.wait(),
    )
    .await
    .expect("exits within the shutdown bound")
    .unwrap();
    let took = stop.elapsed();
    assert!(status.success(), "{status:?}");
    reader.await.unwrap();

    let log = log.lock().unwrap().clone();
    assert!(log.lines().count() > 50, "debug logging: {log}");
    for line in log.lines() {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        assert!(event["level"].is_string(), "{line}");
    }
    assert!(log.contains("published to the SFU"), "the publisher ran");
    // Each RTSP client logs in its own span, naming its address and its camera.
    let playing: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["message"] == "RTSP client playing")
        .collect();
    assert_eq!(playing.len(), 2, "two clients played: {playing:?}");
    for event in &playing {
        assert_eq!(event["span"]["name"], "rtsp_client", "{event}");
        assert!(
            event["span"]["peer"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:")
        );
    }
    assert_eq!(playing[0]["span"]["camera"], "lobby");
    assert_eq!(playing[1]["span"]["camera"], "front-door");
    let mut secrets: Vec<String> = [
        CLIENT_SECRET,
        REFRESH_TOKEN,
        APP_SECRET,
        CAMERA_PASSWORD,
        RTSP_PASSWORD,
        VIEWER_TOKEN,
        ADMIN_TOKEN,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let issued = api.sdm().issued_tokens();
    assert!(
        issued.len() >= 3,
        "an access, an extension and a stream token: {issued:?}"
    );
    secrets.extend(issued);
    common::assert_nothing_reveals(&secrets, &[("the log", &log)]);
    assert!(
        took < camrelay::app::SHUTDOWN_TIMEOUT,
        "stopped in {took:?}"
    );
}
