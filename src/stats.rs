//! The `/stats` document: stable, serializable DTOs built from what the pipeline owns.
//!
//! Field names are part of the operator's contract; add fields, do not rename them. Durations
//! are integer milliseconds (`_ms`) or seconds (`_s`). No field carries a URL with a token.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use camrelay_queue::QueueStats;
use serde::Serialize;
use tokio::time::Instant;

use crate::camera::{Camera, Source};
use crate::lease::Phase;

/// The whole document.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Stats {
    /// camrelay's version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_s: u64,
    /// One entry per camera, ordered by id.
    pub cameras: Vec<CameraStats>,
    /// Totals.
    pub aggregate: Aggregate,
    /// The Nest command queue, when Nest is configured.
    pub queue: Option<QueueStats>,
    /// Nest access, when configured.
    pub nest: Option<NestStats>,
    /// The local RTSP server.
    pub rtsp: RtspStats,
    /// The embedded SFU, when it is the SFU in use.
    pub embedded_sfu: Option<crate::sfu::engine::EngineStats>,
}

/// The local RTSP server (all counters since start).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RtspStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections open now.
    pub connections_open: usize,
    /// Sessions set up.
    pub sessions: u64,
    /// Sessions open now (clients watching or about to).
    pub sessions_open: usize,
    /// Requests answered.
    pub requests: u64,
    /// Requests refused as malformed (400) or with an unsupported transport (461).
    pub bad_requests: u64,
    /// Requests refused for missing or wrong credentials (401).
    pub unauthorized: u64,
    /// Sessions refused for a client limit (453).
    pub refused_limit: u64,
    /// RTP packets sent to clients.
    pub packets_sent: u64,
    /// Bytes sent to clients.
    pub bytes_sent: u64,
    /// Packets a slow client skipped (it resumes at the next keyframe).
    pub packets_dropped: u64,
}

impl RtspStats {
    /// A snapshot of `stats`.
    pub fn of(stats: &camrelay_rtsp::server::ServerStats) -> Self {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Self {
            connections: n(&stats.connections),
            connections_open: stats.connections_open.load(Ordering::Relaxed),
            sessions: n(&stats.sessions),
            sessions_open: stats.sessions_open.load(Ordering::Relaxed),
            requests: n(&stats.requests),
            bad_requests: n(&stats.bad_requests),
            unauthorized: n(&stats.unauthorized),
            refused_limit: n(&stats.refused_limit),
            packets_sent: n(&stats.packets_sent),
            bytes_sent: n(&stats.bytes_sent),
            packets_dropped: n(&stats.packets_dropped),
        }
    }
}

/// A camera's media path: its upstream session and what it feeds its clients.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MediaSnapshot {
    /// An upstream session is delivering now.
    pub connected: bool,
    /// Upstream sessions established.
    pub sessions: u64,
    /// Upstream sessions that failed or ended.
    pub session_failures: u64,
    /// Video frames received.
    pub video_frames_in: u64,
    /// Audio frames received.
    pub audio_frames_in: u64,
    /// Media bytes received.
    pub bytes_in: u64,
    /// RTP packets built once for all clients.
    pub packets_out: u64,
    /// Bytes of those packets.
    pub bytes_out: u64,
    /// Subscribers of the camera's packets now (RTSP clients playing).
    pub subscribers: usize,
    /// RTP packets this camera's RTSP clients lost by falling behind (each then skipped to the
    /// next keyframe), all clients together, since start. The WebRTC publisher's own drops are
    /// `sfu.frames_dropped`.
    pub packets_dropped: u64,
    /// The last upstream error, free of secrets.
    pub last_error: Option<String>,
}

impl MediaSnapshot {
    /// A snapshot of `camera`'s media.
    pub fn of(camera: &Camera) -> Self {
        let m = &camera.media.stats;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Self {
            connected: camera.media.is_live(),
            sessions: n(&m.sessions),
            session_failures: n(&m.session_failures),
            video_frames_in: n(&m.video_frames_in),
            audio_frames_in: n(&m.audio_frames_in),
            bytes_in: n(&m.bytes_in),
            packets_out: n(&m.packets_out),
            bytes_out: n(&m.bytes_out),
            subscribers: camera.media.subscribers(),
            packets_dropped: camera.media.packets_dropped(),
            last_error: m.last_error(),
        }
    }
}

/// One camera.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CameraStats {
    /// Camera id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `rtsp` or `nest`.
    pub kind: &'static str,
    /// The Nest device id.
    pub device: Option<String>,
    /// `idle`, `admitting`, `at_capacity`, `starting`, `live`, `backoff`, `dormant`. A static
    /// camera is `live` while its session delivers, `starting` while wanted but not (yet)
    /// delivering, and `idle` otherwise.
    pub state: Phase,
    /// Repeated failures; still retrying.
    pub degraded: bool,
    /// Holders of demand (clients, viewers, always-on).
    pub demand: usize,
    /// The stream lease, for Nest cameras.
    pub lease: Option<LeaseStats>,
    /// The media path.
    pub media: MediaSnapshot,
    /// The WebRTC publication.
    pub sfu: crate::sfu::publisher::PublishSnapshot,
    /// Browser viewers watching now.
    pub viewers: usize,
    /// Uptime, downtime and incoming bitrate.
    pub availability: crate::media::availability::AvailabilitySnapshot,
}

/// A Nest camera's lease.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LeaseStats {
    /// Milliseconds until the current stream expires.
    pub expires_in_ms: Option<u64>,
    /// Milliseconds until an admission refusal is retried.
    pub retry_in_ms: Option<u64>,
    /// The margin before expiry at which the next extension is due, ms.
    pub margin_ms: u64,
    /// Streams generated.
    pub generated: u64,
    /// Extensions.
    pub extended: u64,
    /// Failed commands.
    pub failures: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Streams lost while wanted.
    pub lost: u64,
    /// Admission refusals.
    pub refusals: u64,
    /// The last failure, free of secrets.
    pub last_error: Option<String>,
}

/// Totals over all cameras.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Aggregate {
    /// Cameras known.
    pub cameras: usize,
    /// Cameras per state.
    pub by_state: BTreeMap<Phase, usize>,
    /// Degraded cameras.
    pub degraded: usize,
    /// Streams lost while wanted, all cameras.
    pub lost: u64,
}

/// Nest access.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct NestStats {
    /// OAuth token requests made.
    pub token_refreshes: u64,
    /// Whether the last device discovery succeeded.
    pub discovered: bool,
    /// The last discovery failure, free of secrets.
    pub discovery_error: Option<String>,
}

fn availability(camera: &Camera, now: Instant) -> crate::media::availability::AvailabilitySnapshot {
    let bytes = camera.media.stats.bytes_in.load(Ordering::Relaxed);
    camera
        .availability
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .snapshot(now, bytes)
}

fn millis_until(at: Option<Instant>, now: Instant) -> Option<u64> {
    at.map(|at| u64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX))
}

impl CameraStats {
    /// A camera's entry at `now`.
    pub fn of(camera: &Camera, now: Instant) -> Self {
        let demand = camera.demand().holders;
        match &camera.source {
            Source::Static { .. } => Self {
                id: camera.id.clone(),
                name: camera.name.clone(),
                kind: "rtsp",
                device: None,
                state: if camera.media.is_live() {
                    Phase::Live
                } else if demand > 0 {
                    Phase::Starting
                } else {
                    Phase::Idle
                },
                degraded: false,
                demand,
                lease: None,
                media: MediaSnapshot::of(camera),
                sfu: camera.publish.snapshot(),
                viewers: camera.viewers.load(Ordering::Relaxed),
                availability: availability(camera, now),
            },
            Source::Nest { device, lease, .. } => {
                let status = lease.borrow().clone();
                let c = &status.counters;
                Self {
                    id: camera.id.clone(),
                    name: camera.name.clone(),
                    kind: "nest",
                    device: Some(device.clone()),
                    state: status.phase,
                    degraded: status.degraded,
                    demand,
                    lease: Some(LeaseStats {
                        expires_in_ms: millis_until(status.expires, now),
                        retry_in_ms: millis_until(status.retry_at, now),
                        margin_ms: u64::try_from(status.margin.as_millis()).unwrap_or(u64::MAX),
                        generated: c.generated,
                        extended: c.extended,
                        failures: c.failures,
                        consecutive_failures: c.consecutive_failures,
                        lost: c.lost,
                        refusals: c.refusals,
                        last_error: c.last_error.clone(),
                    }),
                    media: MediaSnapshot::of(camera),
                    sfu: camera.publish.snapshot(),
                    viewers: camera.viewers.load(Ordering::Relaxed),
                    availability: availability(camera, now),
                }
            }
        }
    }
}

impl Aggregate {
    /// Totals over `cameras`.
    pub fn of(cameras: &[CameraStats]) -> Self {
        let mut by_state = BTreeMap::new();
        for c in cameras {
            *by_state.entry(c.state).or_insert(0) += 1;
        }
        Self {
            cameras: cameras.len(),
            by_state,
            degraded: cameras.iter().filter(|c| c.degraded).count(),
            lost: cameras
                .iter()
                .filter_map(|c| c.lease.as_ref())
                .map(|l| l.lost)
                .sum(),
        }
    }
}

/// The JSON Schema of the `/stats` document (draft 2020-12), from the DTOs above and their
/// doc comments. Closed: every object lists all its fields (`additionalProperties: false`),
/// so a field added to a DTO fails validation until `docs/stats.schema.json` is regenerated
/// (`CAMRELAY_BLESS=1 cargo test --test operator`): the documentation never falls behind.
pub fn schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Stats)).unwrap_or_default();
    close_objects(&mut schema);
    schema
}

fn close_objects(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), false.into());
            }
            for child in map.values_mut() {
                close_objects(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}
