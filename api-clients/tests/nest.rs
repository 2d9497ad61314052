//! The SDM client against the offline fake of Google's API, on paused tokio time.

// Tests may panic on unexpected values; that is how they fail.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use camrelay_api_clients::nest::{
    NestClient, NestClientConfig, NestError, NestErrorKind, RateLimitBucket, StreamProtocol,
};
use camrelay_sim::sdm::{self, FakeSdmConfig, FakeSdmHandle, Fault};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use url::Url;

const CLIENT_SECRET: &str = "sim-client-secret-0123456789";
const REFRESH_TOKEN: &str = "sim-refresh-token-0123456789";

fn fake_config() -> FakeSdmConfig {
    FakeSdmConfig {
        client_secret: CLIENT_SECRET.into(),
        refresh_token: REFRESH_TOKEN.into(),
        ..FakeSdmConfig::default()
    }
}

fn client_config(sdm: &FakeSdmHandle) -> NestClientConfig {
    NestClientConfig {
        api_url: Url::parse(&sdm.api_url()).unwrap(),
        token_url: Url::parse(&sdm.token_url()).unwrap(),
        project_id: "sim-project".into(),
        client_id: "sim-client-id".into(),
        client_secret: SecretString::from(CLIENT_SECRET.to_owned()),
        refresh_token: SecretString::from(REFRESH_TOKEN.to_owned()),
        request_timeout: Duration::from_secs(10),
    }
}

async fn start() -> (FakeSdmHandle, NestClient) {
    let sdm = sdm::start(fake_config()).await.unwrap();
    let client = NestClient::new(&client_config(&sdm)).unwrap();
    (sdm, client)
}

/// No secret of the fake and no stream token appears in `text`.
fn assert_no_secrets(text: &str, extra: &[&str]) {
    for secret in [CLIENT_SECRET, REFRESH_TOKEN].iter().chain(extra) {
        assert!(!text.contains(secret), "{text:?} reveals a secret");
    }
}

#[tokio::test(start_paused = true)]
async fn lists_devices_with_their_traits() {
    let (_sdm, client) = start().await;
    let devices = client.list_devices().await.unwrap();
    assert_eq!(devices.len(), 4);
    let front = devices.iter().find(|d| d.id == "device-001").unwrap();
    assert_eq!(front.display_name(), "Front Door");
    assert!(front.supports_rtsp());
    let nursery = devices.iter().find(|d| d.id == "device-004").unwrap();
    assert!(!nursery.supports_rtsp());
    assert_eq!(
        nursery.live_stream.as_ref().unwrap().protocols,
        vec![StreamProtocol::WebRtc]
    );
    let one = client.get_device("device-002").await.unwrap();
    assert_eq!(one.display_name(), "Backyard");
}

#[tokio::test(start_paused = true)]
async fn generate_extend_stop_with_single_use_tokens() {
    let (sdm, client) = start().await;
    let sent = Instant::now();
    let stream = client.generate_rtsp_stream("device-001").await.unwrap();
    // Five minutes from the server's Date, minus its one-second resolution, from when we sent.
    assert_eq!(stream.expires.instant, sent + Duration::from_secs(299));
    let url = stream.url.expose().clone();
    let auth: String = url
        .query_pairs()
        .find(|(k, _)| k == "auth")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let path_token = url.path().rsplit('/').next().unwrap().to_owned();
    assert!(sdm.check_rtsp_access(&path_token, &auth).is_ok());
    let shown = format!("{stream:?} {}", stream.url);
    assert_no_secrets(
        &shown,
        &[&auth, &path_token, stream.extension_token.expose()],
    );

    tokio::time::advance(Duration::from_secs(200)).await;
    let extension = client
        .extend_rtsp_stream("device-001", &stream.extension_token)
        .await
        .unwrap();
    assert!(extension.expires.instant > stream.expires.instant);
    let new_url = stream.url.with_stream_token(&extension.stream_token);
    let new_auth = extension.stream_token.expose_secret().to_owned();
    assert!(sdm.check_rtsp_access(&path_token, &new_auth).is_ok());
    assert!(new_url.expose().as_str().ends_with(&new_auth));

    // The first extension token is spent.
    let stale = client
        .extend_rtsp_stream("device-001", &stream.extension_token)
        .await
        .unwrap_err();
    assert!(
        matches!(stale.kind, NestErrorKind::FailedPrecondition { .. }),
        "{stale}"
    );
    assert_no_secrets(&stale.to_string(), &[stream.extension_token.expose()]);

    client
        .stop_rtsp_stream("device-001", &extension.extension_token)
        .await
        .unwrap();
    let stats = sdm.stats();
    assert_eq!((stats.generates, stats.extends, stats.stops), (1, 1, 1));
    assert_eq!(stats.expired_while_wanted, 0);
}

#[tokio::test(start_paused = true)]
async fn token_is_cached_shared_and_refreshed_before_expiry() {
    let (sdm, client) = start().await;
    // Ten callers at once share one refresh.
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.list_devices().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap_or_else(|e| {
            // devices.list allows 5 per minute: the rest are rate limited, not unauthorized.
            assert!(matches!(e.kind, NestErrorKind::RateLimited { .. }), "{e}");
            Vec::new()
        });
    }
    assert_eq!(client.token_refreshes(), 1);
    assert_eq!(sdm.stats().token_requests, 1);

    // Just under an hour later the token is renewed before Google would refuse it.
    tokio::time::advance(Duration::from_secs(3600 - 30)).await;
    client.generate_rtsp_stream("device-001").await.unwrap();
    assert_eq!(client.token_refreshes(), 2);
    assert_eq!(sdm.stats().unauthenticated, 0);
}

#[tokio::test(start_paused = true)]
async fn a_refused_access_token_is_dropped_and_renewed() {
    let (sdm, client) = start().await;
    client.authenticate().await.unwrap();
    sdm.inject(Fault::ExpireAccessTokens, 1);
    let e = client.generate_rtsp_stream("device-001").await.unwrap_err();
    assert!(
        matches!(e.kind, NestErrorKind::Unauthenticated { .. }),
        "{e}"
    );
    client.generate_rtsp_stream("device-001").await.unwrap();
    assert_eq!(client.token_refreshes(), 2);
}

#[tokio::test(start_paused = true)]
async fn invalid_grant_is_fatal_and_not_retried() {
    let (sdm, client) = start().await;
    sdm.inject(Fault::RevokeRefreshToken, 1);
    let e = client.list_devices().await.unwrap_err();
    assert_eq!(e.kind, NestErrorKind::ReauthorizationRequired);
    assert!(e.is_fatal());
    assert!(e.to_string().contains("CAMRELAY_NEST_REFRESH_TOKEN"), "{e}");
    let requests = sdm.stats().token_requests;
    let again = client.list_devices().await.unwrap_err();
    assert_eq!(again.kind, NestErrorKind::ReauthorizationRequired);
    assert_eq!(
        sdm.stats().token_requests,
        requests,
        "no second token request"
    );
    assert_no_secrets(&format!("{e} {e:?}"), &[]);
}

#[tokio::test(start_paused = true)]
async fn wrong_client_secret_names_the_variables_to_check() {
    let sdm = sdm::start(fake_config()).await.unwrap();
    let mut config = client_config(&sdm);
    config.client_secret = SecretString::from("wrong-secret-0123456789".to_owned());
    let client = NestClient::new(&config).unwrap();
    let e = client.list_devices().await.unwrap_err();
    assert!(matches!(e.kind, NestErrorKind::TokenEndpoint { .. }), "{e}");
    assert!(e.to_string().contains("CAMRELAY_NEST_CLIENT_SECRET"));
    assert_no_secrets(&format!("{e} {e:?}"), &["wrong-secret-0123456789"]);
}

#[tokio::test(start_paused = true)]
async fn rate_limits_name_their_bucket() {
    let (_sdm, client) = start().await;
    // Five generates on one device fill its per-command budget.
    for _ in 0..5 {
        client.generate_rtsp_stream("device-001").await.unwrap();
    }
    let e = client.generate_rtsp_stream("device-001").await.unwrap_err();
    assert_eq!(
        rate_limited_bucket(&e),
        Some(RateLimitBucket::DeviceCommand {
            command: "GenerateRtspStream".into()
        })
    );
    // Five more on other devices fill the project budget of ten.
    for device in [
        "device-002",
        "device-002",
        "device-003",
        "device-003",
        "device-003",
    ] {
        client.generate_rtsp_stream(device).await.unwrap();
    }
    let e = client.generate_rtsp_stream("device-002").await.unwrap_err();
    assert_eq!(rate_limited_bucket(&e), Some(RateLimitBucket::Project));
    tokio::time::advance(Duration::from_secs(61)).await;
    client.generate_rtsp_stream("device-002").await.unwrap();
}

fn rate_limited_bucket(e: &NestError) -> Option<RateLimitBucket> {
    match &e.kind {
        NestErrorKind::RateLimited { bucket, .. } => Some(bucket.clone()),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn server_errors_and_garbage_are_typed() {
    let (sdm, client) = start().await;
    sdm.inject(Fault::Status(503), 1);
    let e = client.generate_rtsp_stream("device-001").await.unwrap_err();
    assert!(
        matches!(
            e.kind,
            NestErrorKind::Unavailable {
                status: Some(503),
                not_processed: true,
                ..
            }
        ),
        "{e}"
    );
    sdm.inject(Fault::Status(500), 1);
    let e = client.generate_rtsp_stream("device-001").await.unwrap_err();
    assert!(
        matches!(
            e.kind,
            NestErrorKind::Unavailable {
                status: Some(500),
                not_processed: false,
                ..
            }
        ),
        "{e}"
    );
    sdm.inject(Fault::MalformedJson, 1);
    let e = client.generate_rtsp_stream("device-001").await.unwrap_err();
    assert!(
        matches!(e.kind, NestErrorKind::MalformedResponse { .. }),
        "{e}"
    );
    sdm.inject(Fault::WrongShape, 1);
    let e = client.generate_rtsp_stream("device-001").await.unwrap_err();
    assert!(
        matches!(e.kind, NestErrorKind::MalformedResponse { .. }),
        "{e}"
    );
    let e = client
        .generate_rtsp_stream("no-such-device")
        .await
        .unwrap_err();
    assert!(matches!(e.kind, NestErrorKind::NotFound { .. }), "{e}");
    let e = client.generate_rtsp_stream("../etc").await.unwrap_err();
    assert!(
        matches!(e.kind, NestErrorKind::InvalidArgument { .. }),
        "{e}"
    );
    let e = client.generate_rtsp_stream("device-004").await.unwrap_err();
    assert!(
        matches!(e.kind, NestErrorKind::FailedPrecondition { .. }),
        "a WebRTC-only camera has no RTSP stream: {e}"
    );
}

#[tokio::test(start_paused = true)]
async fn slow_answers_time_out_and_dead_servers_are_unavailable() {
    let sdm = sdm::start(FakeSdmConfig {
        latency_min: Duration::from_secs(20),
        latency_max: Duration::from_secs(20),
        ..fake_config()
    })
    .await
    .unwrap();
    let client = NestClient::new(&client_config(&sdm)).unwrap();
    let e = client.list_devices().await.unwrap_err();
    assert_eq!(e.kind, NestErrorKind::Timeout, "{e}");

    let config = client_config(&sdm);
    sdm.shutdown_and_wait().await;
    let client = NestClient::new(&config).unwrap();
    let e = client.list_devices().await.unwrap_err();
    assert!(
        matches!(
            e.kind,
            NestErrorKind::Unavailable {
                not_processed: true,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn webrtc_commands_round_trip() {
    let (_sdm, client) = start().await;
    let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
    let session = client
        .generate_webrtc_stream("device-004", offer)
        .await
        .unwrap();
    assert!(session.answer_sdp.starts_with("v=0"));
    let extended = client
        .extend_webrtc_stream("device-004", &session.media_session_id)
        .await
        .unwrap();
    assert_eq!(extended.media_session_id, session.media_session_id);
    client
        .stop_webrtc_stream("device-004", &session.media_session_id)
        .await
        .unwrap();
    let e = client
        .generate_webrtc_stream("device-004", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n")
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, NestErrorKind::InvalidArgument { .. }),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_is_shared_and_the_old_token_serves_while_valid() {
    let (sdm, client) = start().await;
    client.authenticate().await.unwrap();
    // Within the last minute of the token's hour: a refresh is due, and the endpoint is down.
    tokio::time::advance(Duration::from_secs(3600 - 30)).await;
    sdm.inject(Fault::TokenUnavailable, 100);
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.authenticate().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().expect("the old token still works");
    }
    assert_eq!(sdm.stats().token_requests, 2, "one refresh attempt, shared");
    // After the old token died, callers share the failure too.
    tokio::time::advance(Duration::from_secs(60)).await;
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.authenticate().await })
        })
        .collect();
    for call in calls {
        let e = call.await.unwrap().unwrap_err();
        assert!(matches!(e.kind, NestErrorKind::Unavailable { .. }), "{e}");
    }
    assert_eq!(sdm.stats().token_requests, 3);
}
