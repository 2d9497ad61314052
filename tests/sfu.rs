//! The WebRTC path end to end: a simulated camera → relay → publisher (str0m, H.264 + Opus
//! transcoded from the camera's AAC) → embedded SFU → a real second WebRTC stack (aiortc) that
//! pulls the tracks the way a viewer does and decodes them.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use camrelay::camera::Camera;
use camrelay::sfu::publisher::{PublishSnapshot, PublishState};
use camrelay_sim::sdm::FakeSdmConfig;
use common::media::{eventually, start_nest_relay};
use serde_json::{Value, json};

const APP_ID: &str = "test-app";
const SECRET: &str = "embedded-sfu-secret-4242";

fn sfu_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CAMRELAY_SFU", "embedded"),
        ("CAMRELAY_CALLS_APP_ID", APP_ID),
        ("CAMRELAY_CALLS_APP_SECRET", SECRET),
        ("CAMRELAY_ALWAYS_ON", "true"),
    ]
}

async fn published(camera: &Arc<Camera>, not: Option<&str>) -> PublishSnapshot {
    let mut snapshot = None;
    eventually(Duration::from_secs(30), "the camera is published", || {
        let s = camera.publish.snapshot();
        let done = s.state == PublishState::Published
            && s.session_id.is_some()
            && s.session_id.as_deref() != not;
        snapshot = Some(s);
        done
    })
    .await;
    snapshot.unwrap()
}

/// Runs the aiortc viewer against the relay's embedded SFU.
async fn view(http: std::net::SocketAddr, session: &str, tracks: &[String]) -> Value {
    let base = format!("http://{http}/sfu/v1");
    let mut command = tokio::process::Command::new(common::test_python());
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/aiortc_viewer.py"
        ))
        .args([&base, APP_ID, SECRET, session])
        .args(tracks)
        .env("VIEWER_VIDEO_FRAMES", "40")
        .env("VIEWER_AUDIO_FRAMES", "40")
        .env("VIEWER_TIMEOUT", "30")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the viewer finished")
        .expect("aiortc runs (pip install aiortc)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "viewer said {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn assert_decoded(result: &Value) {
    assert_eq!(result["ok"], true, "{result}");
    assert!(result["video_frames"].as_u64().unwrap() >= 40, "{result}");
    assert_eq!(result["sizes"], serde_json::json!([[640, 360]]), "{result}");
    // The SFU starts each viewer at a keyframe: not one frame fails to decode.
    assert_eq!(result["decode_errors"], 0, "{result}");
    assert!(result["audio_frames"].as_u64().unwrap() >= 40, "{result}");
    assert_eq!(result["audio_rate"], 48_000, "{result}");
    // The fixture is a beeping 440 Hz tone: clearly not silence.
    assert!(result["audio_rms"].as_f64().unwrap() > 0.01, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_decodes_a_nest_camera_through_the_embedded_sfu() {
    let logs = common::Captured::install();
    let nest = start_nest_relay(FakeSdmConfig::default(), &sfu_vars()).await;
    let camera = nest.camera("front-door").await;
    let snapshot = published(&camera, None).await;
    assert_eq!(
        snapshot.tracks,
        ["front-door-video", "front-door-audio"],
        "{snapshot:?}"
    );
    assert_eq!(snapshot.audio_problem, None);
    let session = snapshot.session_id.unwrap();

    // The camera list tells viewers where to pull from.
    let list: Value = reqwest::get(format!("http://{}/api/cameras", nest.relay.http_addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "front-door")
        .unwrap();
    assert_eq!(entry["sfu"]["session_id"], session.as_str(), "{list}");
    assert!(
        !entry["rtsp_url"].as_str().unwrap().contains(":0/"),
        "{entry}"
    );

    let result = view(nest.relay.http_addr, &session, &snapshot.tracks).await;
    assert_decoded(&result);
    let after = camera.publish.snapshot();
    assert!(
        after.video_frames_out > 40 && after.audio_packets_out > 40,
        "{after:?}"
    );
    // One upstream session for RTSP ingest, publishing and the viewer together.
    assert_eq!(
        camera
            .media
            .stats
            .sessions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // A close with `force: false` must carry the peer's offer (the SFU answers it); without
    // one the SFU says so instead of treating the close as forced.
    let api = format!(
        "http://{}/sfu/v1/apps/{APP_ID}/sessions",
        nest.relay.http_addr
    );
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{api}/new"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["sessionId"].as_str().unwrap();
    for body in [
        json!({"tracks": [{"mid": "0"}], "force": false}),
        json!({"tracks": [{"mid": "0"}], "force": false,
               "sessionDescription": {"type": "answer", "sdp": "v=0\r\n"}}),
        json!({"tracks": [{"mid": "0"}], "force": false,
               "sessionDescription": {"type": "offer", "sdp": "v=0\r\nnot sdp"}}),
    ] {
        let response = http
            .put(format!("{api}/{id}/tracks/close"))
            .bearer_auth(SECRET)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["errorCode"], "invalid_session_description", "{error}");
    }

    // The SFU's app secret never reaches logs, stats or the camera list.
    let (stats, listing) = common::operator_views(&nest.relay).await;
    assert!(stats.contains("\"embedded_sfu\""), "{stats}");
    let logs = logs.text();
    assert!(logs.contains("published to the SFU"), "{logs}");
    common::assert_nothing_reveals(
        &[SECRET.to_owned()],
        &[
            ("logs", &logs),
            ("/stats", &stats),
            ("/api/cameras", &listing),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_comes_back_by_itself_when_the_sfu_drops_its_session() {
    let nest = start_nest_relay(FakeSdmConfig::default(), &sfu_vars()).await;
    let camera = nest.camera("front-door").await;
    let first = published(&camera, None).await;
    let first_session = first.session_id.clone().unwrap();
    let sfu = nest
        .relay
        .sfu
        .as_ref()
        .unwrap()
        .embedded
        .clone()
        .unwrap()
        .sfu;
    assert!(sfu.drop_session(first_session.clone()).await.unwrap());

    let second = published(&camera, Some(&first_session)).await;
    let second_session = second.session_id.clone().unwrap();
    assert_ne!(second_session, first_session);
    assert!(second.failures >= 1, "{second:?}");
    // Same track names: viewers pull again from the new session.
    assert_eq!(second.tracks, first.tracks);
    let result = view(nest.relay.http_addr, &second_session, &second.tracks).await;
    assert_decoded(&result);
}
