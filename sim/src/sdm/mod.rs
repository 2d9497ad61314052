//! An offline fake of Google's Smart Device Management (SDM) API and its OAuth
//! token endpoint, at least as strict as the real thing.
//!
//! It serves the calls a camera relay makes (token refresh, devices.list,
//! devices.get, and the `CameraLiveStream` commands of executeCommand) with
//! Google's JSON shapes, enforces Google's published rate limits over rolling
//! windows, expires streams and tokens, can inject faults, and counts everything
//! in [`FakeSdmStats`]. Facts and sources are in `shared/research/nest-sdm.md`.
//!
//! # Time
//!
//! All time comes from tokio: budgets and expiry use [`tokio::time::Instant`],
//! and the *virtual wall clock* is `wall_clock_base + (now − start)`. Under
//! `tokio::time::pause()` hours pass in milliseconds and every `Date` header
//! and `expiresAt` stays consistent with them. Each request waits a random
//! latency `L` uniform in `[latency_min, latency_max]` (seeded): a random part
//! before it is processed (so budgets see a jittered arrival time) and the rest
//! after.
//!
//! # Order of checks on executeCommand
//!
//! 1. `Authorization: Bearer` with a live access token, else 401 UNAUTHENTICATED.
//! 2. The project id in the path, else 403 PERMISSION_DENIED.
//! 3. The device id, else 404 NOT_FOUND.
//! 4. Injected [`Fault::Status`] and `failure_rate` 503s: not accepted, counted in
//!    no budget, consume no token.
//! 5. Budgets, else 429 RESOURCE_EXHAUSTED (not counted in any budget):
//!    project+user `command_qpm`, then device+command `device_command_qpm`, then
//!    device `device_qpm`/`device_qph`.
//! 6. The request is *accepted*: it counts in every budget even if it then fails
//!    validation (malformed JSON, unknown command, missing or extra params,
//!    unsupported protocol) with 400.
//!
//! # What is confirmed about Google, and what is our guess
//!
//! Confirmed (docs or public logs): the paths and JSON bodies; the refresh grant
//! and its `invalid_grant` answer; the 401 message; the 429 envelope and its
//! messages `Rate limited for the ExecuteDeviceCommand API for the user.` and
//! `Rate limited for the <Command> command for the user.`; the limits (10 QPM
//! executeCommand per project and user, 5 QPM per command per device, cameras
//! 30 QPM / 100 QPH per device across projects, list 5 QPM, get 10 QPM); the
//! 5-minute stream lifetime; that ExtendRtspStream returns new tokens but no URL
//! and that the URL path is the initial extension token with `auth=` the stream
//! token; the WebRTC offer rule and its 400 message; the 400 FAILED_PRECONDITION
//! for a bad `mediaSessionId`.
//!
//! Our guess, stricter where the truth is unknown:
//! - budgets are rolling 60 s / 3600 s windows (Google's page describes windows
//!   that start with the first command; a rolling window is never more lenient
//!   for a client that stays under it);
//! - the device-budget message `Rate limited for the device.`, and the list/get
//!   messages `Rate limited for the ListDevices/GetDevice API for the user.`;
//! - an old, unknown, stopped or expired RTSP extension token gets 400
//!   FAILED_PRECONDITION `The stream extension token is invalid or has expired.`;
//!   extension tokens and stream tokens are single use (only the latest works);
//! - a wrong project id gets 403 PERMISSION_DENIED, an unknown device 404;
//! - params are validated strictly: `params` must be present, unknown fields at
//!   either level are rejected (Google may ignore some), the body must be sent as
//!   `application/json`;
//! - extension works on every device that supports the protocol (real battery
//!   doorbells cannot extend WebRTC);
//! - the token endpoint only takes a form body (Google also takes JSON) and
//!   rejects two client-authentication methods at once (RFC 6749 §2.3).
//!
//! # Faults
//!
//! [`FakeSdm::inject`] queues faults; see [`Fault`] for which requests each one
//! hits. `failure_rate` and injected faults both count in
//! [`FakeSdmStats::injected_failures`].

mod config;
mod http;
mod state;
mod stats;
mod window;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::{CAMERA_TYPE, FakeDevice, FakeSdmConfig, PROTOCOL_RTSP, PROTOCOL_WEB_RTC};
pub use http::{MAX_BODY_BYTES, router};
pub use state::{Fault, RtspAccessError};
pub use stats::{FakeDeviceStats, FakeSdmStats, RateLimitedStats};

use state::Inner;

/// The fake's shared state: cheap to clone, one per simulated Google.
///
/// Serve it with [`start`] or mount [`router`] yourself. Create it inside a
/// tokio runtime (with paused time, if the test pauses time): its virtual wall
/// clock starts at creation.
#[derive(Clone)]
pub struct FakeSdm {
    shared: Arc<Shared>,
}

struct Shared {
    start: Instant,
    wall_clock_base: SystemTime,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for FakeSdm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSdm")
            .field("wall_clock", &self.wall_clock())
            .finish_non_exhaustive()
    }
}

impl FakeSdm {
    /// A fake with `config`; its clocks start now.
    pub fn new(config: FakeSdmConfig) -> Self {
        let start = Instant::now();
        let inner = Inner::new(config, start);
        Self {
            shared: Arc::new(Shared {
                start,
                wall_clock_base: inner.wall_clock(start),
                inner: Mutex::new(inner),
            }),
        }
    }

    /// The virtual wall clock now: `wall_clock_base + (now − start)`.
    pub fn wall_clock(&self) -> SystemTime {
        let elapsed = Instant::now().saturating_duration_since(self.shared.start);
        let base = self.shared.wall_clock_base;
        base.checked_add(elapsed).unwrap_or(base)
    }

    /// A snapshot of the counters (expired streams swept first).
    pub fn stats(&self) -> FakeSdmStats {
        self.with_inner(|inner, now| inner.stats(now))
    }

    /// Marks whether the relay should be keeping a stream of `device` alive.
    /// Devices are wanted by default. A stream that expires while its device is
    /// wanted counts in [`FakeSdmStats::expired_while_wanted`]. Streams that
    /// expired before this call are counted against the old flag. Unknown
    /// devices are ignored.
    pub fn set_wanted(&self, device: &str, wanted: bool) {
        self.with_inner(|inner, now| inner.set_wanted(now, device, wanted));
    }

    /// Injects `fault` for the next `count` requests it applies to (see
    /// [`Fault`]); faults queue up in order. A `count` of 0 does nothing.
    pub fn inject(&self, fault: Fault, count: u32) {
        self.with_inner(|inner, now| inner.inject(now, fault, count));
    }

    /// Replaces the device list (devices added to or removed from the home).
    pub fn set_devices(&self, devices: Vec<FakeDevice>) {
        self.with_inner(|inner, now| inner.set_devices(now, devices));
    }

    /// Whether an RTSP client may open `{rtsp_base}/{url_path_token}?auth={auth}`:
    /// the stream must be live and `auth` its *current* stream token. Returns the
    /// device id.
    pub fn check_rtsp_access(
        &self,
        url_path_token: &str,
        auth: &str,
    ) -> Result<String, RtspAccessError> {
        self.with_inner(|inner, now| inner.check_rtsp_access(now, url_path_token, auth))
    }

    /// Points the `rtspUrl`s of streams generated from now on at `rtsp_base` (for a simulated
    /// camera started after the API, on a port known only then).
    pub fn set_rtsp_base(&self, rtsp_base: &str) {
        self.with_inner(|inner, _| inner.config.rtsp_base = rtsp_base.to_owned());
    }

    /// Whether the RTSP stream at `{rtsp_base}/{url_path_token}` is live, whatever its
    /// current token (a session opened with an older token survives extensions).
    pub fn rtsp_stream_live(&self, url_path_token: &str) -> bool {
        self.with_inner(|inner, now| inner.rtsp_stream_live(now, url_path_token))
    }

    /// Every random token issued so far (access, stream and extension tokens, without their
    /// prefixes): what must never appear in the relay's logs.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.with_inner(|inner, _| inner.issued_tokens())
    }

    /// Ends `device`'s live RTSP streams now, as Google sometimes does unasked: their
    /// sessions stop and their URLs answer 404. Returns how many ended.
    pub fn drop_rtsp_streams(&self, device: &str) -> usize {
        self.with_inner(|inner, now| inner.drop_rtsp_streams(now, device))
    }

    /// Runs `f` under the lock with `now` read under the lock, so that the
    /// instants the budgets record never go backwards.
    fn with_inner<R>(&self, f: impl FnOnce(&mut Inner, Instant) -> R) -> R {
        let mut inner = self
            .shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        f(&mut inner, now)
    }
}

/// Serves a new [`FakeSdm`] on `127.0.0.1` at a free port, in a spawned task.
pub async fn start(config: FakeSdmConfig) -> std::io::Result<FakeSdmHandle> {
    let sdm = FakeSdm::new(config);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let app = router(sdm.clone());
    let task = tokio::spawn(async move {
        // The signal fires on `send` and also when the sender is dropped.
        let signal = async move {
            let _ = stopped.await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
        {
            tracing::warn!(%error, "fake SDM server failed");
        }
    });
    tracing::debug!(%addr, "fake SDM listening");
    Ok(FakeSdmHandle {
        sdm,
        addr,
        shutdown: Some(shutdown),
        task: Some(task),
    })
}

/// A running fake server. Dropping it (or [`FakeSdmHandle::shutdown`]) stops
/// accepting connections; requests in flight finish.
#[derive(Debug)]
pub struct FakeSdmHandle {
    sdm: FakeSdm,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeSdmHandle {
    /// The address the server listens on (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base URL, `http://127.0.0.1:<port>/v1`.
    pub fn api_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The token endpoint, `http://127.0.0.1:<port>/token`.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The fake's state, e.g. for a camera simulator that checks RTSP access.
    pub fn sdm(&self) -> FakeSdm {
        self.sdm.clone()
    }

    /// See [`FakeSdm::stats`].
    pub fn stats(&self) -> FakeSdmStats {
        self.sdm.stats()
    }

    /// See [`FakeSdm::set_wanted`].
    pub fn set_wanted(&self, device: &str, wanted: bool) {
        self.sdm.set_wanted(device, wanted);
    }

    /// See [`FakeSdm::inject`].
    pub fn inject(&self, fault: Fault, count: u32) {
        self.sdm.inject(fault, count);
    }

    /// See [`FakeSdm::set_devices`].
    pub fn set_devices(&self, devices: Vec<FakeDevice>) {
        self.sdm.set_devices(devices);
    }

    /// See [`FakeSdm::check_rtsp_access`].
    pub fn check_rtsp_access(
        &self,
        url_path_token: &str,
        auth: &str,
    ) -> Result<String, RtspAccessError> {
        self.sdm.check_rtsp_access(url_path_token, auth)
    }

    /// See [`FakeSdm::wall_clock`].
    pub fn wall_clock(&self) -> SystemTime {
        self.sdm.wall_clock()
    }

    /// Stops the server without waiting.
    pub fn shutdown(self) {
        drop(self);
    }

    /// Stops the server and waits until it has closed its connections.
    pub async fn shutdown_and_wait(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "fake SDM server task failed");
        }
    }
}

impl Drop for FakeSdmHandle {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
