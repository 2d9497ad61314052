//! The Calls client against a small fake of the Calls API that checks the bearer token and the
//! shape of every request, and answers like research/cloudflare-calls.md §2 says Cloudflare does.
//! The fake picks failures by session id (`status-410-session_error`, `partial`, `garbage`, …).

// Tests may panic on unexpected values; that is how they fail.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use camrelay_api_clients::calls::{
    CallsClient, CallsClientConfig, CallsError, CallsErrorKind, CloseTracksRequest,
    NewSessionQuery, NewSessionResponse, SdpType, TrackLocation, TrackObject, TrackStatus,
    TracksRequest,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

const APP_ID: &str = "app-1";
/// Shorter than a token-shaped run, so only the client's explicit masking can hide it.
const SECRET: &str = "s3cr3t-app-key";
/// How long the fake holds a mutation, so that overlapping ones are seen.
const HOLD: Duration = Duration::from_millis(50);
/// Padding that makes echoed bodies far longer than an error may quote.
const PADDING: usize = 10_000;

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
const ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=answer\r\nt=0 0\r\n";

#[derive(Default)]
struct Fake {
    /// Sessions with a mutation in progress.
    busy: Mutex<HashSet<String>>,
    /// Mutations in progress on any session, and the most seen at once.
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// `(session, endpoint)` of every mutation, in the order they started.
    log: Mutex<Vec<(String, &'static str)>>,
    /// The last `sessions/new` query.
    query: Mutex<Option<NewSessionQuery>>,
}

type Shared = Arc<Fake>;

fn api_error(status: u16, code: &str, description: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    (
        status,
        axum::Json(json!({"errorCode": code, "errorDescription": description})),
    )
        .into_response()
}

fn echo_secret() -> String {
    format!("bad token {SECRET}{}", " padding".repeat(PADDING))
}

/// The refusal of a wrong app id or bearer token, as Cloudflare checks them.
fn unauthorized(app: &str, headers: &HeaderMap) -> Option<Response> {
    if app != APP_ID {
        return Some(api_error(404, "not_found", "App not found"));
    }
    let bearer = format!("Bearer {SECRET}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
        return Some(api_error(401, "unauthorized", "Bad bearer token"));
    }
    None
}

/// The answer to a request on `session` that fails before its body is looked at.
fn refusal(app: &str, headers: &HeaderMap, session: &str) -> Option<Response> {
    unauthorized(app, headers).or_else(|| fault(session))
}

/// Failures chosen by session id, the same for every endpoint.
fn fault(session: &str) -> Option<Response> {
    if let Some(rest) = session.strip_prefix("status-") {
        let (status, code) = rest.split_once('-').unwrap();
        return Some(api_error(status.parse().unwrap(), code, "as requested"));
    }
    match session {
        "garbage" => {
            Some((StatusCode::OK, "{\"requiresImmediateRenegotiation\": tru").into_response())
        }
        "echo" => Some(api_error(400, "decoding_error", &echo_secret())),
        "echo-text" => Some((StatusCode::BAD_GATEWAY, echo_secret()).into_response()),
        "top-error" => Some(api_error(
            200,
            "invalid_session_description",
            "Offer expected",
        )),
        "top-transient" => Some(api_error(200, "backend_error", "try later")),
        _ => None,
    }
}

/// Marks a mutation on `session` as running for [`HOLD`]; an overlapping one gets 406, as
/// Cloudflare answers overlapping offer/answer exchanges.
async fn overlap(fake: &Fake, session: &str, endpoint: &'static str) -> Option<Response> {
    if !fake.busy.lock().unwrap().insert(session.to_owned()) {
        let body = json!({"errorDescription": "Overlapping mutation on this session"});
        return Some((StatusCode::NOT_ACCEPTABLE, axum::Json(body)).into_response());
    }
    fake.log
        .lock()
        .unwrap()
        .push((session.to_owned(), endpoint));
    let now = fake.running.fetch_add(1, Ordering::SeqCst) + 1;
    fake.max_running.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(HOLD).await;
    fake.running.fetch_sub(1, Ordering::SeqCst);
    fake.busy.lock().unwrap().remove(session);
    None
}

fn bad_shape(what: &str) -> Response {
    api_error(400, "decoding_error", what)
}

async fn new_session(
    State(fake): State<Shared>,
    Path(app): Path<String>,
    Query(query): Query<NewSessionQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = unauthorized(&app, &headers) {
        return refused;
    }
    *fake.query.lock().unwrap() = Some(query);
    let created = NewSessionResponse {
        session_id: "sess-1".into(),
        session_description: None,
    };
    (StatusCode::CREATED, axum::Json(created)).into_response()
}

async fn new_tracks(
    State(fake): State<Shared>,
    Path((app, session)): Path<(String, String)>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(refused) = refusal(&app, &headers, &session) {
        return refused;
    }
    if let Some(overlap) = overlap(&fake, &session, "tracks/new").await {
        return overlap;
    }
    let tracks = body["tracks"].as_array().cloned().unwrap_or_default();
    if tracks.is_empty() {
        return bad_shape("no tracks");
    }
    let has = |t: &Value, key: &str| t.get(key).is_some_and(|v| v.is_string());
    if session == "partial" {
        return axum::Json(json!({
            "requiresImmediateRenegotiation": false,
            "tracks": [
                {"trackName": "video", "mid": "0"},
                {"trackName": "audio", "mid": "", "errorCode": "not_found_track_error",
                 "errorDescription": format!("Track not found; token {SECRET}")},
            ],
            "sessionDescription": {"type": "answer", "sdp": ANSWER},
        }))
        .into_response();
    }
    match body.get("sessionDescription") {
        // A push: an offer and local tracks with mids.
        Some(offer) => {
            if offer["type"] != "offer" || offer["sdp"].as_str().is_none_or(str::is_empty) {
                return bad_shape("a push needs an offer");
            }
            if !tracks.iter().all(|t| {
                t["location"] == "local"
                    && has(t, "mid")
                    && has(t, "trackName")
                    && t.get("sessionId").is_none()
            }) {
                return bad_shape("push tracks are local, with mid and trackName");
            }
            let allocated: Vec<Value> = tracks
                .iter()
                .map(|t| json!({"trackName": t["trackName"], "mid": t["mid"]}))
                .collect();
            axum::Json(json!({
                "requiresImmediateRenegotiation": false,
                "tracks": allocated,
                "sessionDescription": {"type": "answer", "sdp": ANSWER},
            }))
            .into_response()
        }
        // A pull: no SDP, remote tracks located by (sessionId, trackName); the SFU offers.
        None => {
            if !tracks.iter().all(|t| {
                t["location"] == "remote"
                    && has(t, "sessionId")
                    && has(t, "trackName")
                    && t.get("mid").is_none()
            }) {
                return bad_shape("pull tracks are remote, with sessionId and trackName");
            }
            let allocated: Vec<Value> = tracks
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    json!({"sessionId": t["sessionId"], "trackName": t["trackName"],
                           "mid": i.to_string()})
                })
                .collect();
            axum::Json(json!({
                "requiresImmediateRenegotiation": true,
                "tracks": allocated,
                "sessionDescription": {"type": "offer", "sdp": OFFER},
            }))
            .into_response()
        }
    }
}

async fn renegotiate(
    State(fake): State<Shared>,
    Path((app, session)): Path<(String, String)>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(refused) = refusal(&app, &headers, &session) {
        return refused;
    }
    if let Some(overlap) = overlap(&fake, &session, "renegotiate").await {
        return overlap;
    }
    if body != json!({"sessionDescription": {"type": "answer", "sdp": ANSWER}}) {
        return bad_shape("renegotiate takes exactly the endpoint's answer");
    }
    axum::Json(json!({})).into_response()
}

async fn close_tracks(
    State(fake): State<Shared>,
    Path((app, session)): Path<(String, String)>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(refused) = refusal(&app, &headers, &session) {
        return refused;
    }
    if let Some(overlap) = overlap(&fake, &session, "tracks/close").await {
        return overlap;
    }
    let Some(force) = body["force"].as_bool() else {
        return bad_shape("force is required");
    };
    if !force && body["sessionDescription"]["type"] != "offer" {
        return bad_shape("a negotiated close needs an offer");
    }
    let Some(tracks) = body["tracks"].as_array().filter(|t| !t.is_empty()) else {
        return bad_shape("tracks is required");
    };
    let results: Vec<Value> = tracks
        .iter()
        .map(|t| match t["mid"].as_str().unwrap() {
            "9" => json!({"mid": "9", "errorCode": "close_track_error",
                          "errorDescription": "Track doesn't exist or was already closed"}),
            "bad" => json!({"mid": "bad", "errorCode": "internal_error",
                            "errorDescription": "Backend error"}),
            mid => json!({"mid": mid}),
        })
        .collect();
    let mut response = json!({"requiresImmediateRenegotiation": false, "tracks": results});
    if !force {
        response["sessionDescription"] = json!({"type": "answer", "sdp": ANSWER});
    }
    axum::Json(response).into_response()
}

async fn session_state(
    Path((app, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&app, &headers, &session) {
        return refused;
    }
    axum::Json(json!({
        "tracks": [
            {"location": "local", "mid": "0", "trackName": "video", "status": "active"},
            {"location": "remote", "mid": "1", "sessionId": "pub-1", "trackName": "audio",
             "status": "inactive"},
        ],
        "dataChannels": [],
    }))
    .into_response()
}

/// Starts the fake; returns its `/v1` base URL and state.
async fn start() -> (Url, Shared) {
    let fake = Shared::default();
    let app = Router::new()
        .route("/v1/apps/{app}/sessions/new", post(new_session))
        .route("/v1/apps/{app}/sessions/{session}", get(session_state))
        .route(
            "/v1/apps/{app}/sessions/{session}/tracks/new",
            post(new_tracks),
        )
        .route(
            "/v1/apps/{app}/sessions/{session}/renegotiate",
            put(renegotiate),
        )
        .route(
            "/v1/apps/{app}/sessions/{session}/tracks/close",
            put(close_tracks),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (Url::parse(&format!("http://{addr}/v1")).unwrap(), fake)
}

fn config(base_url: Url) -> CallsClientConfig {
    CallsClientConfig {
        base_url,
        app_id: APP_ID.into(),
        app_secret: SecretString::from(SECRET.to_owned()),
        request_timeout: Duration::from_secs(5),
    }
}

fn push() -> TracksRequest {
    TracksRequest::push(
        OFFER,
        vec![
            TrackObject::local("0", "video"),
            TrackObject::local("1", "audio"),
        ],
    )
}

/// The secret is nowhere in the error's Display or Debug, which stay short.
fn assert_hides_secret(e: &CallsError) {
    for shown in [format!("{e}"), format!("{e:?}")] {
        assert!(!shown.contains(SECRET), "{shown} reveals the secret");
        assert!(
            shown.len() < 2_000,
            "{} bytes: the body was echoed",
            shown.len()
        );
    }
}

#[tokio::test]
async fn every_endpoint_succeeds_with_the_right_shapes() {
    let (base, fake) = start().await;
    let client = CallsClient::new(&config(base)).unwrap();

    let publisher = client
        .new_session(&NewSessionQuery {
            third_party: true,
            correlation_id: Some("camera-1".into()),
        })
        .await
        .unwrap();
    assert_eq!(publisher.id(), "sess-1");
    let query = fake.query.lock().unwrap().clone().unwrap();
    assert!(query.third_party);
    assert_eq!(query.correlation_id.as_deref(), Some("camera-1"));

    let pushed = publisher.new_tracks(&push()).await.unwrap();
    assert!(!pushed.requires_immediate_renegotiation);
    let answer = pushed.session_description.unwrap();
    assert_eq!(
        (answer.sdp_type, answer.sdp.as_str()),
        (SdpType::Answer, ANSWER)
    );
    assert_eq!(pushed.tracks[1].track.mid.as_deref(), Some("1"));

    // A viewer pulls, and answers the SFU's offer before anything else happens on its session.
    let viewer = client.session("viewer-1");
    let guard = viewer.lock().await;
    let pulled = guard
        .new_tracks(&TracksRequest::pull(vec![TrackObject::remote(
            "sess-1", "video",
        )]))
        .await
        .unwrap();
    assert!(pulled.requires_immediate_renegotiation);
    assert_eq!(pulled.session_description.unwrap().sdp_type, SdpType::Offer);
    assert_eq!(pulled.tracks[0].track.session_id.as_deref(), Some("sess-1"));
    guard.renegotiate(ANSWER).await.unwrap();
    drop(guard);

    // Mid 9 is already gone: reported, not an error.
    let closed = viewer
        .close_tracks(&CloseTracksRequest::forced(["0", "9"]))
        .await
        .unwrap();
    assert!(!closed.tracks[0].already_closed());
    assert!(closed.tracks[1].already_closed());
    assert!(closed.session_description.is_none());
    let negotiated = publisher
        .close_tracks(&CloseTracksRequest::negotiated(["1"], OFFER))
        .await
        .unwrap();
    assert_eq!(
        negotiated.session_description.unwrap().sdp_type,
        SdpType::Answer
    );

    let state = viewer.state().await.unwrap();
    assert_eq!(state.tracks.len(), 2);
    let remote = &state.tracks[1];
    assert_eq!(remote.track.location, Some(TrackLocation::Remote));
    assert_eq!(remote.track.session_id.as_deref(), Some("pub-1"));
    assert_eq!(remote.status, Some(TrackStatus::Inactive));
}

#[tokio::test]
async fn per_track_errors_in_a_200_name_the_track_and_keep_the_allocations() {
    let (base, _fake) = start().await;
    let client = CallsClient::new(&config(base)).unwrap();
    let e = client
        .session("partial")
        .new_tracks(&push())
        .await
        .unwrap_err();
    let CallsErrorKind::TrackErrors { failed, succeeded } = &e.kind else {
        panic!("{e}");
    };
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].track.track_name.as_deref(), Some("audio"));
    assert_eq!(failed[0].code, "not_found_track_error");
    assert_eq!(succeeded.len(), 1);
    assert_eq!(succeeded[0].mid.as_deref(), Some("0"));
    let text = e.to_string();
    assert!(text.contains("\"audio\""), "{text}");
    assert!(text.contains("not_found_track_error"), "{text}");
    assert!(text.contains("session partial"), "{text}");
    assert!(!e.is_retryable());
    assert_hides_secret(&e);

    // A close item other than close_track_error fails the call and keeps what did close.
    let e = client
        .session("viewer-2")
        .close_tracks(&CloseTracksRequest::forced(["0", "9", "bad"]))
        .await
        .unwrap_err();
    let CallsErrorKind::TrackErrors { failed, succeeded } = &e.kind else {
        panic!("{e}");
    };
    assert_eq!(failed[0].track.mid.as_deref(), Some("bad"));
    assert_eq!(failed[0].code, "internal_error");
    assert_eq!(succeeded.len(), 2, "closed and already closed");
    assert!(e.is_retryable(), "internal_error is transient");
}

#[tokio::test]
async fn statuses_and_error_codes_map_to_kinds() {
    let (base, _fake) = start().await;
    let client = CallsClient::new(&config(base.clone())).unwrap();
    let kind_of = |session: &'static str| {
        let client = client.clone();
        async move {
            client
                .session(session)
                .new_tracks(&push())
                .await
                .unwrap_err()
        }
    };

    let e = kind_of("status-410-session_error").await;
    assert!(e.is_session_gone() && !e.is_retryable(), "{e}");
    let e = kind_of("status-425-session_error").await;
    assert!(matches!(e.kind, CallsErrorKind::NotReady(_)), "{e}");
    let e = kind_of("status-406-invalid_params").await;
    assert!(matches!(e.kind, CallsErrorKind::Conflict(_)), "{e}");
    let e = kind_of("status-404-not_found").await;
    assert!(matches!(e.kind, CallsErrorKind::NotFound(_)), "{e}");
    let e = kind_of("status-400-decoding_error").await;
    assert!(
        matches!(&e.kind, CallsErrorKind::Rejected { status: 400, reason }
            if reason.code.as_deref() == Some("decoding_error")),
        "{e}"
    );
    for transient in [
        "status-503-temporarily_unavailable_error",
        "status-500-internal_error",
        "status-409-retryable_transient_error",
        "top-transient",
    ] {
        let e = kind_of(transient).await;
        assert!(matches!(e.kind, CallsErrorKind::Transient { .. }), "{e}");
        assert!(e.is_retryable(), "{e}");
    }
    let e = kind_of("top-error").await;
    assert!(
        matches!(&e.kind, CallsErrorKind::Rejected { status: 200, reason }
            if reason.code.as_deref() == Some("invalid_session_description")),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "Calls tracks/new on session top-error: refused (HTTP 200): \
         invalid_session_description: Offer expected"
    );

    // Wrong secret, wrong app.
    let wrong = CallsClient::new(&CallsClientConfig {
        app_secret: SecretString::from("another-secret".to_owned()),
        ..config(base.clone())
    })
    .unwrap();
    let e = wrong
        .new_session(&NewSessionQuery::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, CallsErrorKind::Unauthorized { status: 401, .. }),
        "{e}"
    );
    let other_app = CallsClient::new(&CallsClientConfig {
        app_id: "app-2".into(),
        ..config(base)
    })
    .unwrap();
    let e = other_app.session("s").state().await.unwrap_err();
    assert!(matches!(e.kind, CallsErrorKind::NotFound(_)), "{e}");
}

#[tokio::test]
async fn malformed_json_and_transport_failures_are_typed() {
    let (base, _fake) = start().await;
    let client = CallsClient::new(&config(base)).unwrap();
    let e = client
        .session("garbage")
        .new_tracks(&push())
        .await
        .unwrap_err();
    let CallsErrorKind::Malformed { detail } = &e.kind else {
        panic!("{e}");
    };
    assert!(!detail.contains("tru"), "the body is not quoted: {detail}");

    // Nothing listens on a port just released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let closed = CallsClient::new(&config(
        Url::parse(&format!("http://127.0.0.1:{port}/v1")).unwrap(),
    ))
    .unwrap();
    let e = closed
        .new_session(&NewSessionQuery::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, CallsErrorKind::Transport { connect: true, .. }),
        "{e}"
    );
    assert!(e.is_retryable());
}

#[tokio::test]
async fn an_echoed_secret_stays_out_of_errors_and_debug() {
    let (base, _fake) = start().await;
    let client = CallsClient::new(&config(base)).unwrap();
    let shown = format!("{client:?} {:?}", client.session("s"));
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");

    let json_echo = client
        .session("echo")
        .new_tracks(&push())
        .await
        .unwrap_err();
    assert!(matches!(
        json_echo.kind,
        CallsErrorKind::Rejected { status: 400, .. }
    ));
    assert!(
        json_echo.to_string().contains("bad token [redacted]"),
        "{json_echo}"
    );
    assert_hides_secret(&json_echo);
    let text_echo = client.session("echo-text").state().await.unwrap_err();
    assert!(matches!(
        text_echo.kind,
        CallsErrorKind::Transient { status: 502, .. }
    ));
    assert_hides_secret(&text_echo);
}

#[tokio::test]
async fn mutations_on_one_session_run_one_after_the_other() {
    let (base, fake) = start().await;
    let client = CallsClient::new(&config(base.clone())).unwrap();
    let request = push();

    // Two handles on one session: the second call waits for the first.
    let (a, b) = (client.session("shared"), client.session("shared"));
    let (ra, rb) = tokio::join!(a.new_tracks(&request), b.new_tracks(&request));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 1);

    // Different sessions do overlap, so the fake would have seen it.
    let (x, y) = (client.session("x"), client.session("y"));
    let (rx, ry) = tokio::join!(x.new_tracks(&request), y.new_tracks(&request));
    rx.unwrap();
    ry.unwrap();
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 2);

    // Two separate clients share no lock: the fake refuses the overlap with 406.
    let other = CallsClient::new(&config(base)).unwrap();
    let (c, d) = (client.session("raced"), other.session("raced"));
    let (rc, rd) = tokio::join!(c.new_tracks(&request), d.new_tracks(&request));
    let refused = rc.err().or(rd.err()).unwrap();
    assert!(
        matches!(refused.kind, CallsErrorKind::Conflict(_)),
        "{refused}"
    );

    // A held guard keeps a pull and its renegotiate together.
    let viewer = client.session("viewer");
    let guard = viewer.lock().await;
    let waiting = tokio::spawn({
        let viewer = client.session("viewer");
        async move { viewer.new_tracks(&push()).await }
    });
    tokio::time::sleep(HOLD).await;
    guard
        .new_tracks(&TracksRequest::pull(vec![TrackObject::remote(
            "p", "video",
        )]))
        .await
        .unwrap();
    guard.renegotiate(ANSWER).await.unwrap();
    drop(guard);
    waiting.await.unwrap().unwrap();
    let order: Vec<&str> = fake
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|(session, _)| session == "viewer")
        .map(|(_, endpoint)| *endpoint)
        .collect();
    assert_eq!(order, ["tracks/new", "renegotiate", "tracks/new"]);
}
