//! No secret or stream token reaches the logs, `/stats` or the camera list. In its own test
//! binary: it installs a global log subscriber (`tracing` caches per-callsite interest
//! process-wide, so a thread-local one would miss events when tests run in parallel).

// Tests may panic on unexpected values; that is how they fail.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use camrelay_sim::sdm::{FakeSdmConfig, Fault};
use common::{
    Captured, all_live, assert_nothing_reveals, operator_views, start, stream_tokens, until,
};

#[tokio::test(start_paused = true)]
async fn no_secret_or_stream_token_reaches_logs_or_stats() {
    let logs = Captured::install();

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
    secrets.extend(stream_tokens(&r.relay));
    assert!(secrets.len() >= 2 + 3 * 2, "{secrets:?}");
    let (stats, listing) = operator_views(&r.relay).await;
    let logs = logs.text();
    assert!(logs.contains("lease changed"), "the logs were captured");
    assert_nothing_reveals(
        &secrets,
        &[
            ("stats", &stats),
            ("camera list", &listing),
            ("logs", &logs),
        ],
    );
}
