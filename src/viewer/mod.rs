//! Browser viewers: the watch API's state behind `POST /api/cameras/{id}/watch`.
//!
//! A viewer holds two demands on its camera while it lives: an interactive one (the camera
//! starts, a Nest lease asks for a stream ahead of background starts) and a publish one (the
//! camera's publisher puts it into the SFU). The relay creates the viewer's SFU session itself,
//! pulls the camera's tracks into it and returns the SFU's offer; the browser's answer comes
//! back through [`Viewers::answer`]. The SFU's app secret never leaves the relay.
//!
//! A viewer lives while its page sends heartbeats; one silent for the viewer timeout is
//! released by [`Viewers::reap`], which drops its demands (the camera goes idle after the
//! grace when nobody else wants it) and closes its SFU tracks. See docs/design/viewer-api.md.

pub mod api;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use camrelay_api_clients::calls::{
    CallsClient, CallsErrorKind, CallsSession, CloseTracksRequest, NewSessionQuery, SdpType,
    TrackObject, TracksRequest,
};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::camera::{Camera, DemandGuard, PublishGuard, Registry, StartError};

/// Suggested wait after a watch that failed for a passing reason (the camera being republished,
/// a start that took too long).
pub const RETRY_SOON: Duration = Duration::from_secs(2);

/// Shortest interval between sweeps for silent viewers.
pub const MIN_REAP_INTERVAL: Duration = Duration::from_secs(1);

/// How long closing a released viewer's SFU tracks may take.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the watch API needs.
#[derive(Debug, Clone)]
pub struct ViewerSettings {
    /// A viewer silent this long is released.
    pub timeout: Duration,
    /// Viewers served at once.
    pub max_viewers: usize,
    /// How long a watch waits for its camera to come up.
    pub start_timeout: Duration,
    /// How long a watch waits for the live camera's tracks to be published.
    pub publish_timeout: Duration,
}

/// Every viewer, by id.
#[derive(Debug)]
pub struct Viewers {
    calls: CallsClient,
    registry: Arc<Registry>,
    settings: ViewerSettings,
    viewers: Mutex<HashMap<String, Arc<Viewer>>>,
    /// Viewers served or being set up: what `max_viewers` bounds.
    slots: Arc<AtomicUsize>,
}

/// One of the `max_viewers` places, held from the start of a watch until its viewer is
/// released (a watch abandoned half-way gives it back when its future is dropped).
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(slots: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(slots)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One browser watching one camera.
#[derive(Debug)]
struct Viewer {
    camera: Arc<Camera>,
    session: CallsSession,
    /// The publisher's session the tracks were pulled from.
    publisher_session: String,
    /// The viewer session's mids, to close on release.
    mids: Vec<String>,
    last_beat: Mutex<Instant>,
    _demand: DemandGuard,
    _publish: PublishGuard,
    _slot: Slot,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.camera.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Viewer {
    fn beat(&self) {
        *self
            .last_beat
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(
            *self
                .last_beat
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// What a browser needs to start watching.
#[derive(Debug, Clone, Serialize)]
pub struct WatchOffer {
    /// The viewer's id in the answer, heartbeat and leave calls.
    pub viewer_id: String,
    /// The SFU's offer, to answer.
    pub offer: Sdp,
    /// The tracks in the offer.
    pub tracks: Vec<WatchTrack>,
    /// Send a heartbeat this often.
    pub heartbeat_interval_s: u64,
    /// A viewer silent this long is released.
    pub timeout_s: u64,
}

/// An SDP with its type, as `RTCSessionDescriptionInit` has it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Sdp {
    /// `offer` or `answer`.
    #[serde(rename = "type")]
    pub sdp_type: String,
    /// The SDP.
    pub sdp: String,
}

/// One pulled track.
#[derive(Debug, Clone, Serialize)]
pub struct WatchTrack {
    /// Its mid in the offer.
    pub mid: String,
    /// `video` or `audio`.
    pub kind: &'static str,
    /// The camera's track name.
    pub track_name: String,
}

/// What a heartbeat learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Beat {
    /// All well.
    Ok,
    /// The camera was published anew (a new SFU session): watch again.
    Republished,
}

/// Why a watch, answer or heartbeat failed. Messages are for people and free of secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// No such camera.
    #[error("there is no camera {0:?}")]
    NoCamera(String),
    /// No such viewer (released, or never was).
    #[error("this viewer is no longer known to the relay; watch again")]
    NoViewer,
    /// Retry later.
    #[error("{reason}")]
    Unavailable {
        /// Why, for machines: `at_capacity`, `max_viewers`, `start_timeout`, `camera_refused`,
        /// `republishing`, `not_published`.
        code: &'static str,
        /// Why, for people.
        reason: String,
        /// When to retry.
        retry_after: Duration,
    },
    /// The SFU refused.
    #[error("{0}")]
    Sfu(String),
    /// The browser sent something the SFU could not use.
    #[error("{0}")]
    BadRequest(String),
    /// The SFU in use does not speak the Calls API.
    #[error(
        "watching needs an SFU that speaks the Calls API (CAMRELAY_SFU=cloudflare or embedded)"
    )]
    NoSfu,
}

impl Viewers {
    /// Viewers through `calls`, of the cameras in `registry`.
    pub fn new(calls: CallsClient, registry: Arc<Registry>, settings: ViewerSettings) -> Self {
        Self {
            calls,
            registry,
            settings,
            viewers: Mutex::new(HashMap::new()),
            slots: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &ViewerSettings {
        &self.settings
    }

    /// Viewers served now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nobody watches.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Viewer>>> {
        self.viewers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts watching `camera_id`: starts the camera if needed, waits until it is published,
    /// creates the viewer's SFU session with the camera's tracks and returns the SFU's offer.
    pub async fn watch(&self, camera_id: &str) -> Result<WatchOffer, WatchError> {
        let camera = self
            .registry
            .get(camera_id)
            .ok_or_else(|| WatchError::NoCamera(camera_id.to_owned()))?;
        let Some(slot) = Slot::take(&self.slots, self.settings.max_viewers) else {
            return Err(WatchError::Unavailable {
                code: "max_viewers",
                reason: format!(
                    "the relay serves its maximum of {} viewers; try again later",
                    self.settings.max_viewers
                ),
                retry_after: self.settings.timeout,
            });
        };
        let demand = camera.acquire(true);
        let publish = camera.want_published();
        self.wait_started(&camera).await?;
        let published = tokio::time::timeout(self.settings.publish_timeout, camera.publish.published())
            .await
            .ok()
            .flatten()
            .ok_or_else(|| {
                let why = camera
                    .publish
                    .snapshot()
                    .last_error
                    .map_or_else(String::new, |e| format!(" ({e})"));
                WatchError::Unavailable {
                    code: "not_published",
                    reason: format!(
                        "camera {camera_id} is live but could not be published into the SFU in time{why}"
                    ),
                    retry_after: RETRY_SOON,
                }
            })?;
        let publisher_session = published.session_id.unwrap_or_default();
        let session = self
            .calls
            .new_session(&NewSessionQuery::default())
            .await
            .map_err(|e| WatchError::Sfu(format!("the SFU refused a viewer session: {e}")))?;
        let request = TracksRequest::pull(
            published
                .tracks
                .iter()
                .map(|name| TrackObject::remote(publisher_session.clone(), name.clone()))
                .collect(),
        );
        let pulled = session
            .new_tracks(&request)
            .await
            .map_err(|e| match e.kind {
                // The publication went away between our look and the pull: it is being replaced.
                CallsErrorKind::TrackErrors { .. } | CallsErrorKind::SessionGone(_) => {
                    WatchError::Unavailable {
                        code: "republishing",
                        reason: format!("camera {camera_id} is being published anew"),
                        retry_after: RETRY_SOON,
                    }
                }
                _ => WatchError::Sfu(format!("the SFU refused the camera's tracks: {e}")),
            })?;
        // From here until the viewer is registered, a failure or an abandoned request (the
        // browser gone, its future dropped) closes the pulled tracks instead of leaving them to
        // the SFU's own timeout.
        let mut pending = PendingTracks {
            session: Some(session.clone()),
            mids: pulled
                .tracks
                .iter()
                .filter_map(|t| t.track.mid.clone())
                .collect(),
        };
        let offer = pulled
            .session_description
            .filter(|d| d.sdp_type == SdpType::Offer)
            .ok_or_else(|| WatchError::Sfu("the SFU sent no offer for the viewer".to_owned()))?;
        let tracks: Vec<WatchTrack> = pulled
            .tracks
            .into_iter()
            .filter_map(|t| {
                let mid = t.track.mid?;
                let track_name = t.track.track_name.unwrap_or_default();
                let kind = match t.track.kind {
                    Some(camrelay_api_clients::calls::MediaKind::Audio) => "audio",
                    Some(camrelay_api_clients::calls::MediaKind::Video) => "video",
                    None if track_name.ends_with("-audio") => "audio",
                    None => "video",
                };
                Some(WatchTrack {
                    mid,
                    kind,
                    track_name,
                })
            })
            .collect();
        let viewer_id = crate::sfu::random_id();
        camera.viewers.fetch_add(1, Ordering::Relaxed);
        let viewer = Arc::new(Viewer {
            camera: Arc::clone(&camera),
            session,
            publisher_session,
            mids: tracks.iter().map(|t| t.mid.clone()).collect(),
            last_beat: Mutex::new(Instant::now()),
            _demand: demand,
            _publish: publish,
            _slot: slot,
        });
        let session_id = viewer.session.id().to_owned();
        pending.session = None;
        self.lock().insert(viewer_id.clone(), viewer);
        // The viewer's SFU session names it in the logs; its viewer id is its handle on the
        // API and stays out of them.
        tracing::info!(
            camera = %camera_id,
            session = %session_id,
            viewers = camera.viewers.load(Ordering::Relaxed),
            "viewer joined"
        );
        Ok(WatchOffer {
            viewer_id,
            offer: Sdp {
                sdp_type: "offer".to_owned(),
                sdp: offer.sdp,
            },
            tracks,
            heartbeat_interval_s: self.heartbeat_interval().as_secs().max(1),
            timeout_s: self.settings.timeout.as_secs(),
        })
    }

    /// How often pages beat: a third of the timeout, so two lost beats are forgiven.
    pub fn heartbeat_interval(&self) -> Duration {
        self.settings.timeout / 3
    }

    async fn wait_started(&self, camera: &Camera) -> Result<(), WatchError> {
        let started = tokio::time::timeout(self.settings.start_timeout, camera.wait_live()).await;
        match started {
            Ok(Ok(())) => Ok(()),
            Ok(Err(StartError::AtCapacity { retry_after })) => Err(WatchError::Unavailable {
                code: "at_capacity",
                reason: "at capacity: the Nest API budget cannot start one more camera now"
                    .to_owned(),
                retry_after: retry_after
                    .unwrap_or(RETRY_SOON)
                    .max(Duration::from_secs(1)),
            }),
            Ok(Err(e @ StartError::Refused)) => Err(WatchError::Unavailable {
                code: "camera_refused",
                reason: format!("camera {}: {e}", camera.id),
                retry_after: self.settings.start_timeout,
            }),
            Ok(Err(StartError::Removed)) => Err(WatchError::NoCamera(camera.id.clone())),
            Err(_) => Err(WatchError::Unavailable {
                code: "start_timeout",
                reason: format!(
                    "camera {} did not start within {} s",
                    camera.id,
                    self.settings.start_timeout.as_secs()
                ),
                retry_after: RETRY_SOON,
            }),
        }
    }

    fn viewer(&self, camera_id: &str, viewer_id: &str) -> Result<Arc<Viewer>, WatchError> {
        self.lock()
            .get(viewer_id)
            .filter(|v| v.camera.id == camera_id)
            .cloned()
            .ok_or(WatchError::NoViewer)
    }

    /// Hands the browser's answer to the SFU.
    pub async fn answer(
        &self,
        camera_id: &str,
        viewer_id: &str,
        answer: &Sdp,
    ) -> Result<(), WatchError> {
        if answer.sdp_type != "answer" {
            return Err(WatchError::BadRequest(format!(
                "expected an SDP of type \"answer\", not {:?}",
                answer.sdp_type
            )));
        }
        let viewer = self.viewer(camera_id, viewer_id)?;
        viewer.beat();
        viewer
            .session
            .renegotiate(&answer.sdp)
            .await
            .map(drop)
            .map_err(|e| match e.kind {
                CallsErrorKind::Rejected { .. } => {
                    WatchError::BadRequest(format!("the SFU rejected the answer: {e}"))
                }
                CallsErrorKind::SessionGone(_) | CallsErrorKind::NotFound(_) => {
                    WatchError::NoViewer
                }
                _ => WatchError::Sfu(format!("the SFU did not take the answer: {e}")),
            })
    }

    /// Keeps a viewer alive; tells it to watch again when the camera was republished.
    pub fn heartbeat(&self, camera_id: &str, viewer_id: &str) -> Result<Beat, WatchError> {
        let viewer = self.viewer(camera_id, viewer_id)?;
        viewer.beat();
        let current = viewer.camera.publish.snapshot().session_id;
        Ok(match current {
            Some(session) if session != viewer.publisher_session => Beat::Republished,
            _ => Beat::Ok,
        })
    }

    /// Releases a viewer at once.
    pub fn leave(&self, camera_id: &str, viewer_id: &str) -> Result<(), WatchError> {
        self.viewer(camera_id, viewer_id)?;
        // Only what this call removed: a concurrent sweep may have released it already.
        let removed = self.lock().remove(viewer_id).ok_or(WatchError::NoViewer)?;
        release(removed, "left");
        Ok(())
    }

    /// Releases the viewers silent for the timeout, and those of removed cameras.
    pub fn reap(&self) {
        let now = Instant::now();
        let timeout = self.settings.timeout;
        let expired: Vec<Arc<Viewer>> = {
            let mut viewers = self.lock();
            let ids: Vec<String> = viewers
                .iter()
                .filter(|(_, v)| v.silent_for(now) >= timeout || v.camera.cancel.is_cancelled())
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| viewers.remove(id)).collect()
        };
        for viewer in expired {
            release(viewer, "timed out");
        }
    }

    /// Sweeps for silent viewers until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let interval = (self.settings.timeout / 4).max(MIN_REAP_INTERVAL);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(interval) => self.reap(),
            }
        }
        let all: Vec<Arc<Viewer>> = self.lock().drain().map(|(_, v)| v).collect();
        for viewer in all {
            release(viewer, "shutdown");
        }
    }
}

/// Tracks pulled for a viewer that is not registered yet: closed when dropped armed.
struct PendingTracks {
    session: Option<CallsSession>,
    mids: Vec<String>,
}

impl Drop for PendingTracks {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            close_tracks(session, std::mem::take(&mut self.mids));
        }
    }
}

/// Drops a viewer's demands now and closes its SFU tracks in the background (best effort: the
/// SFU also drops a session whose browser went away).
fn release(viewer: Arc<Viewer>, why: &'static str) {
    tracing::info!(
        camera = %viewer.camera.id,
        session = viewer.session.id(),
        why,
        "viewer released"
    );
    let session = viewer.session.clone();
    let mids = viewer.mids.clone();
    drop(viewer);
    close_tracks(session, mids);
}

/// Closes `mids` of `session` in the background (best effort, bounded).
fn close_tracks(session: CallsSession, mids: Vec<String>) {
    if mids.is_empty() {
        return;
    }
    // A drop outside the runtime (at exit) leaves them to the SFU's own timeout.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let request = CloseTracksRequest::forced(mids);
        match tokio::time::timeout(CLOSE_TIMEOUT, session.close_tracks(&request)).await {
            Ok(Err(e)) => tracing::debug!(error = %e, "closing a viewer's tracks failed"),
            Err(_) => tracing::debug!("closing a viewer's tracks timed out"),
            Ok(Ok(_)) => {}
        }
    });
}
