//! The variable names, and sorting an environment into fixed, per-camera and
//! unknown variables.
//!
//! envy deserializes the fixed variables, but it lowercases names and ignores
//! what it does not know, so it only ever sees the exactly spelled names from
//! [`KNOWN`]. Everything else under the prefix is either a per-camera
//! variable or an unknown one, and an unknown one is an error: a typo such as
//! `CAMRELAY_NEST_QMP` would otherwise fall back to a default without a word.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::cameras::CAMERA_PREFIX;
use crate::error::ConfigErrors;

/// The prefix of every variable this crate reads.
pub(crate) const PREFIX: &str = "CAMRELAY_";

/// Declares the fixed variables once: a name constant per variable in
/// [`var`], the [`KNOWN`] list in that order, and envy's [`RawVars`].
///
/// envy maps `CAMRELAY_HTTP_ADDR` to the field `http_addr`, so each field is
/// the lowercase of its constant (a test checks that every name lands in its
/// field).
macro_rules! fixed_variables {
    ($($name:ident => $field:ident,)*) => {
        /// The full name of every fixed variable.
        pub(crate) mod var {
            $(pub(crate) const $name: &str = concat!("CAMRELAY_", stringify!($name));)*
        }

        /// Every fixed variable, in documentation order.
        pub(crate) const KNOWN: &[&str] = &[$(var::$name),*];

        /// The fixed variables as envy hands them over: raw strings, so that
        /// deserializing never fails and every value is checked (and every
        /// problem reported) by us. Unset and empty variables are `None`.
        ///
        /// No `Debug`: the fields hold secrets in the clear.
        #[derive(Default, Deserialize)]
        #[serde(default)]
        pub(crate) struct RawVars {
            $(pub(crate) $field: Option<String>,)*
        }
    };
}

fixed_variables! {
    HTTP_ADDR => http_addr,
    RTSP_ADDR => rtsp_addr,
    LOG => log,
    LOG_FORMAT => log_format,
    ALWAYS_ON => always_on,
    IDLE_GRACE => idle_grace,
    RTSP_UDP => rtsp_udp,
    RTSP_RTP_ADDR => rtsp_rtp_addr,
    RTSP_RTCP_ADDR => rtsp_rtcp_addr,
    RTSP_SESSION_TIMEOUT => rtsp_session_timeout,
    RTSP_MAX_CLIENTS => rtsp_max_clients,
    RTSP_MAX_CLIENTS_PER_CAMERA => rtsp_max_clients_per_camera,
    RTSP_USERNAME => rtsp_username,
    RTSP_PASSWORD => rtsp_password,
    RTSP_START_TIMEOUT => rtsp_start_timeout,
    INGEST_TIMEOUT => ingest_timeout,
    INGEST_RETRY_INITIAL => ingest_retry_initial,
    INGEST_RETRY_MAX => ingest_retry_max,
    EXTRA_CA_FILE => extra_ca_file,
    CAMERAS => cameras,
    NEST_PROJECT_ID => nest_project_id,
    NEST_CLIENT_ID => nest_client_id,
    NEST_CLIENT_SECRET => nest_client_secret,
    NEST_REFRESH_TOKEN => nest_refresh_token,
    NEST_API_URL => nest_api_url,
    NEST_TOKEN_URL => nest_token_url,
    NEST_DEVICES => nest_devices,
    NEST_QPM => nest_qpm,
    NEST_DEVICE_COMMAND_QPM => nest_device_command_qpm,
    NEST_DEVICE_QPH => nest_device_qph,
    NEST_WINDOW_GUARD => nest_window_guard,
    NEST_BUDGET_RESERVE => nest_budget_reserve,
    NEST_STREAM_LIFETIME => nest_stream_lifetime,
    NEST_MAX_IN_FLIGHT => nest_max_in_flight,
    NEST_EXTEND_MIN_MARGIN => nest_extend_min_margin,
    NEST_RETRY_INITIAL => nest_retry_initial,
    NEST_RETRY_MAX => nest_retry_max,
    NEST_DEGRADED_AFTER => nest_degraded_after,
    NEST_REQUEST_TIMEOUT => nest_request_timeout,
    NEST_DISCOVERY_INTERVAL => nest_discovery_interval,
    SFU => sfu,
    CALLS_APP_ID => calls_app_id,
    CALLS_APP_SECRET => calls_app_secret,
    CALLS_API_URL => calls_api_url,
    WHIP_URL => whip_url,
    WHIP_TOKEN => whip_token,
    WEBRTC_IP => webrtc_ip,
    WEBRTC_CONNECT_TIMEOUT => webrtc_connect_timeout,
    SFU_UDP_ADDR => sfu_udp_addr,
    VIEWER_TOKEN => viewer_token,
    VIEWER_USERNAME => viewer_username,
    VIEWER_PASSWORD => viewer_password,
    VIEWER_TIMEOUT => viewer_timeout,
    MAX_VIEWERS => max_viewers,
    ADMIN_ADDR => admin_addr,
    ADMIN_TOKEN => admin_token,
    ENV_FILE => env_file,
}

/// An environment sorted by kind of variable.
pub(crate) struct Input {
    /// The fixed variables that are set to something other than blanks.
    pub(crate) fixed: RawVars,
    /// `CAMRELAY_CAMERA_*` variables by name, blank ones included (their
    /// names are still checked).
    pub(crate) per_camera: BTreeMap<String, String>,
    /// Other `CAMRELAY_*` names: errors, reported once the camera variables
    /// are known (they are suggestions too).
    pub(crate) unknown: BTreeSet<String>,
}

impl Input {
    /// Sorts `vars`, ignoring everything outside the prefix. A name given
    /// twice is an error (which value would win is not obvious).
    pub(crate) fn sort(
        vars: impl IntoIterator<Item = (String, String)>,
        errors: &mut ConfigErrors,
    ) -> Self {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let services: BTreeSet<String> = vars
            .iter()
            .filter(|(name, _)| name.starts_with(PREFIX))
            .filter_map(|(name, _)| name.strip_suffix("_SERVICE_HOST"))
            .map(str::to_owned)
            .collect();
        let mut seen = BTreeSet::new();
        let mut fixed = Vec::new();
        let mut per_camera = BTreeMap::new();
        let mut unknown = BTreeSet::new();
        for (name, value) in vars {
            if !name.starts_with(PREFIX) {
                continue;
            }
            if !seen.insert(name.clone()) {
                errors.push(name, "is set more than once");
                continue;
            }
            if KNOWN.contains(&name.as_str()) {
                if !value.trim().is_empty() {
                    fixed.push((name, value));
                }
            } else if kubernetes_service_link(&name, &services) {
                // Not ours: Kubernetes sets these for a Service named `camrelay` (or
                // `camrelay-…`) in the namespace, unless `enableServiceLinks: false`.
            } else if name.starts_with(CAMERA_PREFIX) {
                per_camera.insert(name, value);
            } else {
                unknown.insert(name);
            }
        }
        Self {
            fixed: deserialize(fixed, errors),
            per_camera,
            unknown,
        }
    }
}

/// Whether `name` is a Kubernetes service link variable of one of `services` (the prefixes
/// `X` for which `X_SERVICE_HOST` is set: Kubernetes always sets it with the others):
/// `X_SERVICE_HOST`, `X_SERVICE_PORT[_{PORT NAME}]`, `X_PORT` or
/// `X_PORT_{number}_{TCP|UDP|SCTP}[_PROTO|_PORT|_ADDR]`. Keyed on the services present, so a
/// typo such as `CAMRELAY_RTSP_PORT` is still reported.
pub(crate) fn kubernetes_service_link(name: &str, services: &BTreeSet<String>) -> bool {
    services.iter().any(|service| {
        let Some(rest) = name.strip_prefix(service.as_str()) else {
            return false;
        };
        if matches!(rest, "_SERVICE_HOST" | "_SERVICE_PORT" | "_PORT")
            || rest
                .strip_prefix("_SERVICE_PORT_")
                .is_some_and(|p| !p.is_empty())
        {
            return true;
        }
        let Some(port) = rest.strip_prefix("_PORT_") else {
            return false;
        };
        let mut parts = port.split('_');
        let number = parts
            .next()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let protocol = parts
            .next()
            .is_some_and(|p| matches!(p, "TCP" | "UDP" | "SCTP"));
        let field = match parts.next() {
            None => true,
            Some(f) => matches!(f, "PROTO" | "PORT" | "ADDR") && parts.next().is_none(),
        };
        number && protocol && field
    })
}

/// Hands the known, non-blank variables to envy. Every field is an
/// `Option<String>`, so this cannot fail on any value; should envy fail all
/// the same, its message is not shown because it might quote a secret.
fn deserialize(fixed: Vec<(String, String)>, errors: &mut ConfigErrors) -> RawVars {
    match envy::prefixed(PREFIX).from_iter(fixed) {
        Ok(raw) => raw,
        Err(_) => {
            errors.push(PREFIX, "internal error: the variables could not be read");
            RawVars::default()
        }
    }
}

/// Names (after the prefix) at least this long may have two typos; shorter
/// ones one. More would suggest unrelated names that share long parts
/// (`CAMRELAY_CAMERA_…_NAME`).
const SUGGEST_LONG_NAME: usize = 8;

/// The name in `candidates` closest to `name`, if it is close enough to be
/// a likely typo (one or two edits, a transposition counting as one).
pub(crate) fn suggest<I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let name = name.to_ascii_uppercase();
    let suffix_len = name.strip_prefix(PREFIX).unwrap_or(&name).chars().count();
    let limit = if suffix_len < SUGGEST_LONG_NAME { 1 } else { 2 };
    candidates
        .into_iter()
        .filter_map(|candidate| {
            let candidate = candidate.as_ref();
            if candidate.len().abs_diff(name.len()) > limit {
                return None;
            }
            let distance = edit_distance(&name, candidate);
            (distance <= limit).then(|| (distance, candidate.to_owned()))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions
/// and adjacent transpositions each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the classic matrix: two rows back, one back, current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            let mut best = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
            if i > 0 && j > 0 && a[i - 1] == cb && ca == b[j - 1] {
                best = best.min(before[j - 1] + 1);
            }
            current[j + 1] = best;
        }
        before = std::mem::replace(&mut previous, current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("QPM", "QMP"), 1);
        assert_eq!(edit_distance("", "ABC"), 3);
        assert_eq!(edit_distance("KITTEN", "SITTING"), 3);
        assert_eq!(edit_distance("SAME", "SAME"), 0);
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            suggest("CAMRELAY_NEST_QMP", KNOWN).as_deref(),
            Some("CAMRELAY_NEST_QPM")
        );
        assert_eq!(
            suggest("camrelay_http_adr", KNOWN).as_deref(),
            Some("CAMRELAY_HTTP_ADDR")
        );
        assert_eq!(suggest("CAMRELAY_FOO", KNOWN), None);
        assert_eq!(suggest("CAMRELAY_COMPLETELY_DIFFERENT", KNOWN), None);
    }

    #[test]
    fn known_names_are_prefixed_and_unique() {
        let unique: BTreeSet<_> = KNOWN.iter().collect();
        assert_eq!(unique.len(), KNOWN.len());
        assert!(KNOWN.iter().all(|name| name.starts_with(PREFIX)));
        assert!(!KNOWN.iter().any(|name| name.starts_with(CAMERA_PREFIX)));
    }
}
