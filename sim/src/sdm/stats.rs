//! Counters the fake keeps, served by [`FakeSdm::stats`](super::FakeSdm::stats) and
//! `GET /sim/stats`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything the fake counted since it started. All counts are exact: expired
/// streams are swept before every request and before every snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeSdmStats {
    /// Requests to the token endpoint, whatever their outcome.
    pub token_requests: u64,
    /// Access tokens issued.
    pub access_tokens_issued: u64,
    /// Token requests refused (any 4xx from the token endpoint).
    pub token_errors: u64,
    /// `/v1` requests answered 401 UNAUTHENTICATED.
    pub unauthenticated: u64,
    /// Accepted `devices.list` requests.
    pub device_lists: u64,
    /// Accepted `devices.get` requests.
    pub device_gets: u64,
    /// executeCommand requests received, whatever their outcome.
    pub commands_received: u64,
    /// executeCommand requests that passed every budget (and so count in them),
    /// including those that then failed validation.
    pub commands_accepted: u64,
    /// Accepted executeCommand requests answered with an error (400 INVALID_ARGUMENT
    /// or FAILED_PRECONDITION).
    pub commands_failed: u64,
    /// Requests answered 429, by the budget that refused them.
    pub rate_limited: RateLimitedStats,
    /// Requests answered with an injected fault or a `failure_rate` 503.
    pub injected_failures: u64,
    /// Successful GenerateRtspStream and GenerateWebRtcStream commands.
    pub generates: u64,
    /// Successful ExtendRtspStream and ExtendWebRtcStream commands.
    pub extends: u64,
    /// Successful StopRtspStream and StopWebRtcStream commands.
    pub stops: u64,
    /// Extend commands refused because the token or session was unknown, stale,
    /// stopped or expired.
    pub extend_rejected: u64,
    /// Stop commands refused for the same reasons.
    pub stop_rejected: u64,
    /// Streams alive now (neither stopped nor expired).
    pub streams_live: u64,
    /// Streams that reached their `expiresAt` without being stopped, in total.
    pub streams_expired: u64,
    /// Of `streams_expired`, those whose device was wanted when they expired: the
    /// relay lost a stream it should have kept.
    pub expired_while_wanted: u64,
    /// The largest number of accepted executeCommand requests (project-wide) in
    /// any rolling 60 s window so far.
    pub max_accepted_in_any_window: u64,
    /// The smallest time that was left before `expiresAt` when a successful
    /// extension arrived. Serialized as whole milliseconds.
    #[serde(rename = "min_margin_at_extension_ms", with = "opt_millis")]
    pub min_margin_at_extension: Option<Duration>,
    /// Per device, by device id.
    pub devices: BTreeMap<String, FakeDeviceStats>,
}

/// 429 answers by budget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitedStats {
    /// executeCommand per project and user (`command_qpm`).
    pub project: u64,
    /// One command per device (`device_command_qpm`).
    pub device_command: u64,
    /// executeCommand per device (`device_qpm`, `device_qph`).
    pub device: u64,
    /// `devices.list` (`list_qpm`).
    pub list: u64,
    /// `devices.get` (`get_qpm`).
    pub get: u64,
}

/// Counters of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeDeviceStats {
    /// Whether the device is wanted now (see [`FakeSdm::set_wanted`](super::FakeSdm::set_wanted)).
    pub wanted: bool,
    /// executeCommand requests to this device that passed every budget.
    pub accepted_commands: u64,
    /// executeCommand requests to this device answered 429 (any budget).
    pub rate_limited: u64,
    /// Successful Generate commands.
    pub generates: u64,
    /// Successful Extend commands.
    pub extends: u64,
    /// Successful Stop commands.
    pub stops: u64,
    /// Streams of this device alive now.
    pub streams_live: u64,
    /// Streams of this device that expired.
    pub streams_expired: u64,
    /// Of those, the ones that expired while the device was wanted.
    pub expired_while_wanted: u64,
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => serializer.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
    }
}
