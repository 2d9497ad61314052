//! HTTP plumbing shared by the clients: the HTTP client they build, a capped body read, and a
//! reqwest error described without its URL (a WHIP URL can carry a stream key in its path, a
//! Nest URL a project id).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::sanitize::{MAX_REMOTE_TEXT, remote_text};

/// An HTTP client whose requests (connecting included) time out after `timeout`, sending
/// camrelay's user agent.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("camrelay/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// It was larger than the limit.
    TooLarge,
    /// The connection failed while reading.
    Network(reqwest::Error),
}

/// Reads a body, refusing more than `limit` bytes.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Network)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A reqwest error and its causes, without the URL.
pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_connect() {
        "connection failed".to_owned()
    } else if e.is_request() {
        "request failed".to_owned()
    } else if e.is_body() || e.is_decode() {
        "reading the response failed".to_owned()
    } else {
        "HTTP error".to_owned()
    };
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&remote_text(&s.to_string()));
        source = s.source();
    }
    text
}

/// Remote text fit for an error message: every occurrence of `secret` masked first (a short
/// secret is not token-shaped, so [`remote_text`] alone would keep it), then sanitized and
/// truncated.
pub(crate) fn scrubbed(text: &str, secret: Option<&SecretString>) -> String {
    remote_text(&without_secret(text, secret))
}

/// An identifier from a response (a track name, a mid), kept matchable: `secret` masked, control
/// characters dropped and truncated to [`MAX_REMOTE_TEXT`] characters, but token-shaped runs kept
/// (track names are often UUIDs).
pub(crate) fn scrubbed_id(text: &str, secret: Option<&SecretString>) -> String {
    without_secret(text, secret)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REMOTE_TEXT)
        .collect()
}

fn without_secret(text: &str, secret: Option<&SecretString>) -> String {
    match secret.map(ExposeSecret::expose_secret) {
        Some(s) if !s.is_empty() => text.replace(s, "[redacted]"),
        _ => text.to_owned(),
    }
}

/// A serde_json error without the input it quotes (it may hold a secret): category and position.
pub(crate) fn describe_json(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbed_masks_a_short_secret_and_truncates() {
        let secret = SecretString::from("hunter2".to_owned());
        let text = format!("bad token hunter2{}", " x".repeat(400));
        let out = scrubbed(&text, Some(&secret));
        assert!(!out.contains("hunter2"));
        assert!(out.starts_with("bad token [redacted]"));
        assert!(out.chars().count() <= MAX_REMOTE_TEXT + 1);
    }
}
