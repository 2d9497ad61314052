//! The relay's Nest path end to end against the offline fake of Google's API, on paused tokio
//! time: discovery, admission, leases, extensions, failures and shutdown, hours in seconds.

// Tests may panic on unexpected values; that is how they fail.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use camrelay::lease::Phase;
use camrelay_sim::sdm::{FakeSdmConfig, Fault};
use common::{Running, all_live, no_stream_lost, phases, realistic, start, stats, until};

#[tokio::test(start_paused = true)]
async fn always_on_cameras_stay_live_for_hours_on_just_in_time_extensions() {
    let r = start(
        realistic(FakeSdmConfig::default()),
        &[("CAMRELAY_ALWAYS_ON", "true")],
    )
    .await;
    // Three RTSP cameras; the WebRTC-only one is not a relay camera.
    until(&r, Duration::from_secs(60), all_live(3)).await;
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    let s = stats(&r).await;
    assert!(all_live(3)(&s), "{:?}", phases(&s));
    let sdm = r.sdm.stats();
    no_stream_lost(&sdm);
    for camera in &s.cameras {
        let lease = camera.lease.as_ref().unwrap();
        assert_eq!(
            lease.generated, 1,
            "{} needed a new stream: {lease:?}",
            camera.id
        );
        assert_eq!(lease.lost, 0);
        // Just in time: one extension per (300 s − margin); 3 h / ~295 s ≈ 36.6.
        assert!((35..=38).contains(&lease.extended), "{lease:?}");
        assert!(lease.margin_ms < 10_000, "{lease:?}");
    }
    // Google saw every extension before expiry, none absurdly early.
    let margin = sdm.min_margin_at_extension.unwrap();
    assert!(
        margin > Duration::ZERO && margin < Duration::from_secs(10),
        "{margin:?}"
    );
    // The hourly access token was refreshed before it lapsed.
    assert!(s.nest.as_ref().unwrap().token_refreshes >= 3);
    assert_eq!(sdm.unauthenticated, 0);
}

#[tokio::test(start_paused = true)]
async fn a_budget_smaller_than_configured_is_absorbed_through_429s() {
    // Google allows only 2 commands a minute, the relay believes 10: the queue learns from 429s.
    let fake = FakeSdmConfig {
        command_qpm: 2,
        ..realistic(FakeSdmConfig::default())
    };
    let r = start(fake, &[("CAMRELAY_ALWAYS_ON", "true")]).await;
    until(&r, Duration::from_secs(300), all_live(3)).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let s = stats(&r).await;
    assert!(all_live(3)(&s), "{:?}", phases(&s));
    let sdm = r.sdm.stats();
    assert_eq!(sdm.expired_while_wanted, 0, "{sdm:?}");
    assert!(sdm.rate_limited.project >= 1, "{sdm:?}");
    assert!(s.queue.as_ref().unwrap().rate_limited >= 1);
}

#[tokio::test(start_paused = true)]
async fn garbled_answers_server_errors_and_refused_tokens_are_survived() {
    let r = start(FakeSdmConfig::default(), &[("CAMRELAY_ALWAYS_ON", "true")]).await;
    until(&r, Duration::from_secs(60), all_live(3)).await;

    // A 500 on the next extension: maybe processed, so retried with the same token.
    r.sdm.inject(Fault::Status(500), 1);
    tokio::time::sleep(Duration::from_secs(300)).await;
    // Access tokens stop working: the 401 drops ours, the retry fetches a new one.
    r.sdm.inject(Fault::ExpireAccessTokens, 1);
    tokio::time::sleep(Duration::from_secs(300)).await;
    // A garbled answer to an extension: the token is spent and the new one unknown, so the
    // camera needs a new stream (the orphaned one expires on Google's side).
    r.sdm.inject(Fault::MalformedJson, 1);
    tokio::time::sleep(Duration::from_secs(600)).await;

    let s = until(&r, Duration::from_secs(60), all_live(3)).await;
    let lost: u64 = s
        .cameras
        .iter()
        .map(|c| c.lease.as_ref().unwrap().lost)
        .sum();
    let generated: u64 = s
        .cameras
        .iter()
        .map(|c| c.lease.as_ref().unwrap().generated)
        .sum();
    assert_eq!(lost, 1, "only the garbled extension cost a stream");
    assert_eq!(generated, 4);
    let errors: Vec<&str> = s
        .cameras
        .iter()
        .filter_map(|c| c.lease.as_ref().unwrap().last_error.as_deref())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("malformed response")),
        "{errors:?}"
    );
    assert_eq!(r.sdm.stats().expired_while_wanted, 1);
}

#[tokio::test(start_paused = true)]
async fn admission_refuses_the_stream_the_budget_cannot_keep() {
    // 2 commands a minute keep floor((2 × 60/61 − 0.5) / (60 / 294)) = 7 streams alive.
    let fake = FakeSdmConfig {
        command_qpm: 2,
        ..realistic(FakeSdmConfig::with_rtsp_cameras(8))
    };
    let r = start(
        fake,
        &[("CAMRELAY_ALWAYS_ON", "true"), ("CAMRELAY_NEST_QPM", "2")],
    )
    .await;
    let s = until(&r, Duration::from_secs(900), |s| {
        s.cameras.iter().filter(|c| c.state == Phase::Live).count() == 7
    })
    .await;
    let refused: Vec<_> = s
        .cameras
        .iter()
        .filter(|c| c.state == Phase::AtCapacity)
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", phases(&s));
    let queue = s.queue.as_ref().unwrap();
    assert_eq!((queue.stream_capacity, queue.streams_admitted), (7, 7));
    assert!(queue.admission_refusals >= 1);
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    let s = stats(&r).await;
    assert_eq!(
        s.cameras.iter().filter(|c| c.state == Phase::Live).count(),
        7
    );
    no_stream_lost(&r.sdm.stats());
}

#[tokio::test(start_paused = true)]
async fn on_demand_cameras_start_when_wanted_and_stop_after_the_grace() {
    let r = start(FakeSdmConfig::default(), &[]).await;
    let s = until(&r, Duration::from_secs(30), |s| s.cameras.len() == 3).await;
    assert!(s.cameras.iter().all(|c| c.state == Phase::Idle));
    assert_eq!(
        r.sdm.stats().generates,
        0,
        "nobody watches: no budget spent"
    );

    let camera = r.relay.registry.get("front-door").unwrap();
    let guard = camera.acquire(true);
    let s = until(&r, Duration::from_secs(10), |s| {
        s.cameras
            .iter()
            .any(|c| c.id == "front-door" && c.state == Phase::Live)
    })
    .await;
    assert_eq!(
        s.queue.as_ref().unwrap().wait_ms[&camrelay_queue::Class::ViewerStart].count,
        1
    );
    drop(guard);
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(
        stats(&r)
            .await
            .cameras
            .iter()
            .find(|c| c.id == "front-door")
            .unwrap()
            .state,
        Phase::Live,
        "still within the idle grace"
    );
    until(&r, Duration::from_secs(30), |s| {
        s.cameras.iter().all(|c| c.state == Phase::Idle)
    })
    .await;
    let sdm = r.sdm.stats();
    assert_eq!(
        (sdm.generates, sdm.stops),
        (1, 1),
        "stopped with budget to spare"
    );
    assert_eq!(sdm.expired_while_wanted, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_live_streams_within_the_bound() {
    let r = start(FakeSdmConfig::default(), &[("CAMRELAY_ALWAYS_ON", "true")]).await;
    until(&r, Duration::from_secs(60), all_live(3)).await;
    let started = tokio::time::Instant::now();
    r.shutdown.cancel();
    r.relay.stopped().await;
    assert!(started.elapsed() <= camrelay::app::SHUTDOWN_TIMEOUT);
    let sdm = r.sdm.stats();
    assert_eq!(sdm.stops, 3, "{sdm:?}");
    assert_eq!(sdm.streams_live, 0);
}

#[tokio::test(start_paused = true)]
async fn the_device_allow_list_limits_discovery() {
    let r = start(
        FakeSdmConfig::default(),
        &[("CAMRELAY_NEST_DEVICES", "device-002")],
    )
    .await;
    let s = until(&r, Duration::from_secs(30), |s| !s.cameras.is_empty()).await;
    assert_eq!(phases(&s), vec![("backyard".to_owned(), Phase::Idle)]);
    assert!(r.relay.ready());
}

#[tokio::test(start_paused = true)]
async fn a_revoked_refresh_token_keeps_the_relay_unready_and_says_why() {
    let fake = FakeSdmConfig::default();
    let r = start(fake, &[]).await;
    // The first discovery already ran with a good token; revoke, and let the token lapse.
    r.sdm.inject(Fault::RevokeRefreshToken, 1);
    r.sdm.inject(Fault::ExpireAccessTokens, 1);
    tokio::time::sleep(Duration::from_secs(601)).await;
    let s = until(&r, Duration::from_secs(60), |s| {
        s.nest.as_ref().is_some_and(|n| !n.discovered)
    })
    .await;
    let error = s.nest.unwrap().discovery_error.unwrap();
    assert!(error.contains("Partner Connections Manager"), "{error}");
    assert!(!r.relay.ready());
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_api_is_retried_at_a_pace() {
    let r = start(FakeSdmConfig::default(), &[("CAMRELAY_ALWAYS_ON", "true")]).await;
    until(&r, Duration::from_secs(60), all_live(3)).await;
    let Running { relay, sdm, .. } = r;
    // Google goes away: every request fails at once (connection refused).
    sdm.shutdown_and_wait().await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    let queue = camrelay::http::collect(&relay).await.queue.unwrap();
    // Per camera: a few paced extension retries before expiry, then re-generates at
    // 2, 4, 8, … s backoff capped at 60 s: some tens in ten minutes, not thousands.
    assert!(
        queue.failed > 3 && queue.failed < 150,
        "{} failed commands",
        queue.failed
    );
}

#[tokio::test(start_paused = true)]
async fn discovery_follows_devices_coming_and_going_without_touching_the_others() {
    use camrelay_sim::sdm::FakeDevice;
    let garage = FakeDevice::rtsp_camera("device-001", "Garage", "Garage");
    let porch = FakeDevice::rtsp_camera("device-002", "Porch", "Porch");
    let fake = FakeSdmConfig {
        devices: vec![garage.clone(), porch],
        ..FakeSdmConfig::default()
    };
    let r = start(
        fake,
        &[
            ("CAMRELAY_ALWAYS_ON", "true"),
            ("CAMRELAY_NEST_DISCOVERY_INTERVAL", "1m"),
        ],
    )
    .await;
    let s = until(&r, Duration::from_secs(60), all_live(2)).await;
    assert_eq!(
        phases(&s).into_iter().map(|(id, _)| id).collect::<Vec<_>>(),
        vec!["garage", "porch"]
    );
    // The porch camera goes; a second camera called Garage arrives.
    r.sdm.set_devices(vec![
        garage,
        FakeDevice::rtsp_camera("device-003", "Garage", "Workshop"),
    ]);
    let s = until(&r, Duration::from_secs(180), |s| {
        s.cameras.len() == 2 && all_live(2)(s) && !s.cameras.iter().any(|c| c.id == "porch")
    })
    .await;
    let old = s
        .cameras
        .iter()
        .find(|c| c.device.as_deref() == Some("device-001"))
        .unwrap();
    assert_eq!(old.id, "garage", "a live camera keeps its id");
    assert_eq!(old.lease.as_ref().unwrap().generated, 1, "and its stream");
    let new = s
        .cameras
        .iter()
        .find(|c| c.device.as_deref() == Some("device-003"))
        .unwrap();
    assert!(new.id.starts_with("garage-"), "{}", new.id);
}

#[tokio::test(start_paused = true)]
async fn shutdown_sends_as_many_stops_as_the_budget_allows() {
    let r = start(
        FakeSdmConfig::with_rtsp_cameras(10),
        &[("CAMRELAY_ALWAYS_ON", "true")],
    )
    .await;
    until(&r, Duration::from_secs(300), all_live(10)).await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    let queue = stats(&r).await.queue.unwrap();
    let free = queue
        .buckets
        .iter()
        .find(|b| b.bucket == "project")
        .unwrap()
        .remaining;
    assert!(free > 0, "{queue:?}");
    r.shutdown.cancel();
    r.relay.stopped().await;
    let sdm = r.sdm.stats();
    // No extension waits any more, so stops may take every free slot (and slots that free
    // within the leases' stop timeout), but never more than the budget.
    assert!(
        sdm.stops >= u64::from(free).min(10),
        "{free} free slots, {sdm:?}"
    );
    no_stream_lost(&sdm);
}
