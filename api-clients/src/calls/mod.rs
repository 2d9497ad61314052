//! Cloudflare Calls (Realtime SFU) HTTP API client.
//!
//! Endpoints, bodies and error codes follow research/cloudflare-calls.md and Cloudflare's
//! OpenAPI schema (research/calls-openapi.yaml). The base URL is configurable: Cloudflare's
//! [`CLOUDFLARE_BASE_URL`], or the relay's embedded SFU, which serves this same API with these
//! same body types. Every request sends `Authorization: Bearer <app secret>`; the secret never
//! appears in `Debug`, `Display` or an error.
//!
//! Each method sends exactly one request and never retries or sleeps; the error says whether
//! trying again can help ([`CallsError::is_retryable`]), and the caller decides.
//!
//! A session has one offer/answer state machine: overlapping mutations fail with HTTP 406, and
//! an SFU offer must be answered (`renegotiate`) before the next mutation
//! (research/cloudflare-calls.md §2.3, §4, §7). So mutations go through a [`CallsSession`],
//! whose lock is shared by every handle the client hands out for the same session id: two
//! `tracks/new` on one session run one after the other. Hold a [`SessionGuard`] across a pull
//! and its `renegotiate`.

mod error;
mod model;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex as AsyncMutex, MutexGuard as AsyncMutexGuard};
use url::Url;

pub use error::{
    CallsError, CallsErrorKind, MAX_NAMED_FAILURES, Operation, Reason, TRANSIENT_ERROR_CODES,
    TrackFailure,
};
pub use model::{
    CLOSE_TRACK_ERROR, CloseTrackObject, CloseTrackResult, CloseTracksRequest, CloseTracksResponse,
    ErrorResponse, MediaKind, NewSessionQuery, NewSessionResponse, RenegotiateRequest,
    RenegotiateResponse, SdpType, SessionDescription, SessionState, SessionTrackState, Simulcast,
    SimulcastFallback, TrackLocation, TrackObject, TrackResult, TrackStatus, TracksRequest,
    TracksResponse,
};

use crate::net::{ReadError, describe_json, describe_reqwest, read_capped, scrubbed, scrubbed_id};

/// Cloudflare's API base URL; session paths hang off `{base}/apps/{appId}/`.
pub const CLOUDFLARE_BASE_URL: &str = "https://rtc.live.cloudflare.com/v1";

/// Largest API response read. An SFU answer for a full 64-track call is tens of kilobytes; a
/// larger body is refused as malformed rather than buffered.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// What the client needs to know.
#[derive(Debug, Clone)]
pub struct CallsClientConfig {
    /// API base, e.g. [`CLOUDFLARE_BASE_URL`] or `http://127.0.0.1:8080/sfu/v1`.
    pub base_url: Url,
    /// The SFU app's id.
    pub app_id: String,
    /// The SFU app's secret (`SecretString` prints as redacted).
    pub app_secret: SecretString,
    /// Limit per HTTP request, connect to last byte.
    pub request_timeout: Duration,
}

/// The Calls client. Cheap to clone; clones share the connection pool and the session locks.
#[derive(Clone)]
pub struct CallsClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    app_id: String,
    secret: SecretString,
    request_timeout: Duration,
    /// One mutation lock per session id, alive while a handle holds it.
    locks: std::sync::Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl fmt::Debug for CallsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallsClient")
            .field("base_url", &self.inner.base_url.as_str())
            .field("app_id", &self.inner.app_id)
            .field("app_secret", &"[redacted]")
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

impl CallsClient {
    /// A client with its own HTTP client. Fails on a base URL that cannot take a path, an empty
    /// app id, or if TLS cannot be set up.
    pub fn new(config: &CallsClientConfig) -> Result<Self, CallsError> {
        let http = crate::net::http_client(config.request_timeout).map_err(|e| {
            invalid(
                Operation::NewSession,
                None,
                format!("cannot build the HTTP client: {}", describe_reqwest(&e)),
            )
        })?;
        Self::with_http_client(config, http)
    }

    /// A client sharing `http` (its pool and TLS setup). `config.request_timeout` still bounds
    /// every request.
    pub fn with_http_client(
        config: &CallsClientConfig,
        http: reqwest::Client,
    ) -> Result<Self, CallsError> {
        let op = Operation::NewSession;
        if config.base_url.cannot_be_a_base()
            || !matches!(config.base_url.scheme(), "http" | "https")
        {
            return Err(invalid(op, None, "base URL is not an http(s) URL".into()));
        }
        check_segment(op, None, "app id", &config.app_id)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url: config.base_url.clone(),
                app_id: config.app_id.clone(),
                secret: config.app_secret.clone(),
                request_timeout: config.request_timeout,
                locks: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// `POST sessions/new`: a new session (no SDP; it can expire unused).
    pub async fn new_session(&self, query: &NewSessionQuery) -> Result<CallsSession, CallsError> {
        let mut pairs = Vec::new();
        if query.third_party {
            pairs.push(("thirdparty", "true"));
        }
        if let Some(label) = &query.correlation_id {
            pairs.push(("correlationId", label.as_str()));
        }
        let created: NewSessionResponse = self
            .call(
                Operation::NewSession,
                None,
                Method::POST,
                &["new"],
                &pairs,
                None::<&()>,
            )
            .await?;
        if created.session_id.is_empty() {
            return Err(CallsError::new(
                Operation::NewSession,
                None,
                CallsErrorKind::Malformed {
                    detail: "empty sessionId".into(),
                },
            ));
        }
        Ok(self.session(created.session_id))
    }

    /// A handle on an existing session. Every handle for the same id from this client (or its
    /// clones) shares one mutation lock. The id is checked when a call is made.
    pub fn session(&self, session_id: impl Into<String>) -> CallsSession {
        let id = session_id.into();
        let mut locks = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let lock = match locks.get(&id).and_then(Weak::upgrade) {
            Some(lock) => lock,
            None => {
                locks.retain(|_, lock| lock.strong_count() > 0);
                let lock = Arc::new(AsyncMutex::new(()));
                locks.insert(id.clone(), Arc::downgrade(&lock));
                lock
            }
        };
        CallsSession {
            client: self.clone(),
            id,
            lock,
        }
    }

    /// `{base}/apps/{appId}/sessions/{session}/…`, each segment percent-encoded.
    fn url(&self, op: Operation, session: Option<&str>, tail: &[&str]) -> Result<Url, CallsError> {
        let mut url = self.inner.base_url.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| invalid(op, session, "base URL cannot take a path".into()))?;
            segments
                .pop_if_empty()
                .extend(["apps", self.inner.app_id.as_str(), "sessions"]);
            if let Some(id) = session {
                check_segment(op, session, "session id", id)?;
                segments.push(id);
            }
            segments.extend(tail);
        }
        Ok(url)
    }

    /// One request: JSON in, JSON out, every error mapped.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        op: Operation,
        session: Option<&str>,
        method: Method,
        tail: &[&str],
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<R, CallsError> {
        let mut url = self.url(op, session, tail)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .inner
            .http
            .request(method, url)
            .timeout(self.inner.request_timeout)
            .bearer_auth(self.inner.secret.expose_secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        let error = |kind| CallsError::new(op, session, kind);
        let response = request.send().await.map_err(|e| error(transport(&e)))?;
        let status = response.status();
        let bytes = match read_capped(response, MAX_RESPONSE_BYTES).await {
            Ok(bytes) => bytes,
            // An error status is worth more than its oversized body.
            Err(ReadError::TooLarge) if !status.is_success() => Vec::new(),
            Err(ReadError::TooLarge) => {
                return Err(error(CallsErrorKind::Malformed {
                    detail: format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
                }));
            }
            Err(ReadError::Network(e)) => return Err(error(transport(&e))),
        };
        if !status.is_success() {
            return Err(error(classify(status.as_u16(), self.reason(&bytes))));
        }
        // `renegotiate` may answer with an empty body instead of `{}`.
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        if let Ok(ErrorResponse {
            error_code: Some(_),
            ..
        }) = serde_json::from_slice(bytes)
        {
            return Err(error(classify(status.as_u16(), self.reason(bytes))));
        }
        serde_json::from_slice(bytes).map_err(|e| {
            error(CallsErrorKind::Malformed {
                detail: describe_json(&e),
            })
        })
    }

    /// What an error body says: the API's fields, or the start of the text, secret masked.
    fn reason(&self, body: &[u8]) -> Reason {
        let secret = Some(&self.inner.secret);
        match serde_json::from_slice::<ErrorResponse>(body) {
            Ok(e) if e.error_code.is_some() || e.error_description.is_some() => Reason {
                code: e.error_code.map(|c| scrubbed_id(&c, secret)),
                text: scrubbed(e.error_description.as_deref().unwrap_or(""), secret),
            },
            _ => Reason {
                code: None,
                text: scrubbed(&String::from_utf8_lossy(body), secret),
            },
        }
    }

    /// A track from a response, fit to keep in an error.
    fn scrub_track(&self, mut track: TrackObject) -> TrackObject {
        let secret = Some(&self.inner.secret);
        for field in [&mut track.mid, &mut track.session_id, &mut track.track_name] {
            if let Some(value) = field.as_mut() {
                *value = scrubbed_id(value, secret);
            }
        }
        if let Some(rid) = track
            .simulcast
            .as_mut()
            .and_then(|s| s.preferred_rid.as_mut())
        {
            *rid = scrubbed_id(rid, secret);
        }
        track
    }

    fn track_failure(&self, track: TrackObject, code: String, description: &str) -> TrackFailure {
        let secret = Some(&self.inner.secret);
        TrackFailure {
            track: self.scrub_track(track),
            code: scrubbed_id(&code, secret),
            description: scrubbed(description, secret),
        }
    }
}

/// A handle on one session. Mutations take the session's lock, shared with every other handle
/// for the same id from the same client; [`Self::state`] does not.
#[derive(Debug, Clone)]
pub struct CallsSession {
    client: CallsClient,
    id: String,
    lock: Arc<AsyncMutex<()>>,
}

impl CallsSession {
    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for the session's mutation lock, to run several calls with nothing in between
    /// (a pull and its `renegotiate`).
    pub async fn lock(&self) -> SessionGuard<'_> {
        SessionGuard {
            session: self,
            _held: self.lock.lock().await,
        }
    }

    /// [`SessionGuard::new_tracks`] under the lock.
    pub async fn new_tracks(&self, request: &TracksRequest) -> Result<TracksResponse, CallsError> {
        self.lock().await.new_tracks(request).await
    }

    /// [`SessionGuard::renegotiate`] under the lock.
    pub async fn renegotiate(&self, answer_sdp: &str) -> Result<RenegotiateResponse, CallsError> {
        self.lock().await.renegotiate(answer_sdp).await
    }

    /// [`SessionGuard::close_tracks`] under the lock.
    pub async fn close_tracks(
        &self,
        request: &CloseTracksRequest,
    ) -> Result<CloseTracksResponse, CallsError> {
        self.lock().await.close_tracks(request).await
    }

    /// `GET sessions/{id}`: the session's tracks and their status (no SDP, no proof of media).
    pub async fn state(&self) -> Result<SessionState, CallsError> {
        self.client
            .call(
                Operation::GetSession,
                Some(&self.id),
                Method::GET,
                &[],
                &[],
                None::<&()>,
            )
            .await
    }
}

/// The session's mutation lock, held: no other mutation on the session runs until it drops.
#[derive(Debug)]
pub struct SessionGuard<'a> {
    session: &'a CallsSession,
    _held: AsyncMutexGuard<'a, ()>,
}

impl SessionGuard<'_> {
    /// `POST tracks/new`: publish ([`TracksRequest::push`]) or pull ([`TracksRequest::pull`]).
    /// A response in which any track failed is [`CallsErrorKind::TrackErrors`], which keeps the
    /// tracks that were allocated. When `requires_immediate_renegotiation` is set, answer the
    /// returned offer with [`Self::renegotiate`] before dropping the guard.
    pub async fn new_tracks(&self, request: &TracksRequest) -> Result<TracksResponse, CallsError> {
        let op = Operation::NewTracks;
        let session = self.session;
        let client = &session.client;
        let response: TracksResponse = client
            .call(
                op,
                Some(&session.id),
                Method::POST,
                &["tracks", "new"],
                &[],
                Some(request),
            )
            .await?;
        if response.tracks.iter().all(|t| t.error_code.is_none()) {
            return Ok(response);
        }
        let (mut failed, mut succeeded) = (Vec::new(), Vec::new());
        for t in response.tracks {
            match t.error_code {
                Some(code) => failed.push(client.track_failure(
                    t.track,
                    code,
                    t.error_description.as_deref().unwrap_or(""),
                )),
                None => succeeded.push(client.scrub_track(t.track)),
            }
        }
        Err(CallsError::new(
            op,
            Some(&session.id),
            CallsErrorKind::TrackErrors { failed, succeeded },
        ))
    }

    /// `PUT renegotiate` with the endpoint's answer to the SFU's offer.
    pub async fn renegotiate(&self, answer_sdp: &str) -> Result<RenegotiateResponse, CallsError> {
        let body = RenegotiateRequest {
            session_description: SessionDescription::answer(answer_sdp),
        };
        self.session
            .client
            .call(
                Operation::Renegotiate,
                Some(&self.session.id),
                Method::PUT,
                &["renegotiate"],
                &[],
                Some(&body),
            )
            .await
    }

    /// `PUT tracks/close`. Items with [`CLOSE_TRACK_ERROR`] were already gone and count as
    /// closed ([`CloseTrackResult::already_closed`]); any other item error makes the call a
    /// [`CallsErrorKind::TrackErrors`] whose `succeeded` are the closed mids.
    pub async fn close_tracks(
        &self,
        request: &CloseTracksRequest,
    ) -> Result<CloseTracksResponse, CallsError> {
        let op = Operation::CloseTracks;
        let session = self.session;
        let client = &session.client;
        let response: CloseTracksResponse = client
            .call(
                op,
                Some(&session.id),
                Method::PUT,
                &["tracks", "close"],
                &[],
                Some(request),
            )
            .await?;
        let failed = |t: &CloseTrackResult| t.error_code.is_some() && !t.already_closed();
        if !response.tracks.iter().any(failed) {
            return Ok(response);
        }
        let (mut failures, mut closed) = (Vec::new(), Vec::new());
        for t in &response.tracks {
            let track = TrackObject {
                mid: Some(t.mid.clone()),
                ..TrackObject::default()
            };
            match &t.error_code {
                Some(code) if failed(t) => failures.push(client.track_failure(
                    track,
                    code.clone(),
                    t.error_description.as_deref().unwrap_or(""),
                )),
                _ => closed.push(client.scrub_track(track)),
            }
        }
        Err(CallsError::new(
            op,
            Some(&session.id),
            CallsErrorKind::TrackErrors {
                failed: failures,
                succeeded: closed,
            },
        ))
    }
}

/// The kind for an error answer: a transient error code first, then the HTTP status.
fn classify(status: u16, reason: Reason) -> CallsErrorKind {
    let transient = reason
        .code
        .as_deref()
        .is_some_and(|c| TRANSIENT_ERROR_CODES.contains(&c));
    match status {
        _ if transient => CallsErrorKind::Transient { status, reason },
        401 | 403 => CallsErrorKind::Unauthorized { status, reason },
        404 => CallsErrorKind::NotFound(reason),
        406 => CallsErrorKind::Conflict(reason),
        410 => CallsErrorKind::SessionGone(reason),
        425 => CallsErrorKind::NotReady(reason),
        429 | 500..=599 => CallsErrorKind::Transient { status, reason },
        _ => CallsErrorKind::Rejected { status, reason },
    }
}

fn transport(e: &reqwest::Error) -> CallsErrorKind {
    if e.is_timeout() {
        CallsErrorKind::Timeout
    } else {
        CallsErrorKind::Transport {
            connect: e.is_connect(),
            message: describe_reqwest(e),
        }
    }
}

fn invalid(op: Operation, session: Option<&str>, message: String) -> CallsError {
    CallsError::new(op, session, CallsErrorKind::InvalidArgument { message })
}

/// An id that goes into the path must be one segment: `url` drops `.` and `..` silently.
fn check_segment(
    op: Operation,
    session: Option<&str>,
    what: &str,
    id: &str,
) -> Result<(), CallsError> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(invalid(op, session, format!("{what} {id:?} is not a name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: &str) -> Reason {
        Reason {
            code: Some(code.into()),
            text: String::new(),
        }
    }

    #[test]
    fn classify_reads_transient_codes_before_statuses() {
        assert!(matches!(
            classify(200, reason("internal_error")),
            CallsErrorKind::Transient { status: 200, .. }
        ));
        assert!(matches!(
            classify(410, reason("session_error")),
            CallsErrorKind::SessionGone(_)
        ));
        assert!(matches!(
            classify(425, reason("session_error")),
            CallsErrorKind::NotReady(_)
        ));
        assert!(matches!(
            classify(429, Reason::default()),
            CallsErrorKind::Transient { status: 429, .. }
        ));
        assert!(matches!(
            classify(400, reason("decoding_error")),
            CallsErrorKind::Rejected { status: 400, .. }
        ));
    }

    #[test]
    fn urls_encode_ids_and_refuse_dot_segments() {
        let config = CallsClientConfig {
            base_url: Url::parse("http://127.0.0.1:8080/sfu/v1/").unwrap(),
            app_id: "app".into(),
            app_secret: SecretString::from("s".to_owned()),
            request_timeout: Duration::from_secs(1),
        };
        let client = CallsClient::new(&config).unwrap();
        let url = client
            .url(Operation::NewTracks, Some("a/b?c"), &["tracks", "new"])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/sfu/v1/apps/app/sessions/a%2Fb%3Fc/tracks/new"
        );
        let url = client.url(Operation::NewSession, None, &["new"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/sfu/v1/apps/app/sessions/new"
        );
        assert!(client.url(Operation::GetSession, Some(".."), &[]).is_err());
        let bad = CallsClientConfig {
            app_id: String::new(),
            ..config
        };
        assert!(CallsClient::new(&bad).is_err());
    }
}
