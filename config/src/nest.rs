//! Google Nest (Smart Device Management API) access and the budget tuning.
//!
//! Access needs four values that come from two consoles (Device Access and
//! Google Cloud); a half-configured Nest would fail at the first token
//! refresh, far from the cause, so all four or none are required. The tuning
//! values are checked even without access: a typo in them is still a typo.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::defaults as d;
use crate::parse::{self, Check, SecretKind};
use crate::vars::{RawVars, var};

/// Nest access and tuning; present when the four credentials are set.
#[derive(Debug, Clone)]
pub struct NestConfig {
    /// Device Access project id (a UUID); part of every request path.
    pub project_id: String,
    /// Google Cloud OAuth client id.
    pub client_id: String,
    /// Google Cloud OAuth client secret.
    pub client_secret: SecretString,
    /// Refresh token of the user who authorized the project.
    pub refresh_token: SecretString,
    /// SDM API base URL.
    pub api_url: Url,
    /// OAuth token endpoint.
    pub token_url: Url,
    /// Device ids to relay; `None`: every camera that supports RTSP.
    pub devices: Option<Vec<String>>,
    /// The command budget.
    pub budget: NestBudget,
    /// How streams are extended and retried.
    pub lease: LeaseTuning,
    /// Timeout of one HTTP request to Google.
    pub request_timeout: Duration,
    /// How often the device list is re-read.
    pub discovery_interval: Duration,
}

/// The executeCommand budget and admission control (see
/// [`defaults`](crate::defaults) for what each limit means).
#[derive(Debug, Clone, PartialEq)]
pub struct NestBudget {
    /// Commands per project and user per rolling minute.
    pub qpm: u32,
    /// Commands per device per command kind per minute.
    pub device_command_qpm: u32,
    /// Commands per device per hour, all kinds.
    pub device_qph: u32,
    /// Added to the 60 s window against clock and network jitter.
    pub window_guard: Duration,
    /// Commands per minute kept free for retries and new streams;
    /// `0 <= reserve_per_minute < qpm`.
    pub reserve_per_minute: f64,
    /// Expected lifetime of a generated stream, for planning.
    pub stream_lifetime: Duration,
    /// Commands executing at once.
    pub max_in_flight: u32,
}

impl Default for NestBudget {
    fn default() -> Self {
        Self {
            qpm: d::NEST_QPM,
            device_command_qpm: d::NEST_DEVICE_COMMAND_QPM,
            device_qph: d::NEST_DEVICE_QPH,
            window_guard: d::NEST_WINDOW_GUARD,
            reserve_per_minute: d::NEST_BUDGET_RESERVE,
            stream_lifetime: d::NEST_STREAM_LIFETIME,
            max_in_flight: d::NEST_MAX_IN_FLIGHT,
        }
    }
}

/// Stream-lease tuning: when to extend, how to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTuning {
    /// Floor of the learned margin before expiry at which to extend.
    pub extend_min_margin: Duration,
    /// First retry delay after a failed generate; doubles with jitter.
    pub retry_initial: Duration,
    /// Cap of the retry delay; `retry_initial <= retry_max`.
    pub retry_max: Duration,
    /// Consecutive failures after which a camera shows as degraded.
    pub degraded_after: u32,
}

impl Default for LeaseTuning {
    fn default() -> Self {
        Self {
            extend_min_margin: d::NEST_EXTEND_MIN_MARGIN,
            retry_initial: d::NEST_RETRY_INITIAL,
            retry_max: d::NEST_RETRY_MAX,
            degraded_after: d::NEST_DEGRADED_AFTER,
        }
    }
}

/// Parses the Nest section: `None` when Nest is not configured or has a
/// problem (recorded).
pub(crate) fn parse(check: &mut Check, raw: &RawVars) -> Option<NestConfig> {
    let credentials = credentials(check, raw);
    let api_url = url(
        check,
        var::NEST_API_URL,
        raw.nest_api_url.as_deref(),
        d::NEST_API_URL,
    );
    let token_url = url(
        check,
        var::NEST_TOKEN_URL,
        raw.nest_token_url.as_deref(),
        d::NEST_TOKEN_URL,
    );
    let devices = devices(check, raw.nest_devices.as_deref());
    let stream_lifetime = check.value(
        var::NEST_STREAM_LIFETIME,
        raw.nest_stream_lifetime.as_deref(),
        d::NEST_STREAM_LIFETIME,
        parse::duration_in(d::NEST_STREAM_LIFETIME_MIN, d::NEST_STREAM_LIFETIME_MAX),
    );
    let budget = budget(check, raw, stream_lifetime);
    let lease = lease(check, raw, stream_lifetime);
    let request_timeout = check.value(
        var::NEST_REQUEST_TIMEOUT,
        raw.nest_request_timeout.as_deref(),
        d::NEST_REQUEST_TIMEOUT,
        parse::duration_in(d::NEST_REQUEST_TIMEOUT_MIN, d::NEST_REQUEST_TIMEOUT_MAX),
    );
    let discovery_interval = check.value(
        var::NEST_DISCOVERY_INTERVAL,
        raw.nest_discovery_interval.as_deref(),
        d::NEST_DISCOVERY_INTERVAL,
        parse::duration_in(
            d::NEST_DISCOVERY_INTERVAL_MIN,
            d::NEST_DISCOVERY_INTERVAL_MAX,
        ),
    );
    let Credentials {
        project_id,
        client_id,
        client_secret,
        refresh_token,
    } = credentials??;
    Some(NestConfig {
        project_id,
        client_id,
        client_secret,
        refresh_token,
        api_url: api_url?,
        token_url: token_url?,
        devices: devices?,
        budget: budget?,
        lease: lease?,
        request_timeout: request_timeout?,
        discovery_interval: discovery_interval?,
    })
}

struct Credentials {
    project_id: String,
    client_id: String,
    client_secret: SecretString,
    refresh_token: SecretString,
}

/// `Some(None)`: Nest not configured; `None`: a recorded problem.
fn credentials(check: &mut Check, raw: &RawVars) -> Option<Option<Credentials>> {
    let all = [
        (var::NEST_PROJECT_ID, raw.nest_project_id.is_some()),
        (var::NEST_CLIENT_ID, raw.nest_client_id.is_some()),
        (var::NEST_CLIENT_SECRET, raw.nest_client_secret.is_some()),
        (var::NEST_REFRESH_TOKEN, raw.nest_refresh_token.is_some()),
    ];
    let set: Vec<&str> = all
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
    let project_id = check.optional(
        var::NEST_PROJECT_ID,
        raw.nest_project_id.as_deref(),
        project,
    );
    let client_id = check.optional(
        var::NEST_CLIENT_ID,
        raw.nest_client_id.as_deref(),
        parse::text,
    );
    let client_secret = check.secret(
        var::NEST_CLIENT_SECRET,
        raw.nest_client_secret.as_deref(),
        SecretKind::Token,
    );
    let refresh_token = check.secret(
        var::NEST_REFRESH_TOKEN,
        raw.nest_refresh_token.as_deref(),
        SecretKind::Token,
    );
    if set.is_empty() {
        return Some(None);
    }
    if set.len() < all.len() {
        let verb = if set.len() == 1 { "is" } else { "are" };
        let others = set.join(", ");
        for (name, _) in all.iter().filter(|(_, set)| !set) {
            let message = format!(
                "is not set, but {others} {verb}: Nest access needs all four credentials \
                 (project id, client id, client secret, refresh token) or none"
            );
            check.error(*name, message);
        }
        return None;
    }
    Some(Some(Credentials {
        project_id: project_id?,
        client_id: client_id?,
        client_secret: client_secret?,
        refresh_token: refresh_token?,
    }))
}

/// The project id goes into request paths (`enterprises/{id}/…`).
fn project(value: &str) -> Result<String, String> {
    if value.contains(['/', '?', '#']) || value.contains(char::is_whitespace) {
        Err(format!(
            "{value:?} is not a Device Access project id (it must not contain '/', '?', '#' or spaces)"
        ))
    } else {
        Ok(value.to_owned())
    }
}

fn url(check: &mut Check, variable: &str, raw: Option<&str>, default: &str) -> Option<Url> {
    check.optional(variable, Some(raw.unwrap_or(default)), parse::http_url)
}

/// The allow-list: comma-separated, trimmed, blanks ignored, no duplicates.
/// `Some(None)`: every camera.
fn devices(check: &mut Check, raw: Option<&str>) -> Option<Option<Vec<String>>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let mut devices: Vec<String> = Vec::new();
    let mut ok = true;
    for device in raw.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if devices.iter().any(|seen| seen == device) {
            check.error(
                var::NEST_DEVICES,
                format!("device {device:?} is listed twice"),
            );
            ok = false;
        } else {
            devices.push(device.to_owned());
        }
    }
    ok.then(|| (!devices.is_empty()).then_some(devices))
}

fn budget(
    check: &mut Check,
    raw: &RawVars,
    stream_lifetime: Option<Duration>,
) -> Option<NestBudget> {
    let qpm = check.value(
        var::NEST_QPM,
        raw.nest_qpm.as_deref(),
        d::NEST_QPM,
        parse::u32_in(d::NEST_QPM_MIN, d::NEST_QPM_MAX),
    );
    let device_command_qpm = check.value(
        var::NEST_DEVICE_COMMAND_QPM,
        raw.nest_device_command_qpm.as_deref(),
        d::NEST_DEVICE_COMMAND_QPM,
        parse::u32_in(d::NEST_DEVICE_LIMIT_MIN, u32::MAX),
    );
    let device_qph = check.value(
        var::NEST_DEVICE_QPH,
        raw.nest_device_qph.as_deref(),
        d::NEST_DEVICE_QPH,
        parse::u32_in(d::NEST_DEVICE_LIMIT_MIN, u32::MAX),
    );
    let window_guard = check.value(
        var::NEST_WINDOW_GUARD,
        raw.nest_window_guard.as_deref(),
        d::NEST_WINDOW_GUARD,
        parse::duration_in(Duration::ZERO, d::NEST_WINDOW_GUARD_MAX),
    );
    let reserve = check.value(
        var::NEST_BUDGET_RESERVE,
        raw.nest_budget_reserve.as_deref(),
        d::NEST_BUDGET_RESERVE,
        parse::non_negative_f64,
    );
    let reserve = reserve.zip(qpm).and_then(|(reserve, qpm)| {
        if reserve < f64::from(qpm) {
            Some(reserve)
        } else {
            check.error(
                var::NEST_BUDGET_RESERVE,
                format!("{reserve} must be less than CAMRELAY_NEST_QPM ({qpm}), or no stream could be admitted"),
            );
            None
        }
    });
    let max_in_flight = check.value(
        var::NEST_MAX_IN_FLIGHT,
        raw.nest_max_in_flight.as_deref(),
        d::NEST_MAX_IN_FLIGHT,
        parse::u32_in(d::NEST_MAX_IN_FLIGHT_MIN, d::NEST_MAX_IN_FLIGHT_MAX),
    );
    Some(NestBudget {
        qpm: qpm?,
        device_command_qpm: device_command_qpm?,
        device_qph: device_qph?,
        window_guard: window_guard?,
        reserve_per_minute: reserve?,
        stream_lifetime: stream_lifetime?,
        max_in_flight: max_in_flight?,
    })
}

fn lease(
    check: &mut Check,
    raw: &RawVars,
    stream_lifetime: Option<Duration>,
) -> Option<LeaseTuning> {
    let extend_min_margin = check.value(
        var::NEST_EXTEND_MIN_MARGIN,
        raw.nest_extend_min_margin.as_deref(),
        d::NEST_EXTEND_MIN_MARGIN,
        parse::duration_in(d::NEST_EXTEND_MIN_MARGIN_MIN, d::NEST_EXTEND_MIN_MARGIN_MAX),
    );
    let extend_min_margin = extend_min_margin.and_then(|margin| match stream_lifetime {
        Some(lifetime) if margin >= lifetime => {
            let message = format!(
                "{} must be shorter than CAMRELAY_NEST_STREAM_LIFETIME ({}), or every stream \
                 would be extended as soon as it starts",
                parse::fmt_duration(margin),
                parse::fmt_duration(lifetime)
            );
            check.error(var::NEST_EXTEND_MIN_MARGIN, message);
            None
        }
        _ => Some(margin),
    });
    let retry_initial = check.value(
        var::NEST_RETRY_INITIAL,
        raw.nest_retry_initial.as_deref(),
        d::NEST_RETRY_INITIAL,
        parse::duration_in(d::NEST_RETRY_FLOOR, d::NEST_RETRY_CEILING),
    );
    let retry_max = check.value(
        var::NEST_RETRY_MAX,
        raw.nest_retry_max.as_deref(),
        d::NEST_RETRY_MAX,
        parse::duration_in(d::NEST_RETRY_FLOOR, d::NEST_RETRY_CEILING),
    );
    let retry_initial = retry_initial.and_then(|initial| match retry_max {
        Some(max) if initial > max => {
            let message = format!(
                "{} must not exceed CAMRELAY_NEST_RETRY_MAX ({})",
                parse::fmt_duration(initial),
                parse::fmt_duration(max)
            );
            check.error(var::NEST_RETRY_INITIAL, message);
            None
        }
        _ => Some(initial),
    });
    let degraded_after = check.value(
        var::NEST_DEGRADED_AFTER,
        raw.nest_degraded_after.as_deref(),
        d::NEST_DEGRADED_AFTER,
        parse::u32_in(d::NEST_DEGRADED_AFTER_MIN, u32::MAX),
    );
    Some(LeaseTuning {
        extend_min_margin: extend_min_margin?,
        retry_initial: retry_initial?,
        retry_max: retry_max?,
        degraded_after: degraded_after?,
    })
}
