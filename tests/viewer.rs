//! Browser viewers end to end: headless Chromium opens the viewer page, clicks a camera's tile,
//! and the relay starts the simulated Nest camera on demand, publishes it into the embedded SFU
//! and hands the page the SFU's offer; the page decodes the video. Plus the watch API's
//! contract over plain HTTP.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use camrelay_sim::sdm::FakeSdmConfig;
use common::media::{eventually, start_nest_relay};
use serde_json::Value;

const SECRET: &str = "embedded-sfu-secret-5151";
const VIEWER_TOKEN: &str = "viewer-token-7373";

/// Where tests leave files for people to look at (screenshots).
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn viewer_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CAMRELAY_SFU", "embedded"),
        ("CAMRELAY_CALLS_APP_SECRET", SECRET),
        ("CAMRELAY_IDLE_GRACE", "2s"),
        ("CAMRELAY_VIEWER_TIMEOUT", "3s"),
    ]
}

/// Runs `tests/support/chromium_viewer.py` with `args` and returns its JSON and whether it
/// succeeded.
async fn chromium(args: &[String]) -> (bool, Value) {
    let mut command = tokio::process::Command::new(common::test_python());
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/chromium_viewer.py"
        ))
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the Chromium driver finished")
        .expect("the Chromium driver runs (python with websockets, Debian chromium)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let mut value: Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "the driver said {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    if !output.status.success()
        && let Some(object) = value.as_object_mut()
    {
        // Shown by the failing assertion, with the result.
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        object.insert("driver_stderr".into(), stderr.into());
    }
    (output.status.success(), value)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_a_nest_camera_the_page_started_on_demand() {
    let nest = start_nest_relay(FakeSdmConfig::default(), &viewer_vars()).await;
    let camera = nest.camera("front-door").await;
    assert_eq!(nest.api.stats().generates, 0, "nothing before a viewer");
    let page = format!("http://{}/", nest.relay.http_addr);
    let screenshot = artifacts().join("viewer.png");
    let _ = std::fs::remove_file(&screenshot);

    // Two pages watch the same camera: one upstream, one publication, two SFU viewers.
    let (ok, result) = chromium(&strings(&[
        "watch",
        "--url",
        &page,
        "--camera",
        "front-door",
        "--pages",
        "2",
        "--min-frames",
        "30",
        "--unmute",
        "--timeout",
        "40",
        "--screenshot",
        screenshot.to_str().unwrap(),
    ]))
    .await;
    assert!(ok, "{result:#}");
    let pages = result["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 2);
    for page in pages {
        let s = &page["cameras"]["front-door"];
        assert!(s["framesDecoded"].as_u64().unwrap() >= 30, "{s}");
        assert_eq!(
            (&s["frameWidth"], &s["frameHeight"]),
            (&640.into(), &360.into()),
            "{s}"
        );
        assert!(s["audioPacketsReceived"].as_u64().unwrap() > 0, "{s}");
        assert!(
            s["audioEnergy"].as_f64().unwrap() > 0.0,
            "sound, not silence: {s}"
        );
    }
    assert_eq!(result["console_errors"], Value::Array(vec![]), "{result:#}");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);

    let sdm = nest.api.stats();
    assert_eq!(
        sdm.generates, 1,
        "one upstream stream for two viewers: {sdm:?}"
    );
    assert_eq!(camera.media.stats.sessions.load(Ordering::Relaxed), 1);
    assert_eq!(camera.publish.snapshot().sessions, 1, "one publication");

    // The pages are gone: their viewers are released (on pagehide, or by the heartbeat
    // timeout), the publication ends and the stream is stopped after the grace.
    eventually(Duration::from_secs(15), "viewers released", || {
        camera.viewers.load(Ordering::Relaxed) == 0
    })
    .await;
    eventually(Duration::from_secs(20), "the stream stopped", || {
        nest.api.stats().stops == 1
    })
    .await;
    assert_eq!(nest.api.stats().expired_while_wanted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_capacity_the_page_says_so_and_retries() {
    // One command a minute with a 0.7 reserve sustains one stream (tests/nest_media.rs).
    let mut vars = viewer_vars();
    vars.extend([
        ("CAMRELAY_NEST_QPM", "1"),
        ("CAMRELAY_NEST_BUDGET_RESERVE", "0.7"),
    ]);
    let nest = start_nest_relay(FakeSdmConfig::default(), &vars).await;
    let first = nest.camera("front-door").await;
    nest.camera("backyard").await;
    let _holder = first.acquire(true);
    first
        .media
        .watch_live()
        .wait_for(|live| *live)
        .await
        .unwrap();

    let page = format!("http://{}/", nest.relay.http_addr);
    let screenshot = artifacts().join("viewer-at-capacity.png");
    let (ok, result) = chromium(&strings(&[
        "expect-status",
        "--url",
        &page,
        "--camera",
        "backyard",
        "--contains",
        "at capacity, retrying in",
        "--timeout",
        "20",
        "--screenshot",
        screenshot.to_str().unwrap(),
    ]))
    .await;
    assert!(ok, "{result:#}");
    let status = result["status"].as_str().unwrap();
    let seconds: u64 = status
        .trim_start_matches("at capacity, retrying in ")
        .trim_end_matches(" s")
        .parse()
        .unwrap_or_else(|_| panic!("a countdown in {status:?}"));
    assert!(seconds >= 1, "{status}");
    // The refusal cost no command and did not disturb the live camera.
    assert_eq!(nest.api.stats().generates, 1);
    assert!(first.media.is_live());
}

/// A small client of the relay's HTTP API.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Option<&str>,
        body: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_api_keeps_its_contract() {
    let mut vars = viewer_vars();
    vars.push(("CAMRELAY_VIEWER_TOKEN", VIEWER_TOKEN));
    vars.push(("CAMRELAY_MAX_VIEWERS", "1"));
    let nest = start_nest_relay(FakeSdmConfig::default(), &vars).await;
    let camera = nest.camera("front-door").await;
    let api = Api::new(nest.relay.http_addr);
    let bearer = format!("Bearer {VIEWER_TOKEN}");
    let auth = Some(bearer.as_str());
    use reqwest::Method;

    // The page holds no data and is served to a navigation, which cannot carry a token.
    let (status, headers, body) = api.send(Method::GET, "/", None, None).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(body.contains("<title>camrelay</title>"), "{body}");
    // The API wants the token.
    let (status, headers, body) = api.send(Method::GET, "/api/cameras", None, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, _) = api
        .send(Method::GET, "/api/cameras", Some("Bearer nope"), None)
        .await;
    assert_eq!(status, 401);
    let (status, _, _) = api
        .send(Method::POST, "/api/cameras/front-door/watch", None, None)
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        nest.api.stats().generates,
        0,
        "an unauthorized watch starts nothing"
    );
    // Another site's page cannot start a camera through a visitor's browser.
    let cross = api
        .http
        .post(format!("{}/api/cameras/front-door/watch", api.base))
        .header("authorization", &bearer)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    assert_eq!(
        nest.api.stats().generates,
        0,
        "a cross-site watch starts nothing"
    );

    let (status, _, body) = api.send(Method::GET, "/api/cameras", auth, None).await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "front-door")
        .unwrap();
    assert_eq!(entry["viewers"], 0);

    // Unknown camera: 404 with a sentence.
    let (status, _, body) = api
        .send(Method::POST, "/api/cameras/nope/watch", auth, None)
        .await;
    assert_eq!(status, 404);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"].as_str().unwrap().contains("nope"), "{error}");

    // A watch starts the camera and returns the SFU's offer for its two tracks.
    let (status, _, body) = api
        .send(Method::POST, "/api/cameras/front-door/watch", auth, None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains(SECRET),
        "the SFU secret never reaches a browser"
    );
    let offer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(offer["offer"]["type"], "offer");
    assert!(offer["offer"]["sdp"].as_str().unwrap().starts_with("v=0"));
    let kinds: Vec<&str> = offer["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["video", "audio"]);
    assert_eq!(offer["heartbeat_interval_s"], 1);
    let viewer = offer["viewer_id"].as_str().unwrap();
    assert_eq!(camera.viewers.load(Ordering::Relaxed), 1);
    let base = format!("/api/cameras/front-door/watch/{viewer}");

    // CAMRELAY_MAX_VIEWERS is 1: a second viewer is told so, and starts nothing.
    let (status, headers, body) = api
        .send(Method::POST, "/api/cameras/front-door/watch", auth, None)
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    let refusal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["code"], "max_viewers", "{refusal}");
    assert_eq!(camera.viewers.load(Ordering::Relaxed), 1);

    // Bad answers get 400, not a panic; a viewer of another camera is not found.
    let answer = format!("{base}/answer");
    for bad in ["", "{", "{\"type\":\"offer\",\"sdp\":\"v=0\"}", "[1,2]"] {
        let (status, _, body) = api.send(Method::POST, &answer, auth, Some(bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _, _) = api
        .send(
            Method::POST,
            &format!("/api/cameras/backyard/watch/{viewer}/heartbeat"),
            auth,
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Heartbeats keep the viewer; silence for the timeout releases it.
    for _ in 0..3 {
        let (status, _, body) = api
            .send(Method::POST, &format!("{base}/heartbeat"), auth, None)
            .await;
        assert_eq!((status, body.as_str()), (200, "{\"status\":\"ok\"}"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(camera.viewers.load(Ordering::Relaxed), 1);
    eventually(
        Duration::from_secs(10),
        "the silent viewer released",
        || camera.viewers.load(Ordering::Relaxed) == 0,
    )
    .await;
    let (status, _, body) = api
        .send(Method::POST, &format!("{base}/heartbeat"), auth, None)
        .await;
    assert_eq!(status, 404, "{body}");
    // Leaving is idempotent.
    let (status, _, _) = api.send(Method::DELETE, &base, auth, None).await;
    assert_eq!(status, 204);

    // A second watch, left at once, releases the camera: the stream stops after the grace.
    let (status, _, body) = api
        .send(Method::POST, "/api/cameras/front-door/watch", auth, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let offer: Value = serde_json::from_str(&body).unwrap();
    let viewer = offer["viewer_id"].as_str().unwrap();
    let (status, _, _) = api
        .send(
            Method::DELETE,
            &format!("/api/cameras/front-door/watch/{viewer}"),
            auth,
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(camera.viewers.load(Ordering::Relaxed), 0);
    eventually(Duration::from_secs(20), "the stream stopped", || {
        nest.api.stats().stops >= 1
    })
    .await;
    assert_eq!(
        nest.api.stats().generates,
        1,
        "the second watch reused the live stream"
    );

    // The viewer token is nowhere an operator or a viewer can read it.
    let (_, _, stats) = api.send(Method::GET, "/stats", None, None).await;
    let (_, _, refused) = api
        .send(Method::GET, "/api/cameras", Some("Bearer wrong"), None)
        .await;
    let effective = nest.relay.config.to_string();
    for (what, text) in [
        ("stats", &stats),
        ("401", &refused),
        ("check-config", &effective),
    ] {
        assert!(
            !text.contains(VIEWER_TOKEN),
            "{what} shows the viewer token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_guards_the_page_and_the_api_and_whip_cannot_watch() {
    let mut vars = viewer_vars();
    vars.extend([
        ("CAMRELAY_VIEWER_USERNAME", "family"),
        ("CAMRELAY_VIEWER_PASSWORD", "s3cret pass"),
    ]);
    let nest = start_nest_relay(FakeSdmConfig::default(), &vars).await;
    let api = Api::new(nest.relay.http_addr);
    use reqwest::Method;
    let (status, headers, _) = api.send(Method::GET, "/", None, None).await;
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=\"camrelay\"")
    );
    // "family:s3cret pass"
    let good = "Basic ZmFtaWx5OnMzY3JldCBwYXNz";
    assert_eq!(api.send(Method::GET, "/", Some(good), None).await.0, 200);
    assert_eq!(
        api.send(Method::GET, "/api/cameras", Some(good), None)
            .await
            .0,
        200
    );
    // "family:wrong"
    let bad = "Basic ZmFtaWx5Ondyb25n";
    assert_eq!(
        api.send(Method::GET, "/api/cameras", Some(bad), None)
            .await
            .0,
        401
    );
    // The probes and stats stay the operator's.
    assert_eq!(api.send(Method::GET, "/healthz", None, None).await.0, 200);
    drop(nest);

    // WHIP has no viewer sessions to create: the watch API says so.
    let (relay, shutdown) = common::start_relay_from(
        vec![
            ("CAMRELAY_SFU".into(), "whip".into()),
            (
                "CAMRELAY_WHIP_URL".into(),
                "http://127.0.0.1:9/whip/{camera_id}".into(),
            ),
            ("CAMRELAY_CAMERAS".into(), "cam=rtsp://127.0.0.1:9/x".into()),
        ],
        &[],
    )
    .await;
    let api = Api::new(relay.http_addr);
    let (status, _, body) = api
        .send(Method::POST, "/api/cameras/cam/watch", None, None)
        .await;
    assert_eq!(status, 501, "{body}");
    assert!(body.contains("Calls API"), "{body}");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_its_cameras_in_chromium() {
    use camrelay::demo::{DEMO_CAMERA_ID, Demo, DemoOptions};
    let shutdown = tokio_util::sync::CancellationToken::new();
    let demo = Demo::start(
        &DemoOptions {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            rtsp_addr: "127.0.0.1:0".parse().unwrap(),
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let page = demo
        .urls()
        .into_iter()
        .find(|(label, _)| *label == "viewer page")
        .map(|(_, url)| url)
        .unwrap();
    eventually(Duration::from_secs(10), "Nest discovery", || {
        demo.relay.registry.get("front-door").is_some()
    })
    .await;
    // The plain RTSP camera and a Nest camera, side by side, both started by the click.
    let (ok, result) = chromium(&strings(&[
        "watch",
        "--url",
        &page,
        "--camera",
        DEMO_CAMERA_ID,
        "--camera",
        "front-door",
        "--min-frames",
        "20",
        "--timeout",
        "40",
        "--screenshot",
        artifacts().join("demo.png").to_str().unwrap(),
    ]))
    .await;
    assert!(ok, "{result:#}");
    for id in [DEMO_CAMERA_ID, "front-door"] {
        let s = &result["pages"][0]["cameras"][id];
        assert!(s["framesDecoded"].as_u64().unwrap() >= 20, "{id}: {s}");
        assert_eq!(s["frameWidth"], 640, "{id}: {s}");
    }
    shutdown.cancel();
    demo.relay.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reconnects_by_itself_when_the_publication_is_replaced() {
    let nest = start_nest_relay(FakeSdmConfig::default(), &viewer_vars()).await;
    let camera = nest.camera("front-door").await;
    let page = format!("http://{}/", nest.relay.http_addr);
    // 100 frames take 4 s: the drop below comes well before the page gets there.
    let driver = tokio::spawn(async move {
        chromium(&strings(&[
            "watch",
            "--url",
            &page,
            "--camera",
            "front-door",
            "--min-frames",
            "100",
            "--timeout",
            "40",
        ]))
        .await
    });
    let sfu = nest
        .relay
        .sfu
        .as_ref()
        .unwrap()
        .embedded
        .clone()
        .unwrap()
        .sfu;
    let first = tokio::time::timeout(Duration::from_secs(30), camera.publish.published())
        .await
        .unwrap()
        .unwrap();
    eventually(Duration::from_secs(30), "the page watches", || {
        camera.viewers.load(Ordering::Relaxed) == 1
    })
    .await;
    // The SFU loses the publisher's session: the publisher publishes anew, the page hears of
    // it in its next heartbeat and watches again, and decodes the new session.
    assert!(sfu.drop_session(first.session_id.unwrap()).await.unwrap());
    let (ok, result) = driver.await.unwrap();
    assert!(ok, "{result:#}");
    let s = &result["pages"][0]["cameras"]["front-door"];
    assert!(s["reconnects"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["framesDecoded"].as_u64().unwrap() >= 100, "{s}");
    assert_eq!(camera.publish.snapshot().sessions, 2);
    assert_eq!(
        nest.api.stats().generates,
        1,
        "the upstream was not disturbed"
    );
}

/// Relay B is configured for Cloudflare, and its "Cloudflare" is relay A's embedded SFU, which
/// serves the Calls API's paths and JSON (checked against Cloudflare's spec in
/// tests/sfu_conformance.rs): the watch path is the same code for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_the_same_through_a_cloudflare_configured_relay() {
    let (sfu_relay, sfu_shutdown) = common::start_relay_from(
        vec![
            ("CAMRELAY_SFU".into(), "embedded".into()),
            ("CAMRELAY_CALLS_APP_ID".into(), "cf-app".into()),
            ("CAMRELAY_CALLS_APP_SECRET".into(), SECRET.into()),
        ],
        &[],
    )
    .await;
    let calls_url = format!("http://{}/sfu/v1", sfu_relay.http_addr);
    let mut vars = viewer_vars();
    vars.retain(|(k, _)| !k.starts_with("CAMRELAY_SFU") && !k.starts_with("CAMRELAY_CALLS"));
    vars.extend([
        ("CAMRELAY_CALLS_APP_ID", "cf-app"),
        ("CAMRELAY_CALLS_APP_SECRET", SECRET),
        ("CAMRELAY_CALLS_API_URL", calls_url.as_str()),
    ]);
    let nest = start_nest_relay(FakeSdmConfig::default(), &vars).await;
    assert_eq!(
        nest.relay.config.sfu.kind(),
        camrelay_config::SfuKind::Cloudflare
    );
    nest.camera("backyard").await;
    let page = format!("http://{}/", nest.relay.http_addr);
    let (ok, result) = chromium(&strings(&[
        "watch",
        "--url",
        &page,
        "--camera",
        "backyard",
        "--min-frames",
        "20",
        "--timeout",
        "40",
    ]))
    .await;
    assert!(ok, "{result:#}");
    let s = &result["pages"][0]["cameras"]["backyard"];
    assert_eq!(s["frameWidth"], 640, "{s}");
    // Relay A has no cameras: what its SFU carries came from relay B.
    let sfu = &sfu_relay
        .sfu
        .as_ref()
        .unwrap()
        .embedded
        .as_ref()
        .unwrap()
        .sfu;
    let engine = sfu.stats().await.unwrap();
    assert!(
        engine.published_tracks >= 1 && engine.frames_forwarded > 0,
        "{engine:?}"
    );
    assert!(nest.relay.sfu.as_ref().unwrap().embedded.is_none());
    sfu_shutdown.cancel();
}
