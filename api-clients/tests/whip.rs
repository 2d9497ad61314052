//! The WHIP client against a small fake endpoint that checks the media type and the bearer token
//! and answers like RFC 9725 §4.2 says (201, relative `Location`, `ETag`). The fake picks
//! failures by the path's camera segment.

// Tests may panic on unexpected values; that is how they fail.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use camrelay_api_clients::whip::{WhipClient, WhipError, WhipErrorKind, expand_url_template};
use secrecy::SecretString;
use url::Url;

/// Shorter than a token-shaped run, so only the client's explicit masking can hide it.
const TOKEN: &str = "whip-key-42";
const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
const ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=answer\r\nt=0 0\r\n";

/// Resources the fake was asked to delete.
type Deleted = Arc<Mutex<Vec<String>>>;

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {TOKEN}").as_str())
}

async fn publish(Path(camera): Path<String>, headers: HeaderMap, body: String) -> Response {
    if !authorized(&headers) {
        // Echo what was sent, as a careless endpoint might.
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nothing");
        let echo = format!("refused {sent}{}", " padding".repeat(10_000));
        return (StatusCode::UNAUTHORIZED, echo).into_response();
    }
    let sdp = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if sdp != Some("application/sdp") || body != OFFER {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let sdp = [(header::CONTENT_TYPE, "application/sdp")];
    match camera.as_str() {
        // Relative to /whip/cam-1: /whip/sessions/7.
        "cam-1" => (
            StatusCode::CREATED,
            sdp,
            [(header::LOCATION, "sessions/7"), (header::ETAG, "\"v1\"")],
            ANSWER,
        )
            .into_response(),
        "no-location" => (StatusCode::CREATED, sdp, ANSWER).into_response(),
        "ok-200" => (
            StatusCode::OK,
            sdp,
            [(header::LOCATION, "sessions/8")],
            ANSWER,
        )
            .into_response(),
        "json" => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            [(header::LOCATION, "sessions/9")],
            "{}",
        )
            .into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response(),
    }
}

async fn stop(
    State(deleted): State<Deleted>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> StatusCode {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED;
    }
    deleted.lock().unwrap().push(id);
    StatusCode::OK
}

/// Starts the fake; returns its base URL and the deletions it saw.
async fn start() -> (String, Deleted, WhipClient) {
    let deleted = Deleted::default();
    let app = Router::new()
        .route("/whip/{camera}", post(publish))
        .route("/whip/sessions/{id}", delete(stop))
        .with_state(deleted.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = WhipClient::new(Duration::from_secs(5)).unwrap();
    (format!("http://{addr}"), deleted, client)
}

fn token() -> SecretString {
    SecretString::from(TOKEN.to_owned())
}

fn endpoint(base: &str, camera: &str) -> Url {
    expand_url_template(&format!("{base}/whip/{{camera_id}}"), camera).unwrap()
}

fn assert_hides(e: &WhipError, token: &str) {
    for shown in [format!("{e}"), format!("{e:?}")] {
        assert!(!shown.contains(token), "{shown} reveals the token");
        assert!(
            shown.len() < 2_000,
            "{} bytes: the body was echoed",
            shown.len()
        );
    }
}

#[tokio::test]
async fn publish_resolves_a_relative_location_and_stop_deletes_it_with_the_bearer() {
    let (base, deleted, client) = start().await;
    let session = client
        .publish(&endpoint(&base, "cam-1"), OFFER, Some(&token()))
        .await
        .unwrap();
    assert_eq!(session.answer_sdp, ANSWER);
    assert_eq!(
        session.resource_url.as_str(),
        format!("{base}/whip/sessions/7")
    );
    assert_eq!(session.etag.as_deref(), Some("\"v1\""));

    // Without the bearer the DELETE is refused; with it the resource is gone.
    let e = client.stop(&session.resource_url, None).await.unwrap_err();
    assert!(
        matches!(e.kind, WhipErrorKind::Status { status: 401, .. }),
        "{e}"
    );
    client
        .stop(&session.resource_url, Some(&token()))
        .await
        .unwrap();
    assert_eq!(*deleted.lock().unwrap(), ["7"]);
}

#[tokio::test]
async fn a_non_201_answer_is_an_error() {
    let (base, _deleted, client) = start().await;
    let e = client
        .publish(&endpoint(&base, "ok-200"), OFFER, Some(&token()))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, WhipErrorKind::Status { status: 200, .. }),
        "{e}"
    );
    let e = client
        .publish(&endpoint(&base, "other"), OFFER, Some(&token()))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, WhipErrorKind::Status { status: 503, .. }),
        "{e}"
    );
    assert!(e.is_retryable());

    // A refusal echoing the bearer sent does not put it into the error.
    let e = client
        .publish(&endpoint(&base, "cam-1"), OFFER, None)
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, WhipErrorKind::Status { status: 401, .. }),
        "{e}"
    );
    let wrong = "stale-key-7";
    let e = client
        .publish(
            &endpoint(&base, "cam-1"),
            OFFER,
            Some(&SecretString::from(wrong.to_owned())),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("refused Bearer [redacted]"), "{e}");
    assert_hides(&e, wrong);
}

#[tokio::test]
async fn a_201_without_location_or_sdp_is_an_error() {
    let (base, _deleted, client) = start().await;
    let e = client
        .publish(&endpoint(&base, "no-location"), OFFER, Some(&token()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, WhipErrorKind::MissingLocation);
    assert_eq!(
        e.to_string(),
        "WHIP publish: the 201 answer has no Location header"
    );
    let e = client
        .publish(&endpoint(&base, "json"), OFFER, Some(&token()))
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        WhipErrorKind::ContentType {
            content_type: Some("application/json".into())
        }
    );
}
