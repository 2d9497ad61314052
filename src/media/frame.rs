//! Whole frames on a camera's continuous timeline, for sinks that packetize for themselves
//! (the WebRTC publisher: its stack packetizes H.264 for a WebRTC-safe MTU, and AAC must be
//! transcoded to Opus before it can go out at all).

use std::sync::Arc;

use bytes::Bytes;
use camrelay_rtsp::bus::Unit;

/// Frames kept in a camera's frame ring: about five seconds of 25 fps video with its audio. A
/// subscriber further behind skips to the next keyframe.
pub const FRAME_RING_CAPACITY: usize = 384;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// An H.264 access unit in Annex B; a keyframe carries its SPS and PPS.
    Video {
        /// Whether it is an IDR access unit (a decoder can start here).
        keyframe: bool,
    },
    /// A raw AAC access unit.
    Audio,
}

/// One frame, shared by every subscriber.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Video or audio.
    pub kind: FrameKind,
    /// The payload (shared with the ingest, never copied).
    pub data: Bytes,
    /// A video frame's NAL units (slices of `data`), found once by the packager so that no sink
    /// scans the access unit again; `None` for audio.
    pub nals: Option<Arc<[Bytes]>>,
    /// Its RTP timestamp on the camera's continuous timeline: 90 kHz for video, the AAC
    /// sample rate for audio. The same value the RTSP clients see.
    pub timestamp: u32,
}

impl Unit for Frame {
    fn starts_gop(&self) -> bool {
        self.kind == (FrameKind::Video { keyframe: true })
    }

    fn byte_len(&self) -> usize {
        self.data.len()
    }
}
