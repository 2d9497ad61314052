//! WHIP publishing (RFC 9725) end to end: a simulated camera → relay → publisher (str0m, the
//! camera's H.264 and Opus transcoded from its AAC) → a strict WHIP endpoint on a second,
//! independent WebRTC stack (aiortc, `tests/support/whip_server.py`) that answers the offer,
//! decodes what arrives and records every request, so that the client's side of the protocol
//! (offer POST, bearer, relative `Location`, DELETE at the end) is checked along with the media.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use camrelay::camera::Camera;
use camrelay::sfu::publisher::{PublishSnapshot, PublishState};
use camrelay_sim::camera::{SimCamera, SimCameraConfig};
use common::media::{RelayRunning, eventually, ready_port, start_relay};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// The bearer token the WHIP server accepts.
const TOKEN: &str = "whip-bearer-7f3a91c2d4e5";

/// A token the WHIP server refuses.
const WRONG_TOKEN: &str = "whip-wrong-0b5e66a1f8c9";

/// How long the WHIP server may take to say it listens (importing aiortc takes a second or two).
const SERVER_START: Duration = Duration::from_secs(30);

/// How long publishing, ICE, DTLS and enough decoded media may take.
const MEDIA_WAIT: Duration = Duration::from_secs(30);

/// How long the WHIP server may take to print its report and exit once told to.
const SERVER_EXIT: Duration = Duration::from_secs(10);

/// How often the WHIP server's report is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// `tests/support/whip_server.py`, killed when dropped.
struct WhipServer {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    port: u16,
    http: reqwest::Client,
}

impl WhipServer {
    /// Starts it accepting `token`, with `args`, and waits until it listens.
    async fn start(token: &str, args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(common::test_python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/whip_server.py"
            ))
            .args(["--token", token])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("aiortc runs (pip install aiortc)");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = ready_port(&mut stdout, SERVER_START, "the WHIP server").await;
        Self {
            child,
            stdout,
            port,
            http: reqwest::Client::new(),
        }
    }

    /// `CAMRELAY_WHIP_URL` for this server.
    fn url_template(&self) -> String {
        format!("http://127.0.0.1:{}/whip/{{camera_id}}", self.port)
    }

    /// What it has seen so far.
    async fn report(&self) -> Value {
        self.http
            .get(format!("http://127.0.0.1:{}/report", self.port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls the report until `done` holds, or panics after `limit` with the last report.
    async fn report_until(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let report = self.report().await;
            if done(&report) {
                return report;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within {limit:?}: {what}\n{report:#}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Ends the session `id` from the server's side, as an operator kicking a stream would.
    async fn end_session(&self, id: &str) {
        let response = self
            .http
            .post(format!("http://127.0.0.1:{}/control/end/{id}", self.port))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "session {id} ended");
    }

    /// Closes its stdin, which makes it print its final report, close its sessions and exit.
    async fn finish(mut self) -> Value {
        drop(self.child.stdin.take());
        let line = tokio::time::timeout(SERVER_EXIT, self.stdout.next_line())
            .await
            .expect("the WHIP server reports when its stdin closes")
            .unwrap()
            .expect("the WHIP server prints its report");
        let status = tokio::time::timeout(SERVER_EXIT, self.child.wait())
            .await
            .expect("the WHIP server exits")
            .unwrap();
        assert!(status.success(), "{status}");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a report: {line}"))
    }
}

async fn sim_camera() -> SimCamera {
    SimCamera::start(SimCameraConfig {
        paths: vec!["/cam".into()],
        ..SimCameraConfig::default()
    })
    .await
    .unwrap()
}

/// A relay publishing its one always-on camera `id` (from `sim`) to `server`, with `token`.
async fn whip_relay(
    sim: &SimCamera,
    id: &str,
    server: &WhipServer,
    token: Option<&str>,
) -> RelayRunning {
    let cameras = format!("{id}={}", sim.url("/cam"));
    let template = server.url_template();
    let mut vars = vec![
        ("CAMRELAY_CAMERAS", cameras.as_str()),
        ("CAMRELAY_SFU", "whip"),
        ("CAMRELAY_WHIP_URL", template.as_str()),
        ("CAMRELAY_ALWAYS_ON", "true"),
    ];
    if let Some(token) = token {
        vars.push(("CAMRELAY_WHIP_TOKEN", token));
    }
    start_relay(&vars).await
}

/// Waits for `camera`'s publication snapshot to satisfy `done` and returns it.
async fn snapshot_until(
    camera: &Arc<Camera>,
    what: &str,
    done: impl Fn(&PublishSnapshot) -> bool,
) -> PublishSnapshot {
    let mut snapshot = None;
    eventually(MEDIA_WAIT, what, || {
        let s = camera.publish.snapshot();
        let ok = done(&s);
        snapshot = Some(s);
        ok
    })
    .await;
    snapshot.unwrap()
}

/// The camera `id`'s entry in the relay's `/stats`, and the texts an operator reads.
async fn operator_entry(relay: &RelayRunning, id: &str) -> (Value, String, String) {
    let (stats, listing) = common::operator_views(&relay.relay).await;
    let parsed: Value = serde_json::from_str(&stats).unwrap();
    let entry = parsed["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no camera {id} in {stats}"))
        .clone();
    (entry, stats, listing)
}

/// The report's sessions (resources), as `(id, resource)`.
fn resources(report: &Value) -> Vec<(String, Value)> {
    report["resources"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, r)| (id.clone(), r.clone()))
        .collect()
}

fn decoded_enough(resource: &Value) -> bool {
    resource["video_frames"].as_u64().unwrap_or(0) >= 30
        && resource["audio_frames"].as_u64().unwrap_or(0) >= 25
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_decodes_a_camera_published_over_whip_and_the_relay_deletes_its_session() {
    let server = WhipServer::start(TOKEN, &[]).await;
    let sim = sim_camera().await;
    let relay = whip_relay(&sim, "cam", &server, Some(TOKEN)).await;
    let camera = relay.camera("cam");

    // The relay considers the camera published once ICE and DTLS are up.
    let snapshot = snapshot_until(&camera, "the camera is published over WHIP", |s| {
        s.state == PublishState::Published
    })
    .await;
    assert_eq!(snapshot.tracks, ["cam-video", "cam-audio"], "{snapshot:?}");
    assert_eq!(snapshot.audio_problem, None, "{snapshot:?}");
    assert_eq!(snapshot.last_error, None, "{snapshot:?}");
    // WHIP has no Calls session for viewers to pull from.
    assert_eq!(snapshot.session_id, None, "{snapshot:?}");
    assert_eq!(
        (snapshot.sessions, snapshot.failures),
        (1, 0),
        "{snapshot:?}"
    );

    // aiortc, as the WHIP server, decodes what the relay sends.
    let report = server
        .report_until(MEDIA_WAIT, "the WHIP server decodes video and audio", |r| {
            resources(r).iter().any(|(_, res)| decoded_enough(res))
        })
        .await;
    let posts = report["posts"].as_array().unwrap();
    assert_eq!(posts.len(), 1, "one offer, accepted at once: {report:#}");
    let post = &posts[0];
    assert_eq!(post["camera_id"], "cam", "{report:#}");
    assert_eq!(post["content_type"], "application/sdp", "{report:#}");
    assert_eq!(post["bearer_ok"], true, "{report:#}");
    assert_eq!(post["status"], 201, "{report:#}");
    let location = post["resource"].as_str().unwrap().to_owned();
    assert!(
        location.starts_with("/whip/resource/"),
        "relative: {location}"
    );
    let [(id, resource)] = &resources(&report)[..] else {
        panic!("one session: {report:#}");
    };
    assert_eq!(post["resource_id"], id.as_str());
    assert_eq!(resource["camera_id"], "cam", "{resource:#}");
    // Non-trickle: the offer holds the relay's host candidate on the loopback.
    let candidates = resource["offer_candidates"].as_array().unwrap();
    assert!(!candidates.is_empty(), "{resource:#}");
    for candidate in candidates {
        let candidate = candidate.as_str().unwrap();
        assert!(
            candidate.contains(" 127.0.0.1 ") && candidate.contains("typ host"),
            "{candidate}"
        );
    }
    assert_eq!(
        resource["tracks"],
        serde_json::json!(["video", "audio"]),
        "{resource:#}"
    );
    assert_eq!(
        resource["sizes"],
        serde_json::json!([[640, 360]]),
        "{resource:#}"
    );
    assert_eq!(
        (resource["width"].as_u64(), resource["height"].as_u64()),
        (Some(640), Some(360))
    );
    // The publisher starts at a keyframe: not one frame fails to decode.
    assert_eq!(resource["decode_errors"], 0, "{resource:#}");
    assert_eq!(resource["audio_rate"], 48_000, "{resource:#}");
    // The fixture is a beeping 440 Hz tone: clearly not silence.
    assert!(
        resource["audio_rms"].as_f64().unwrap() > 0.01,
        "{resource:#}"
    );
    assert_eq!(report["unauthorized"], 0, "{report:#}");

    // What an operator sees: published, frames out, and never the token.
    let (entry, stats, listing) = operator_entry(&relay, "cam").await;
    assert_eq!(entry["sfu"]["state"], "published", "{entry:#}");
    assert_eq!(entry["sfu"]["sessions"], 1, "{entry:#}");
    assert!(
        entry["sfu"]["video_frames_out"].as_u64().unwrap() >= 30,
        "{entry:#}"
    );
    assert!(
        entry["sfu"]["audio_packets_out"].as_u64().unwrap() >= 25,
        "{entry:#}"
    );
    common::assert_nothing_reveals(
        &[TOKEN.to_owned()],
        &[("/stats", &stats), ("/api/cameras", &listing)],
    );

    // Shutting the relay down stops publishing: it DELETEs the resource it was given, with the
    // bearer, resolved against the endpoint's URL.
    relay.shutdown.cancel();
    relay.relay.stopped().await;
    let report = server
        .report_until(MEDIA_WAIT, "the relay deletes its WHIP session", |r| {
            !r["deletes"].as_array().unwrap().is_empty()
        })
        .await;
    let deletes = report["deletes"].as_array().unwrap();
    assert_eq!(deletes.len(), 1, "{report:#}");
    assert_eq!(deletes[0]["resource"], location.as_str(), "{report:#}");
    assert_eq!(deletes[0]["bearer_ok"], true, "{report:#}");
    assert_eq!(deletes[0]["status"], 200, "{report:#}");
    let resource = &report["resources"][id.as_str()];
    assert_eq!(
        (&resource["deleted"], &resource["closed"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    assert_eq!(report["posts"].as_array().unwrap().len(), 1, "{report:#}");
    let after = camera.publish.snapshot();
    assert_ne!(after.state, PublishState::Published, "{after:?}");
    assert_eq!((after.sessions, after.failures), (1, 0), "{after:?}");

    // The relay made no request the server refused, and nothing after the DELETE.
    let last = server.finish().await;
    let relay_requests: Vec<_> = last["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] != "/report")
        .map(|r| format!("{} {}", r["method"].as_str().unwrap(), r["status"]))
        .collect();
    assert_eq!(relay_requests, ["POST 201", "DELETE 200"], "{last:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bearer_token_is_reported_without_revealing_it() {
    let logs = common::Captured::install();
    // This server quotes the Authorization header it refuses in its 401 body.
    let server = WhipServer::start(TOKEN, &["--echo-credentials"]).await;
    let sim = sim_camera().await;
    let wrong = whip_relay(&sim, "wrong", &server, Some(WRONG_TOKEN)).await;
    let missing = whip_relay(&sim, "missing", &server, None).await;

    for (relay, id) in [(&wrong, "wrong"), (&missing, "missing")] {
        let camera = relay.camera(id);
        let snapshot = snapshot_until(&camera, "the WHIP endpoint refuses the relay", |s| {
            s.failures >= 1 && s.last_error.is_some()
        })
        .await;
        let error = snapshot.last_error.clone().unwrap();
        assert!(error.contains("401"), "{snapshot:?}");
        assert!(
            !error.contains(WRONG_TOKEN) && !error.contains(TOKEN),
            "{error}"
        );
        assert_eq!(snapshot.sessions, 0, "{snapshot:?}");
        assert_ne!(snapshot.state, PublishState::Published, "{snapshot:?}");

        let (entry, stats, listing) = operator_entry(relay, id).await;
        assert!(entry["sfu"]["failures"].as_u64().unwrap() >= 1, "{entry:#}");
        assert!(
            entry["sfu"]["last_error"].as_str().unwrap().contains("401"),
            "{entry:#}"
        );
        common::assert_nothing_reveals(
            &[WRONG_TOKEN.to_owned(), TOKEN.to_owned()],
            &[("/stats", &stats), ("/api/cameras", &listing)],
        );
    }

    let report = server.report().await;
    let posts = report["posts"].as_array().unwrap();
    for (id, present) in [("wrong", true), ("missing", false)] {
        let mine: Vec<_> = posts.iter().filter(|p| p["camera_id"] == id).collect();
        assert!(!mine.is_empty(), "{report:#}");
        for post in mine {
            assert_eq!(post["bearer_present"], present, "{post}");
            assert_eq!(post["bearer_ok"], false, "{post}");
            assert_eq!(post["status"], 401, "{post}");
        }
    }
    assert_eq!(
        report["unauthorized"].as_u64().unwrap(),
        posts.len() as u64,
        "{report:#}"
    );
    assert!(resources(&report).is_empty(), "{report:#}");

    // Stopping publishing deletes nothing: no session was ever created.
    for relay in [&wrong, &missing] {
        relay.shutdown.cancel();
        relay.relay.stopped().await;
    }
    let last = server.finish().await;
    assert!(last["deletes"].as_array().unwrap().is_empty(), "{last:#}");
    common::assert_nothing_reveals(
        &[WRONG_TOKEN.to_owned(), TOKEN.to_owned()],
        &[("logs", &logs.text())],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_again_when_the_whip_server_ends_its_session() {
    let server = WhipServer::start(TOKEN, &[]).await;
    let sim = sim_camera().await;
    let relay = whip_relay(&sim, "cam", &server, Some(TOKEN)).await;
    let camera = relay.camera("cam");
    let report = server
        .report_until(MEDIA_WAIT, "the first session decodes", |r| {
            resources(r).iter().any(|(_, res)| decoded_enough(res))
        })
        .await;
    let [(first, _)] = &resources(&report)[..] else {
        panic!("one session: {report:#}");
    };
    server.end_session(first).await;

    // The relay notices the closed peer connection and offers again, with backoff.
    let report = server
        .report_until(MEDIA_WAIT, "a second session decodes", |r| {
            resources(r)
                .iter()
                .any(|(id, res)| id != first && decoded_enough(res))
        })
        .await;
    let all = resources(&report);
    assert_eq!(all.len(), 2, "{report:#}");
    let (_, second) = all.iter().find(|(id, _)| id != first).unwrap();
    assert_eq!(second["camera_id"], "cam", "{second:#}");
    assert_eq!(
        second["sizes"],
        serde_json::json!([[640, 360]]),
        "{second:#}"
    );
    assert_eq!(second["decode_errors"], 0, "{second:#}");
    assert_eq!(second["audio_rate"], 48_000, "{second:#}");
    let snapshot = snapshot_until(&camera, "published again", |s| {
        s.state == PublishState::Published && s.sessions == 2
    })
    .await;
    assert_eq!(snapshot.failures, 1, "{snapshot:?}");
    assert_eq!(snapshot.last_error, None, "{snapshot:?}");
    let posts = report["posts"].as_array().unwrap();
    assert!(
        posts.len() == 2 && posts.iter().all(|p| p["status"] == 201),
        "{report:#}"
    );
}
