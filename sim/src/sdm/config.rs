//! What the fake serves and how strict it is.

use std::time::{Duration, SystemTime};

/// Device type string Google uses for cameras (`sdm.devices.types.CAMERA`).
pub const CAMERA_TYPE: &str = "sdm.devices.types.CAMERA";
/// Value of `supportedProtocols` for RTSP streaming.
pub const PROTOCOL_RTSP: &str = "RTSP";
/// Value of `supportedProtocols` for WebRTC streaming.
pub const PROTOCOL_WEB_RTC: &str = "WEB_RTC";

/// 2026-01-01T00:00:00Z, the default start of the virtual wall clock.
const DEFAULT_WALL_CLOCK_BASE_SECS: u64 = 1_767_225_600;

/// Configuration of a [`FakeSdm`](super::FakeSdm).
///
/// The defaults are Google's published Sandbox limits (see the module docs of
/// [`sdm`](super)). Every rate is counted over a rolling window ending at the
/// request's arrival: a request at `t` counts the accepted requests in
/// `(t − window, t]`.
#[derive(Debug, Clone)]
pub struct FakeSdmConfig {
    /// The Device Access project id: the `{project}` in `/v1/enterprises/{project}/…`.
    pub project_id: String,
    /// OAuth client id the token endpoint accepts.
    pub client_id: String,
    /// OAuth client secret the token endpoint accepts.
    pub client_secret: String,
    /// The one refresh token the token endpoint accepts.
    pub refresh_token: String,
    /// Devices of the single authorized user, listed in this order.
    pub devices: Vec<FakeDevice>,
    /// `devices.executeCommand` per project and user, per 60 s (Google: 10).
    pub command_qpm: u32,
    /// Each command per project, user and device, per 60 s (Google: 5).
    pub device_command_qpm: u32,
    /// executeCommand per device, per 60 s (Google, cameras: 30).
    pub device_qpm: u32,
    /// executeCommand per device, per 3600 s (Google, cameras: 100).
    pub device_qph: u32,
    /// `devices.list` per project and user, per 60 s (Google: 5).
    pub list_qpm: u32,
    /// `devices.get` per project and user, per 60 s (Google: 10).
    pub get_qpm: u32,
    /// How long a stream lives after Generate or Extend (Google: 5 min).
    pub stream_lifetime: Duration,
    /// How long an access token is accepted after it was issued (Google: ~1 h).
    pub access_token_lifetime: Duration,
    /// Smallest simulated network latency of one request (request + response).
    pub latency_min: Duration,
    /// Largest simulated network latency of one request (request + response).
    pub latency_max: Duration,
    /// Fraction (0..=1) of executeCommand requests answered 503 UNAVAILABLE
    /// before the budgets see them.
    pub failure_rate: f64,
    /// Seed of the one random generator behind latency, failures and tokens.
    pub seed: u64,
    /// Prefix of the `rtspUrl`s handed out: `{rtsp_base}/{token}?auth={streamToken}`.
    pub rtsp_base: String,
    /// Virtual wall-clock time at the moment the fake is created.
    pub wall_clock_base: SystemTime,
}

impl Default for FakeSdmConfig {
    fn default() -> Self {
        Self {
            project_id: "sim-project".to_owned(),
            client_id: "sim-client-id".to_owned(),
            client_secret: "sim-client-secret".to_owned(),
            refresh_token: "sim-refresh-token".to_owned(),
            devices: vec![
                FakeDevice::rtsp_camera("device-001", "Front Door", "Entryway"),
                FakeDevice::rtsp_camera("device-002", "Backyard", "Backyard"),
                FakeDevice::rtsp_camera("device-003", "Garage", "Garage"),
                FakeDevice::webrtc_camera("device-004", "Nursery", "Nursery"),
            ],
            command_qpm: 10,
            device_command_qpm: 5,
            device_qpm: 30,
            device_qph: 100,
            list_qpm: 5,
            get_qpm: 10,
            stream_lifetime: Duration::from_secs(5 * 60),
            access_token_lifetime: Duration::from_secs(60 * 60),
            latency_min: Duration::ZERO,
            latency_max: Duration::ZERO,
            failure_rate: 0.0,
            seed: 1,
            rtsp_base: "rtsps://127.0.0.1:8443/sdm_live_stream".to_owned(),
            wall_clock_base: SystemTime::UNIX_EPOCH
                + Duration::from_secs(DEFAULT_WALL_CLOCK_BASE_SECS),
        }
    }
}

impl FakeSdmConfig {
    /// The default configuration with `n` RTSP cameras instead of the default
    /// devices: ids `device-001`, `device-002`, …, names `Camera 1` … `Camera n`,
    /// each in its own room `Room 1` … `Room n`.
    pub fn with_rtsp_cameras(n: usize) -> Self {
        let devices = (1..=n)
            .map(|i| {
                FakeDevice::rtsp_camera(
                    &format!("device-{i:03}"),
                    &format!("Camera {i}"),
                    &format!("Room {i}"),
                )
            })
            .collect();
        Self {
            devices,
            ..Self::default()
        }
    }
}

/// One device as the SDM API describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDevice {
    /// The last segment of the device's resource name.
    pub id: String,
    /// `sdm.devices.traits.Info.customName`.
    pub custom_name: String,
    /// `parentRelations[0].displayName` (the room).
    pub room: String,
    /// Full type string, e.g. [`CAMERA_TYPE`].
    pub device_type: String,
    /// `supportedProtocols`: [`PROTOCOL_RTSP`] and/or [`PROTOCOL_WEB_RTC`].
    /// RTSP commands need `RTSP`, WebRTC commands need `WEB_RTC`.
    pub protocols: Vec<String>,
    /// `maxVideoResolution.width`.
    pub width: u32,
    /// `maxVideoResolution.height`.
    pub height: u32,
    /// `videoCodecs`, e.g. `["H264"]`.
    pub video_codecs: Vec<String>,
    /// `audioCodecs`, e.g. `["AAC"]` (RTSP) or `["OPUS"]` (WebRTC).
    pub audio_codecs: Vec<String>,
}

impl FakeDevice {
    /// A wired legacy Nest camera that streams over RTSP (H.264 + AAC, 640×480 as
    /// in Google's trait example).
    pub fn rtsp_camera(id: &str, custom_name: &str, room: &str) -> Self {
        Self {
            id: id.to_owned(),
            custom_name: custom_name.to_owned(),
            room: room.to_owned(),
            device_type: CAMERA_TYPE.to_owned(),
            protocols: vec![PROTOCOL_RTSP.to_owned()],
            width: 640,
            height: 480,
            video_codecs: vec!["H264".to_owned()],
            audio_codecs: vec!["AAC".to_owned()],
        }
    }

    /// A newer (e.g. battery) Nest camera that only streams over WebRTC
    /// (H.264 + Opus).
    pub fn webrtc_camera(id: &str, custom_name: &str, room: &str) -> Self {
        Self {
            protocols: vec![PROTOCOL_WEB_RTC.to_owned()],
            width: 1920,
            height: 1080,
            audio_codecs: vec!["OPUS".to_owned()],
            ..Self::rtsp_camera(id, custom_name, room)
        }
    }

    /// Whether `supportedProtocols` contains `protocol`.
    pub fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p == protocol)
    }
}
