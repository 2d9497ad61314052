//! The operator's endpoints: on a listener of their own behind a token, and a readiness probe
//! that knows whether the SFU answers.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::media::eventually;

const ADMIN_TOKEN: &str = "admin-token-6b1f";

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_serves_the_operator_apart_from_viewers() {
    let (relay, shutdown) = common::start_relay_from(
        vec![
            ("CAMRELAY_ADMIN_ADDR".into(), "127.0.0.1:0".into()),
            ("CAMRELAY_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
        ],
        &[],
    )
    .await;
    let admin = format!("http://{}", relay.admin_addr.unwrap());
    let http = format!("http://{}", relay.http_addr);

    // Operators: probes open, stats and metrics behind the token.
    assert_eq!(get(&format!("{admin}/healthz"), None).await.0, 200);
    let (status, body) = get(&format!("{admin}/stats"), None).await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains(ADMIN_TOKEN));
    assert_eq!(get(&format!("{admin}/stats"), Some("wrong")).await.0, 401);
    let (status, body) = get(&format!("{admin}/stats"), Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"uptime_s\""), "{body}");
    assert_eq!(
        get(&format!("{admin}/metrics"), Some(ADMIN_TOKEN)).await.0,
        200
    );
    eventually(Duration::from_secs(10), "ready", || relay.ready()).await;
    assert_eq!(
        get(&format!("{admin}/readyz"), None).await,
        (200, "ready\n".into())
    );
    // Viewers' listener: no operator endpoint; the admin listener: no viewer endpoint.
    for path in ["/stats", "/metrics", "/healthz", "/readyz"] {
        assert_eq!(get(&format!("{http}{path}"), None).await.0, 404, "{path}");
    }
    assert_eq!(get(&format!("{http}/"), None).await.0, 200);
    assert_eq!(get(&format!("{http}/api/cameras"), None).await.0, 200);
    assert_eq!(get(&format!("{admin}/"), None).await.0, 404);
    assert_eq!(get(&format!("{admin}/api/cameras"), None).await.0, 404);
    shutdown.cancel();
    relay.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_sfu() {
    // A Calls API that is not there.
    let (down, down_shutdown) = common::start_relay_from(
        vec![
            ("CAMRELAY_CALLS_APP_ID".into(), "app".into()),
            ("CAMRELAY_CALLS_APP_SECRET".into(), "secret-1".into()),
            (
                "CAMRELAY_CALLS_API_URL".into(),
                "http://127.0.0.1:9/v1".into(),
            ),
        ],
        &[],
    )
    .await;
    eventually(Duration::from_secs(15), "the SFU checked", || {
        down.sfu_health().checked
    })
    .await;
    let (status, body) = get(&format!("http://{}/readyz", down.http_addr), None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("SFU"), "{body}");
    assert!(!body.contains("secret-1"), "{body}");
    down_shutdown.cancel();

    // A Calls API that is there (another relay's embedded SFU), with a wrong and a right secret.
    let (sfu, sfu_shutdown) = common::start_relay_from(
        vec![
            ("CAMRELAY_SFU".into(), "embedded".into()),
            ("CAMRELAY_CALLS_APP_ID".into(), "app".into()),
            ("CAMRELAY_CALLS_APP_SECRET".into(), "right-secret".into()),
        ],
        &[],
    )
    .await;
    let api_url = format!("http://{}/sfu/v1", sfu.http_addr);
    for (secret, ready) in [("wrong-secret", false), ("right-secret", true)] {
        let (relay, shutdown) = common::start_relay_from(
            vec![
                ("CAMRELAY_CALLS_APP_ID".into(), "app".into()),
                ("CAMRELAY_CALLS_APP_SECRET".into(), secret.into()),
                ("CAMRELAY_CALLS_API_URL".into(), api_url.clone()),
            ],
            &[],
        )
        .await;
        eventually(Duration::from_secs(15), "the SFU checked", || {
            relay.sfu_health().checked
        })
        .await;
        let (status, body) = get(&format!("http://{}/readyz", relay.http_addr), None).await;
        assert_eq!(status == 200, ready, "{secret}: {body}");
        assert!(!body.contains(secret), "{body}");
        shutdown.cancel();
    }
    sfu_shutdown.cancel();
}

const VALIDATOR: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
instance = json.load(sys.stdin)
errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
          for e in Draft202012Validator(schema).iter_errors(instance)]
print(json.dumps(errors))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_match_their_documented_schema() {
    use tokio::io::AsyncWriteExt;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/stats.schema.json");
    let generated = camrelay::stats::schema();
    if std::env::var_os("CAMRELAY_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(path, text).unwrap();
    }
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(
        committed == generated,
        "docs/stats.schema.json is behind the stats DTOs: regenerate it with \
         CAMRELAY_BLESS=1 cargo test --release --test operator"
    );

    // A relay with everything in /stats: Nest (leases, queue), always-on cameras published
    // into the embedded SFU.
    let nest = common::media::start_nest_relay(
        camrelay_sim::sdm::FakeSdmConfig::default(),
        &[("CAMRELAY_ALWAYS_ON", "true"), ("CAMRELAY_SFU", "embedded")],
    )
    .await;
    let camera = nest.camera("front-door").await;
    eventually(Duration::from_secs(30), "published", || {
        camera.publish.snapshot().session_id.is_some()
    })
    .await;
    let (status, stats) = get(&format!("http://{}/stats", nest.relay.http_addr), None).await;
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(document["queue"].is_object() && document["embedded_sfu"].is_object());

    let python = common::test_python();
    let mut child = tokio::process::Command::new(python)
        .args(["-c", VALIDATOR, path])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python with jsonschema");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(stats.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let errors: Vec<String> = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        errors.is_empty(),
        "/stats does not match its schema: {errors:#?}"
    );
}
