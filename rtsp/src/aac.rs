//! AAC framing: ADTS headers (ISO/IEC 13818-7 §6.2) and the AudioSpecificConfig
//! (ISO/IEC 14496-3 §1.6.2.1) that RFC 3640's SDP `config` carries.

use bytes::Bytes;

/// Sampling frequencies by index (ISO/IEC 14496-3 Table 1.18).
pub const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// PCM samples per channel in one AAC-LC frame.
pub const SAMPLES_PER_FRAME: u32 = 1024;

/// What decoding a stream of AAC frames takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    /// Audio object type (2 = AAC LC, 5 = SBR/HE-AAC, 29 = PS).
    pub object_type: u8,
    /// Sampling frequency in Hz (the RTP clock rate).
    pub sample_rate: u32,
    /// Channel configuration (1 = mono, 2 = stereo, …).
    pub channels: u8,
    /// The AudioSpecificConfig bytes.
    pub specific_config: Bytes,
}

impl AudioConfig {
    /// Parses an AudioSpecificConfig. Explicit (escape) frequencies and object types are not
    /// supported: cameras do not use them.
    pub fn parse(asc: &[u8]) -> Option<Self> {
        let [a, b, ..] = *asc else {
            return None;
        };
        let object_type = a >> 3;
        let frequency_index = ((a & 0x07) << 1) | (b >> 7);
        let channels = (b >> 3) & 0x0f;
        if object_type == 0 || object_type == 31 {
            return None;
        }
        let sample_rate = *SAMPLE_RATES.get(usize::from(frequency_index))?;
        Some(Self {
            object_type,
            sample_rate,
            channels,
            specific_config: Bytes::copy_from_slice(asc),
        })
    }

    /// A two-byte AudioSpecificConfig for the given values.
    pub fn new(object_type: u8, sample_rate: u32, channels: u8) -> Option<Self> {
        let index = SAMPLE_RATES.iter().position(|&r| r == sample_rate)?;
        let index = u8::try_from(index).ok()?;
        if object_type == 0 || object_type >= 31 || channels > 15 {
            return None;
        }
        let asc = [
            (object_type << 3) | (index >> 1),
            ((index & 1) << 7) | (channels << 3),
        ];
        Self::parse(&asc)
    }

    /// `config` for the RFC 3640 SDP: the AudioSpecificConfig in hex.
    pub fn config_hex(&self) -> String {
        self.specific_config
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// One frame read from an ADTS stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdtsFrame {
    /// The stream's configuration, from the header.
    pub config: AudioConfig,
    /// The raw AAC frame, without the header.
    pub payload: Bytes,
}

/// Splits an ADTS stream into raw frames. Stops at the first malformed header (a truncated or
/// corrupt tail is ignored, never a panic).
pub fn adts_frames(data: &Bytes) -> Vec<AdtsFrame> {
    let mut frames = Vec::new();
    let mut at = 0;
    while data.len() >= at + 7 {
        let h = &data[at..at + 7];
        if h[0] != 0xff || h[1] & 0xf6 != 0xf0 {
            break;
        }
        let protection_absent = h[1] & 0x01 == 1;
        let header_len = if protection_absent { 7 } else { 9 };
        let object_type = ((h[2] >> 6) & 0x03) + 1;
        let frequency_index = (h[2] >> 2) & 0x0f;
        let channels = ((h[2] & 0x01) << 2) | (h[3] >> 6);
        let frame_len =
            (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | (usize::from(h[5]) >> 5);
        let Some(sample_rate) = SAMPLE_RATES.get(usize::from(frequency_index)).copied() else {
            break;
        };
        if frame_len <= header_len || at + frame_len > data.len() {
            break;
        }
        let Some(config) = AudioConfig::new(object_type, sample_rate, channels) else {
            break;
        };
        frames.push(AdtsFrame {
            config,
            payload: data.slice(at + header_len..at + frame_len),
        });
        at += frame_len;
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fixture() {
        let data = Bytes::from_static(include_bytes!("../../sim/fixtures/camera.aac"));
        let frames = adts_frames(&data);
        assert_eq!(frames.len(), 91);
        let config = &frames[0].config;
        assert_eq!(
            (config.object_type, config.sample_rate, config.channels),
            (2, 48_000, 1)
        );
        assert_eq!(config.config_hex(), "1188");
        assert!(
            frames
                .iter()
                .all(|f| f.config == *config && !f.payload.is_empty())
        );
    }

    #[test]
    fn specific_config_round_trips() {
        let c = AudioConfig::new(2, 44_100, 2).unwrap();
        assert_eq!(c.config_hex(), "1210");
        assert_eq!(AudioConfig::parse(&c.specific_config), Some(c));
        assert_eq!(AudioConfig::new(2, 12_345, 1), None);
        assert_eq!(AudioConfig::parse(&[0x12]), None);
        assert_eq!(AudioConfig::parse(&[0xff, 0xff]), None);
    }

    #[test]
    fn a_broken_stream_yields_what_came_before() {
        let data = include_bytes!("../../sim/fixtures/camera.aac");
        let mut broken = data[..500].to_vec();
        broken.extend_from_slice(&[0xff, 0xf1, 0x50]);
        let frames = adts_frames(&Bytes::from(broken));
        assert!(!frames.is_empty() && frames.len() < 91);
        assert!(adts_frames(&Bytes::from_static(&[0xff; 40])).is_empty());
    }
}
