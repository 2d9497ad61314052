//! The axum routes: parse the request, ask [`Inner`](super::state::Inner), render
//! the answer, and add simulated latency and the virtual `Date` header.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::header::{
    AUTHORIZATION, AsHeaderName, CACHE_CONTROL, CONTENT_TYPE, DATE, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::FakeSdm;
use super::state::{ApiError, CommandRequest, OAuthError, Reply, TokenRequest};

/// Largest request body accepted; larger ones get 413. An SDP offer is a few KB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Path prefix of the simulator's own endpoints, which skip simulated latency.
const SIM_PREFIX: &str = "/sim/";

/// The fake's routes, to serve or to mount elsewhere:
///
/// - `POST /token` — OAuth refresh-token grant;
/// - `GET /v1/enterprises/{project}/devices` — devices.list;
/// - `GET /v1/enterprises/{project}/devices/{device}` — devices.get;
/// - `POST /v1/enterprises/{project}/devices/{device}:executeCommand`;
/// - `GET /sim/stats` — [`FakeSdmStats`](super::FakeSdmStats) as JSON, no auth,
///   no latency.
///
/// Anything else gets a 404 (or 405) Google error envelope.
pub fn router(sdm: FakeSdm) -> Router {
    Router::new()
        .route("/token", post(token))
        .route("/v1/enterprises/{project}/devices", get(list_devices))
        .route(
            "/v1/enterprises/{project}/devices/{device}",
            get(get_device).post(execute_command),
        )
        .route("/sim/stats", get(stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn_with_state(sdm.clone(), latency_and_date))
        .with_state(sdm)
}

/// Sleeps a random part of the request's latency before it is processed and the
/// rest after, then stamps `Date` from the virtual wall clock (hyper only adds
/// a real-time one when it is missing).
async fn latency_and_date(State(sdm): State<FakeSdm>, request: Request, next: Next) -> Response {
    let simulated = !request.uri().path().starts_with(SIM_PREFIX);
    let (before, after) = if simulated {
        sdm.with_inner(|inner, _| inner.draw_latency())
    } else {
        Default::default()
    };
    if !before.is_zero() {
        tokio::time::sleep(before).await;
    }
    let mut response = next.run(request).await;
    if !after.is_zero() {
        tokio::time::sleep(after).await;
    }
    let date = httpdate::fmt_http_date(sdm.wall_clock());
    if let Ok(value) = HeaderValue::from_str(&date) {
        response.headers_mut().insert(DATE, value);
    }
    response
}

async fn token(
    State(sdm): State<FakeSdm>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = match parse_token_request(&headers, body) {
        Ok(request) => sdm.with_inner(|inner, now| inner.refresh(now, request)),
        Err(error) => {
            // Still a token request, just one refused before it reached the grant.
            sdm.with_inner(|inner, now| inner.refresh_refused(now));
            Err(error)
        }
    };
    let no_store = [(CACHE_CONTROL, "no-store")];
    match result {
        Ok(body) => (StatusCode::OK, no_store, Json(body)).into_response(),
        Err(error) => (status(error.code), no_store, Json(error.body())).into_response(),
    }
}

async fn list_devices(
    State(sdm): State<FakeSdm>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(project)) = path else {
        return not_found().await;
    };
    let authorization = header_str(&headers, AUTHORIZATION);
    let result = sdm.with_inner(|inner, now| inner.list_devices(now, authorization, &project));
    Reply::from(result).into_response()
}

async fn get_device(
    State(sdm): State<FakeSdm>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path((project, device))) = path else {
        return not_found().await;
    };
    let authorization = header_str(&headers, AUTHORIZATION);
    let result =
        sdm.with_inner(|inner, now| inner.get_device(now, authorization, &project, &device));
    Reply::from(result).into_response()
}

async fn execute_command(
    State(sdm): State<FakeSdm>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // axum cannot match a literal `:executeCommand` after a parameter, so the
    // route captures `{device}:executeCommand` as one segment.
    let Ok(Path((project, segment))) = path else {
        return not_found().await;
    };
    let Some((device, "executeCommand")) = segment.rsplit_once(':') else {
        return not_found().await;
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_rejection(&rejection),
    };
    let request = CommandRequest {
        authorization: header_str(&headers, AUTHORIZATION),
        project: &project,
        device,
        json_content_type: media_type_is(&headers, "application/json"),
        body: &body,
    };
    sdm.with_inner(|inner, now| inner.execute_command(now, request))
        .into_response()
}

async fn stats(State(sdm): State<FakeSdm>) -> Response {
    Json(sdm.stats()).into_response()
}

async fn not_found() -> Response {
    ApiError::for_code(404, "Method not found.").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(405, "UNIMPLEMENTED", "Method not allowed.").into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (status(self.code), Json(self.body())).into_response();
        if self.code == 401 {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
                ),
            );
        }
        response
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Self::Ok(value) => (StatusCode::OK, Json(value)).into_response(),
            Self::Error(error) => error.into_response(),
            Self::Malformed(body) => (
                StatusCode::OK,
                [(CONTENT_TYPE, "application/json; charset=UTF-8")],
                body,
            )
                .into_response(),
        }
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn body_rejection(rejection: &BytesRejection) -> Response {
    let code = rejection.status().as_u16();
    ApiError::for_code(code, rejection.body_text()).into_response()
}

fn header_str<K: AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Whether `Content-Type`'s media type (parameters ignored) is `expected`.
fn media_type_is(headers: &HeaderMap, expected: &str) -> bool {
    header_str(headers, CONTENT_TYPE)
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(expected))
}

/// Parses the token endpoint's form body and Basic credentials (RFC 6749 §2.3.1,
/// §4.1.3, §6). A repeated parameter is an `invalid_request` (§3.1).
fn parse_token_request(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<TokenRequest, OAuthError> {
    let body = body.map_err(|rejection| OAuthError {
        code: rejection.status().as_u16(),
        error: "invalid_request",
        description: rejection.body_text(),
    })?;
    if !media_type_is(headers, "application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "Content-Type must be application/x-www-form-urlencoded.",
        ));
    }
    let mut request = TokenRequest {
        basic: basic_credentials(headers)?,
        ..TokenRequest::default()
    };
    for (key, value) in form_urlencoded::parse(&body) {
        let slot = match key.as_ref() {
            "grant_type" => &mut request.grant_type,
            "refresh_token" => &mut request.refresh_token,
            "client_id" => &mut request.client_id,
            "client_secret" => &mut request.client_secret,
            "scope" => &mut request.scope,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "Parameter {key} is repeated."
            )));
        }
    }
    Ok(request)
}

/// Client id and secret from `Authorization: Basic base64(urlenc(id):urlenc(secret))`.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = header_str(headers, AUTHORIZATION) else {
        return Ok(None);
    };
    let invalid = || OAuthError {
        code: 401,
        error: "invalid_client",
        description: "Malformed Basic authorization header.".to_owned(),
    };
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(invalid());
    };
    if !scheme.eq_ignore_ascii_case("Basic") {
        return Err(invalid());
    }
    let decoded = BASE64.decode(encoded.trim()).map_err(|_| invalid())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
    Ok(Some((form_decode(id), form_decode(secret))))
}

/// Undoes `application/x-www-form-urlencoded` encoding of one value.
fn form_decode(value: &str) -> String {
    let plus_decoded = value.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8_lossy()
        .into_owned()
}
