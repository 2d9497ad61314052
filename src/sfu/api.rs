//! The embedded SFU's HTTP API: the Calls API's paths and JSON (research/calls-openapi.yaml)
//! under `/sfu/v1`, served from the relay's HTTP listener. Implemented: `sessions/new`,
//! `tracks/new` (push with an offer, its tracks listed or found by `autoDiscover`; pull with an
//! SFU offer), `renegotiate`, `tracks/close` (forced, or negotiated with the peer's offer) and
//! the session state. Errors carry the Calls error codes with the statuses Cloudflare
//! documents.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use camrelay_api_clients::calls::{
    CloseTrackResult, CloseTracksRequest, CloseTracksResponse, ErrorResponse, NewSessionQuery,
    NewSessionResponse, RenegotiateRequest, RenegotiateResponse, SdpType, SessionDescription,
    SessionState, SessionTrackState, TrackLocation, TrackObject, TrackResult, TrackStatus,
    TracksRequest, TracksResponse,
};
use secrecy::{ExposeSecret, SecretString};

use super::embedded::EmbeddedSfu;
use super::engine::{EngineError, SdpKind, TracksOutcome};

/// The path the embedded Calls API is served under (its base URL is `http://host:port` plus
/// this).
pub const BASE_PATH: &str = "/sfu/v1";

/// Tracks per `tracks/new` or `tracks/close` call (Cloudflare's documented limit).
pub const MAX_TRACKS_PER_CALL: usize = 64;

/// The embedded SFU as the HTTP API sees it.
#[derive(Debug, Clone)]
pub struct SfuApi {
    /// The running SFU.
    pub sfu: EmbeddedSfu,
    /// The app id in the paths.
    pub app_id: String,
    /// The bearer secret.
    pub secret: Arc<SecretString>,
}

/// The routes, to nest under [`BASE_PATH`].
pub fn router<S: Clone + Send + Sync + 'static>(api: SfuApi) -> Router<S> {
    Router::new()
        .route("/apps/{app_id}/sessions/new", post(new_session))
        .route("/apps/{app_id}/sessions/{session_id}", get(state))
        .route(
            "/apps/{app_id}/sessions/{session_id}/tracks/new",
            post(new_tracks),
        )
        .route(
            "/apps/{app_id}/sessions/{session_id}/renegotiate",
            put(renegotiate),
        )
        .route(
            "/apps/{app_id}/sessions/{session_id}/tracks/close",
            put(close_tracks),
        )
        .with_state(api)
}

/// An error answer: status and the Calls error body.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: ErrorResponse,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

fn error(status: StatusCode, code: &str, description: impl Into<String>) -> ApiError {
    ApiError {
        status,
        body: ErrorResponse {
            error_code: Some(code.to_owned()),
            error_description: Some(description.into()),
        },
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let (status, code) = match e {
            EngineError::SessionGone(_) => (StatusCode::GONE, "session_error"),
            EngineError::UnknownSession(_) => (StatusCode::NOT_FOUND, "not_found"),
            EngineError::InvalidDescription(_) => {
                (StatusCode::BAD_REQUEST, "invalid_session_description")
            }
            EngineError::Conflict(_) => (StatusCode::NOT_ACCEPTABLE, "invalid_request"),
            EngineError::Stopped => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable_error",
            ),
            EngineError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_params"),
        };
        error(status, code, e.to_string())
    }
}

/// A 400 `invalid_params` answer.
fn bad(message: &str) -> ApiError {
    error(StatusCode::BAD_REQUEST, "invalid_params", message)
}

/// A per-track error as the Calls API's `errorCode` and `errorDescription` fields.
fn error_fields(error: Option<(&str, String)>) -> (Option<String>, Option<String>) {
    match error {
        Some((code, description)) => (Some(code.to_owned()), Some(description)),
        None => (None, None),
    }
}

/// Checks the app id and the bearer secret (compared in constant time).
fn authorize(api: &SfuApi, app_id: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = api.secret.expose_secret().as_bytes();
    let given = token.as_bytes();
    let same = given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        ));
    }
    if app_id != api.app_id {
        return Err(error(StatusCode::NOT_FOUND, "not_found", "no such app"));
    }
    Ok(())
}

/// The `sessions/new` query, if well-formed.
fn session_query(query: &str) -> Option<NewSessionQuery> {
    let mut parsed = NewSessionQuery::default();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "thirdparty" => parsed.third_party = value.parse().ok()?,
            "correlationId" => parsed.correlation_id = Some(value.into_owned()),
            _ => {}
        }
    }
    Some(parsed)
}

/// Parses a JSON body ourselves, so that a bad one gets the Calls error shape.
/// No field of the Calls API is nullable: a `null` is a malformed request, not an absent field.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let invalid = |message: String| error(StatusCode::BAD_REQUEST, "decoding_error", message);
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("the request body is not valid JSON: {e}")))?;
    if has_null(&value) {
        return Err(invalid(
            "null is not a valid value for any field".to_owned(),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| invalid(format!("the request body is not valid: {e}")))
}

fn has_null(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::Array(items) => items.iter().any(has_null),
        serde_json::Value::Object(fields) => fields.values().any(has_null),
        _ => false,
    }
}

async fn new_session(
    State(api): State<SfuApi>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&api, &app_id, &headers)?;
    // `thirdparty` and `correlationId` change nothing here, but must be well-formed.
    if query.as_deref().is_some_and(|q| session_query(q).is_none()) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "decoding_error",
            "bad query string",
        ));
    }
    let session_id = api.sfu.new_session().await?;
    Ok((
        StatusCode::CREATED,
        Json(NewSessionResponse {
            session_id,
            session_description: None,
        }),
    )
        .into_response())
}

async fn state(
    State(api): State<SfuApi>,
    Path((app_id, session_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<SessionState>, ApiError> {
    authorize(&api, &app_id, &headers)?;
    let tracks = api.sfu.state(session_id).await?;
    Ok(Json(SessionState {
        tracks: tracks
            .into_iter()
            .map(|t| SessionTrackState {
                track: TrackObject {
                    location: Some(if t.local {
                        TrackLocation::Local
                    } else {
                        TrackLocation::Remote
                    }),
                    mid: Some(t.mid),
                    session_id: t.session_id,
                    track_name: Some(t.track_name),
                    ..TrackObject::default()
                },
                status: Some(match t.status {
                    "active" => TrackStatus::Active,
                    "inactive" => TrackStatus::Inactive,
                    _ => TrackStatus::Initializing,
                }),
            })
            .collect(),
    }))
}

fn tracks_response(outcome: TracksOutcome) -> Json<TracksResponse> {
    Json(TracksResponse {
        requires_immediate_renegotiation: outcome.requires_immediate_renegotiation,
        tracks: outcome
            .tracks
            .into_iter()
            .map(|t| {
                let (error_code, error_description) = error_fields(t.error);
                TrackResult {
                    track: TrackObject {
                        mid: Some(t.mid),
                        session_id: t.session_id,
                        track_name: Some(t.track_name),
                        ..TrackObject::default()
                    },
                    error_code,
                    error_description,
                }
            })
            .collect(),
        session_description: outcome.description.map(|(kind, sdp)| match kind {
            SdpKind::Offer => SessionDescription::offer(sdp),
            SdpKind::Answer => SessionDescription::answer(sdp),
        }),
        error_code: None,
        error_description: None,
    })
}

async fn new_tracks(
    State(api): State<SfuApi>,
    Path((app_id, session_id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Json<TracksResponse>, ApiError> {
    authorize(&api, &app_id, &headers)?;
    let request: TracksRequest = body(&bytes)?;
    let auto_discover = request.auto_discover == Some(true);
    if request.tracks.is_empty() && !auto_discover {
        return Err(bad("tracks must not be empty unless autoDiscover is true"));
    }
    if request.tracks.len() > MAX_TRACKS_PER_CALL {
        return Err(bad("at most 64 tracks per call"));
    }
    let all = |l| request.tracks.iter().all(|t| t.location == Some(l));
    if auto_discover && !all(TrackLocation::Local) {
        return Err(bad(
            "autoDiscover publishes the tracks of the peer's offer: list only local tracks",
        ));
    }
    let mut pairs = Vec::with_capacity(request.tracks.len());
    let outcome = if all(TrackLocation::Local) {
        let Some(SessionDescription {
            sdp_type: SdpType::Offer,
            sdp,
        }) = request.session_description
        else {
            return Err(bad(
                "pushing local tracks needs the peer's offer (SFU-generated offers are not supported)",
            ));
        };
        for t in &request.tracks {
            let (Some(mid), Some(name)) = (&t.mid, &t.track_name) else {
                return Err(bad("each local track needs mid and trackName"));
            };
            pairs.push((mid.clone(), name.clone()));
        }
        api.sfu.push(session_id, sdp, pairs, auto_discover).await?
    } else if all(TrackLocation::Remote) {
        if request.session_description.is_some() {
            return Err(bad(
                "pulling with the peer's offer is not supported; send no sessionDescription",
            ));
        }
        for t in &request.tracks {
            let (Some(from), Some(name)) = (&t.session_id, &t.track_name) else {
                return Err(bad("each remote track needs sessionId and trackName"));
            };
            pairs.push((from.clone(), name.clone()));
        }
        api.sfu.pull(session_id, pairs).await?
    } else {
        return Err(bad(
            "tracks must all be local or all be remote, each with its location",
        ));
    };
    Ok(tracks_response(outcome))
}

async fn renegotiate(
    State(api): State<SfuApi>,
    Path((app_id, session_id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Json<RenegotiateResponse>, ApiError> {
    authorize(&api, &app_id, &headers)?;
    let request: RenegotiateRequest = body(&bytes)?;
    if request.session_description.sdp_type != SdpType::Answer {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_session_description",
            "renegotiate takes the peer's answer to the SFU's offer",
        ));
    }
    api.sfu
        .answer(session_id, request.session_description.sdp)
        .await?;
    Ok(Json(RenegotiateResponse::default()))
}

async fn close_tracks(
    State(api): State<SfuApi>,
    Path((app_id, session_id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Json<CloseTracksResponse>, ApiError> {
    authorize(&api, &app_id, &headers)?;
    let request: CloseTracksRequest = body(&bytes)?;
    if request.tracks.is_empty() || request.tracks.len() > MAX_TRACKS_PER_CALL {
        return Err(bad("between 1 and 64 tracks per call"));
    }
    if request.tracks.iter().any(|t| t.mid.is_empty()) {
        return Err(bad("a mid must not be empty"));
    }
    // Forced: no SDP exchange (any description is ignored). Negotiated: the peer's offer
    // with the transceivers stopped, answered below.
    let offer = match (request.force, request.session_description) {
        (true, _) => None,
        (
            false,
            Some(SessionDescription {
                sdp_type: SdpType::Offer,
                sdp,
            }),
        ) => Some(sdp),
        (false, _) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_session_description",
                "a close with force: false needs the peer's offer with the transceivers stopped \
                 (or force: true)",
            ));
        }
    };
    let mids = request.tracks.into_iter().map(|t| t.mid).collect();
    let outcome = api.sfu.close(session_id, mids, offer).await?;
    Ok(Json(CloseTracksResponse {
        requires_immediate_renegotiation: false,
        tracks: outcome
            .tracks
            .into_iter()
            .map(|t| {
                let (error_code, error_description) = error_fields(t.error);
                CloseTrackResult {
                    mid: t.mid,
                    error_code,
                    error_description,
                }
            })
            .collect(),
        session_description: outcome
            .description
            .map(|(_, sdp)| SessionDescription::answer(sdp)),
    }))
}
