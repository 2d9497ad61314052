//! `/metrics` parses with the Prometheus project's own text-format parser (Python
//! `prometheus_client`), holds exactly the documented series, and reveals no secret.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use camrelay::metrics::SERIES;
use camrelay_sim::sdm::FakeSdmConfig;
use common::media::{eventually, start_nest_relay};
use serde_json::Value;

const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": s.name,
                        "labels": s.labels, "value": s.value})
print(json.dumps(samples))
"#;

async fn parse(text: &str) -> Vec<Value> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(common::test_python())
        .args(["-c", PARSER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python with prometheus_client (pip install prometheus_client)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Value>(&output.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s["name"] == name
                && labels
                    .iter()
                    .all(|(k, v)| s["labels"][*k].as_str() == Some(*v))
        })
        .and_then(|s| s["value"].as_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_match_their_documentation() {
    let nest = start_nest_relay(
        FakeSdmConfig {
            client_secret: "client-secret-88e1".into(),
            refresh_token: "refresh-token-41aa".into(),
            ..FakeSdmConfig::default()
        },
        &[
            ("CAMRELAY_ALWAYS_ON", "true"),
            ("CAMRELAY_SFU", "embedded"),
            ("CAMRELAY_CALLS_APP_SECRET", "sfu-secret-9c2f"),
        ],
    )
    .await;
    let camera = nest.camera("front-door").await;
    eventually(Duration::from_secs(30), "published", || {
        camera.publish.snapshot().session_id.is_some()
    })
    .await;
    let response = reqwest::get(format!("http://{}/metrics", nest.relay.http_addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let samples = parse(&text).await;

    // Every series found is a documented one, and the documentation lists every series.
    let known: BTreeSet<&str> = SERIES.iter().map(|(name, _, _)| *name).collect();
    let docs = include_str!("../docs/metrics.md");
    for name in &known {
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} not in docs/metrics.md"
        );
    }
    let found: BTreeSet<String> = samples
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    for name in &found {
        assert!(known.contains(name.as_str()), "{name} is not in SERIES");
    }
    // With Nest, always-on cameras and the embedded SFU, nearly everything is present (the
    // lease expiry too); what may be absent: nothing but series of absent components.
    let missing: Vec<&&str> = known
        .iter()
        .filter(|name| !found.contains(**name))
        .collect();
    assert!(missing.is_empty(), "not rendered: {missing:?}");

    // Typed as documented (the parser reads the TYPE lines).
    for s in &samples {
        let name = s["name"].as_str().unwrap();
        let kind = SERIES.iter().find(|(n, _, _)| *n == name).unwrap().1;
        let expected = match kind {
            camrelay::metrics::Kind::Counter => "counter",
            camrelay::metrics::Kind::Gauge => "gauge",
        };
        assert_eq!(s["type"], expected, "{name}");
    }

    let cam = [("camera", "front-door")];
    assert_eq!(
        value(&samples, "camrelay_camera_connected", &cam),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "camrelay_camera_state",
            &[("camera", "front-door"), ("state", "live")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "camrelay_publish_state",
            &[("camera", "front-door"), ("state", "published")]
        ),
        Some(1.0)
    );
    assert!(value(&samples, "camrelay_camera_video_frames_in_total", &cam).unwrap() > 0.0);
    assert_eq!(
        value(&samples, "camrelay_lease_generated_total", &cam),
        Some(1.0)
    );
    assert_eq!(value(&samples, "camrelay_nest_discovered", &[]), Some(1.0));
    assert!(value(&samples, "camrelay_queue_stream_capacity", &[]).unwrap() >= 3.0);

    let mut secrets = vec![
        "client-secret-88e1".to_owned(),
        "refresh-token-41aa".to_owned(),
        "sfu-secret-9c2f".to_owned(),
    ];
    secrets.extend(common::stream_tokens(&nest.relay));
    common::assert_nothing_reveals(&secrets, &[("metrics", &text)]);
}
