//! The fake's state machine: tokens, budgets, streams and counters.
//!
//! Nothing here reads the clock or does I/O: every entry point is told `now`
//! (read under the lock by [`FakeSdm`](super::FakeSdm)) and returns what to
//! answer. The HTTP layer in [`http`](super::http) only parses and renders.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::config::{FakeDevice, FakeSdmConfig, PROTOCOL_RTSP, PROTOCOL_WEB_RTC};
use super::stats::{FakeDeviceStats, FakeSdmStats};
use super::window::{HOUR, MINUTE, RollingWindow};

/// The OAuth scope of the SDM API; the only one the token endpoint grants.
pub(super) const SDM_SCOPE: &str = "https://www.googleapis.com/auth/sdm.service";

const GENERATE_RTSP: &str = "sdm.devices.commands.CameraLiveStream.GenerateRtspStream";
const EXTEND_RTSP: &str = "sdm.devices.commands.CameraLiveStream.ExtendRtspStream";
const STOP_RTSP: &str = "sdm.devices.commands.CameraLiveStream.StopRtspStream";
const GENERATE_WEB_RTC: &str = "sdm.devices.commands.CameraLiveStream.GenerateWebRtcStream";
const EXTEND_WEB_RTC: &str = "sdm.devices.commands.CameraLiveStream.ExtendWebRtcStream";
const STOP_WEB_RTC: &str = "sdm.devices.commands.CameraLiveStream.StopWebRtcStream";
/// Every command the fake knows; only these get a per-command budget.
const KNOWN_COMMANDS: [&str; 6] = [
    GENERATE_RTSP,
    EXTEND_RTSP,
    STOP_RTSP,
    GENERATE_WEB_RTC,
    EXTEND_WEB_RTC,
    STOP_WEB_RTC,
];

/// Confirmed (potmat/homebridge-google-nest-sdm #7, HA #106745).
const PROJECT_LIMIT_MESSAGE: &str = "Rate limited for the ExecuteDeviceCommand API for the user.";
/// Our guess: Google's wording for the device-instance budget is unconfirmed.
const DEVICE_LIMIT_MESSAGE: &str = "Rate limited for the device.";
/// Our guess, by analogy with the ExecuteDeviceCommand message.
const LIST_LIMIT_MESSAGE: &str = "Rate limited for the ListDevices API for the user.";
/// Our guess, by analogy with the ExecuteDeviceCommand message.
const GET_LIMIT_MESSAGE: &str = "Rate limited for the GetDevice API for the user.";
/// Confirmed verbatim (HA and go2rtc logs).
const UNAUTHENTICATED_MESSAGE: &str = "Request had invalid authentication credentials. \
     Expected OAuth 2 access token, login cookie or other valid authentication credential.";
/// Our guess; the real wording for a bad RTSP extension token is unconfirmed.
const BAD_EXTENSION_TOKEN_MESSAGE: &str = "The stream extension token is invalid or has expired.";
/// Observed for a bad `mediaSessionId` (device-access-sample-web-app #2, HA #132438).
const BAD_MEDIA_SESSION_MESSAGE: &str =
    "WebRtc error caused by invalid session or user id mismatch.";
/// Observed (go2rtc #2311).
const BAD_OFFER_MESSAGE: &str = "Invalid offer SDP: Offer must contain each of audio, video and application m lines in that order.";

/// Length of the random part of a stream extension token (real ones are long
/// base64url strings starting `CjY5…`).
const EXTENSION_TOKEN_LEN: usize = 120;
/// Length of the random part of a `streamToken` (`g.<n>.<random>`; real ones are JWTs).
const STREAM_TOKEN_LEN: usize = 64;
/// Length of the random part of an access token (`ya29.<random>`).
const ACCESS_TOKEN_LEN: usize = 96;
/// Length of a WebRTC `mediaSessionId`.
const MEDIA_SESSION_ID_LEN: usize = 64;
/// How many ended RTSP streams [`Inner::check_rtsp_access`] remembers, to tell
/// "expired" and "stopped" from "unknown". Older ones are reported unknown.
const MAX_ENDED_STREAMS: usize = 8192;
/// How many superseded stream tokens a stream remembers, to tell "stale" from
/// "invalid". Older ones are reported invalid.
const MAX_STALE_STREAM_TOKENS: usize = 64;
/// Upper bound on configured lifetimes and latencies, so that `now + lifetime`
/// cannot overflow.
const MAX_CONFIGURED_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// Latest accepted `wall_clock_base` (about year 9000), so that dates stay
/// formattable for centuries of simulated time.
const MAX_WALL_CLOCK_BASE_SECS: u64 = 221_845_392_000;

/// The URL-safe alphabet of generated tokens.
const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A canned answer: Google answers an offer with `sendrecv` media even for a
/// recvonly offer (google-nest-sdm `fix_sdp_answer`), so the fake does too.
const ANSWER_SDP: &str = "v=0\r\n\
o=- 0 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1 2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:1\r\n\
a=sendrecv\r\n\
a=rtpmap:96 H264/90000\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:2\r\n\
a=sctp-port:5000\r\n";

/// A fault to inject with [`FakeSdm::inject`](super::FakeSdm::inject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next `count` executeCommand requests (that pass authentication, the
    /// project and the device checks) are answered with this HTTP status and a
    /// Google error envelope of the matching status, before the budgets: they are
    /// not accepted and consume no token. Codes outside 400..=599 become 500;
    /// 429 gets the exact ExecuteDeviceCommand rate-limit envelope.
    Status(u16),
    /// The next `count` executeCommand requests that pass the budgets are
    /// executed as usual (a stream is created, an extension token consumed), but
    /// the answer is a 200 whose JSON body is cut in half, as if the connection
    /// broke.
    MalformedJson,
    /// Like [`Fault::MalformedJson`] but the body is valid JSON without the
    /// required fields: `{"results":{"expiresAt":0}}`.
    WrongShape,
    /// Every access token issued so far stops working at once (`count` is
    /// ignored unless 0). New tokens from the token endpoint work.
    ExpireAccessTokens,
    /// The refresh token is revoked for good: the token endpoint answers
    /// `invalid_grant` from now on (`count` is ignored unless 0). Access tokens
    /// already issued keep working until they expire.
    RevokeRefreshToken,
    /// The next `count` token requests are answered 503 (the token endpoint is
    /// briefly down; nothing about the credentials changes).
    TokenUnavailable,
}

/// Why [`FakeSdm::check_rtsp_access`](super::FakeSdm::check_rtsp_access) refused
/// an RTSP URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtspAccessError {
    /// No stream was ever generated with this path token (or it ended too long ago
    /// to be remembered).
    #[error("no stream has this URL")]
    UnknownStream,
    /// The stream reached its `expiresAt` without being extended.
    #[error("the stream has expired")]
    Expired,
    /// The stream was stopped with StopRtspStream.
    #[error("the stream was stopped")]
    Stopped,
    /// `auth` is a stream token the stream had before its latest extension.
    #[error("the auth token was superseded by an extension")]
    StaleToken,
    /// `auth` was never a stream token of this stream.
    #[error("the auth token does not belong to this stream")]
    InvalidToken,
}

/// An error answered with Google's JSON error envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ApiError {
    pub(super) code: u16,
    pub(super) status: &'static str,
    pub(super) message: String,
    /// Set for 429s: adds Google's `errors` array with this `reason`.
    pub(super) reason: Option<&'static str>,
}

impl ApiError {
    pub(super) fn new(code: u16, status: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            status,
            message: message.into(),
            reason: None,
        }
    }

    /// An error of `code` with the gRPC status Google pairs with it.
    pub(super) fn for_code(code: u16, message: impl Into<String>) -> Self {
        Self::new(code, status_name(code), message)
    }

    fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", message)
    }

    fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(400, "FAILED_PRECONDITION", message)
    }

    fn unauthenticated() -> Self {
        Self::new(401, "UNAUTHENTICATED", UNAUTHENTICATED_MESSAGE)
    }

    fn rate_limited(message: impl Into<String>) -> Self {
        Self {
            reason: Some("rateLimitExceeded"),
            ..Self::new(429, "RESOURCE_EXHAUSTED", message)
        }
    }

    /// Google's envelope:
    /// `{"error":{"code":…,"message":…,"status":…[,"errors":[…]]}}`.
    pub(super) fn body(&self) -> Value {
        let mut error = json!({
            "code": self.code,
            "message": self.message,
            "status": self.status,
        });
        if let (Some(reason), Some(map)) = (self.reason, error.as_object_mut()) {
            map.insert(
                "errors".to_owned(),
                json!([{ "message": self.message, "domain": "global", "reason": reason }]),
            );
        }
        json!({ "error": error })
    }
}

/// The gRPC status name Google's envelope pairs with an HTTP status.
pub(super) fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// What to answer on a `/v1` request.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Reply {
    /// 200 with this JSON.
    Ok(Value),
    /// Google's error envelope.
    Error(ApiError),
    /// 200 with this body (not valid JSON): an injected fault.
    Malformed(String),
}

impl From<Result<Value, ApiError>> for Reply {
    fn from(result: Result<Value, ApiError>) -> Self {
        match result {
            Ok(value) => Self::Ok(value),
            Err(error) => Self::Error(error),
        }
    }
}

/// A refresh-token grant as parsed from the form body and the Basic header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TokenRequest {
    pub(super) grant_type: Option<String>,
    pub(super) refresh_token: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) scope: Option<String>,
    /// Client id and secret from an `Authorization: Basic` header (RFC 6749 §2.3.1).
    pub(super) basic: Option<(String, String)>,
}

/// An OAuth error (RFC 6749 §5.2): `{"error":…,"error_description":…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OAuthError {
    pub(super) code: u16,
    pub(super) error: &'static str,
    pub(super) description: String,
}

impl OAuthError {
    pub(super) fn invalid_request(description: impl Into<String>) -> Self {
        Self {
            code: 400,
            error: "invalid_request",
            description: description.into(),
        }
    }

    fn invalid_client(description: &str) -> Self {
        Self {
            code: 401,
            error: "invalid_client",
            description: description.to_owned(),
        }
    }

    fn invalid_grant() -> Self {
        Self {
            code: 400,
            error: "invalid_grant",
            description: "Token has been expired or revoked.".to_owned(),
        }
    }

    pub(super) fn body(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description })
    }
}

/// An executeCommand request as the HTTP layer saw it.
#[derive(Debug, Clone, Copy)]
pub(super) struct CommandRequest<'a> {
    pub(super) authorization: Option<&'a str>,
    pub(super) project: &'a str,
    pub(super) device: &'a str,
    /// Whether `Content-Type` is `application/json`.
    pub(super) json_content_type: bool,
    pub(super) body: &'a [u8],
}

/// A validated command.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    GenerateRtsp,
    ExtendRtsp { token: String },
    StopRtsp { token: String },
    GenerateWebRtc,
    ExtendWebRtc { session: String },
    StopWebRtc { session: String },
}

impl Command {
    /// The protocol `supportedProtocols` must list for this command.
    fn protocol(&self) -> &'static str {
        match self {
            Self::GenerateRtsp | Self::ExtendRtsp { .. } | Self::StopRtsp { .. } => PROTOCOL_RTSP,
            Self::GenerateWebRtc | Self::ExtendWebRtc { .. } | Self::StopWebRtc { .. } => {
                PROTOCOL_WEB_RTC
            }
        }
    }
}

#[derive(Debug)]
struct Stream {
    device: String,
    expires_at: Instant,
    kind: StreamKind,
}

#[derive(Debug)]
enum StreamKind {
    /// Keyed by its initial extension token, which is also its URL path.
    Rtsp {
        extension_token: String,
        stream_token: String,
        generation: u64,
        stale_tokens: VecDeque<String>,
    },
    /// Keyed by its `mediaSessionId`.
    WebRtc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndReason {
    Expired,
    Stopped,
}

#[derive(Debug)]
struct DeviceState {
    spec: FakeDevice,
    wanted: bool,
    minute: RollingWindow,
    hour: RollingWindow,
    per_command: HashMap<&'static str, RollingWindow>,
    stats: FakeDeviceStats,
}

impl DeviceState {
    /// A device with fresh budgets, wanted.
    fn new(spec: FakeDevice) -> Self {
        Self {
            spec,
            wanted: true,
            minute: RollingWindow::new(MINUTE),
            hour: RollingWindow::new(HOUR),
            per_command: HashMap::new(),
            stats: FakeDeviceStats {
                wanted: true,
                ..FakeDeviceStats::default()
            },
        }
    }
}

/// Everything behind the fake's mutex.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) config: FakeSdmConfig,
    start: Instant,
    rng: fastrand::Rng,
    /// Access token → the instant it stops working.
    access_tokens: HashMap<String, Instant>,
    refresh_revoked: bool,
    /// Token requests still to be answered 503 ([`Fault::TokenUnavailable`]).
    token_faults: u32,
    /// Pending [`Fault::Status`], [`Fault::MalformedJson`] and [`Fault::WrongShape`]
    /// with their remaining counts, first in first out.
    command_faults: VecDeque<(Fault, u32)>,
    project_window: RollingWindow,
    list_window: RollingWindow,
    get_window: RollingWindow,
    /// Device ids in configuration order.
    device_order: Vec<String>,
    devices: HashMap<String, DeviceState>,
    /// RTSP streams by initial extension token, WebRTC sessions by id.
    streams: HashMap<String, Stream>,
    /// Every random token issued, for tests that look for them where they must not be.
    issued: Vec<String>,
    /// Current extension token → the stream's key.
    by_extension_token: HashMap<String, String>,
    ended: HashMap<String, EndReason>,
    ended_order: VecDeque<String>,
    stats: FakeSdmStats,
}

impl Inner {
    pub(super) fn new(config: FakeSdmConfig, start: Instant) -> Self {
        let config = sanitize(config);
        let mut device_order = Vec::new();
        let mut devices = HashMap::new();
        for spec in &config.devices {
            if devices.contains_key(&spec.id) {
                tracing::warn!(device = %spec.id, "duplicate fake device id ignored");
                continue;
            }
            device_order.push(spec.id.clone());
            devices.insert(spec.id.clone(), DeviceState::new(spec.clone()));
        }
        Self {
            rng: fastrand::Rng::with_seed(config.seed),
            config,
            start,
            access_tokens: HashMap::new(),
            refresh_revoked: false,
            token_faults: 0,
            command_faults: VecDeque::new(),
            project_window: RollingWindow::new(MINUTE),
            list_window: RollingWindow::new(MINUTE),
            get_window: RollingWindow::new(MINUTE),
            device_order,
            devices,
            streams: HashMap::new(),
            issued: Vec::new(),
            by_extension_token: HashMap::new(),
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
            stats: FakeSdmStats::default(),
        }
    }

    /// The virtual wall clock at `t`.
    pub(super) fn wall_clock(&self, t: Instant) -> SystemTime {
        let base = self.config.wall_clock_base;
        base.checked_add(t.saturating_duration_since(self.start))
            .unwrap_or(base)
    }

    /// `t` on the virtual wall clock as RFC 3339 UTC with milliseconds.
    fn rfc3339(&self, t: Instant) -> String {
        humantime::format_rfc3339_millis(self.wall_clock(t)).to_string()
    }

    /// Draws one request's latency and splits it into the part before processing
    /// and the part after.
    pub(super) fn draw_latency(&mut self) -> (Duration, Duration) {
        let min = self.config.latency_min;
        let max = self.config.latency_max;
        let total = if max > min {
            let span = u64::try_from((max - min).as_nanos()).unwrap_or(u64::MAX);
            min + Duration::from_nanos(self.rng.u64(0..=span))
        } else {
            min
        };
        let total_nanos = u64::try_from(total.as_nanos()).unwrap_or(u64::MAX);
        let before = Duration::from_nanos(self.rng.u64(0..=total_nanos));
        (before, total.saturating_sub(before))
    }

    // ----- handle operations -----------------------------------------------

    pub(super) fn stats(&mut self, now: Instant) -> FakeSdmStats {
        self.sweep(now);
        let mut stats = self.stats.clone();
        stats.streams_live = count_u64(self.streams.len());
        let mut live_per_device: HashMap<&str, u64> = HashMap::new();
        for stream in self.streams.values() {
            *live_per_device.entry(stream.device.as_str()).or_default() += 1;
        }
        stats.devices = self
            .devices
            .iter()
            .map(|(id, device)| {
                let mut device_stats = device.stats.clone();
                device_stats.wanted = device.wanted;
                device_stats.streams_live = live_per_device.get(id.as_str()).copied().unwrap_or(0);
                (id.clone(), device_stats)
            })
            .collect::<BTreeMap<_, _>>();
        stats
    }

    pub(super) fn set_wanted(&mut self, now: Instant, device: &str, wanted: bool) {
        self.sweep(now);
        match self.devices.get_mut(device) {
            Some(state) => state.wanted = wanted,
            None => tracing::debug!(device, "set_wanted on an unknown fake device"),
        }
    }

    /// Replaces the device list, as if devices were added to or removed from the home.
    /// Devices that stay keep their budgets and streams; streams of removed devices live on
    /// until they expire.
    pub(super) fn set_devices(&mut self, now: Instant, specs: Vec<FakeDevice>) {
        self.sweep(now);
        let mut order = Vec::new();
        for spec in specs {
            if order.contains(&spec.id) {
                continue;
            }
            order.push(spec.id.clone());
            match self.devices.get_mut(&spec.id) {
                Some(device) => device.spec = spec,
                None => {
                    self.devices.insert(spec.id.clone(), DeviceState::new(spec));
                }
            }
        }
        self.devices.retain(|id, _| order.contains(id));
        self.device_order = order;
    }

    pub(super) fn inject(&mut self, now: Instant, fault: Fault, count: u32) {
        if count == 0 {
            return;
        }
        match fault {
            Fault::Status(_) | Fault::MalformedJson | Fault::WrongShape => {
                self.command_faults.push_back((fault, count));
            }
            Fault::ExpireAccessTokens => {
                self.access_tokens.clear();
            }
            Fault::RevokeRefreshToken => {
                self.refresh_revoked = true;
            }
            Fault::TokenUnavailable => {
                self.token_faults = self.token_faults.saturating_add(count);
            }
        }
        self.sweep(now);
    }

    pub(super) fn check_rtsp_access(
        &mut self,
        now: Instant,
        path_token: &str,
        auth: &str,
    ) -> Result<String, RtspAccessError> {
        self.sweep(now);
        match self.streams.get(path_token) {
            Some(Stream {
                device,
                kind:
                    StreamKind::Rtsp {
                        stream_token,
                        stale_tokens,
                        ..
                    },
                ..
            }) => {
                if stream_token == auth {
                    Ok(device.clone())
                } else if stale_tokens.iter().any(|t| t == auth) {
                    Err(RtspAccessError::StaleToken)
                } else {
                    Err(RtspAccessError::InvalidToken)
                }
            }
            Some(Stream {
                kind: StreamKind::WebRtc,
                ..
            }) => Err(RtspAccessError::UnknownStream),
            None => match self.ended.get(path_token) {
                Some(EndReason::Expired) => Err(RtspAccessError::Expired),
                Some(EndReason::Stopped) => Err(RtspAccessError::Stopped),
                None => Err(RtspAccessError::UnknownStream),
            },
        }
    }

    /// Whether the RTSP stream at `path_token` is live (whatever its current token).
    pub(super) fn rtsp_stream_live(&mut self, now: Instant, path_token: &str) -> bool {
        self.sweep(now);
        matches!(
            self.streams.get(path_token),
            Some(Stream {
                kind: StreamKind::Rtsp { .. },
                ..
            })
        )
    }

    /// Ends `device`'s live RTSP streams now, as Google sometimes does unasked ("Stream
    /// ended"). Returns how many ended.
    pub(super) fn drop_rtsp_streams(&mut self, now: Instant, device: &str) -> usize {
        self.sweep(now);
        let keys: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, s)| s.device == device && matches!(s.kind, StreamKind::Rtsp { .. }))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &keys {
            if let Some(Stream {
                kind: StreamKind::Rtsp {
                    extension_token, ..
                },
                ..
            }) = self.streams.remove(key)
            {
                self.by_extension_token.remove(&extension_token);
                self.remember_end(key.clone(), EndReason::Expired);
            }
        }
        keys.len()
    }

    // ----- token endpoint ----------------------------------------------------

    /// `POST /token` with `grant_type=refresh_token`.
    pub(super) fn refresh(
        &mut self,
        now: Instant,
        request: TokenRequest,
    ) -> Result<Value, OAuthError> {
        self.sweep(now);
        self.stats.token_requests += 1;
        if self.token_faults > 0 {
            self.token_faults -= 1;
            self.stats.injected_failures += 1;
            self.stats.token_errors += 1;
            return Err(OAuthError {
                code: 503,
                error: "temporarily_unavailable",
                description: "The service is currently unavailable.".to_owned(),
            });
        }
        let result = self.grant(now, request);
        if result.is_err() {
            self.stats.token_errors += 1;
        }
        result
    }

    /// A token request refused before it could be read (bad body or header).
    pub(super) fn refresh_refused(&mut self, now: Instant) {
        self.sweep(now);
        self.stats.token_requests += 1;
        self.stats.token_errors += 1;
    }

    fn grant(&mut self, now: Instant, request: TokenRequest) -> Result<Value, OAuthError> {
        let grant_type = request
            .grant_type
            .ok_or_else(|| OAuthError::invalid_request("Missing required parameter: grant_type"))?;
        if grant_type != "refresh_token" {
            return Err(OAuthError {
                code: 400,
                error: "unsupported_grant_type",
                description: format!("Invalid grant_type: {grant_type}"),
            });
        }
        // RFC 6749 §2.3: a client must not use more than one authentication method.
        let (client_id, client_secret) =
            match (request.basic, request.client_id, request.client_secret) {
                (Some(_), _, Some(_)) => {
                    return Err(OAuthError::invalid_request(
                        "Client authentication must use exactly one method.",
                    ));
                }
                (Some((id, secret)), form_id, None) => {
                    if form_id.is_some_and(|form_id| form_id != id) {
                        return Err(OAuthError::invalid_request(
                            "client_id in the body does not match the Authorization header.",
                        ));
                    }
                    (id, Some(secret))
                }
                (None, Some(id), secret) => (id, secret),
                (None, None, _) => {
                    return Err(OAuthError::invalid_request(
                        "Could not determine client ID from request.",
                    ));
                }
            };
        if client_id != self.config.client_id {
            return Err(OAuthError::invalid_client(
                "The OAuth client was not found.",
            ));
        }
        let Some(client_secret) = client_secret else {
            return Err(OAuthError::invalid_request("client_secret is missing."));
        };
        if client_secret != self.config.client_secret {
            return Err(OAuthError::invalid_client("Unauthorized"));
        }
        let refresh_token = request.refresh_token.ok_or_else(|| {
            OAuthError::invalid_request("Missing required parameter: refresh_token")
        })?;
        if self.refresh_revoked || refresh_token != self.config.refresh_token {
            return Err(OAuthError::invalid_grant());
        }
        if let Some(scope) = request.scope
            && scope.split_whitespace().any(|s| s != SDM_SCOPE)
        {
            return Err(OAuthError {
                code: 400,
                error: "invalid_scope",
                description: "Some requested scopes were invalid.".to_owned(),
            });
        }
        self.access_tokens.retain(|_, expires_at| *expires_at > now);
        let token = format!("ya29.{}", self.random_token(ACCESS_TOKEN_LEN));
        let lifetime = self.config.access_token_lifetime;
        self.access_tokens
            .insert(token.clone(), later(now, lifetime));
        self.stats.access_tokens_issued += 1;
        Ok(json!({
            "access_token": token,
            "expires_in": lifetime.as_secs(),
            "scope": SDM_SCOPE,
            "token_type": "Bearer",
        }))
    }

    // ----- /v1 ---------------------------------------------------------------

    /// `GET /v1/enterprises/{project}/devices`.
    pub(super) fn list_devices(
        &mut self,
        now: Instant,
        authorization: Option<&str>,
        project: &str,
    ) -> Result<Value, ApiError> {
        self.sweep(now);
        self.authenticate(now, authorization)?;
        self.check_project(project)?;
        if !self.list_window.has_room(now, self.config.list_qpm) {
            self.stats.rate_limited.list += 1;
            return Err(ApiError::rate_limited(LIST_LIMIT_MESSAGE));
        }
        self.list_window.record(now);
        self.stats.device_lists += 1;
        let devices: Vec<Value> = self
            .device_order
            .iter()
            .filter_map(|id| self.devices.get(id))
            .map(|d| self.device_json(&d.spec))
            .collect();
        Ok(json!({ "devices": devices }))
    }

    /// `GET /v1/enterprises/{project}/devices/{device}`.
    pub(super) fn get_device(
        &mut self,
        now: Instant,
        authorization: Option<&str>,
        project: &str,
        device: &str,
    ) -> Result<Value, ApiError> {
        self.sweep(now);
        self.authenticate(now, authorization)?;
        self.check_project(project)?;
        let Some(spec) = self.devices.get(device).map(|d| d.spec.clone()) else {
            return Err(self.device_not_found(device));
        };
        if !self.get_window.has_room(now, self.config.get_qpm) {
            self.stats.rate_limited.get += 1;
            return Err(ApiError::rate_limited(GET_LIMIT_MESSAGE));
        }
        self.get_window.record(now);
        self.stats.device_gets += 1;
        Ok(self.device_json(&spec))
    }

    /// `POST /v1/enterprises/{project}/devices/{device}:executeCommand`.
    ///
    /// Checks in order: authentication (401), project (403), device (404),
    /// injected faults and `failure_rate` (not accepted), budgets (429), then the
    /// body and the command (400, counted as accepted).
    pub(super) fn execute_command(&mut self, now: Instant, request: CommandRequest<'_>) -> Reply {
        self.sweep(now);
        self.stats.commands_received += 1;
        if let Err(error) = self.authenticate(now, request.authorization) {
            return Reply::Error(error);
        }
        if let Err(error) = self.check_project(request.project) {
            return Reply::Error(error);
        }
        if !self.devices.contains_key(request.device) {
            return Reply::Error(self.device_not_found(request.device));
        }
        if let Some(code) = self.take_status_fault() {
            self.stats.injected_failures += 1;
            let error = if code == 429 {
                ApiError::rate_limited(PROJECT_LIMIT_MESSAGE)
            } else {
                ApiError::for_code(code, injected_message(code))
            };
            return Reply::Error(error);
        }
        if self.config.failure_rate > 0.0 && self.rng.f64() < self.config.failure_rate {
            self.stats.injected_failures += 1;
            return Reply::Error(ApiError::for_code(
                503,
                "The service is currently unavailable.",
            ));
        }

        let body = parse_body(request.json_content_type, request.body);
        let known_command = body
            .as_ref()
            .ok()
            .and_then(|v| v.get("command"))
            .and_then(Value::as_str)
            .and_then(|name| KNOWN_COMMANDS.iter().copied().find(|known| *known == name));
        if let Err(error) = self.admit_command(now, request.device, known_command) {
            return Reply::Error(error);
        }

        let response_fault = self.take_response_fault();
        let result = body
            .and_then(|body| parse_command(&body))
            .and_then(|command| self.run(now, request.device, command));
        if result.is_err() {
            self.stats.commands_failed += 1;
        }
        match response_fault {
            None => result.into(),
            Some(fault) => {
                self.stats.injected_failures += 1;
                corrupt(fault, result)
            }
        }
    }

    // ----- internals -----------------------------------------------------------

    fn authenticate(&mut self, now: Instant, authorization: Option<&str>) -> Result<(), ApiError> {
        let valid = authorization
            .and_then(bearer_token)
            .and_then(|token| self.access_tokens.get(token))
            .is_some_and(|expires_at| now < *expires_at);
        if valid {
            Ok(())
        } else {
            self.stats.unauthenticated += 1;
            Err(ApiError::unauthenticated())
        }
    }

    /// Google's answer for a project the caller has no access to. The exact
    /// status and wording for a wrong project id are our guess.
    fn check_project(&self, project: &str) -> Result<(), ApiError> {
        if project == self.config.project_id {
            Ok(())
        } else {
            Err(ApiError::new(
                403,
                "PERMISSION_DENIED",
                "The caller does not have permission",
            ))
        }
    }

    fn device_not_found(&self, device: &str) -> ApiError {
        ApiError::new(
            404,
            "NOT_FOUND",
            format!(
                "Device enterprises/{}/devices/{device} not found.",
                self.config.project_id
            ),
        )
    }

    fn take_status_fault(&mut self) -> Option<u16> {
        match self.command_faults.front() {
            Some((Fault::Status(code), _)) => {
                let code = *code;
                self.consume_fault();
                Some(if (400..=599).contains(&code) {
                    code
                } else {
                    500
                })
            }
            _ => None,
        }
    }

    fn take_response_fault(&mut self) -> Option<Fault> {
        match self.command_faults.front() {
            Some((fault @ (Fault::MalformedJson | Fault::WrongShape), _)) => {
                let fault = *fault;
                self.consume_fault();
                Some(fault)
            }
            _ => None,
        }
    }

    fn consume_fault(&mut self) {
        if let Some((_, remaining)) = self.command_faults.front_mut() {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                self.command_faults.pop_front();
            }
        }
    }

    /// Checks the budgets in order project, device+command, device; records the
    /// request in all of them only if none is exhausted.
    fn admit_command(
        &mut self,
        now: Instant,
        device_id: &str,
        command: Option<&'static str>,
    ) -> Result<(), ApiError> {
        let Some(device) = self.devices.get_mut(device_id) else {
            return Err(ApiError::for_code(404, "Device not found."));
        };
        let config = &self.config;
        let refusal = if !self.project_window.has_room(now, config.command_qpm) {
            self.stats.rate_limited.project += 1;
            Some(ApiError::rate_limited(PROJECT_LIMIT_MESSAGE))
        } else if let Some(command) = command
            && !device
                .per_command
                .entry(command)
                .or_insert_with(|| RollingWindow::new(MINUTE))
                .has_room(now, config.device_command_qpm)
        {
            self.stats.rate_limited.device_command += 1;
            let short = command.rsplit('.').next().unwrap_or(command);
            Some(ApiError::rate_limited(format!(
                "Rate limited for the {short} command for the user."
            )))
        } else if !device.minute.has_room(now, config.device_qpm)
            || !device.hour.has_room(now, config.device_qph)
        {
            self.stats.rate_limited.device += 1;
            Some(ApiError::rate_limited(DEVICE_LIMIT_MESSAGE))
        } else {
            None
        };
        if let Some(error) = refusal {
            device.stats.rate_limited += 1;
            tracing::debug!(device = device_id, command, message = %error.message, "command rate limited");
            return Err(error);
        }

        let in_window = count_u64(self.project_window.record(now));
        self.stats.max_accepted_in_any_window =
            self.stats.max_accepted_in_any_window.max(in_window);
        device.minute.record(now);
        device.hour.record(now);
        if let Some(window) = command.and_then(|c| device.per_command.get_mut(c)) {
            window.record(now);
        }
        self.stats.commands_accepted += 1;
        device.stats.accepted_commands += 1;
        Ok(())
    }

    fn run(&mut self, now: Instant, device_id: &str, command: Command) -> Result<Value, ApiError> {
        let Some(device) = self.devices.get(device_id) else {
            return Err(ApiError::for_code(404, "Device not found."));
        };
        let protocol = command.protocol();
        if !device.spec.supports(protocol) {
            return Err(ApiError::failed_precondition(format!(
                "The device does not support {protocol} streaming."
            )));
        }
        match command {
            Command::GenerateRtsp => Ok(self.generate_rtsp(now, device_id)),
            Command::ExtendRtsp { token } => self.extend_rtsp(now, device_id, &token),
            Command::StopRtsp { token } => self.stop_rtsp(device_id, &token),
            Command::GenerateWebRtc => Ok(self.generate_web_rtc(now, device_id)),
            Command::ExtendWebRtc { session } => self.extend_web_rtc(now, device_id, &session),
            Command::StopWebRtc { session } => self.stop_web_rtc(device_id, &session),
        }
    }

    fn generate_rtsp(&mut self, now: Instant, device_id: &str) -> Value {
        let extension_token = format!("Cj{}", self.random_token(EXTENSION_TOKEN_LEN));
        let stream_token = format!("g.0.{}", self.random_token(STREAM_TOKEN_LEN));
        let expires_at = later(now, self.config.stream_lifetime);
        let url = format!(
            "{}/{extension_token}?auth={stream_token}",
            self.config.rtsp_base
        );
        self.streams.insert(
            extension_token.clone(),
            Stream {
                device: device_id.to_owned(),
                expires_at,
                kind: StreamKind::Rtsp {
                    extension_token: extension_token.clone(),
                    stream_token: stream_token.clone(),
                    generation: 0,
                    stale_tokens: VecDeque::new(),
                },
            },
        );
        self.by_extension_token
            .insert(extension_token.clone(), extension_token.clone());
        self.count_generate(device_id);
        json!({ "results": {
            "streamUrls": { "rtspUrl": url },
            "streamExtensionToken": extension_token,
            "streamToken": stream_token,
            "expiresAt": self.rfc3339(expires_at),
        }})
    }

    fn extend_rtsp(
        &mut self,
        now: Instant,
        device_id: &str,
        token: &str,
    ) -> Result<Value, ApiError> {
        let new_extension_token = format!("Cj{}", self.random_token(EXTENSION_TOKEN_LEN));
        let random = self.random_token(STREAM_TOKEN_LEN);
        let expires_at = later(now, self.config.stream_lifetime);
        let stream = self
            .by_extension_token
            .get(token)
            .and_then(|key| self.streams.get_mut(key))
            .filter(|stream| stream.device == device_id);
        let Some(Stream {
            expires_at: stream_expires_at,
            kind:
                StreamKind::Rtsp {
                    extension_token,
                    stream_token,
                    generation,
                    stale_tokens,
                },
            ..
        }) = stream
        else {
            self.stats.extend_rejected += 1;
            return Err(ApiError::failed_precondition(BAD_EXTENSION_TOKEN_MESSAGE));
        };
        let margin = stream_expires_at.saturating_duration_since(now);
        *generation += 1;
        let new_stream_token = format!("g.{generation}.{random}");
        let old_stream_token = std::mem::replace(stream_token, new_stream_token.clone());
        stale_tokens.push_back(old_stream_token);
        if stale_tokens.len() > MAX_STALE_STREAM_TOKENS {
            stale_tokens.pop_front();
        }
        *extension_token = new_extension_token.clone();
        *stream_expires_at = expires_at;
        if let Some(key) = self.by_extension_token.remove(token) {
            self.by_extension_token
                .insert(new_extension_token.clone(), key);
        }
        self.count_extend(device_id, margin);
        Ok(json!({ "results": {
            "streamExtensionToken": new_extension_token,
            "streamToken": new_stream_token,
            "expiresAt": self.rfc3339(expires_at),
        }}))
    }

    fn stop_rtsp(&mut self, device_id: &str, token: &str) -> Result<Value, ApiError> {
        let key = self
            .by_extension_token
            .get(token)
            .filter(|key| {
                self.streams
                    .get(*key)
                    .is_some_and(|s| s.device == device_id)
            })
            .cloned();
        let Some(key) = key else {
            self.stats.stop_rejected += 1;
            return Err(ApiError::failed_precondition(BAD_EXTENSION_TOKEN_MESSAGE));
        };
        self.by_extension_token.remove(token);
        self.streams.remove(&key);
        self.remember_end(key, EndReason::Stopped);
        self.count_stop(device_id);
        Ok(json!({ "results": {} }))
    }

    fn generate_web_rtc(&mut self, now: Instant, device_id: &str) -> Value {
        let session = self.random_token(MEDIA_SESSION_ID_LEN);
        let expires_at = later(now, self.config.stream_lifetime);
        self.streams.insert(
            session.clone(),
            Stream {
                device: device_id.to_owned(),
                expires_at,
                kind: StreamKind::WebRtc,
            },
        );
        self.count_generate(device_id);
        json!({ "results": {
            "answerSdp": ANSWER_SDP,
            "expiresAt": self.rfc3339(expires_at),
            "mediaSessionId": session,
        }})
    }

    fn extend_web_rtc(
        &mut self,
        now: Instant,
        device_id: &str,
        session: &str,
    ) -> Result<Value, ApiError> {
        let expires_at = later(now, self.config.stream_lifetime);
        let Some(stream) = self.web_rtc_session(device_id, session) else {
            self.stats.extend_rejected += 1;
            return Err(ApiError::failed_precondition(BAD_MEDIA_SESSION_MESSAGE));
        };
        let margin = stream.expires_at.saturating_duration_since(now);
        stream.expires_at = expires_at;
        self.count_extend(device_id, margin);
        Ok(json!({ "results": {
            "expiresAt": self.rfc3339(expires_at),
            "mediaSessionId": session,
        }}))
    }

    fn stop_web_rtc(&mut self, device_id: &str, session: &str) -> Result<Value, ApiError> {
        if self.web_rtc_session(device_id, session).is_none() {
            self.stats.stop_rejected += 1;
            return Err(ApiError::failed_precondition(BAD_MEDIA_SESSION_MESSAGE));
        }
        self.streams.remove(session);
        self.count_stop(device_id);
        Ok(json!({ "results": {} }))
    }

    fn web_rtc_session(&mut self, device_id: &str, session: &str) -> Option<&mut Stream> {
        self.streams
            .get_mut(session)
            .filter(|s| s.device == device_id && matches!(s.kind, StreamKind::WebRtc))
    }

    fn count_generate(&mut self, device_id: &str) {
        self.stats.generates += 1;
        if let Some(device) = self.devices.get_mut(device_id) {
            device.stats.generates += 1;
        }
    }

    fn count_extend(&mut self, device_id: &str, margin: Duration) {
        self.stats.extends += 1;
        self.stats.min_margin_at_extension = Some(
            self.stats
                .min_margin_at_extension
                .map_or(margin, |m| m.min(margin)),
        );
        if let Some(device) = self.devices.get_mut(device_id) {
            device.stats.extends += 1;
        }
    }

    fn count_stop(&mut self, device_id: &str) {
        self.stats.stops += 1;
        if let Some(device) = self.devices.get_mut(device_id) {
            device.stats.stops += 1;
        }
    }

    /// Ends every stream whose `expiresAt` has passed, counting it against its
    /// device's current `wanted` flag. Because every change of that flag sweeps
    /// first, the flag seen here is the one in force when the stream expired.
    fn sweep(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, stream)| stream.expires_at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            let Some(stream) = self.streams.remove(&key) else {
                continue;
            };
            self.stats.streams_expired += 1;
            if let Some(device) = self.devices.get_mut(&stream.device) {
                device.stats.streams_expired += 1;
                if device.wanted {
                    device.stats.expired_while_wanted += 1;
                    self.stats.expired_while_wanted += 1;
                }
            }
            if let StreamKind::Rtsp {
                extension_token, ..
            } = stream.kind
            {
                self.by_extension_token.remove(&extension_token);
                self.remember_end(key, EndReason::Expired);
            }
            tracing::debug!(device = %stream.device, "fake stream expired");
        }
    }

    fn remember_end(&mut self, key: String, reason: EndReason) {
        if self.ended.insert(key.clone(), reason).is_none() {
            self.ended_order.push_back(key);
        }
        while self.ended_order.len() > MAX_ENDED_STREAMS {
            if let Some(oldest) = self.ended_order.pop_front() {
                self.ended.remove(&oldest);
            }
        }
    }

    fn random_token(&mut self, len: usize) -> String {
        let token: String = (0..len)
            .map(|_| {
                let i = self.rng.usize(..TOKEN_ALPHABET.len());
                char::from(TOKEN_ALPHABET.get(i).copied().unwrap_or(b'A'))
            })
            .collect();
        self.issued.push(token.clone());
        token
    }

    /// Every random token handed out so far (access tokens, stream tokens, extension tokens,
    /// session ids), without their prefixes.
    pub(super) fn issued_tokens(&self) -> Vec<String> {
        self.issued.clone()
    }

    fn device_json(&self, spec: &FakeDevice) -> Value {
        let project = &self.config.project_id;
        let room_id: String = spec
            .room
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        json!({
            "name": format!("enterprises/{project}/devices/{}", spec.id),
            "type": spec.device_type,
            "traits": {
                "sdm.devices.traits.Info": { "customName": spec.custom_name },
                "sdm.devices.traits.CameraLiveStream": {
                    "maxVideoResolution": { "width": spec.width, "height": spec.height },
                    "videoCodecs": spec.video_codecs,
                    "audioCodecs": spec.audio_codecs,
                    "supportedProtocols": spec.protocols,
                },
            },
            "parentRelations": [{
                "parent": format!("enterprises/{project}/structures/sim-structure/rooms/{room_id}"),
                "displayName": spec.room,
            }],
        })
    }
}

/// Clamps what could make time arithmetic or date formatting fail.
fn sanitize(mut config: FakeSdmConfig) -> FakeSdmConfig {
    config.stream_lifetime = config.stream_lifetime.min(MAX_CONFIGURED_DURATION);
    config.access_token_lifetime = config.access_token_lifetime.min(MAX_CONFIGURED_DURATION);
    config.latency_min = config.latency_min.min(MAX_CONFIGURED_DURATION);
    config.latency_max = config.latency_max.min(MAX_CONFIGURED_DURATION);
    config.failure_rate = if config.failure_rate.is_nan() {
        0.0
    } else {
        config.failure_rate.clamp(0.0, 1.0)
    };
    let clamped_secs = match config
        .wall_clock_base
        .duration_since(SystemTime::UNIX_EPOCH)
    {
        Ok(since_epoch) if since_epoch.as_secs() <= MAX_WALL_CLOCK_BASE_SECS => None,
        Ok(_) => Some(MAX_WALL_CLOCK_BASE_SECS),
        Err(_) => Some(0),
    };
    if let Some(secs) = clamped_secs {
        config.wall_clock_base = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    }
    config
}

/// `now + d` without overflow (lifetimes are clamped, so the fallback is
/// unreachable in practice).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

fn count_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The token of an `Authorization: Bearer <token>` header (scheme
/// case-insensitive, RFC 6750 §2.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("Bearer") && !token.is_empty()).then_some(token)
}

fn injected_message(code: u16) -> &'static str {
    match code {
        500 => "Internal error encountered.",
        503 => "The service is currently unavailable.",
        504 => "Deadline exceeded.",
        _ => "Injected fault.",
    }
}

fn parse_body(json_content_type: bool, body: &[u8]) -> Result<Value, ApiError> {
    if !json_content_type {
        return Err(ApiError::invalid_argument(
            "Invalid JSON payload received. Content-Type must be application/json.",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|_| ApiError::invalid_argument("Invalid JSON payload received. Unexpected token."))
}

/// Validates `{"command": …, "params": {…}}` strictly: unknown fields at either
/// level, a missing `params` object or a missing/empty parameter are errors.
fn parse_command(body: &Value) -> Result<Command, ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::invalid_argument(
            "Invalid JSON payload received. Expected an object.",
        ));
    };
    reject_unknown_fields(object, &["command", "params"])?;
    let Some(name) = object.get("command").and_then(Value::as_str) else {
        return Err(ApiError::invalid_argument("command value must be set"));
    };
    let Some(params) = object.get("params").and_then(Value::as_object) else {
        return Err(ApiError::invalid_argument("params must be an object"));
    };
    match name {
        GENERATE_RTSP => {
            reject_unknown_fields(params, &[])?;
            Ok(Command::GenerateRtsp)
        }
        EXTEND_RTSP => Ok(Command::ExtendRtsp {
            token: required_param(params, "streamExtensionToken")?,
        }),
        STOP_RTSP => Ok(Command::StopRtsp {
            token: required_param(params, "streamExtensionToken")?,
        }),
        GENERATE_WEB_RTC => {
            let offer = required_param(params, "offerSdp")?;
            let kinds: Vec<&str> = offer
                .lines()
                .filter_map(|line| line.strip_prefix("m="))
                .filter_map(|media| media.split_whitespace().next())
                .collect();
            if kinds != ["audio", "video", "application"] {
                return Err(ApiError::invalid_argument(BAD_OFFER_MESSAGE));
            }
            Ok(Command::GenerateWebRtc)
        }
        EXTEND_WEB_RTC => Ok(Command::ExtendWebRtc {
            session: required_param(params, "mediaSessionId")?,
        }),
        STOP_WEB_RTC => Ok(Command::StopWebRtc {
            session: required_param(params, "mediaSessionId")?,
        }),
        _ => Err(ApiError::invalid_argument(format!(
            "Command {name} is not supported."
        ))),
    }
}

fn reject_unknown_fields(object: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match object.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(ApiError::invalid_argument(format!(
            "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
        ))),
        None => Ok(()),
    }
}

/// The one parameter a command takes: a non-empty string, with no other fields.
fn required_param(params: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    reject_unknown_fields(params, &[name])?;
    match params.get(name).and_then(Value::as_str) {
        Some(value) if !value.is_empty() => Ok(value.to_owned()),
        _ => Err(ApiError::invalid_argument(format!(
            "{name} value must be set"
        ))),
    }
}

/// The 200 answer of an injected response fault, whatever the command's outcome.
fn corrupt(fault: Fault, result: Result<Value, ApiError>) -> Reply {
    match fault {
        Fault::WrongShape => Reply::Ok(json!({ "results": { "expiresAt": 0 } })),
        _ => {
            let body = match result {
                Ok(value) => value,
                Err(error) => error.body(),
            }
            .to_string();
            // Every body is a JSON object, so any proper prefix is invalid JSON.
            let cut = body.len() / 2;
            let truncated = body.get(..cut).unwrap_or("{").to_owned();
            Reply::Malformed(truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(name: &str, params: Value) -> Value {
        json!({ "command": name, "params": params })
    }

    #[test]
    fn parses_known_commands_strictly() {
        assert_eq!(
            parse_command(&command(GENERATE_RTSP, json!({}))),
            Ok(Command::GenerateRtsp)
        );
        assert_eq!(
            parse_command(&command(
                EXTEND_RTSP,
                json!({ "streamExtensionToken": "x" })
            )),
            Ok(Command::ExtendRtsp { token: "x".into() })
        );
        for bad in [
            json!({ "command": GENERATE_RTSP }),
            json!({ "command": GENERATE_RTSP, "params": {}, "extra": 1 }),
            command(GENERATE_RTSP, json!({ "foo": 1 })),
            command(EXTEND_RTSP, json!({})),
            command(EXTEND_RTSP, json!({ "streamExtensionToken": "" })),
            command(EXTEND_RTSP, json!({ "streamExtensionToken": 5 })),
            command("sdm.devices.commands.Nope", json!({})),
            json!([1, 2]),
        ] {
            let error = parse_command(&bad).err();
            assert_eq!(error.map(|e| e.status), Some("INVALID_ARGUMENT"), "{bad}");
        }
    }

    #[test]
    fn offer_needs_audio_video_application_in_order() {
        let ok = "v=0\r\nm=audio 9 UDP 0\r\nm=video 9 UDP 96\r\nm=application 9 UDP webrtc-datachannel\r\n";
        let wrong = "v=0\r\nm=video 9 UDP 96\r\nm=audio 9 UDP 0\r\nm=application 9 UDP x\r\n";
        assert_eq!(
            parse_command(&command(GENERATE_WEB_RTC, json!({ "offerSdp": ok }))),
            Ok(Command::GenerateWebRtc)
        );
        let error = parse_command(&command(GENERATE_WEB_RTC, json!({ "offerSdp": wrong }))).err();
        assert_eq!(error.map(|e| e.message), Some(BAD_OFFER_MESSAGE.to_owned()));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    #[test]
    fn truncated_body_is_invalid_json() {
        let reply = corrupt(Fault::MalformedJson, Ok(json!({ "results": {} })));
        let Reply::Malformed(body) = reply else {
            panic!("expected a malformed reply");
        };
        assert!(serde_json::from_str::<Value>(&body).is_err());
    }

    #[test]
    fn latency_splits_within_bounds() {
        let config = FakeSdmConfig {
            latency_min: Duration::from_millis(10),
            latency_max: Duration::from_millis(20),
            ..FakeSdmConfig::default()
        };
        let mut inner = Inner::new(config, Instant::now());
        for _ in 0..100 {
            let (before, after) = inner.draw_latency();
            let total = before + after;
            assert!(total >= Duration::from_millis(10) && total <= Duration::from_millis(20));
        }
    }
}
