//! Turns an upstream session's frames into the camera's RTP packets, once for every client,
//! and keeps the camera's media description (codec parameters) current.
//!
//! The packetizers live as long as the camera, not the session, so sequence numbers and SSRCs
//! stay the same across reconnects and timestamps continue ([`super::timeline`]).

use std::time::Instant;

use bytes::Bytes;
use camrelay_rtsp::aac::AudioConfig;
use camrelay_rtsp::h264::{self, NAL_PPS, NAL_SPS};
use camrelay_rtsp::media::{
    AAC_PAYLOAD_TYPE, Codec, H264_PAYLOAD_TYPE, MediaDescription, Track, VIDEO_CLOCK_RATE,
};
use camrelay_rtsp::rtp::{AacPacketizer, H264Packetizer, Packet};

use super::frame::{Frame, FrameKind};
use super::timeline::Timeline;

/// Index of the video track in every camera's description.
pub const VIDEO_TRACK: usize = 0;
/// Index of the audio track, when the camera has one.
pub const AUDIO_TRACK: usize = 1;

/// What came out of one frame.
#[derive(Debug, Default)]
pub struct Output {
    /// Packets to publish, in order.
    pub packets: Vec<Packet>,
    /// The description changed (first keyframe, new parameter sets, audio appeared).
    pub description: Option<MediaDescription>,
    /// The frame itself on the output timeline, for sinks that packetize for themselves.
    pub frame: Option<Frame>,
}

/// One camera's packetizers and timelines.
#[derive(Debug)]
pub struct Packager {
    video: H264Packetizer,
    video_timeline: Timeline,
    video_ssrc: u32,
    parameter_sets: Option<(Bytes, Bytes)>,
    audio: AacPacketizer,
    audio_timeline: Option<Timeline>,
    audio_ssrc: u32,
    audio_config: Option<AudioConfig>,
    description: Option<MediaDescription>,
}

impl Default for Packager {
    fn default() -> Self {
        Self::new()
    }
}

impl Packager {
    /// A packager with random SSRCs, sequence numbers and timestamp bases (RFC 3550 §5.1).
    pub fn new() -> Self {
        let video_ssrc = fastrand::u32(..);
        let audio_ssrc = fastrand::u32(..);
        Self {
            video: H264Packetizer::new(
                VIDEO_TRACK,
                H264_PAYLOAD_TYPE,
                video_ssrc,
                fastrand::u16(..),
            ),
            video_timeline: Timeline::new(VIDEO_CLOCK_RATE, fastrand::u32(..)),
            video_ssrc,
            parameter_sets: None,
            audio: AacPacketizer::new(AUDIO_TRACK, AAC_PAYLOAD_TYPE, audio_ssrc, fastrand::u16(..)),
            audio_timeline: None,
            audio_ssrc,
            audio_config: None,
            description: None,
        }
    }

    /// A new upstream session begins, with this audio (or none the relay can carry).
    pub fn new_session(&mut self, audio: Option<AudioConfig>) -> Option<MediaDescription> {
        self.video_timeline.new_session();
        match (&mut self.audio_timeline, &audio) {
            (Some(timeline), Some(config)) if self.audio_config.as_ref() == Some(config) => {
                timeline.new_session();
            }
            (_, Some(config)) => {
                self.audio_timeline = Some(Timeline::new(config.sample_rate, fastrand::u32(..)));
            }
            (_, None) => self.audio_timeline = None,
        }
        if self.audio_config != audio {
            self.audio_config = audio;
            return self.redescribe();
        }
        None
    }

    /// The description, once the first keyframe made it known.
    pub fn description(&self) -> Option<&MediaDescription> {
        self.description.as_ref()
    }

    /// Packetizes a video access unit (Annex B) at `elapsed` 90 kHz ticks of the session.
    pub fn video(&mut self, access_unit: &Bytes, elapsed: i64, now: Instant) -> Output {
        let mut output = Output::default();
        // One pass over the access unit for every sink (this runs for every frame).
        let nals = h264::nal_units_shared(access_unit);
        let (mut sps, mut pps) = (None, None);
        for nal in &nals {
            match h264::nal_type(nal) {
                Some(NAL_SPS) if sps.is_none() => sps = Some(nal.clone()),
                Some(NAL_PPS) if pps.is_none() => pps = Some(nal.clone()),
                _ => {}
            }
        }
        if let (Some(sps), Some(pps)) = (sps, pps)
            && self.parameter_sets.as_ref() != Some(&(sps.clone(), pps.clone()))
        {
            self.parameter_sets = Some((sps, pps));
            output.description = self.redescribe();
        }
        if self.description.is_none() {
            // Nothing to describe yet: wait for a keyframe with parameter sets.
            return output;
        }
        let ts = self.video_timeline.map(elapsed, now);
        output.packets = self.video.packetize_nals(&nals, ts);
        let keyframe = output.packets.first().is_some_and(|p| p.keyframe);
        output.frame = Some(Frame {
            kind: FrameKind::Video { keyframe },
            data: access_unit.clone(),
            nals: Some(nals.into()),
            timestamp: ts,
        });
        output
    }

    /// Packetizes a raw AAC frame at `elapsed` ticks (of its sample rate) of the session.
    pub fn audio(&mut self, frame: &Bytes, elapsed: i64, now: Instant) -> Output {
        let mut output = Output::default();
        if self.description.is_none() {
            return output;
        }
        if let Some(timeline) = &mut self.audio_timeline {
            let ts = timeline.map(elapsed, now);
            output.packets = self.audio.packetize(frame, ts);
            output.frame = Some(Frame {
                kind: FrameKind::Audio,
                data: frame.clone(),
                nals: None,
                timestamp: ts,
            });
        }
        output
    }

    /// Rebuilds the description from what is known; `Some` if it changed.
    fn redescribe(&mut self) -> Option<MediaDescription> {
        let (sps, pps) = self.parameter_sets.clone()?;
        let codec = Codec::h264(sps, pps)?;
        let mut tracks = vec![Track {
            codec,
            ssrc: self.video_ssrc,
        }];
        if let Some(config) = &self.audio_config {
            tracks.push(Track {
                codec: Codec::Aac(config.clone()),
                ssrc: self.audio_ssrc,
            });
        }
        let description = MediaDescription { tracks };
        if self.description.as_ref() == Some(&description) {
            return None;
        }
        self.description = Some(description.clone());
        Some(description)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fixture() -> camrelay_sim::camera::Fixture {
        camrelay_sim::camera::Fixture::load()
    }

    #[test]
    fn waits_for_a_keyframe_then_describes_and_packetizes() {
        let f = fixture();
        let t0 = Instant::now();
        let mut p = Packager::new();
        assert!(
            p.new_session(Some(f.audio_config.clone())).is_none(),
            "no video yet"
        );
        // Audio before the first keyframe is held back: there is no description to send it by.
        assert!(p.audio(&f.audio[0], 0, t0).packets.is_empty());
        // A delta frame first: nothing yet.
        let out = p.video(&f.video[1], 3600, t0);
        assert!(out.packets.is_empty() && out.description.is_none());
        let out = p.video(&f.video[0], 0, t0);
        let description = out.description.expect("the keyframe describes the camera");
        assert_eq!(description.tracks.len(), 2);
        assert!(out.packets[0].keyframe);
        assert!(!p.audio(&f.audio[0], 0, t0).packets.is_empty());
        // The same parameter sets again: no new description.
        assert!(
            p.video(&f.video[24], 24 * 3600, t0 + Duration::from_millis(960))
                .description
                .is_none()
        );
    }

    #[test]
    fn a_reconnect_keeps_sequence_numbers_and_ssrc() {
        let f = fixture();
        let t0 = Instant::now();
        let mut p = Packager::new();
        p.new_session(None);
        let first = p.video(&f.video[0], 1_000_000, t0).packets;
        let last = first.last().unwrap().clone();
        p.new_session(None);
        let again = p.video(&f.video[0], 5, t0 + Duration::from_secs(1));
        let next = &again.packets[0];
        assert_eq!(next.seq(), last.seq().wrapping_add(1));
        assert_eq!(next.data()[8..12], last.data()[8..12], "same SSRC");
        assert_eq!(next.timestamp(), last.timestamp().wrapping_add(90_000));
        assert!(again.description.is_none());
    }

    #[test]
    fn audio_appearing_changes_the_description() {
        let f = fixture();
        let t0 = Instant::now();
        let mut p = Packager::new();
        p.new_session(None);
        let out = p.video(&f.video[0], 0, t0);
        assert_eq!(out.description.unwrap().tracks.len(), 1);
        let changed = p
            .new_session(Some(f.audio_config.clone()))
            .expect("audio added");
        assert_eq!(changed.tracks.len(), 2);
    }
}
