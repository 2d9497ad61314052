//! No secret or stream token reaches the logs, `/stats` or the camera list. In its own test
//! binary: it installs a global log subscriber (`tracing` caches per-callsite interest
//! process-wide, so a thread-local one would miss events when tests run in parallel).

// Tests may panic on unexpected values; that is how they fail.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use camrelay_sim::sdm::{FakeSdmConfig, Fault};
use common::{Captured, all_live, start, stats, until};

#[tokio::test(start_paused = true)]
async fn no_secret_or_stream_token_reaches_logs_or_stats() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let fake = FakeSdmConfig {
        client_secret: "client-secret-4d7e21".into(),
        refresh_token: "refresh-token-9a0c55".into(),
        ..FakeSdmConfig::default()
    };
    let r = start(fake, &[("CAMRELAY_ALWAYS_ON", "true")]).await;
    until(&r, Duration::from_secs(60), all_live(3)).await;
    // Errors and extensions happen too, so their messages are covered.
    r.sdm.inject(Fault::MalformedJson, 1);
    tokio::time::sleep(Duration::from_secs(900)).await;

    let mut secrets = vec![
        "client-secret-4d7e21".to_owned(),
        "refresh-token-9a0c55".to_owned(),
    ];
    for camera in r.relay.registry.all() {
        if let camrelay::camera::Source::Nest { lease, .. } = &camera.source {
            let url = lease.borrow().url.clone().expect("a live stream has a URL");
            let url = url.expose();
            secrets.push(url.path().rsplit('/').next().unwrap().to_owned());
            secrets.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
        }
    }
    assert!(secrets.len() >= 2 + 3 * 2, "{secrets:?}");
    let stats = serde_json::to_string(&stats(&r).await).unwrap();
    let listing = reqwest::get(format!("http://{}/api/cameras", r.relay.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("lease changed"), "the logs were captured");
    for secret in &secrets {
        for (what, text) in [
            ("stats", &stats),
            ("camera list", &listing),
            ("logs", &logs),
        ] {
            assert!(!text.contains(secret.as_str()), "{what} reveal {secret}");
        }
    }
}
