//! OAuth 2.0 access tokens from a refresh token (RFC 6749 §6), with the `oauth2` crate.
//!
//! Google access tokens live about an hour (`expires_in`). The token is cached and refreshed
//! [`REFRESH_BEFORE_EXPIRY`] before it runs out, so a command never carries a token that dies in
//! flight. The cache sits behind an async mutex held across the refresh: callers that arrive
//! while a refresh runs wait for it and share its result, so a burst of commands costs one token
//! request; a failed refresh is shared the same way for [`FAILED_REFRESH_HOLDOFF`], and the old
//! token is used while it still works. `invalid_grant` means the refresh token itself is dead (revoked, or the 7-day limit of
//! an OAuth client in testing mode): that is remembered, and every later call fails at once with
//! [`NestErrorKind::ReauthorizationRequired`] instead of hammering the token endpoint.
//!
//! `oauth2` 5 pins reqwest 0.12 behind its own feature, so it is used without default features
//! and given a small adapter over our reqwest 0.13 client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RefreshToken, RequestTokenError,
    TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::error::{NestError, NestErrorKind, Operation};
use crate::sanitize::remote_text;

/// Refresh this long before the access token expires. Covers a request that starts just before
/// expiry plus clock error (Home Assistant uses 20 s; a minute costs nothing at one refresh an
/// hour).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

/// Assumed access-token lifetime when the token response has no `expires_in`. Google's tokens
/// last an hour; assuming less only refreshes earlier.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);

/// Longest access-token lifetime believed, whatever `expires_in` says.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// After a failed refresh, how long callers share its error (or keep using a still-valid old
/// token) before the next attempt: a dead token endpoint is asked once per holdoff, not once per
/// command.
pub const FAILED_REFRESH_HOLDOFF: Duration = Duration::from_secs(2);

/// Largest token-endpoint response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

type OAuthClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// What the cache holds.
#[derive(Debug, Default)]
struct State {
    /// The current access token and when it expires.
    token: Option<(SecretString, Instant)>,
    /// The last refresh failure and until when callers get it without a new attempt.
    failure: Option<(NestError, Instant)>,
    /// `invalid_grant` was answered: the refresh token is dead for good.
    revoked: bool,
}

/// Hands out access tokens.
#[derive(Debug)]
pub(crate) struct TokenSource {
    client: OAuthClient,
    refresh_token: RefreshToken,
    http: reqwest::Client,
    state: Mutex<State>,
    refreshes: AtomicU64,
}

impl TokenSource {
    pub(crate) fn new(
        http: reqwest::Client,
        token_url: &Url,
        client_id: &str,
        client_secret: &SecretString,
        refresh_token: &SecretString,
    ) -> Self {
        let client = BasicClient::new(ClientId::new(client_id.to_owned()))
            .set_client_secret(ClientSecret::new(client_secret.expose_secret().to_owned()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(TokenUrl::from_url(token_url.clone()));
        Self {
            client,
            refresh_token: RefreshToken::new(refresh_token.expose_secret().to_owned()),
            http,
            state: Mutex::new(State::default()),
            refreshes: AtomicU64::new(0),
        }
    }

    /// A valid access token, refreshing it if it is missing or about to expire. A failed
    /// refresh is shared: callers within [`FAILED_REFRESH_HOLDOFF`] get the same error (or the
    /// old token while it still works) instead of each trying again.
    pub(crate) async fn access_token(&self) -> Result<SecretString, NestError> {
        let mut state = self.state.lock().await;
        if state.revoked {
            return Err(revoked());
        }
        let now = Instant::now();
        let usable = state
            .token
            .as_ref()
            .filter(|(_, expires)| *expires > now)
            .map(|(token, _)| token.clone());
        if let Some((token, expires)) = &state.token
            && *expires > now + REFRESH_BEFORE_EXPIRY
        {
            return Ok(token.clone());
        }
        if let Some((error, until)) = &state.failure
            && *until > now
        {
            return usable.ok_or_else(|| error.clone());
        }
        match self.refresh().await {
            Ok((token, expires)) => {
                state.token = Some((token.clone(), expires));
                state.failure = None;
                Ok(token)
            }
            Err(e) => {
                if e.kind == NestErrorKind::ReauthorizationRequired {
                    state.revoked = true;
                    state.token = None;
                    return Err(e);
                }
                state.failure = Some((e.clone(), Instant::now() + FAILED_REFRESH_HOLDOFF));
                // The old token still works for a while: use it rather than fail.
                usable.ok_or(e)
            }
        }
    }

    /// Drops `token` from the cache after the API refused it, so the next call refreshes.
    pub(crate) async fn invalidate(&self, refused: &SecretString) {
        let mut state = self.state.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|(token, _)| token.expose_secret() == refused.expose_secret())
        {
            state.token = None;
            state.failure = None;
        }
    }

    /// Token requests made so far.
    pub(crate) fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    async fn refresh(&self) -> Result<(SecretString, Instant), NestError> {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let http = self.http.clone();
        let call = move |request: oauth2::HttpRequest| {
            let http = http.clone();
            async move { send(&http, request).await }
        };
        let response = self
            .client
            .exchange_refresh_token(&self.refresh_token)
            .request_async(&call)
            .await
            .map_err(|e| NestError::new(Operation::RefreshToken, None, token_error(e)))?;
        // A server may say anything; no token is trusted for longer than a day.
        let lifetime = response
            .expires_in()
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
            .min(MAX_TOKEN_LIFETIME);
        let token = SecretString::from(response.access_token().secret().clone());
        Ok((token, started + lifetime))
    }
}

fn revoked() -> NestError {
    NestError::new(
        Operation::RefreshToken,
        None,
        NestErrorKind::ReauthorizationRequired,
    )
}

fn token_error(
    e: RequestTokenError<TransportError, oauth2::basic::BasicErrorResponse>,
) -> NestErrorKind {
    match e {
        RequestTokenError::ServerResponse(response) => match response.error() {
            BasicErrorResponseType::InvalidGrant => NestErrorKind::ReauthorizationRequired,
            other => NestErrorKind::TokenEndpoint {
                detail: match response.error_description() {
                    Some(d) => format!("{}: {}", remote_text(other.as_ref()), remote_text(d)),
                    None => remote_text(other.as_ref()),
                },
            },
        },
        RequestTokenError::Request(TransportError::Timeout) => NestErrorKind::Timeout,
        RequestTokenError::Request(TransportError::Status(status)) => NestErrorKind::Unavailable {
            status: Some(status),
            not_processed: status == 503,
            message: "token endpoint error".to_owned(),
        },
        RequestTokenError::Request(TransportError::Network { connect, message }) => {
            NestErrorKind::Unavailable {
                status: None,
                not_processed: connect,
                message,
            }
        }
        RequestTokenError::Request(TransportError::TooLarge) => NestErrorKind::MalformedResponse {
            detail: "token response too large".to_owned(),
        },
        // The parse error and the raw body may hold the access token: report neither.
        RequestTokenError::Parse(..) => NestErrorKind::MalformedResponse {
            detail: "token response is not a valid OAuth token response".to_owned(),
        },
        RequestTokenError::Other(message) => NestErrorKind::MalformedResponse {
            detail: remote_text(&message),
        },
    }
}

/// Why the HTTP exchange with the token endpoint failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    #[error("timed out")]
    Timeout,
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{message}")]
    Network { connect: bool, message: String },
    #[error("response too large")]
    TooLarge,
}

/// The `oauth2` HTTP client over reqwest 0.13. 5xx and 429 become errors here, because
/// `oauth2` would try to read their bodies as OAuth error responses.
async fn send(
    http: &reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, TransportError> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(network)?;
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(TransportError::Status(status.as_u16()));
    }
    let headers = response.headers().clone();
    let body = crate::net::read_capped(response, MAX_TOKEN_RESPONSE)
        .await
        .map_err(|e| match e {
            crate::net::ReadError::TooLarge => TransportError::TooLarge,
            crate::net::ReadError::Network(e) => network(e),
        })?;
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

fn network(e: reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout
    } else {
        TransportError::Network {
            connect: e.is_connect(),
            message: crate::net::describe_reqwest(&e),
        }
    }
}
