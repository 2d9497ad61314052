//! One task per camera pulls its stream with retina while the camera is wanted, and feeds the
//! frames to the camera's packager and hub.
//!
//! A static camera is pulled while it has demand, and for the idle grace after the last holder
//! leaves. A Nest camera is pulled while its lease is live: the lease owns demand, the grace and
//! the URL; the ingest only reconnects with the newest URL, and tells the lease when Google
//! refuses one (the stream is gone). Failed sessions are retried with capped, jittered
//! exponential backoff; a session that delivered media resets it.

mod digest;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use camrelay_api_clients::nest::StreamUrl;
use camrelay_rtsp::aac::AudioConfig;
use futures_util::StreamExt;
use retina::client::{
    InitialTimestampPolicy, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions,
    TeardownPolicy,
};
use retina::codec::{CodecItem, FrameFormat, ParameterSetInsertion, ParametersRef};
use secrecy::ExposeSecret;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::camera::{Camera, Credentials, Source};
use crate::lease::Demand;
use crate::lease::machine::Phase;
use crate::lease::task::LeaseStatus;
use crate::media::packager::Packager;
use tls::{Bridge, TlsClients};

/// The User-Agent the relay's RTSP client sends.
pub const USER_AGENT: &str = concat!("camrelay/", env!("CARGO_PKG_VERSION"));

/// A session that delivered media for this long resets the backoff: its end was not the same
/// failure repeating.
pub const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// How the ingest behaves.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Bounds each step of a session (connect, `DESCRIBE`, `SETUP`, `PLAY`) and the silence
    /// between frames before the session is given up.
    pub timeout: Duration,
    /// First retry delay after a failure.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How long a static camera stays pulled after its last client left.
    pub idle_grace: Duration,
    /// TLS settings for `rtsps://` cameras.
    pub tls: TlsClients,
}

/// What to pull right now.
#[derive(Debug, Clone)]
struct Target {
    url: StreamUrl,
    credentials: Option<Credentials>,
    tls_verify: bool,
    /// The lease's generation of a Nest URL.
    generation: Option<u64>,
}

impl Target {
    /// Whether a session on `self` should give way to `next`: a different stream. A Nest URL
    /// whose stream token changed after an extension is the same stream; the running session
    /// keeps it.
    fn replaced_by(&self, next: &Self) -> bool {
        let (a, b) = (self.url.expose(), next.url.expose());
        a.host_str() != b.host_str() || a.port() != b.port() || a.path() != b.path()
    }
}

/// Why a session ended.
#[derive(Debug)]
enum Ended {
    /// The camera refused the URL (401/403/404): for Nest, the stream is gone.
    Refused(String),
    /// Anything else; retried.
    Failed(String),
}

impl Ended {
    fn message(&self) -> &str {
        match self {
            Self::Refused(m) | Self::Failed(m) => m,
        }
    }
}

/// A static camera's demand history, for the idle grace.
#[derive(Clone, Copy)]
enum Idle {
    /// Nobody has wanted the camera yet: nothing to keep warm.
    Never,
    /// Someone wants it now.
    Held,
    /// The last holder left at this instant; the grace runs from there.
    Since(Instant),
}

/// Where a camera's wants come from.
enum Wants {
    Static {
        url: StreamUrl,
        credentials: Option<Credentials>,
        tls_verify: bool,
        demand: watch::Receiver<Demand>,
        idle_grace: Duration,
        idle: Idle,
    },
    Nest {
        lease: watch::Receiver<LeaseStatus>,
        rejected: mpsc::Sender<u64>,
    },
}

impl Wants {
    fn new(camera: &Camera, idle_grace: Duration) -> Self {
        match &camera.source {
            Source::Static {
                url,
                credentials,
                tls_verify,
            } => Self::Static {
                url: url.clone(),
                credentials: credentials.clone(),
                tls_verify: *tls_verify,
                demand: camera.watch_demand(),
                idle_grace,
                idle: Idle::Never,
            },
            Source::Nest {
                lease, rejected, ..
            } => Self::Nest {
                lease: lease.clone(),
                rejected: rejected.clone(),
            },
        }
    }

    /// What to pull now, if anything.
    fn current(&mut self) -> Option<Target> {
        match self {
            Self::Static {
                url,
                credentials,
                tls_verify,
                demand,
                idle_grace,
                idle,
            } => {
                if demand.borrow_and_update().holders > 0 {
                    *idle = Idle::Held;
                } else {
                    match *idle {
                        Idle::Never => return None,
                        Idle::Held => *idle = Idle::Since(Instant::now()),
                        Idle::Since(since) if Instant::now() >= since + *idle_grace => return None,
                        Idle::Since(_) => {}
                    }
                }
                Some(Target {
                    url: url.clone(),
                    credentials: credentials.clone(),
                    tls_verify: *tls_verify,
                    generation: None,
                })
            }
            Self::Nest { lease, .. } => {
                let status = lease.borrow_and_update();
                match (&status.url, status.phase) {
                    (Some(url), Phase::Live) => Some(Target {
                        url: url.clone(),
                        credentials: None,
                        tls_verify: true,
                        generation: Some(status.generation),
                    }),
                    _ => None,
                }
            }
        }
    }

    /// Resolves when [`Wants::current`] may have changed. Never resolves once the source is
    /// gone (the camera's cancellation ends the task).
    async fn changed(&mut self) {
        match self {
            Self::Static {
                demand,
                idle_grace,
                idle,
                ..
            } => {
                let grace_end = match *idle {
                    Idle::Since(since) => Some(since + *idle_grace),
                    Idle::Never | Idle::Held => None,
                };
                tokio::select! {
                    changed = demand.changed() => if changed.is_err() {
                        std::future::pending::<()>().await;
                    },
                    () = sleep_until(grace_end.filter(|end| *end > Instant::now())) => {}
                }
            }
            Self::Nest { lease, .. } => {
                if lease.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Tells the lease that the camera refused `target`'s URL.
    fn refused(&self, target: &Target) {
        if let (Self::Nest { rejected, .. }, Some(generation)) = (self, target.generation) {
            // Full means refusals are already waiting: one is enough.
            let _ = rejected.try_send(generation);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Pulls `camera` whenever it is wanted, until `cancel`.
pub async fn run(camera: Arc<Camera>, settings: IngestSettings, cancel: CancellationToken) {
    let mut wants = Wants::new(&camera, settings.idle_grace);
    let mut ingest = Ingest {
        camera: Arc::clone(&camera),
        packager: Packager::new(),
        group: Arc::new(SessionGroup::default()),
        settings,
    };
    let mut backoff = ingest.backoff();
    let mut last_quick: Option<Instant> = None;
    loop {
        // Wait until wanted.
        let target = loop {
            if let Some(target) = wants.current() {
                break target;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = wants.changed() => {}
            }
        };
        let started = Instant::now();
        let result = tokio::select! {
            () = cancel.cancelled() => None,
            result = ingest.session(&target) => Some(result),
            () = until_unwanted(&mut wants, &target) => Some(Ok(())),
        };
        let was_live = camera.media.is_live();
        camera.media.session_ended();
        let Some(result) = result else {
            return;
        };
        let Err(ended) = result else {
            // No longer wanted (or a different stream): no failure, no delay.
            tracing::debug!(camera = %camera.id, "ingest stopped");
            continue;
        };
        let message = ended.message().to_owned();
        camera.media.stats.failed(message.clone());
        if started.elapsed() >= HEALTHY_SESSION {
            backoff = ingest.backoff();
        }
        // A session that played is retried at once (a camera restarting, a Nest stream
        // Google ended: a 404 then tells the lease at once), at most once per
        // HEALTHY_SESSION; anything else backs off.
        let quick = was_live && last_quick.is_none_or(|at| started >= at + HEALTHY_SESSION);
        let delay = if quick {
            last_quick = Some(Instant::now());
            Duration::ZERO
        } else {
            backoff.next().unwrap_or(ingest.settings.retry_max)
        };
        tracing::warn!(camera = %camera.id, error = %message, retry_in_ms = delay.as_millis(), "camera session failed");
        if let Ended::Refused(_) = ended {
            wants.refused(&target);
            camera.media.refused();
        }
        // Wait out the delay, unless the target changes (a new Nest stream is worth trying at
        // once) or the camera stops being wanted.
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(until) => break,
                () = wants.changed() => {
                    match wants.current() {
                        Some(next) if next.replaced_by(&target) => break,
                        Some(_) => {}
                        None => break,
                    }
                }
            }
        }
    }
}

/// Resolves when `target` is no longer what should be pulled.
async fn until_unwanted(wants: &mut Wants, target: &Target) {
    loop {
        wants.changed().await;
        match wants.current() {
            Some(next) if !target.replaced_by(&next) => {}
            _ => return,
        }
    }
}

struct Ingest {
    camera: Arc<Camera>,
    packager: Packager,
    group: Arc<SessionGroup>,
    settings: IngestSettings,
}

impl Ingest {
    fn backoff(&self) -> ExponentialBackoff {
        // backon's jitter adds up to 100%, so its cap is half of ours.
        ExponentialBuilder::new()
            .with_min_delay(self.settings.retry_initial)
            .with_max_delay((self.settings.retry_max / 2).max(self.settings.retry_initial))
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// One upstream session: connect, describe, set up, play, and relay frames until it fails.
    async fn session(&mut self, target: &Target) -> Result<(), Ended> {
        let timeout = self.settings.timeout;
        let secrets = Secrets::of(target);
        let url = target.url.expose();
        let mut bridge = None;
        let session_url = if url.scheme() == "rtsps" {
            let tls = self
                .settings
                .tls
                .config(target.tls_verify)
                .map_err(Ended::Failed)?;
            let started = Bridge::start(url, tls, timeout, target.credentials.clone())
                .await
                .map_err(|e| Ended::Failed(format!("cannot start the TLS bridge: {e}")))?;
            let local = started.url().clone();
            bridge = Some(started);
            local
        } else {
            url.clone()
        };
        let teardown = if target.generation.is_some() {
            // A Nest stream ends with StopRtspStream; a TEARDOWN would only cost a round trip.
            TeardownPolicy::Never
        } else {
            TeardownPolicy::Auto
        };
        let options = SessionOptions::default()
            .creds(
                target
                    .credentials
                    .as_ref()
                    .map(|c| retina::client::Credentials {
                        username: c.username.clone(),
                        password: c.password.expose_secret().to_owned(),
                    }),
            )
            .user_agent(USER_AGENT.to_owned())
            .session_group(Arc::clone(&self.group))
            .teardown(teardown);
        let mut session = step(
            timeout,
            "DESCRIBE",
            Session::describe(session_url, options),
            &secrets,
        )
        .await
        .map_err(|ended| {
            // Through the bridge, a TLS failure shows to retina as a closed connection.
            match bridge.as_ref().and_then(Bridge::failure) {
                Some(failure) => {
                    Ended::Failed(format!("DESCRIBE: {}", secrets.clean_text(&failure)))
                }
                None => ended,
            }
        })?;
        let streams = session.streams();
        let video = streams
            .iter()
            .position(|s| s.media() == "video" && s.encoding_name() == "h264")
            .ok_or_else(|| {
                Ended::Failed("the camera offers no H.264 video (only H.264 is relayed)".into())
            })?;
        let audio = streams.iter().enumerate().find_map(|(i, s)| {
            if s.media() != "audio" || s.encoding_name() != "mpeg4-generic" {
                return None;
            }
            match s.parameters() {
                Some(ParametersRef::Audio(p)) => AudioConfig::parse(p.extra_data()).map(|c| (i, c)),
                _ => None,
            }
        });
        if audio.is_none() && streams.iter().any(|s| s.media() == "audio") {
            tracing::info!(camera = %self.camera.id, "camera audio is not AAC; relaying video only");
        }
        let format = FrameFormat {
            h26x_framing: retina::codec::h26x::Framing::AnnexB,
            parameter_set_insertion: ParameterSetInsertion::EachKeyFrame,
            aac_framing: retina::codec::aac::Framing::Raw,
        };
        step(
            timeout,
            "SETUP",
            session.setup(video, SetupOptions::default().frame_format(format)),
            &secrets,
        )
        .await?;
        if let Some((index, _)) = &audio {
            step(
                timeout,
                "SETUP",
                session.setup(*index, SetupOptions::default().frame_format(format)),
                &secrets,
            )
            .await?;
        }
        let playing = step(
            timeout,
            "PLAY",
            session.play(
                // Cameras often omit `rtptime` in RTP-Info (our own server does
                // before its first packet); the relay re-times frames anyway.
                PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive),
            ),
            &secrets,
        )
        .await?;
        let mut frames = playing
            .demuxed()
            .map_err(|e| Ended::Failed(secrets.clean(&e)))?;
        let audio_index = audio.as_ref().map(|(i, _)| *i);
        let media = &self.camera.media;
        if let Some(description) = self.packager.new_session(audio.map(|(_, c)| c)) {
            media.publish(crate::media::packager::Output {
                packets: Vec::new(),
                description: Some(description),
                frame: None,
            });
        }
        media.stats.sessions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(camera = %self.camera.id, url = %target.url, "camera session playing");
        loop {
            let item = match tokio::time::timeout(timeout, frames.next()).await {
                Err(_) => {
                    return Err(Ended::Failed(format!(
                        "no media for {} s",
                        timeout.as_secs()
                    )));
                }
                Ok(None) => return Err(Ended::Failed("the camera ended the session".into())),
                Ok(Some(Err(e))) => return Err(Ended::Failed(secrets.clean(&e))),
                Ok(Some(Ok(item))) => item,
            };
            let now = std::time::Instant::now();
            match item {
                CodecItem::VideoFrame(frame) if frame.stream_id() == video => {
                    media.stats.video_frames_in.fetch_add(1, Ordering::Relaxed);
                    let elapsed = frame.timestamp().elapsed();
                    let data = Bytes::from(frame.into_data());
                    media
                        .stats
                        .bytes_in
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    media.publish(self.packager.video(&data, elapsed, now));
                }
                CodecItem::AudioFrame(frame) if Some(frame.stream_id()) == audio_index => {
                    media.stats.audio_frames_in.fetch_add(1, Ordering::Relaxed);
                    media
                        .stats
                        .bytes_in
                        .fetch_add(frame.data().len() as u64, Ordering::Relaxed);
                    let elapsed = frame.timestamp().elapsed();
                    let data = Bytes::copy_from_slice(frame.data());
                    media.publish(self.packager.audio(&data, elapsed, now));
                }
                _ => {}
            }
        }
    }
}

/// Runs one step of the session within `timeout`.
async fn step<T>(
    timeout: Duration,
    what: &str,
    future: impl std::future::Future<Output = Result<T, retina::Error>>,
    secrets: &Secrets,
) -> Result<T, Ended> {
    match tokio::time::timeout(timeout, future).await {
        Err(_) => Err(Ended::Failed(format!(
            "{what} got no answer in {} s",
            timeout.as_secs()
        ))),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            let message = format!("{what}: {}", secrets.clean(&e));
            match e.status_code() {
                Some(401 | 403 | 404) => Err(Ended::Refused(message)),
                _ => Err(Ended::Failed(message)),
            }
        }
    }
}

/// What must never appear in a session's error messages.
struct Secrets {
    words: Vec<String>,
}

impl Secrets {
    fn of(target: &Target) -> Self {
        let url = target.url.expose();
        // A Nest URL's path is its extension token; a static camera's path is just a path.
        let path = target
            .generation
            .and_then(|_| url.path_segments())
            .into_iter()
            .flatten()
            .map(str::to_owned);
        let mut words: Vec<String> = url
            .query_pairs()
            .map(|(_, v)| v.into_owned())
            .chain(url.query().map(str::to_owned))
            .chain(path)
            .chain(
                target
                    .credentials
                    .iter()
                    .map(|c| c.password.expose_secret().to_owned()),
            )
            .filter(|w| !w.is_empty())
            .collect();
        // Longest first, so that a secret containing another is masked whole.
        words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        Self { words }
    }

    /// A retina error fit for logs and stats: its first line (the rest is connection context),
    /// with every secret and anything shaped like a token masked.
    fn clean(&self, error: &retina::Error) -> String {
        self.clean_text(&error.to_string())
    }

    /// Any error text fit for logs and stats (see [`Secrets::clean`]).
    fn clean_text(&self, text: &str) -> String {
        let mut line = text.lines().next().unwrap_or_default().to_owned();
        for word in &self.words {
            line = line.replace(word.as_str(), "[redacted]");
        }
        camrelay_api_clients::sanitize::remote_text(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn static_camera() -> Arc<Camera> {
        Camera::new(
            "cam".into(),
            "cam".into(),
            |_| Source::Static {
                url: StreamUrl::new(url::Url::parse("rtsp://127.0.0.1/cam").expect("url")),
                credentials: None,
                tls_verify: true,
            },
            CancellationToken::new(),
            false,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_static_camera_is_pulled_only_when_wanted_and_kept_for_the_grace() {
        let grace = Duration::from_secs(30);
        let camera = static_camera();
        let mut wants = Wants::new(&camera, grace);
        assert!(wants.current().is_none(), "nobody wanted it yet");

        let guard = camera.acquire(true);
        wants.changed().await;
        assert!(wants.current().is_some());

        drop(guard);
        wants.changed().await;
        let released = Instant::now();
        assert!(wants.current().is_some(), "kept warm during the grace");
        wants.changed().await;
        assert_eq!(Instant::now(), released + grace);
        assert!(wants.current().is_none(), "released after the grace");

        // Coming back within a grace keeps the session; the grace restarts on release.
        let guard = camera.acquire(false);
        wants.changed().await;
        assert!(wants.current().is_some());
        drop(guard);
        wants.changed().await;
        assert!(wants.current().is_some());
        tokio::time::advance(grace / 2).await;
        let _guard = camera.acquire(false);
        wants.changed().await;
        assert!(wants.current().is_some());
        tokio::time::advance(grace * 2).await;
        assert!(wants.current().is_some(), "held: no grace runs");
    }
}
