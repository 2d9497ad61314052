//! WHIP (WebRTC-HTTP Ingestion Protocol, RFC 9725) client: publish a session, end it.
//!
//! RFC 9725 §4.2: the offer is POSTed as `application/sdp`; the endpoint answers `201 Created`
//! with the answer (`application/sdp`), the session's resource in `Location` (resolved against
//! the URL that answered, since it may be relative) and optionally an `ETag` (§4.3.1, for ICE
//! restarts). A `DELETE` on the resource ends the session. The relay gathers its candidates
//! before offering, so trickle ICE and ICE restarts (`PATCH`, §4.3) are not used, and the ICE
//! servers an endpoint may list in `Link` headers (§4.6) are ignored.
//!
//! A WHIP URL can carry a stream key in its path (Cloudflare Stream's does), so no URL appears in
//! an error, and [`WhipSession`]'s `Debug` shows only the resource's host. The bearer token is
//! masked in every message. One request per call, never retried.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, ETAG, LOCATION};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::net::{ReadError, describe_reqwest, read_capped, scrubbed, scrubbed_id};

/// Largest answer read. An SDP answer for audio and video is a few kilobytes; a larger body is
/// refused rather than buffered.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// The placeholder [`expand_url_template`] replaces.
pub const CAMERA_ID_PLACEHOLDER: &str = "{camera_id}";

/// The media type of offers and answers (RFC 9725 §4.2).
const SDP_MEDIA_TYPE: &str = "application/sdp";

/// Which WHIP step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhipOperation {
    /// `POST` of the offer.
    Publish,
    /// `DELETE` of the resource.
    Stop,
    /// [`expand_url_template`].
    ExpandTemplate,
}

impl fmt::Display for WhipOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WhipOperation::Publish => "publish",
            WhipOperation::Stop => "stop",
            WhipOperation::ExpandTemplate => "URL template",
        })
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhipErrorKind {
    /// The endpoint answered with another status than expected (201 to a publish, 2xx to a
    /// stop).
    #[error("the endpoint answered HTTP {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of the body (sanitized, bearer masked).
        message: String,
    },
    /// A 201 without a `Location` header: the session cannot be ended.
    #[error("the 201 answer has no Location header")]
    MissingLocation,
    /// A `Location` header that is not a URL reference.
    #[error("the Location header is not a URL reference")]
    BadLocation,
    /// The answer is not `application/sdp`.
    #[error("the answer is {}, not application/sdp", .content_type.as_deref().unwrap_or("untyped"))]
    ContentType {
        /// The `Content-Type` sent (sanitized), if any.
        content_type: Option<String>,
    },
    /// The answer could not be read as SDP text.
    #[error("malformed answer: {detail}")]
    Malformed {
        /// What was wrong, never quoting the body.
        detail: String,
    },
    /// No answer within the request timeout; the endpoint may have created the session.
    #[error("no answer within the request timeout")]
    Timeout,
    /// The connection failed.
    #[error("transport failed: {message}")]
    Transport {
        /// True when the connection was never made.
        connect: bool,
        /// What happened (no URL, sanitized).
        message: String,
    },
    /// A request or URL the client refused to build.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// Ours; never quotes the URL.
        message: String,
    },
}

/// A WHIP call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WHIP {operation}: {kind}")]
pub struct WhipError {
    /// The step.
    pub operation: WhipOperation,
    /// What went wrong.
    pub kind: WhipErrorKind,
}

impl WhipError {
    fn new(operation: WhipOperation, kind: WhipErrorKind) -> Self {
        Self { operation, kind }
    }

    /// Trying again later may succeed: 5xx, 429, a timeout or a transport failure.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            WhipErrorKind::Status { status, .. } => *status == 429 || *status >= 500,
            WhipErrorKind::Timeout | WhipErrorKind::Transport { .. } => true,
            _ => false,
        }
    }
}

/// A published session.
#[derive(Clone, PartialEq, Eq)]
pub struct WhipSession {
    /// The endpoint's SDP answer.
    pub answer_sdp: String,
    /// The session's resource, absolute: `DELETE` it to end the session.
    pub resource_url: Url,
    /// The `ETag` of the session, if the endpoint sent one.
    pub etag: Option<String>,
}

impl fmt::Debug for WhipSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhipSession")
            .field("answer_sdp_bytes", &self.answer_sdp.len())
            .field("resource_url", &redacted(&self.resource_url))
            .field("etag", &self.etag)
            .finish()
    }
}

/// `scheme://host:port/[redacted]`: the path may hold a stream key.
fn redacted(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/[redacted]", url.scheme()),
        None => format!("{}://{host}/[redacted]", url.scheme()),
    }
}

/// The WHIP client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WhipClient {
    http: reqwest::Client,
    request_timeout: Duration,
}

impl WhipClient {
    /// A client with its own HTTP client. Fails only if TLS cannot be set up.
    pub fn new(request_timeout: Duration) -> Result<Self, WhipError> {
        let http = crate::net::http_client(request_timeout).map_err(|e| {
            WhipError::new(
                WhipOperation::Publish,
                WhipErrorKind::InvalidArgument {
                    message: format!("cannot build the HTTP client: {}", describe_reqwest(&e)),
                },
            )
        })?;
        Ok(Self::with_http_client(http, request_timeout))
    }

    /// A client sharing `http`; `request_timeout` still bounds every request.
    pub fn with_http_client(http: reqwest::Client, request_timeout: Duration) -> Self {
        Self {
            http,
            request_timeout,
        }
    }

    /// POSTs `offer_sdp` to `endpoint` and returns the answer and the session's resource.
    pub async fn publish(
        &self,
        endpoint: &Url,
        offer_sdp: &str,
        bearer: Option<&SecretString>,
    ) -> Result<WhipSession, WhipError> {
        let op = WhipOperation::Publish;
        let error = |kind| WhipError::new(op, kind);
        let request = self
            .request(reqwest::Method::POST, endpoint, bearer)
            .header(CONTENT_TYPE, SDP_MEDIA_TYPE)
            .body(offer_sdp.to_owned());
        let response = request.send().await.map_err(|e| error(transport(&e)))?;
        let status = response.status();
        if status != StatusCode::CREATED {
            return Err(error(status_error(status, response, bearer).await));
        }
        let headers = response.headers();
        let location = headers
            .get(LOCATION)
            .ok_or_else(|| error(WhipErrorKind::MissingLocation))?
            .to_str()
            .ok()
            .and_then(|l| response.url().join(l).ok())
            .ok_or_else(|| error(WhipErrorKind::BadLocation))?;
        let content_type = headers
            .get(CONTENT_TYPE)
            .map(|v| scrubbed_id(&String::from_utf8_lossy(v.as_bytes()), bearer));
        if !content_type.as_deref().is_some_and(is_sdp) {
            return Err(error(WhipErrorKind::ContentType { content_type }));
        }
        let etag = headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let malformed = |detail: String| error(WhipErrorKind::Malformed { detail });
        let body = read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => {
                    malformed(format!("answer larger than {MAX_ANSWER_BYTES} bytes"))
                }
                ReadError::Network(e) => error(transport(&e)),
            })?;
        let answer_sdp =
            String::from_utf8(body).map_err(|_| malformed("answer is not UTF-8".into()))?;
        if answer_sdp.trim().is_empty() {
            return Err(malformed("empty answer".into()));
        }
        Ok(WhipSession {
            answer_sdp,
            resource_url: location,
            etag,
        })
    }

    /// DELETEs the session's resource, ending it (RFC 9725 §4.2).
    pub async fn stop(
        &self,
        resource_url: &Url,
        bearer: Option<&SecretString>,
    ) -> Result<(), WhipError> {
        let error = |kind| WhipError::new(WhipOperation::Stop, kind);
        let response = self
            .request(reqwest::Method::DELETE, resource_url, bearer)
            .send()
            .await
            .map_err(|e| error(transport(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(error(status_error(status, response, bearer).await));
        }
        Ok(())
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: &Url,
        bearer: Option<&SecretString>,
    ) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, url.clone())
            .timeout(self.request_timeout);
        match bearer {
            Some(token) => request.bearer_auth(token.expose_secret()),
            None => request,
        }
    }
}

/// `application/sdp`, with or without parameters, in any case.
fn is_sdp(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(SDP_MEDIA_TYPE))
}

async fn status_error(
    status: StatusCode,
    response: reqwest::Response,
    bearer: Option<&SecretString>,
) -> WhipErrorKind {
    // The body only explains the status; an unreadable one leaves the message empty.
    let body = read_capped(response, MAX_ANSWER_BYTES)
        .await
        .unwrap_or_default();
    WhipErrorKind::Status {
        status: status.as_u16(),
        message: scrubbed(&String::from_utf8_lossy(&body), bearer),
    }
}

fn transport(e: &reqwest::Error) -> WhipErrorKind {
    if e.is_timeout() {
        WhipErrorKind::Timeout
    } else {
        WhipErrorKind::Transport {
            connect: e.is_connect(),
            message: describe_reqwest(e),
        }
    }
}

/// Expands a per-camera WHIP URL: `{camera_id}` in `template` becomes `camera_id`
/// percent-encoded as one path segment (every byte outside RFC 3986 `unreserved` is encoded).
/// A template without the placeholder is an error, as it would send every camera to one
/// endpoint; so are an id that is empty, `.` or `..`, and a result that is not an http(s) URL.
pub fn expand_url_template(template: &str, camera_id: &str) -> Result<Url, WhipError> {
    let invalid = |message: &str| {
        WhipError::new(
            WhipOperation::ExpandTemplate,
            WhipErrorKind::InvalidArgument {
                message: message.to_owned(),
            },
        )
    };
    if !template.contains(CAMERA_ID_PLACEHOLDER) {
        return Err(invalid("the URL template has no {camera_id}"));
    }
    if camera_id.is_empty() || camera_id == "." || camera_id == ".." {
        return Err(invalid("the camera id is not a path segment"));
    }
    let mut segment = String::with_capacity(camera_id.len());
    for byte in camera_id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            segment.push(char::from(byte));
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    let url = Url::parse(&template.replace(CAMERA_ID_PLACEHOLDER, &segment))
        .map_err(|_| invalid("the expanded URL template is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the URL template is not an http(s) URL"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_encodes_the_id_as_one_segment() {
        let url = expand_url_template("https://sfu.example/whip/{camera_id}?x=1", "Front door/2")
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://sfu.example/whip/Front%20door%2F2?x=1"
        );
        let url = expand_url_template("http://h/{camera_id}", "cam-1.a_b~").unwrap();
        assert_eq!(url.path(), "/cam-1.a_b~");
        assert!(expand_url_template("https://sfu.example/whip", "cam").is_err());
        assert!(expand_url_template("https://h/{camera_id}", "..").is_err());
        assert!(expand_url_template("ftp://h/{camera_id}", "cam").is_err());
    }

    #[test]
    fn content_type_essence_is_compared() {
        assert!(is_sdp("application/sdp"));
        assert!(is_sdp("Application/SDP; charset=utf-8"));
        assert!(!is_sdp("application/json"));
    }

    #[test]
    fn debug_hides_the_resource_path() {
        let session = WhipSession {
            answer_sdp: "v=0".into(),
            resource_url: Url::parse("https://h:8443/stream-key-123/webRTC/publish/1").unwrap(),
            etag: None,
        };
        let shown = format!("{session:?}");
        assert!(!shown.contains("stream-key-123"), "{shown}");
        assert!(shown.contains("https://h:8443/[redacted]"));
    }
}
