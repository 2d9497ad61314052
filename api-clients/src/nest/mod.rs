//! Google Nest Smart Device Management (SDM) API client.
//!
//! Endpoints, JSON bodies and error shapes follow research/nest-sdm.md, which cites Google's
//! documentation and the clients that use it. One method per call; each sends exactly one request
//! (plus a token refresh when the cached access token is due) and never retries or sleeps: the
//! command queue owns the budget and decides what to resend.
//!
//! Expiry times come back as [`Expiry`], which converts Google's `expiresAt` into this process's
//! monotonic clock using the response's `Date` header, so our wall clock being wrong cannot make
//! a stream expire early.

mod auth;
mod error;
mod model;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_TYPE, DATE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

pub use auth::{
    DEFAULT_TOKEN_LIFETIME, FAILED_REFRESH_HOLDOFF, MAX_TOKEN_LIFETIME, REFRESH_BEFORE_EXPIRY,
};
pub use error::{NestError, NestErrorKind, Operation, RateLimitBucket};
pub use model::{
    Device, Expiry, ExtensionToken, LiveStream, Resolution, RtspExtension, RtspStream,
    StreamProtocol, StreamUrl, WebRtcExtension, WebRtcStream,
};

use crate::net::{ReadError, describe_reqwest, read_capped};
use crate::sanitize::remote_text;
use model::wire;

/// Largest API response read. Device lists of a large home are a few hundred kilobytes.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The `Date` header has one-second resolution; lifetimes computed from it are shortened by
/// this much so the error can only make us early.
pub const DATE_RESOLUTION: Duration = Duration::from_secs(1);

/// What the client needs to know.
#[derive(Debug, Clone)]
pub struct NestClientConfig {
    /// SDM base URL, e.g. `https://smartdevicemanagement.googleapis.com/v1`.
    pub api_url: Url,
    /// OAuth token endpoint.
    pub token_url: Url,
    /// Device Access project id.
    pub project_id: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: SecretString,
    /// OAuth refresh token of the authorized user.
    pub refresh_token: SecretString,
    /// Limit per HTTP request, connect to last byte.
    pub request_timeout: Duration,
}

/// The SDM client. Cheap to clone; clones share the connection pool and the token cache.
#[derive(Debug, Clone)]
pub struct NestClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    api_base: String,
    project_id: String,
    request_timeout: Duration,
    tokens: auth::TokenSource,
}

impl NestClient {
    /// A client for `config`. Fails only if the HTTP client cannot be built (TLS setup).
    pub fn new(config: &NestClientConfig) -> Result<Self, NestError> {
        let http = crate::net::http_client(config.request_timeout).map_err(|e| {
            NestError::new(
                Operation::RefreshToken,
                None,
                NestErrorKind::InvalidArgument {
                    message: format!("cannot build the HTTP client: {}", describe_reqwest(&e)),
                },
            )
        })?;
        let tokens = auth::TokenSource::new(
            http.clone(),
            &config.token_url,
            &config.client_id,
            &config.client_secret,
            &config.refresh_token,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                api_base: config.api_url.as_str().trim_end_matches('/').to_owned(),
                project_id: config.project_id.clone(),
                request_timeout: config.request_timeout,
                tokens,
            }),
        })
    }

    /// Makes sure an access token can be obtained (for readiness checks and start-up).
    pub async fn authenticate(&self) -> Result<(), NestError> {
        self.inner.tokens.access_token().await.map(drop)
    }

    /// Token requests made so far.
    pub fn token_refreshes(&self) -> u64 {
        self.inner.tokens.refreshes()
    }

    /// `devices.list`: every device of the project the user shared.
    pub async fn list_devices(&self) -> Result<Vec<Device>, NestError> {
        let url = format!(
            "{}/enterprises/{}/devices",
            self.inner.api_base, self.inner.project_id
        );
        let (list, _) = self
            .call::<wire::DeviceList>(Operation::ListDevices, None, Method::GET, &url, None, None)
            .await?;
        Ok(list
            .devices
            .into_iter()
            .filter_map(model::device_from_wire)
            .collect())
    }

    /// `devices.get`.
    pub async fn get_device(&self, device: &str) -> Result<Device, NestError> {
        let op = Operation::GetDevice;
        let url = self.device_url(op, device, "")?;
        let (d, _) = self
            .call::<wire::Device>(op, Some(device), Method::GET, &url, None, None)
            .await?;
        model::device_from_wire(d).ok_or_else(|| {
            malformed(
                op,
                Some(device),
                "device resource name has no id".to_owned(),
            )
        })
    }

    /// `GenerateRtspStream`: a new stream URL, valid for about five minutes.
    pub async fn generate_rtsp_stream(&self, device: &str) -> Result<RtspStream, NestError> {
        let op = Operation::GenerateRtspStream;
        let (r, reply) = self
            .command::<_, wire::GenerateRtsp>(op, device, wire::NoParams {})
            .await?;
        let url = Url::parse(&r.stream_urls.rtsp_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "rtsp" | "rtsps") && u.host_str().is_some())
            .ok_or_else(|| malformed(op, Some(device), "rtspUrl is not an rtsp(s) URL".into()))?;
        Ok(RtspStream {
            url: StreamUrl::new(url),
            extension_token: nonempty_token(op, device, r.stream_extension_token)?,
            expires: reply.expiry(op, device, &r.expires_at)?,
        })
    }

    /// `ExtendRtspStream`: new tokens and a new expiry for a live stream. `token` is spent.
    pub async fn extend_rtsp_stream(
        &self,
        device: &str,
        token: &ExtensionToken,
    ) -> Result<RtspExtension, NestError> {
        self.extend_rtsp_stream_by(device, token, None).await
    }

    /// [`Self::extend_rtsp_stream`], giving up at `deadline` (when the stream would be dead):
    /// the request timeout is shortened so that a hung request still leaves time for a retry.
    pub async fn extend_rtsp_stream_by(
        &self,
        device: &str,
        token: &ExtensionToken,
        deadline: Option<Instant>,
    ) -> Result<RtspExtension, NestError> {
        let op = Operation::ExtendRtspStream;
        let params = wire::ExtensionParams {
            stream_extension_token: token.expose(),
        };
        let (r, reply) = self
            .command_by::<_, wire::ExtendRtsp>(op, device, params, deadline)
            .await?;
        if r.stream_token.is_empty() {
            return Err(malformed(op, Some(device), "empty streamToken".into()));
        }
        Ok(RtspExtension {
            stream_token: SecretString::from(r.stream_token),
            extension_token: nonempty_token(op, device, r.stream_extension_token)?,
            expires: reply.expiry(op, device, &r.expires_at)?,
        })
    }

    /// `StopRtspStream`: ends a stream early (optional: an unextended stream expires anyway).
    pub async fn stop_rtsp_stream(
        &self,
        device: &str,
        token: &ExtensionToken,
    ) -> Result<(), NestError> {
        let params = wire::ExtensionParams {
            stream_extension_token: token.expose(),
        };
        self.command::<_, serde_json::Value>(Operation::StopRtspStream, device, params)
            .await
            .map(drop)
    }

    /// `GenerateWebRtcStream`: the camera's answer to `offer_sdp` (audio, video and data
    /// m-lines, in that order, non-trickle).
    pub async fn generate_webrtc_stream(
        &self,
        device: &str,
        offer_sdp: &str,
    ) -> Result<WebRtcStream, NestError> {
        let op = Operation::GenerateWebRtcStream;
        let params = wire::OfferParams { offer_sdp };
        let (r, reply) = self
            .command::<_, wire::GenerateWebRtc>(op, device, params)
            .await?;
        Ok(WebRtcStream {
            answer_sdp: r.answer_sdp,
            media_session_id: r.media_session_id,
            expires: reply.expiry(op, device, &r.expires_at)?,
        })
    }

    /// `ExtendWebRtcStream`.
    pub async fn extend_webrtc_stream(
        &self,
        device: &str,
        media_session_id: &str,
    ) -> Result<WebRtcExtension, NestError> {
        let op = Operation::ExtendWebRtcStream;
        let params = wire::SessionParams { media_session_id };
        let (r, reply) = self
            .command::<_, wire::ExtendWebRtc>(op, device, params)
            .await?;
        Ok(WebRtcExtension {
            media_session_id: r.media_session_id,
            expires: reply.expiry(op, device, &r.expires_at)?,
        })
    }

    /// `StopWebRtcStream`.
    pub async fn stop_webrtc_stream(
        &self,
        device: &str,
        media_session_id: &str,
    ) -> Result<(), NestError> {
        let params = wire::SessionParams { media_session_id };
        self.command::<_, serde_json::Value>(Operation::StopWebRtcStream, device, params)
            .await
            .map(drop)
    }

    fn device_url(&self, op: Operation, device: &str, suffix: &str) -> Result<String, NestError> {
        // Device ids are URL-safe base64 from Google; anything else would change the path.
        if device.is_empty()
            || !device
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(NestError::new(
                op,
                None,
                NestErrorKind::InvalidArgument {
                    message: "device id has characters outside [A-Za-z0-9_-]".to_owned(),
                },
            ));
        }
        Ok(format!(
            "{}/enterprises/{}/devices/{device}{suffix}",
            self.inner.api_base, self.inner.project_id
        ))
    }

    async fn command<P: Serialize, R: DeserializeOwned>(
        &self,
        op: Operation,
        device: &str,
        params: P,
    ) -> Result<(R, Reply), NestError> {
        self.command_by(op, device, params, None).await
    }

    async fn command_by<P: Serialize, R: DeserializeOwned>(
        &self,
        op: Operation,
        device: &str,
        params: P,
        deadline: Option<Instant>,
    ) -> Result<(R, Reply), NestError> {
        let url = self.device_url(op, device, ":executeCommand")?;
        let command = op.command().unwrap_or_default();
        let body = serde_json::to_vec(&wire::Command { command, params }).map_err(|e| {
            NestError::new(
                op,
                Some(device),
                NestErrorKind::InvalidArgument {
                    message: format!("cannot encode the command: {e}"),
                },
            )
        })?;
        let (results, reply) = self
            .call::<wire::Results<R>>(op, Some(device), Method::POST, &url, Some(body), deadline)
            .await?;
        Ok((results.results, reply))
    }

    async fn call<R: DeserializeOwned>(
        &self,
        op: Operation,
        device: Option<&str>,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        deadline: Option<Instant>,
    ) -> Result<(R, Reply), NestError> {
        let token = self.inner.tokens.access_token().await?;
        let sent = Instant::now();
        let timeout = match deadline {
            Some(deadline) if deadline <= sent => {
                return Err(NestError::new(op, device, NestErrorKind::Timeout));
            }
            Some(deadline) => self.inner.request_timeout.min(deadline - sent),
            None => self.inner.request_timeout,
        };
        let mut request = self
            .inner
            .http
            .request(method, url)
            .timeout(timeout)
            .bearer_auth(token.expose_secret());
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport(op, device, &e))?;
        let status = response.status();
        let server_date = response
            .headers()
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = read_capped(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => malformed(
                    op,
                    device,
                    format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
                ),
                ReadError::Network(e) => transport(op, device, &e),
            })?;
        if !status.is_success() {
            if status == StatusCode::UNAUTHORIZED {
                self.inner.tokens.invalidate(&token).await;
            }
            return Err(NestError::new(
                op,
                device,
                error_kind(status, &bytes, retry_after),
            ));
        }
        let value = serde_json::from_slice::<R>(&bytes).map_err(|e| {
            // serde's message can quote values (tokens): keep only its category and position.
            malformed(
                op,
                device,
                format!(
                    "{:?} error at line {} column {}",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            )
        })?;
        Ok((value, Reply { sent, server_date }))
    }
}

/// When a successful request went out, and the server's clock in its answer.
#[derive(Debug, Clone, Copy)]
struct Reply {
    sent: Instant,
    server_date: Option<SystemTime>,
}

impl Reply {
    fn expiry(&self, op: Operation, device: &str, expires_at: &str) -> Result<Expiry, NestError> {
        let at = humantime::parse_rfc3339_weak(expires_at)
            .map_err(|_| malformed(op, Some(device), "expiresAt is not an RFC 3339 time".into()))?;
        let (reference, slack) = match self.server_date {
            Some(date) => (date, DATE_RESOLUTION),
            None => (SystemTime::now(), Duration::ZERO),
        };
        let lifetime = at
            .duration_since(reference)
            .ok()
            .and_then(|l| l.checked_sub(slack))
            .filter(|l| !l.is_zero())
            .ok_or_else(|| {
                malformed(
                    op,
                    Some(device),
                    "expiresAt is not after the response's Date".into(),
                )
            })?;
        Ok(Expiry {
            at,
            instant: self.sent + lifetime,
        })
    }
}

fn nonempty_token(op: Operation, device: &str, token: String) -> Result<ExtensionToken, NestError> {
    if token.is_empty() {
        Err(malformed(
            op,
            Some(device),
            "empty streamExtensionToken".into(),
        ))
    } else {
        Ok(ExtensionToken::new(token))
    }
}

fn malformed(op: Operation, device: Option<&str>, detail: String) -> NestError {
    NestError::new(op, device, NestErrorKind::MalformedResponse { detail })
}

/// Maps a non-2xx answer to a kind: Google's `status` string first, the HTTP code second.
fn error_kind(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> NestErrorKind {
    let envelope = serde_json::from_slice::<wire::ErrorEnvelope>(body).ok();
    let (google_status, message) = match &envelope {
        Some(e) => (e.error.status.as_str(), remote_text(&e.error.message)),
        None => ("", String::new()),
    };
    let code = status.as_u16();
    match (google_status, code) {
        ("RESOURCE_EXHAUSTED", _) | (_, 429) => NestErrorKind::RateLimited {
            bucket: RateLimitBucket::from_message(&message),
            retry_after,
            message,
        },
        ("FAILED_PRECONDITION", _) => NestErrorKind::FailedPrecondition { message },
        ("INVALID_ARGUMENT", _) => NestErrorKind::InvalidArgument { message },
        ("UNAUTHENTICATED", _) | (_, 401) => NestErrorKind::Unauthenticated { message },
        ("PERMISSION_DENIED", _) | (_, 403) => NestErrorKind::PermissionDenied { message },
        ("NOT_FOUND", _) | (_, 404) => NestErrorKind::NotFound { message },
        ("UNAVAILABLE", _) | (_, 503) => NestErrorKind::Unavailable {
            status: Some(code),
            not_processed: true,
            message,
        },
        (_, 500..=599) => NestErrorKind::Unavailable {
            status: Some(code),
            not_processed: false,
            message,
        },
        (_, 400) => NestErrorKind::InvalidArgument { message },
        _ => NestErrorKind::Http {
            status: code,
            message: if google_status.is_empty() {
                message
            } else {
                format!("{google_status}: {message}")
            },
        },
    }
}

fn transport(op: Operation, device: Option<&str>, e: &reqwest::Error) -> NestError {
    let kind = if e.is_timeout() {
        NestErrorKind::Timeout
    } else {
        NestErrorKind::Unavailable {
            status: None,
            not_processed: e.is_connect(),
            message: describe_reqwest(e),
        }
    };
    NestError::new(op, device, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_follow_googles_status_strings() {
        let body = br#"{"error":{"code":429,"message":"Rate limited for the ExecuteDeviceCommand API for the user.","status":"RESOURCE_EXHAUSTED"}}"#;
        match error_kind(
            StatusCode::TOO_MANY_REQUESTS,
            body,
            Some(Duration::from_secs(7)),
        ) {
            NestErrorKind::RateLimited {
                bucket,
                retry_after,
                ..
            } => {
                assert_eq!(bucket, RateLimitBucket::Project);
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
            }
            other => panic!("{other:?}"),
        }
        let body = br#"{"error":{"code":400,"message":"The camera is not available for streaming","status":"FAILED_PRECONDITION"}}"#;
        assert!(matches!(
            error_kind(StatusCode::BAD_REQUEST, body, None),
            NestErrorKind::FailedPrecondition { .. }
        ));
        assert!(matches!(
            error_kind(StatusCode::SERVICE_UNAVAILABLE, b"<html>", None),
            NestErrorKind::Unavailable {
                not_processed: true,
                ..
            }
        ));
        assert!(matches!(
            error_kind(StatusCode::BAD_GATEWAY, b"", None),
            NestErrorKind::Unavailable {
                not_processed: false,
                ..
            }
        ));
        assert!(matches!(
            error_kind(StatusCode::IM_A_TEAPOT, b"{}", None),
            NestErrorKind::Http { status: 418, .. }
        ));
    }

    #[test]
    fn expiry_uses_the_servers_date_not_our_clock() {
        let sent = Instant::now();
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let reply = Reply {
            sent,
            server_date: Some(date),
        };
        let e = reply
            .expiry(
                Operation::GenerateRtspStream,
                "d",
                "1970-01-12T13:51:40.000Z",
            )
            .unwrap();
        // 1970-01-12T13:51:40Z is 1_000_300 s: five minutes after Date, minus Date's resolution.
        assert_eq!(e.instant, sent + Duration::from_secs(299));
        assert!(
            reply
                .expiry(Operation::GenerateRtspStream, "d", "1970-01-12T13:46:40Z")
                .is_err(),
            "an expiry at the response's own Date is no stream"
        );
        assert!(
            reply
                .expiry(Operation::GenerateRtspStream, "d", "tomorrow")
                .is_err()
        );
    }
}
