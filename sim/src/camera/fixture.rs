//! The fixture the simulated cameras loop (see `fixtures/README.md`).

use bytes::Bytes;
use camrelay_rtsp::aac::{self, AudioConfig};
use camrelay_rtsp::h264::{self, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS};

/// Video frames per second of the fixture.
pub const FRAME_RATE: u32 = 25;
/// AAC frames in one loop (1.92 s at 48 kHz).
pub const AUDIO_FRAMES_PER_LOOP: usize = 90;

static VIDEO: &[u8] = include_bytes!("../../fixtures/camera.h264");
static AUDIO: &[u8] = include_bytes!("../../fixtures/camera.aac");

/// The fixture, split into frames.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Video access units (Annex B, without delimiters), in display order.
    pub video: Vec<Bytes>,
    /// Which of them are keyframes.
    pub keyframes: Vec<bool>,
    /// The sequence and picture parameter sets.
    pub sps: Bytes,
    /// The picture parameter set.
    pub pps: Bytes,
    /// Raw AAC frames.
    pub audio: Vec<Bytes>,
    /// Their configuration.
    pub audio_config: AudioConfig,
    /// Video frames per second.
    pub frame_rate: u32,
}

impl Fixture {
    /// Loads the built-in fixture.
    pub fn load() -> Self {
        Self::parse(
            &Bytes::from_static(VIDEO),
            &Bytes::from_static(AUDIO),
            FRAME_RATE,
            AUDIO_FRAMES_PER_LOOP,
        )
    }

    /// A fixture from an Annex B H.264 stream with access unit delimiters (SPS/PPS before each
    /// keyframe) played at `frame_rate`, and ADTS AAC of which the first `audio_frames` loop
    /// (for benchmarks with other sizes and bitrates).
    pub fn parse(data: &Bytes, adts: &Bytes, frame_rate: u32, audio_frames: usize) -> Self {
        let mut video: Vec<Vec<Bytes>> = Vec::new();
        let (mut sps, mut pps) = (Bytes::new(), Bytes::new());
        for nal in h264::nal_units_shared(data) {
            match h264::nal_type(&nal) {
                Some(NAL_AUD) => video.push(Vec::new()),
                Some(kind) => {
                    if kind == NAL_SPS {
                        sps = nal.clone();
                    } else if kind == NAL_PPS {
                        pps = nal.clone();
                    }
                    match video.last_mut() {
                        Some(unit) => unit.push(nal),
                        None => video.push(vec![nal]),
                    }
                }
                None => {}
            }
        }
        let video: Vec<Bytes> = video
            .into_iter()
            .filter(|nals| !nals.is_empty())
            .map(|nals| {
                let mut unit = Vec::new();
                for nal in nals {
                    unit.extend_from_slice(&[0, 0, 0, 1]);
                    unit.extend_from_slice(&nal);
                }
                Bytes::from(unit)
            })
            .collect();
        let keyframes = video
            .iter()
            .map(|unit| h264::nal_units(unit).any(|n| h264::nal_type(n) == Some(NAL_IDR)))
            .collect();
        let frames = aac::adts_frames(adts);
        let audio_config = frames
            .first()
            .map_or_else(fixture_audio_config, |f| f.config.clone());
        let audio = frames
            .into_iter()
            .take(audio_frames)
            .map(|f| f.payload)
            .collect();
        Self {
            video,
            keyframes,
            sps,
            pps,
            audio,
            audio_config,
            frame_rate: frame_rate.max(1),
        }
    }
}

/// The fixture's audio configuration (AAC-LC, 48 kHz, mono), should its ADTS headers ever be
/// unreadable.
fn fixture_audio_config() -> AudioConfig {
    AudioConfig {
        object_type: 2,
        sample_rate: 48_000,
        channels: 1,
        specific_config: Bytes::from_static(&[0x11, 0x88]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_loops_cleanly() {
        let f = Fixture::load();
        assert_eq!(f.video.len(), 48);
        assert_eq!(f.keyframes.iter().filter(|k| **k).count(), 2);
        assert!(f.keyframes[0] && f.keyframes[24]);
        assert_eq!(f.audio.len(), AUDIO_FRAMES_PER_LOOP);
        assert_eq!(f.audio_config.sample_rate, 48_000);
        assert!(!f.sps.is_empty() && !f.pps.is_empty());
        // One loop of video lasts exactly as long as one loop of audio.
        let video_ms = f.video.len() as u64 * 1000 / u64::from(FRAME_RATE);
        let audio_ms = f.audio.len() as u64 * 1024 * 1000 / 48_000;
        assert_eq!(video_ms, audio_ms);
    }
}
