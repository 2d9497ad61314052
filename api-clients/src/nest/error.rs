//! Errors of the SDM client, with Google's error envelope mapped to kinds the relay acts on.
//!
//! Google answers errors with `{"error": {"code": 429, "message": "...", "status":
//! "RESOURCE_EXHAUSTED"}}` (research/nest-sdm.md §3). The `status` string decides the kind; the
//! HTTP code is the fallback when the body is not an envelope.

use std::fmt;
use std::time::Duration;

/// Which SDM call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// OAuth refresh-token grant.
    RefreshToken,
    /// `devices.list`.
    ListDevices,
    /// `devices.get`.
    GetDevice,
    /// `CameraLiveStream.GenerateRtspStream`.
    GenerateRtspStream,
    /// `CameraLiveStream.ExtendRtspStream`.
    ExtendRtspStream,
    /// `CameraLiveStream.StopRtspStream`.
    StopRtspStream,
    /// `CameraLiveStream.GenerateWebRtcStream`.
    GenerateWebRtcStream,
    /// `CameraLiveStream.ExtendWebRtcStream`.
    ExtendWebRtcStream,
    /// `CameraLiveStream.StopWebRtcStream`.
    StopWebRtcStream,
}

impl Operation {
    /// The name Google uses (the command's short name for commands).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::RefreshToken => "RefreshToken",
            Operation::ListDevices => "ListDevices",
            Operation::GetDevice => "GetDevice",
            Operation::GenerateRtspStream => "GenerateRtspStream",
            Operation::ExtendRtspStream => "ExtendRtspStream",
            Operation::StopRtspStream => "StopRtspStream",
            Operation::GenerateWebRtcStream => "GenerateWebRtcStream",
            Operation::ExtendWebRtcStream => "ExtendWebRtcStream",
            Operation::StopWebRtcStream => "StopWebRtcStream",
        }
    }

    /// The full `executeCommand` name, for commands.
    pub fn command(self) -> Option<&'static str> {
        Some(match self {
            Operation::GenerateRtspStream => {
                "sdm.devices.commands.CameraLiveStream.GenerateRtspStream"
            }
            Operation::ExtendRtspStream => "sdm.devices.commands.CameraLiveStream.ExtendRtspStream",
            Operation::StopRtspStream => "sdm.devices.commands.CameraLiveStream.StopRtspStream",
            Operation::GenerateWebRtcStream => {
                "sdm.devices.commands.CameraLiveStream.GenerateWebRtcStream"
            }
            Operation::ExtendWebRtcStream => {
                "sdm.devices.commands.CameraLiveStream.ExtendWebRtcStream"
            }
            Operation::StopWebRtcStream => "sdm.devices.commands.CameraLiveStream.StopWebRtcStream",
            Operation::RefreshToken | Operation::ListDevices | Operation::GetDevice => return None,
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The budget a 429 named, read from Google's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitBucket {
    /// "Rate limited for the ExecuteDeviceCommand API for the user.": the project + user budget.
    Project,
    /// "Rate limited for the GenerateRtspStream command for the user.": one command on one
    /// device.
    DeviceCommand {
        /// The command's short name as Google wrote it.
        command: String,
    },
    /// A per-device budget (across projects).
    Device,
    /// The message named no bucket we know.
    Unknown,
}

impl RateLimitBucket {
    /// Reads the bucket from Google's 429 message.
    pub fn from_message(message: &str) -> Self {
        if message.contains("ExecuteDeviceCommand API") {
            return RateLimitBucket::Project;
        }
        if let Some(rest) = message.split("for the ").nth(1) {
            let mut words = rest.split_whitespace();
            if let (Some(name), Some("command")) = (words.next(), words.next())
                && name.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return RateLimitBucket::DeviceCommand {
                    command: name.to_owned(),
                };
            }
        }
        if message.to_ascii_lowercase().contains("device") {
            return RateLimitBucket::Device;
        }
        RateLimitBucket::Unknown
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NestErrorKind {
    /// 429 RESOURCE_EXHAUSTED: the named budget is spent.
    RateLimited {
        /// Which budget.
        bucket: RateLimitBucket,
        /// The `Retry-After` header, if Google sent one.
        retry_after: Option<Duration>,
        /// Google's message (sanitized).
        message: String,
    },
    /// 400 FAILED_PRECONDITION: e.g. the camera is offline, or the extension token is stale.
    FailedPrecondition {
        /// Google's message (sanitized).
        message: String,
    },
    /// 400 INVALID_ARGUMENT, or a request the client refused to build.
    InvalidArgument {
        /// Google's message (sanitized), or ours.
        message: String,
    },
    /// 401 UNAUTHENTICATED: the access token was refused (the cached one is dropped).
    Unauthenticated {
        /// Google's message (sanitized).
        message: String,
    },
    /// 403 PERMISSION_DENIED: wrong project, or access revoked for this device.
    PermissionDenied {
        /// Google's message (sanitized).
        message: String,
    },
    /// 404 NOT_FOUND: no such device.
    NotFound {
        /// Google's message (sanitized).
        message: String,
    },
    /// 5xx or a network failure: try again later.
    Unavailable {
        /// HTTP status, if a response arrived.
        status: Option<u16>,
        /// Whether the request certainly never reached the API (connection refused, DNS), or
        /// the API said it did not process it (503).
        not_processed: bool,
        /// What happened (sanitized).
        message: String,
    },
    /// No answer within the request timeout; the API may have processed the request.
    Timeout,
    /// A 2xx response we could not read.
    MalformedResponse {
        /// What was wrong, never quoting the body (it may hold tokens).
        detail: String,
    },
    /// The OAuth refresh token was rejected (`invalid_grant`): an operator must re-authorize.
    ReauthorizationRequired,
    /// The OAuth token endpoint refused us for another reason (e.g. `invalid_client`).
    TokenEndpoint {
        /// The OAuth error code and description (sanitized).
        detail: String,
    },
    /// Any other HTTP status.
    Http {
        /// HTTP status.
        status: u16,
        /// Google's status string and message (sanitized).
        message: String,
    },
}

/// An SDM call failed. Says which call and which device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestError {
    /// The call.
    pub operation: Operation,
    /// The device it was for, if any.
    pub device: Option<String>,
    /// What went wrong.
    pub kind: NestErrorKind,
}

impl NestError {
    pub(crate) fn new(operation: Operation, device: Option<&str>, kind: NestErrorKind) -> Self {
        Self {
            operation,
            device: device.map(str::to_owned),
            kind,
        }
    }

    /// True for errors that no retry can fix without an operator (bad credentials, revoked
    /// refresh token, wrong project).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self.kind,
            NestErrorKind::ReauthorizationRequired
                | NestErrorKind::TokenEndpoint { .. }
                | NestErrorKind::PermissionDenied { .. }
        )
    }
}

impl fmt::Display for NestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.operation)?;
        if let Some(device) = &self.device {
            write!(f, " on device {device}")?;
        }
        f.write_str(": ")?;
        match &self.kind {
            NestErrorKind::RateLimited {
                bucket, message, ..
            } => write!(f, "rate limited ({bucket:?}): {message}"),
            NestErrorKind::FailedPrecondition { message } => {
                write!(f, "failed precondition: {message}")
            }
            NestErrorKind::InvalidArgument { message } => write!(f, "invalid argument: {message}"),
            NestErrorKind::Unauthenticated { message } => {
                write!(f, "access token refused: {message}")
            }
            NestErrorKind::PermissionDenied { message } => {
                write!(
                    f,
                    "permission denied (check CAMRELAY_NEST_PROJECT_ID): {message}"
                )
            }
            NestErrorKind::NotFound { message } => write!(f, "not found: {message}"),
            NestErrorKind::Unavailable {
                status: Some(status),
                message,
                ..
            } => write!(f, "unavailable (HTTP {status}): {message}"),
            NestErrorKind::Unavailable {
                status: None,
                message,
                ..
            } => write!(f, "unavailable: {message}"),
            NestErrorKind::Timeout => f.write_str("no answer within the request timeout"),
            NestErrorKind::MalformedResponse { detail } => {
                write!(f, "malformed response: {detail}")
            }
            NestErrorKind::ReauthorizationRequired => f.write_str(
                "Google rejected the refresh token (invalid_grant): it was revoked, expired (7 \
                 days for an OAuth client in testing mode) or belongs to another client. \
                 Re-authorize through the Partner Connections Manager and set \
                 CAMRELAY_NEST_REFRESH_TOKEN",
            ),
            NestErrorKind::TokenEndpoint { detail } => write!(
                f,
                "the OAuth token endpoint refused the credentials ({detail}); check \
                 CAMRELAY_NEST_CLIENT_ID and CAMRELAY_NEST_CLIENT_SECRET"
            ),
            NestErrorKind::Http { status, message } => write!(f, "HTTP {status}: {message}"),
        }
    }
}

impl std::error::Error for NestError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bucket_from_googles_messages() {
        assert_eq!(
            RateLimitBucket::from_message(
                "Rate limited for the ExecuteDeviceCommand API for the user."
            ),
            RateLimitBucket::Project
        );
        assert_eq!(
            RateLimitBucket::from_message(
                "Rate limited for the GenerateRtspStream command for the user."
            ),
            RateLimitBucket::DeviceCommand {
                command: "GenerateRtspStream".into()
            }
        );
        assert_eq!(
            RateLimitBucket::from_message("Rate limited for the device."),
            RateLimitBucket::Device
        );
        assert_eq!(
            RateLimitBucket::from_message("Quota exceeded."),
            RateLimitBucket::Unknown
        );
    }

    #[test]
    fn display_names_the_call_and_device() {
        let e = NestError::new(
            Operation::ExtendRtspStream,
            Some("dev-1"),
            NestErrorKind::Timeout,
        );
        assert_eq!(
            e.to_string(),
            "ExtendRtspStream on device dev-1: no answer within the request timeout"
        );
        let fatal = NestError::new(
            Operation::RefreshToken,
            None,
            NestErrorKind::ReauthorizationRequired,
        );
        assert!(fatal.is_fatal());
        assert!(fatal.to_string().contains("Partner Connections Manager"));
    }
}
