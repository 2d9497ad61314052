//! The viewer page and the watch API over HTTP, with optional viewer authentication.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use camrelay_config::ViewerConfig;
use secrecy::ExposeSecret;
use serde::Serialize;

use super::{Beat, Sdp, Viewers, WatchError};

/// The page, with its CSS and JavaScript inline.
pub const PAGE: &str = include_str!("index.html");

/// The realm browsers show when they ask for the viewer password.
pub const REALM: &str = "camrelay";

/// `GET /`.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}

/// An error of the watch API: `{"error": "...", "code": "...", "retry_after_s": n}`.
#[derive(Debug)]
pub struct ApiError(pub WatchError);

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_s: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, retry_after) = match &self.0 {
            WatchError::NoCamera(_) => (StatusCode::NOT_FOUND, "no_camera", None),
            WatchError::NoViewer => (StatusCode::NOT_FOUND, "no_viewer", None),
            WatchError::Unavailable {
                code, retry_after, ..
            } => (
                StatusCode::SERVICE_UNAVAILABLE,
                *code,
                // Whole seconds, rounded up: retrying early only earns another 503.
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)),
            ),
            WatchError::Sfu(_) => (StatusCode::BAD_GATEWAY, "sfu", None),
            WatchError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            WatchError::NoSfu => (StatusCode::NOT_IMPLEMENTED, "no_sfu", None),
        };
        let body = ErrorBody {
            error: self.0.to_string(),
            code,
            retry_after_s: retry_after,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<WatchError> for ApiError {
    fn from(e: WatchError) -> Self {
        Self(e)
    }
}

fn viewers(relay: &crate::app::Relay) -> Result<&Arc<Viewers>, ApiError> {
    relay.viewers.as_ref().ok_or(ApiError(WatchError::NoSfu))
}

/// `POST /api/cameras/{id}/watch`.
pub async fn watch(
    State(relay): State<Arc<crate::app::Relay>>,
    Path(camera): Path<String>,
) -> Result<Response, ApiError> {
    let offer = viewers(&relay)?.watch(&camera).await?;
    Ok(Json(offer).into_response())
}

/// `POST /api/cameras/{id}/watch/{viewer}/answer`.
pub async fn answer(
    State(relay): State<Arc<crate::app::Relay>>,
    Path((camera, viewer)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let answer: Sdp = serde_json::from_slice(&body).map_err(|e| {
        WatchError::BadRequest(format!(
            "the body must be {{\"type\": \"answer\", \"sdp\": \"...\"}} ({e})"
        ))
    })?;
    viewers(&relay)?.answer(&camera, &viewer, &answer).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct BeatBody {
    status: Beat,
}

/// `POST /api/cameras/{id}/watch/{viewer}/heartbeat`.
pub async fn heartbeat(
    State(relay): State<Arc<crate::app::Relay>>,
    Path((camera, viewer)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let status = viewers(&relay)?.heartbeat(&camera, &viewer)?;
    Ok(Json(BeatBody { status }).into_response())
}

/// `DELETE /api/cameras/{id}/watch/{viewer}`: idempotent, so a page may leave twice.
pub async fn leave(
    State(relay): State<Arc<crate::app::Relay>>,
    Path((camera, viewer)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    match viewers(&relay)?.leave(&camera, &viewer) {
        Ok(()) | Err(WatchError::NoViewer) => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(e.into()),
    }
}

/// Which credentials a request must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// The page: only Basic can be asked of a browser navigating to it (a bearer token cannot
    /// ride on a navigation), so a token-only setup serves the page, which holds no data.
    Page,
    /// The API: the token or Basic.
    Api,
}

/// Refuses requests without the configured viewer credentials (401).
pub async fn authenticate(
    State((config, guard)): State<(Arc<ViewerConfig>, Guard)>,
    request: Request,
    next: Next,
) -> Response {
    // Another site's page must not start cameras (spending the Nest budget) through a
    // visitor's browser, with or without the credentials it caches: modern browsers say
    // where a request comes from.
    if guard == Guard::Api
        && request
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        let body = ErrorBody {
            error: "cross-site requests to the viewer API are refused".to_owned(),
            code: "cross_site",
            retry_after_s: None,
        };
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    let needed = match guard {
        Guard::Page => config.basic.is_some(),
        Guard::Api => config.auth_required(),
    };
    if !needed || authorized(&config, request.headers()) {
        return next.run(request).await;
    }
    let challenge = if config.basic.is_some() {
        format!("Basic realm=\"{REALM}\", charset=\"UTF-8\"")
    } else {
        format!("Bearer realm=\"{REALM}\"")
    };
    let body = ErrorBody {
        error: "not authorized: open the page with #token=… or sign in".to_owned(),
        code: "unauthorized",
        retry_after_s: None,
    };
    let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Whether `headers` carry the token or the Basic credentials.
pub fn authorized(config: &ViewerConfig, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return config
            .token
            .as_ref()
            .is_some_and(|t| same(t.expose_secret().as_bytes(), rest.as_bytes()));
    }
    if scheme.eq_ignore_ascii_case("basic")
        && let Some(basic) = &config.basic
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest)
        && let Some(colon) = decoded.iter().position(|&b| b == b':')
    {
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        // Both compared, always: the time taken says nothing about which was wrong.
        let user_ok = same(basic.username.as_bytes(), user);
        let password_ok = same(basic.password.expose_secret().as_bytes(), password);
        return user_ok & password_ok;
    }
    false
}

/// Compares in time independent of where the inputs differ (not of their lengths).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use camrelay_config::ViewerCredentials;
    use secrecy::SecretString;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn tokens_and_basic_credentials_are_checked() {
        let mut config = ViewerConfig::defaults();
        config.token = Some(SecretString::from("t0ken"));
        config.basic = Some(ViewerCredentials {
            username: "family".into(),
            password: SecretString::from("pa:ss"),
        });
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(authorized(&config, &headers("Bearer t0ken")));
        assert!(authorized(&config, &headers("bearer  t0ken ")));
        assert!(!authorized(&config, &headers("Bearer t0ke")));
        assert!(!authorized(&config, &headers("Bearer")));
        assert!(authorized(&config, &headers(&basic("family:pa:ss"))));
        assert!(!authorized(&config, &headers(&basic("family:pa"))));
        assert!(!authorized(&config, &headers(&basic("famil:pa:ss"))));
        assert!(!authorized(&config, &headers("Basic !!!notbase64")));
        assert!(!authorized(&config, &headers(&basic("no colon"))));
        assert!(!authorized(&config, &HeaderMap::new()));
        config.token = None;
        assert!(!authorized(&config, &headers("Bearer t0ken")));
    }
}
