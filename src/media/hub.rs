//! A camera's media hub: its bus (one ring of RTP packets for every client), its current media
//! description, and what went through it. The hub lives as long as the camera; upstream
//! sessions come and go behind it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use camrelay_rtsp::bus::{Bus, MAX_GOP_BYTES, Subscriber};
use camrelay_rtsp::media::MediaDescription;
use camrelay_rtsp::rtp::Packet;
use tokio::sync::watch;

use super::frame::{FRAME_RING_CAPACITY, Frame};
use super::packager::Output;

/// What went through a camera's hub (all since start).
#[derive(Debug, Default)]
pub struct MediaStats {
    /// Upstream sessions established.
    pub sessions: AtomicU64,
    /// Upstream sessions that failed or ended.
    pub session_failures: AtomicU64,
    /// Whether an upstream session is delivering now (set at its first keyframe).
    pub connected: AtomicBool,
    /// Video frames received.
    pub video_frames_in: AtomicU64,
    /// Audio frames received.
    pub audio_frames_in: AtomicU64,
    /// Media bytes received.
    pub bytes_in: AtomicU64,
    /// RTP packets published to the bus.
    pub packets_out: AtomicU64,
    /// Bytes of RTP published.
    pub bytes_out: AtomicU64,
    /// The last upstream error (free of secrets).
    pub last_error: Mutex<Option<String>>,
}

impl MediaStats {
    /// Records an upstream failure.
    pub fn failed(&self, error: String) {
        self.session_failures.fetch_add(1, Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// The last upstream error.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One camera's media.
#[derive(Debug)]
pub struct Hub {
    bus: Bus<Packet>,
    /// Whole frames for the WebRTC publisher; `None` when no SFU is configured (the frames'
    /// GOP cache then costs nothing).
    frames: Option<Bus<Frame>>,
    description: watch::Sender<Option<MediaDescription>>,
    /// Whether the current upstream session has delivered a keyframe: clients can start now.
    live: watch::Sender<bool>,
    /// Sessions the camera refused (401/403/404), counted.
    refusals: watch::Sender<u64>,
    /// Counters.
    pub stats: MediaStats,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Hub {
    /// A hub with no media yet; `frames` keeps a frame bus for the WebRTC publisher.
    pub fn new(frames: bool) -> Self {
        Self {
            bus: Bus::default(),
            frames: frames.then(|| Bus::new(FRAME_RING_CAPACITY, MAX_GOP_BYTES)),
            description: watch::channel(None).0,
            live: watch::channel(false).0,
            refusals: watch::channel(0).0,
            stats: MediaStats::default(),
        }
    }

    /// Publishes what the packager produced: a new description first, then the packets.
    pub fn publish(&self, output: Output) {
        if let Some(description) = output.description {
            self.description.send_replace(Some(description));
        }
        for packet in output.packets {
            if packet.keyframe && !*self.live.borrow() {
                self.live.send_replace(true);
                self.stats.connected.store(true, Ordering::Relaxed);
            }
            self.stats.packets_out.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_out
                .fetch_add(packet.data().len() as u64, Ordering::Relaxed);
            self.bus.publish(packet);
        }
        if let (Some(frames), Some(frame)) = (&self.frames, output.frame) {
            frames.publish(frame);
        }
    }

    /// The upstream session ended: until the next one delivers a keyframe, the camera is not
    /// live and new subscribers get nothing stale (the cached GOP is dropped).
    pub fn session_ended(&self) {
        self.bus.reset();
        if let Some(frames) = &self.frames {
            frames.reset();
        }
        self.live.send_replace(false);
        self.stats.connected.store(false, Ordering::Relaxed);
    }

    /// Whether media is flowing now (a keyframe of the current upstream session went out).
    pub fn is_live(&self) -> bool {
        *self.live.borrow()
    }

    /// Watches [`Hub::is_live`].
    pub fn watch_live(&self) -> watch::Receiver<bool> {
        self.live.subscribe()
    }

    /// Records that the camera refused a session (401/403/404): clients waiting for it need
    /// not wait longer.
    pub fn refused(&self) {
        self.refusals.send_modify(|n| *n += 1);
    }

    /// Watches the count of refused sessions.
    pub fn watch_refusals(&self) -> watch::Receiver<u64> {
        self.refusals.subscribe()
    }

    /// A subscription to the camera's packets, starting at the cached keyframe.
    pub fn subscribe(&self) -> Subscriber<Packet> {
        self.bus.subscribe()
    }

    /// A subscription to the camera's whole frames, starting at the cached keyframe; `None`
    /// when the hub keeps no frames.
    pub fn subscribe_frames(&self) -> Option<Subscriber<Frame>> {
        self.frames.as_ref().map(Bus::subscribe)
    }

    /// The current description, once media has flowed.
    pub fn description(&self) -> Option<MediaDescription> {
        self.description.borrow().clone()
    }

    /// Watches the description (it appears when media first flows, and changes with the
    /// camera's parameters).
    pub fn watch_description(&self) -> watch::Receiver<Option<MediaDescription>> {
        self.description.subscribe()
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.bus.subscribers()
    }

    /// RTP packets the camera's RTSP clients lost by falling behind, all together, since start.
    pub fn packets_dropped(&self) -> u64 {
        self.bus.dropped()
    }
}
