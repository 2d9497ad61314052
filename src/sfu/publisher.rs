//! Publishes one camera into the SFU: one `str0m` peer connection per camera while it is live,
//! send-only H.264 (the camera's own access units, SPS/PPS before every IDR, packetized within a
//! WebRTC-safe MTU) and Opus transcoded from the camera's AAC.
//!
//! str0m runs in RTP mode: the relay packetizes with its own H.264 packetizer (the one RTSP
//! clients' packets come from, whose start-code scan skips through slice data) and hands str0m
//! finished payloads, which it protects (SRTP), sends and keeps for NACKs. In frame mode str0m
//! copied every access unit, scanned it byte by byte and copied each payload twice more (6% of
//! the relay's samples went to the scan alone; docs/BENCHMARKS.md).
//!
//! The publication outlives upstream reconnects: while the camera reconnects, the peer
//! connection stays up and simply sends nothing, and timestamps continue (they come from the
//! camera's continuous timeline). It ends when the camera has not been live for
//! [`UNPUBLISH_AFTER`], when the media description changes in a way the negotiated session
//! cannot carry (new H.264 profile, audio appearing), or when the connection fails; a failed
//! one is replaced by a new SFU session with capped exponential backoff. Track names are
//! stable (`{camera_id}-video`, `{camera_id}-audio`) so viewers can pull again.
//!
//! No congestion control: the camera's bitrate is what it is, so the offer carries only the
//! `mid` header extension ([`MID_EXTENSION_ID`]) and asks the SFU for no transport-cc feedback.
//!
//! Keyframe requests (PLI/FIR) from the SFU are counted. An RTSP camera cannot be asked for a
//! keyframe, so the viewer recovers at the camera's next IDR (every GOP, typically 1–4 s); a
//! new publication starts at the cached GOP's keyframe.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use backon::{BackoffBuilder, ExponentialBuilder};
use camrelay_rtsp::media::{Codec, MediaDescription};
use camrelay_rtsp::rtp::H264Packetizer;
use serde::Serialize;
use str0m::change::SdpAnswer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::signaling::{Publication, Signaling};
use crate::camera::Camera;
use crate::media::transcode::AacToOpus;
use crate::media::{Frame, FrameKind};

/// A camera that has not been live this long is unpublished (its SFU session closed). Shorter
/// gaps (upstream reconnects) keep the publication: viewers see a freeze, not a new session.
pub const UNPUBLISH_AFTER: Duration = Duration::from_secs(30);

/// A connected session whose ICE stays disconnected this long has failed.
pub const ICE_DISCONNECT_GRACE: Duration = Duration::from_secs(5);

/// How often a publisher asks the SFU whether its session still exists. ICE notices a dropped
/// session too, but only after its consent checks fail (15–25 s); asking makes it seconds.
pub const SESSION_CHECK_INTERVAL: Duration = Duration::from_secs(3);

/// Payload type of the published H.264 (Cloudflare's own publisher uses dynamic types too).
pub const H264_PT: u8 = 102;

/// Payload type of the published Opus (the common WebRTC choice).
pub const OPUS_PT: u8 = 111;

/// The one RTP header extension published, `mid` (RFC 8843 §15), under the id Chrome uses.
/// The SFU needs it to tell a bundle's tracks apart. str0m's default set also offers
/// transport-wide congestion control, abs-send-time, audio level, stream ids and video
/// orientation, none of which the relay uses: it forwards the camera's bitrate as it comes and
/// estimates no bandwidth, and with transport-cc offered the SFU sends it a feedback packet
/// every 50 ms per camera (str0m's interval), each decrypted and handled for nothing.
pub const MID_EXTENSION_ID: u8 = 4;

/// How long unpublishing may take at the end of a session.
pub const UNPUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest datagram read from the SFU.
const MAX_DATAGRAM: usize = 2048;

/// The largest RTP payload published: what str0m's own packetizer uses (its 1150-byte datagram
/// target less the 16-byte SRTP tag, rounded down to the 16-byte cipher block). With the RTP
/// header and its extensions the datagram stays well under the 1280 bytes every IPv6 path
/// carries, and under the MTU of tunnels and VPNs.
pub const WEBRTC_MAX_PAYLOAD: usize = 1120;

/// The video track's name for a camera.
pub fn video_track(camera_id: &str) -> String {
    format!("{camera_id}-video")
}

/// The audio track's name for a camera.
pub fn audio_track(camera_id: &str) -> String {
    format!("{camera_id}-audio")
}

/// What a publisher needs.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// How to reach the SFU.
    pub signaling: Arc<Signaling>,
    /// The address host candidates advertise.
    pub candidate_ip: IpAddr,
    /// ICE + DTLS must connect within this.
    pub connect_timeout: Duration,
    /// First wait before a new session after a failure.
    pub retry_initial: Duration,
    /// Longest wait between attempts.
    pub retry_max: Duration,
    /// How long a publication outlives the last one who wanted it.
    pub idle_grace: Duration,
}

/// Where a camera's publication stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PublishState {
    /// Not published (the camera is not live).
    #[default]
    Idle,
    /// Setting up an SFU session.
    Connecting,
    /// Media is flowing to the SFU.
    Published,
    /// The last attempt failed; retrying.
    Retrying,
}

/// A camera's publication as stats and the camera list show it.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct PublishSnapshot {
    /// Where it stands.
    pub state: PublishState,
    /// The SFU session (Calls) carrying the tracks, while published.
    pub session_id: Option<String>,
    /// The published track names.
    pub tracks: Vec<String>,
    /// Why audio is not published, if it is not (e.g. HE-AAC).
    pub audio_problem: Option<String>,
    /// The last failure, free of secrets.
    pub last_error: Option<String>,
    /// SFU sessions established (since start).
    pub sessions: u64,
    /// Attempts that failed (since start).
    pub failures: u64,
    /// Video frames sent.
    pub video_frames_out: u64,
    /// Opus packets sent.
    pub audio_packets_out: u64,
    /// Frames the publisher skipped because it fell behind the camera.
    pub frames_dropped: u64,
    /// Picture loss indications received.
    pub pli: u64,
    /// Full intra requests received.
    pub fir: u64,
}

/// A camera's publication status, shared with stats.
#[derive(Debug, Default)]
pub struct PublishStatus {
    snapshot: Mutex<PublishSnapshot>,
    /// Bumped on every change of the snapshot, for those who wait for a state.
    changes: tokio::sync::watch::Sender<()>,
    video_frames_out: AtomicU64,
    audio_packets_out: AtomicU64,
    frames_dropped: AtomicU64,
}

impl PublishStatus {
    /// The current status.
    pub fn snapshot(&self) -> PublishSnapshot {
        let mut s = self
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        s.video_frames_out = self.video_frames_out.load(Ordering::Relaxed);
        s.audio_packets_out = self.audio_packets_out.load(Ordering::Relaxed);
        s.frames_dropped = self.frames_dropped.load(Ordering::Relaxed);
        s
    }

    fn update(&self, f: impl FnOnce(&mut PublishSnapshot)) {
        f(&mut self.snapshot.lock().unwrap_or_else(PoisonError::into_inner));
        self.changes.send_replace(());
    }

    /// Waits until the camera is published and returns where; `None` if the publisher ended.
    pub async fn published(&self) -> Option<PublishSnapshot> {
        let mut changes = self.changes.subscribe();
        loop {
            changes.borrow_and_update();
            let snapshot = self.snapshot();
            if snapshot.state == PublishState::Published && snapshot.session_id.is_some() {
                return Some(snapshot);
            }
            changes.changed().await.ok()?;
        }
    }
}

/// Publishes `camera` whenever it is live and wanted in the SFU (viewers, or always-on), until
/// `cancel`.
pub async fn run(camera: Arc<Camera>, settings: PublisherSettings, cancel: CancellationToken) {
    let status = &camera.publish;
    let mut backoff = new_backoff(&settings);
    loop {
        status.update(|s| {
            if s.state != PublishState::Retrying {
                s.state = PublishState::Idle;
            }
            s.session_id = None;
            s.tracks.clear();
        });
        if !wanted_and_live(&camera, &cancel).await {
            return;
        }
        let Some(description) = camera.media.description() else {
            continue;
        };
        status.update(|s| s.state = PublishState::Connecting);
        let mut session = Session::new(&camera, &settings, description);
        let result = session.run(&cancel).await;
        // Not published from here on: a watch must not pull from a session being closed.
        status.update(|s| {
            if s.state == PublishState::Published {
                s.state = PublishState::Idle;
            }
            s.session_id = None;
            s.tracks.clear();
        });
        session.close().await;
        match result {
            Ok(()) => {
                backoff = new_backoff(&settings);
                if cancel.is_cancelled() {
                    return;
                }
            }
            Err(e) => {
                let error = format!("{e:#}");
                let wait = backoff.next().unwrap_or(settings.retry_max);
                tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "publishing failed");
                status.update(|s| {
                    s.failures += 1;
                    s.last_error = Some(error);
                    s.state = PublishState::Retrying;
                    s.session_id = None;
                    s.tracks.clear();
                });
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Waits until the camera is both wanted in the SFU and live; `false` on `cancel`.
async fn wanted_and_live(camera: &Camera, cancel: &CancellationToken) -> bool {
    let mut wanted = camera.watch_publish_demand();
    let mut live = camera.media.watch_live();
    loop {
        if *wanted.borrow_and_update() > 0 && *live.borrow_and_update() {
            return true;
        }
        tokio::select! {
            () = cancel.cancelled() => return false,
            changed = wanted.changed() => if changed.is_err() { return false },
            changed = live.changed() => if changed.is_err() { return false },
        }
    }
}

fn new_backoff(settings: &PublisherSettings) -> impl Iterator<Item = Duration> + use<> {
    ExponentialBuilder::default()
        .with_min_delay(settings.retry_initial)
        .with_max_delay(settings.retry_max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Extends 32-bit RTP timestamps to 64 bits across wraps.
#[derive(Debug, Default)]
struct Unwrap(Option<(u32, u64)>);

impl Unwrap {
    fn extend(&mut self, ts: u32) -> u64 {
        let extended = match self.0 {
            None => u64::from(ts),
            Some((last, ext)) => {
                // The signed distance handles both small steps back and wraps forward.
                #[allow(clippy::cast_possible_wrap)]
                let delta = ts.wrapping_sub(last) as i32;
                ext.saturating_add_signed(i64::from(delta))
            }
        };
        self.0 = Some((ts, extended));
        extended
    }
}

/// What one negotiated publication carries.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    profile_level_id: u32,
    audio: bool,
}

fn shape(description: &MediaDescription, audio_ok: bool) -> Option<Shape> {
    let mut profile = None;
    let mut audio = false;
    for track in &description.tracks {
        match &track.codec {
            Codec::H264 { info, .. } => {
                let [a, b, c] = info.profile_level_id;
                profile = Some(u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c));
            }
            Codec::Aac(_) => audio = audio_ok,
        }
    }
    Some(Shape {
        profile_level_id: profile?,
        audio,
    })
}

struct Session<'a> {
    camera: &'a Arc<Camera>,
    settings: &'a PublisherSettings,
    description: MediaDescription,
    publication: Option<Publication>,
    video_time: Unwrap,
    audio_time: Unwrap,
    /// Turns access units into RTP payloads (its headers are not used: str0m writes its own).
    video_payloads: H264Packetizer,
    /// The next extended sequence numbers (random start with a zero rollover counter, as RFC
    /// 3550 asks; str0m derives the SRTP index from them).
    video_seq: u64,
    audio_seq: u64,
    /// Undecodable AAC frames, logged as a count per interval.
    aac_errors: crate::logging::Aggregated,
}

impl<'a> Session<'a> {
    fn new(
        camera: &'a Arc<Camera>,
        settings: &'a PublisherSettings,
        description: MediaDescription,
    ) -> Self {
        Self {
            camera,
            settings,
            description,
            publication: None,
            video_time: Unwrap::default(),
            audio_time: Unwrap::default(),
            video_payloads: H264Packetizer::new(0, H264_PT, 0, 0)
                .with_max_payload(WEBRTC_MAX_PAYLOAD),
            video_seq: u64::from(fastrand::u16(..0x8000)),
            audio_seq: u64::from(fastrand::u16(..0x8000)),
            aac_errors: crate::logging::Aggregated::new("camera audio frames not transcoded"),
        }
    }

    /// Best-effort unpublish of what the session published.
    async fn close(&mut self) {
        self.aac_errors.flush(Instant::now());
        if let Some(publication) = self.publication.take() {
            let stop = self.settings.signaling.unpublish(&publication);
            if tokio::time::timeout(UNPUBLISH_TIMEOUT, stop).await.is_err() {
                tracing::debug!("unpublishing timed out");
            }
        }
    }

    /// Publishes until the camera stays down, the description changes, `cancel`, or failure.
    async fn run(&mut self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let camera = self.camera;
        let status = &camera.publish;
        let audio_config = self.description.tracks.iter().find_map(|t| match &t.codec {
            Codec::Aac(config) => Some(config.clone()),
            Codec::H264 { .. } => None,
        });
        let mut transcoder = match audio_config.as_ref().map(AacToOpus::new) {
            Some(Ok(t)) => {
                status.update(|s| s.audio_problem = None);
                Some(t)
            }
            Some(Err(e)) => {
                let problem = format!("audio not published: {e}");
                tracing::warn!(%problem, "camera audio cannot be transcoded");
                status.update(|s| s.audio_problem = Some(problem));
                None
            }
            None => {
                status.update(|s| s.audio_problem = None);
                None
            }
        };
        let negotiated = shape(&self.description, transcoder.is_some())
            .context("the camera's description has no H.264 track")?;

        // Watched from before signaling, so that a viewer leaving (or the camera going down)
        // during the set-up is not missed.
        let mut wanted = camera.watch_publish_demand();
        let mut live = camera.media.watch_live();
        let mut not_live_since = (!*live.borrow_and_update()).then(Instant::now);
        let mut unwanted_since = (*wanted.borrow_and_update() == 0).then(Instant::now);
        let socket = bind(self.settings.candidate_ip).await?;
        let candidate_addr =
            SocketAddr::new(self.settings.candidate_ip, socket.local_addr()?.port());
        let mut rtc = build_rtc(&negotiated, candidate_addr)?;
        let mut api = rtc.sdp_api();
        let video_name = video_track(&camera.id);
        let audio_name = audio_track(&camera.id);
        let video_mid = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(camera.id.clone()),
            Some(video_name.clone()),
            None,
        );
        let audio_mid = negotiated.audio.then(|| {
            api.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some(camera.id.clone()),
                Some(audio_name.clone()),
                None,
            )
        });
        let (offer, pending) = api.apply().context("no offer to make")?;
        let mut tracks = vec![(video_mid.to_string(), video_name.clone())];
        if let Some(mid) = audio_mid {
            tracks.push((mid.to_string(), audio_name.clone()));
        }
        let connect_deadline = Instant::now() + self.settings.connect_timeout;
        let publication = tokio::time::timeout_at(
            connect_deadline,
            self.settings
                .signaling
                .publish(&camera.id, offer.to_sdp_string(), &tracks),
        )
        .await
        .map_err(|_| anyhow!("the SFU did not answer in time"))??;
        let answer = SdpAnswer::from_sdp_string(&publication.answer)
            .context("the SFU's answer is not valid SDP")?;
        let session_id = publication.session_id.clone();
        let gone = CancellationToken::new();
        let _watcher = AbortOnDrop(tokio::spawn(watch_session(
            Arc::clone(&self.settings.signaling),
            publication.clone(),
            gone.clone(),
        )));
        self.publication = Some(publication);
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .context("the SFU's answer does not fit our offer")?;
        let video_pt = payload_type(&rtc, video_mid, RtcCodec::H264)?;
        let audio_pt = match audio_mid {
            Some(mid) => Some((mid, payload_type(&rtc, mid, RtcCodec::Opus)?)),
            None => None,
        };

        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut batch = super::udp::Batch::new(&socket).context("UDP socket")?;
        let wake = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(wake);
        let mut armed_for: Option<std::time::Instant> = None;
        let mut frames = None;
        let mut disconnected_since: Option<Instant> = None;
        let mut descriptions = camera.media.watch_description();
        let mut opus = Vec::new();
        let mut counted_drops = 0;
        loop {
            // Drain str0m's output until it wants time.
            let timeout = loop {
                if !rtc.is_alive() {
                    bail!("the peer connection closed");
                }
                match rtc.poll_output().context("peer connection failed")? {
                    Output::Timeout(t) => {
                        batch.flush(&socket).await;
                        break t;
                    }
                    Output::Transmit(t) => {
                        // UDP: a full socket buffer loses the datagram, as the network would.
                        if !batch.push(t.destination, &t.contents) {
                            batch.flush(&socket).await;
                            batch.push(t.destination, &t.contents);
                        }
                    }
                    Output::Event(event) => match event {
                        Event::Connected => {
                            tracing::info!(session = ?session_id, "published to the SFU");
                            frames = camera.media.subscribe_frames();
                            let mut names = vec![video_name.clone()];
                            if audio_pt.is_some() {
                                names.push(audio_name.clone());
                            }
                            status.update(|s| {
                                s.state = PublishState::Published;
                                s.sessions += 1;
                                s.session_id.clone_from(&session_id);
                                s.tracks = names;
                                s.last_error = None;
                            });
                        }
                        Event::IceConnectionStateChange(state) => match state {
                            IceConnectionState::Disconnected => {
                                disconnected_since.get_or_insert_with(Instant::now);
                            }
                            IceConnectionState::Connected | IceConnectionState::Completed => {
                                disconnected_since = None;
                            }
                            _ => {}
                        },
                        Event::KeyframeRequest(request) => {
                            tracing::debug!(kind = ?request.kind, "keyframe requested; the camera's next IDR will answer it");
                            status.update(|s| match request.kind {
                                KeyframeRequestKind::Pli => s.pli += 1,
                                KeyframeRequestKind::Fir => s.fir += 1,
                            });
                        }
                        _ => {}
                    },
                }
            };
            if frames.is_none() && Instant::now() >= connect_deadline {
                bail!(
                    "ICE/DTLS did not connect within {}",
                    humantime::format_duration(self.settings.connect_timeout)
                );
            }
            if disconnected_since.is_some_and(|t| t.elapsed() >= ICE_DISCONNECT_GRACE) {
                bail!("the SFU stopped answering (ICE disconnected)");
            }
            // The watches' current values too: a change may be pending in the select below.
            if not_live_since.is_some_and(|t| t.elapsed() >= UNPUBLISH_AFTER) && !*live.borrow() {
                tracing::info!("camera down; unpublishing");
                return Ok(());
            }
            if unwanted_since.is_some_and(|t| t.elapsed() >= self.settings.idle_grace)
                && *wanted.borrow() == 0
            {
                tracing::info!("nobody watches; unpublishing");
                return Ok(());
            }
            // One timer for the session, moved only when str0m's deadline moves (re-arming a
            // fresh one on every frame showed in profiles). A duration, not an instant: str0m
            // runs on the wall clock, tokio's may be paused.
            if armed_for != Some(timeout) || wake.is_elapsed() {
                let after = timeout
                    .saturating_duration_since(std::time::Instant::now())
                    .min(Duration::from_secs(1));
                wake.as_mut().reset(Instant::now() + after);
                armed_for = Some(timeout);
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = gone.cancelled() => bail!("the SFU closed the session"),
                received = socket.recv_from(&mut buf) => {
                    let (n, source) = received.context("UDP receive failed")?;
                    if let Ok(receive) = Receive::new(Protocol::Udp, source, candidate_addr, &buf[..n]) {
                        rtc.handle_input(Input::Receive(std::time::Instant::now(), receive))
                            .context("peer connection input failed")?;
                    }
                }
                () = &mut wake => {
                    rtc.handle_input(Input::Timeout(std::time::Instant::now()))
                        .context("peer connection timer failed")?;
                }
                changed = wanted.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    unwanted_since = if *wanted.borrow_and_update() > 0 { None } else { Some(Instant::now()) };
                }
                changed = live.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    not_live_since = if *live.borrow_and_update() { None } else { Some(Instant::now()) };
                }
                changed = descriptions.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let next = descriptions.borrow_and_update().clone();
                    if let Some(next) = next
                        && shape(&next, transcoder.is_some()).as_ref() != Some(&negotiated)
                    {
                        tracing::info!("camera parameters changed; publishing a new session");
                        return Ok(());
                    }
                }
                frame = recv(&mut frames) => {
                    let Some(frame) = frame else { return Ok(()) };
                    self.send(&mut rtc, &frame, video_mid, video_pt, audio_pt, transcoder.as_mut(), &mut opus);
                    // str0m releases written packets only when time moves: move it now, so the
                    // frame leaves in this wake-up. Left to the session timer it waited a timer
                    // tick (1 ms) and cost the runtime two extra wake-ups per frame.
                    rtc.handle_input(Input::Timeout(std::time::Instant::now()))
                        .context("peer connection timer failed")?;
                    // Counted since start, across subscriptions; no lock per frame.
                    if let Some(frames) = &frames {
                        let dropped = frames.dropped();
                        status
                            .frames_dropped
                            .fetch_add(dropped.saturating_sub(counted_drops), Ordering::Relaxed);
                        counted_drops = dropped;
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        rtc: &mut Rtc,
        frame: &Frame,
        video_mid: Mid,
        video_pt: Pt,
        audio: Option<(Mid, Pt)>,
        transcoder: Option<&mut AacToOpus>,
        opus: &mut Vec<crate::media::transcode::OpusPacket>,
    ) {
        let status = &self.camera.publish;
        let now = std::time::Instant::now();
        match frame.kind {
            FrameKind::Video { .. } => {
                // RTP time wraps at 32 bits; the extended timeline keeps it continuous.
                #[allow(clippy::cast_possible_truncation)]
                let time = self.video_time.extend(frame.timestamp) as u32;
                let mut api = rtc.direct_api();
                let Some(stream) = api.stream_tx_by_mid(video_mid, None) else {
                    return;
                };
                let seq = &mut self.video_seq;
                let nals = frame.nals.as_deref().unwrap_or_default();
                let sent = self.video_payloads.payloads(nals, |prefix, body, marker| {
                    let payload: Arc<[u8]> = if prefix.is_empty() {
                        Arc::from(body)
                    } else {
                        // Two copies, but each a memcpy: collecting byte by byte cost more.
                        let mut joined = Vec::with_capacity(prefix.len() + body.len());
                        joined.extend_from_slice(prefix);
                        joined.extend_from_slice(body);
                        Arc::from(joined)
                    };
                    stream.write_rtp(
                        RtpWrite::new(video_pt, (*seq).into(), time, now, payload)
                            .marker(marker)
                            .nackable(true),
                    );
                    *seq += 1;
                });
                if sent.is_some() {
                    status.video_frames_out.fetch_add(1, Ordering::Relaxed);
                }
            }
            FrameKind::Audio => {
                let (Some((mid, pt)), Some(transcoder)) = (audio, transcoder) else {
                    return;
                };
                opus.clear();
                if let Err(e) = transcoder.push(&frame.data, frame.timestamp, opus) {
                    self.aac_errors.record(&e);
                    return;
                }
                let mut api = rtc.direct_api();
                let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                    return;
                };
                for packet in opus.drain(..) {
                    #[allow(clippy::cast_possible_truncation)]
                    let time = self.audio_time.extend(packet.timestamp) as u32;
                    // Audio is not retransmitted: a resent packet would come too late to play.
                    stream.write_rtp(RtpWrite::new(
                        pt,
                        self.audio_seq.into(),
                        time,
                        now,
                        Arc::<[u8]>::from(&packet.data[..]),
                    ));
                    self.audio_seq += 1;
                    status.audio_packets_out.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Aborts a task when dropped (the session watcher ends with its session).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cancels `gone` once the SFU says the publication's session no longer exists.
async fn watch_session(
    signaling: Arc<Signaling>,
    publication: Publication,
    gone: CancellationToken,
) {
    loop {
        tokio::time::sleep(SESSION_CHECK_INTERVAL).await;
        if !signaling.still_there(&publication).await {
            gone.cancel();
            return;
        }
    }
}

async fn recv(frames: &mut Option<camrelay_rtsp::bus::Subscriber<Frame>>) -> Option<Frame> {
    match frames {
        Some(frames) => frames.recv().await,
        None => std::future::pending().await,
    }
}

/// A UDP socket on the candidate address if it is local, else on every interface (the
/// candidate is then a NAT's public address).
async fn bind(ip: IpAddr) -> anyhow::Result<UdpSocket> {
    match UdpSocket::bind((ip, 0)).await {
        Ok(socket) => Ok(socket),
        Err(_) => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .await
            .context("cannot bind a UDP socket for WebRTC"),
    }
}

fn build_rtc(shape: &Shape, candidate: SocketAddr) -> anyhow::Result<Rtc> {
    let mut config = Rtc::builder()
        .clear_codecs()
        .clear_extension_map()
        .set_extension(MID_EXTENSION_ID, Extension::RtpMid)
        .set_rtp_mode(true)
        .set_crypto_provider(super::crypto());
    // The camera's own profile, packetization mode 1, no RTX (Cloudflare's publisher
    // registers none either; NACKs are answered from str0m's send buffer).
    config
        .codec_config()
        .add_h264(H264_PT.into(), None, true, shape.profile_level_id);
    if shape.audio {
        config = config.enable_opus(true, false);
    }
    // No transport-cc, neither the header extension (above) nor the feedback type.
    for params in config.codec_config().iter_mut() {
        params.set_fb_transport_cc(false);
    }
    let mut rtc = config.build(std::time::Instant::now());
    let candidate = Candidate::host(candidate, Protocol::Udp)
        .map_err(|e| anyhow!("{candidate} cannot be a WebRTC host candidate: {e}"))?;
    rtc.add_local_candidate(candidate);
    Ok(rtc)
}

/// The payload type of `codec` on `mid`, if the SFU accepted it (we offered, so our payload
/// types stand).
fn payload_type(rtc: &Rtc, mid: Mid, codec: RtcCodec) -> anyhow::Result<Pt> {
    let pt = rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == codec)
        .map(str0m::format::PayloadParams::pt);
    let accepted = rtc.media(mid).map(str0m::media::Media::remote_pts);
    pt.filter(|pt| accepted.is_some_and(|remote| remote.contains(pt)))
        .ok_or_else(|| anyhow!("the SFU did not accept {codec:?} on mid {mid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_asks_for_no_congestion_feedback_and_names_its_tracks_by_mid() {
        let shape = Shape {
            profile_level_id: 0x4d_00_28,
            audio: true,
        };
        let mut rtc = build_rtc(&shape, "127.0.0.1:40000".parse().unwrap()).unwrap();
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, _pending) = api.apply().unwrap();
        let sdp = offer.to_sdp_string();
        let extmaps: Vec<&str> = sdp.lines().filter(|l| l.starts_with("a=extmap:")).collect();
        assert_eq!(extmaps.len(), 2, "{sdp}");
        assert!(
            extmaps
                .iter()
                .all(|l| *l == "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid"),
            "{sdp}"
        );
        assert!(!sdp.contains("transport-cc"), "{sdp}");
        assert!(!sdp.contains("transport-wide-cc"), "{sdp}");
    }

    #[test]
    fn timestamps_extend_across_wraps_and_small_steps_back() {
        let mut u = Unwrap::default();
        assert_eq!(u.extend(u32::MAX - 10), u64::from(u32::MAX - 10));
        assert_eq!(u.extend(5), u64::from(u32::MAX) + 6);
        assert_eq!(u.extend(2), u64::from(u32::MAX) + 3);
    }
}
