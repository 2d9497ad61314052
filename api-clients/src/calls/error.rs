//! Errors of the Calls client, with the API's error codes and HTTP statuses mapped to kinds the
//! relay acts on (research/cloudflare-calls.md §2.9).
//!
//! Every remote text in an error has passed through [`crate::sanitize::remote_text`] with the app
//! secret masked, so neither the secret nor an unbounded body can reach a log line.

use std::fmt;

use super::model::TrackObject;

/// Error codes the API uses for failures worth trying again (research/cloudflare-calls.md §2.9).
pub const TRANSIENT_ERROR_CODES: [&str; 5] = [
    "retryable_transient_error",
    "temporarily_unavailable_error",
    "transport_unavailable_error",
    "backend_error",
    "internal_error",
];

/// At most this many failed tracks are named in an error's `Display`; the rest are counted. A
/// call carries up to 64 tracks, and a log line should stay readable.
pub const MAX_NAMED_FAILURES: usize = 8;

/// Which Calls call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST sessions/new`.
    NewSession,
    /// `POST sessions/{id}/tracks/new`.
    NewTracks,
    /// `PUT sessions/{id}/renegotiate`.
    Renegotiate,
    /// `PUT sessions/{id}/tracks/close`.
    CloseTracks,
    /// `GET sessions/{id}`.
    GetSession,
}

impl Operation {
    /// The endpoint, as the API docs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::NewSession => "sessions/new",
            Operation::NewTracks => "tracks/new",
            Operation::Renegotiate => "renegotiate",
            Operation::CloseTracks => "tracks/close",
            Operation::GetSession => "get session",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the API said: its `errorCode` (if any) and `errorDescription` or body text (sanitized).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reason {
    /// `errorCode`, e.g. `session_error`.
    pub code: Option<String>,
    /// `errorDescription`, or the start of a body that was not the API's JSON (sanitized).
    pub text: String,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, self.text.is_empty()) {
            (Some(code), true) => f.write_str(code),
            (Some(code), false) => write!(f, "{code}: {}", self.text),
            (None, true) => f.write_str("no detail"),
            (None, false) => f.write_str(&self.text),
        }
    }
}

/// A track the SFU refused inside an HTTP 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFailure {
    /// The track as the response described it (names and mids with the secret masked).
    pub track: TrackObject,
    /// Its `errorCode`, e.g. `not_found_track_error`.
    pub code: String,
    /// Its `errorDescription` (sanitized).
    pub description: String,
}

impl TrackFailure {
    /// The code is one of [`TRANSIENT_ERROR_CODES`].
    pub fn is_transient(&self) -> bool {
        TRANSIENT_ERROR_CODES.contains(&self.code.as_str())
    }
}

impl fmt::Display for TrackFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_track(f, &self.track)?;
        write!(f, ": {}", self.code)?;
        if !self.description.is_empty() {
            write!(f, " ({})", self.description)?;
        }
        Ok(())
    }
}

/// `camera` or `camera (mid 4)`, or `mid 4`, sanitized.
fn write_track(f: &mut fmt::Formatter<'_>, track: &TrackObject) -> fmt::Result {
    let name = track.track_name.as_deref().filter(|n| !n.is_empty());
    let mid = track.mid.as_deref().filter(|m| !m.is_empty());
    match (name, mid) {
        (Some(name), Some(mid)) => write!(f, "track {name:?} (mid {mid:?})"),
        (Some(name), None) => write!(f, "track {name:?}"),
        (None, Some(mid)) => write!(f, "mid {mid:?}"),
        (None, None) => f.write_str("an unnamed track"),
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallsErrorKind {
    /// 401 or 403: the app secret (or app id) was refused.
    #[error("the app secret was refused (HTTP {status}): {reason}")]
    Unauthorized {
        /// HTTP status.
        status: u16,
        /// What the API said.
        reason: Reason,
    },
    /// 404: no such app or session.
    #[error("app or session not found (HTTP 404): {0}")]
    NotFound(Reason),
    /// 410 (`session_error`): the session expired or closed. Retrying cannot revive it; make a
    /// new session and publish again.
    #[error("the session is gone (HTTP 410), a new one is needed: {0}")]
    SessionGone(Reason),
    /// 425 (`session_error`): the session's connection is not set up yet.
    #[error("the session is not ready yet (HTTP 425): {0}")]
    NotReady(Reason),
    /// 406: invalid parameters, or a mutation overlapping another on the same session.
    #[error("conflicting or invalid request (HTTP 406): {0}")]
    Conflict(Reason),
    /// Any other refusal: another 4xx, or an error code in a 2xx answer.
    #[error("refused (HTTP {status}): {reason}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// What the API said.
        reason: Reason,
    },
    /// 5xx, 429, or one of [`TRANSIENT_ERROR_CODES`]: try again later.
    #[error("temporarily failed (HTTP {status}): {reason}")]
    Transient {
        /// HTTP status.
        status: u16,
        /// What the API said.
        reason: Reason,
    },
    /// An HTTP 200 in which some tracks failed. `succeeded` are allocated on the session: close
    /// them (by mid) or use them.
    #[error("{}", TrackErrorsDisplay { failed, succeeded })]
    TrackErrors {
        /// The tracks that failed.
        failed: Vec<TrackFailure>,
        /// The tracks that were allocated in the same call.
        succeeded: Vec<TrackObject>,
    },
    /// No answer within the request timeout; the API may have processed the request.
    #[error("no answer within the request timeout")]
    Timeout,
    /// The connection failed.
    #[error("transport failed: {message}")]
    Transport {
        /// True when the connection was never made, so the API cannot have seen the request.
        connect: bool,
        /// What happened (no URL, sanitized).
        message: String,
    },
    /// A 2xx answer we could not read.
    #[error("malformed response: {detail}")]
    Malformed {
        /// What was wrong, never quoting the body.
        detail: String,
    },
    /// A request the client refused to build (bad id or base URL), or no HTTP client.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// Ours.
        message: String,
    },
}

struct TrackErrorsDisplay<'a> {
    failed: &'a [TrackFailure],
    succeeded: &'a [TrackObject],
}

impl fmt::Display for TrackErrorsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.failed.len() + self.succeeded.len();
        write!(f, "{} of {total} tracks failed: ", self.failed.len())?;
        for (i, failure) in self.failed.iter().take(MAX_NAMED_FAILURES).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        if self.failed.len() > MAX_NAMED_FAILURES {
            write!(f, "; and {} more", self.failed.len() - MAX_NAMED_FAILURES)?;
        }
        if !self.succeeded.is_empty() {
            write!(f, " ({} allocated, to use or close)", self.succeeded.len())?;
        }
        Ok(())
    }
}

/// A Calls call failed. Says which call and which session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Calls {operation}{}: {kind}", SessionLabel(.session.as_deref()))]
pub struct CallsError {
    /// The call.
    pub operation: Operation,
    /// The session it was on, if any.
    pub session: Option<String>,
    /// What went wrong.
    pub kind: CallsErrorKind,
}

struct SessionLabel<'a>(Option<&'a str>);

impl fmt::Display for SessionLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(session) => write!(f, " on session {session}"),
            None => Ok(()),
        }
    }
}

impl CallsError {
    pub(crate) fn new(operation: Operation, session: Option<&str>, kind: CallsErrorKind) -> Self {
        Self {
            operation,
            session: session.map(str::to_owned),
            kind,
        }
    }

    /// Trying the same call again later may succeed: a transient API error, a timeout, a
    /// transport failure, or track failures that are all transient. After a timeout or a
    /// transport failure with `connect: false` the first attempt may have taken effect.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            CallsErrorKind::Transient { .. }
            | CallsErrorKind::Timeout
            | CallsErrorKind::Transport { .. } => true,
            CallsErrorKind::TrackErrors { failed, .. } => {
                failed.iter().all(TrackFailure::is_transient)
            }
            _ => false,
        }
    }

    /// The session is expired or closed: only a new session helps.
    pub fn is_session_gone(&self) -> bool {
        matches!(self.kind, CallsErrorKind::SessionGone(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_call_the_session_and_the_failed_tracks() {
        let failure = TrackFailure {
            track: TrackObject {
                track_name: Some("mic".into()),
                mid: Some(String::new()),
                ..TrackObject::default()
            },
            code: "not_found_track_error".into(),
            description: "Track not found".into(),
        };
        let e = CallsError::new(
            Operation::NewTracks,
            Some("s1"),
            CallsErrorKind::TrackErrors {
                failed: vec![failure; MAX_NAMED_FAILURES + 2],
                succeeded: vec![TrackObject::local("0", "cam")],
            },
        );
        let text = e.to_string();
        assert!(text.starts_with(
            "Calls tracks/new on session s1: 10 of 11 tracks failed: track \"mic\": \
             not_found_track_error (Track not found); "
        ));
        assert!(text.ends_with("; and 2 more (1 allocated, to use or close)"));
        assert!(!e.is_retryable());
        let gone = CallsError::new(
            Operation::GetSession,
            None,
            CallsErrorKind::SessionGone(Reason {
                code: Some("session_error".into()),
                text: String::new(),
            }),
        );
        assert!(gone.is_session_gone());
        assert_eq!(
            gone.to_string(),
            "Calls get session: the session is gone (HTTP 410), a new one is needed: session_error"
        );
    }
}
