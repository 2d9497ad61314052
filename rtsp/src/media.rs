//! What a camera sends: its tracks and codec parameters, and the SDP that describes them to RTSP
//! clients (RFC 4566; H.264 parameters per RFC 6184 §8.1, AAC per RFC 3640 §4.1).

use base64::Engine as _;
use bytes::Bytes;
use sdp_types::{AddrType, Attribute, Connection, Media, NetType, Origin, Session, Time};

use crate::aac::AudioConfig;
use crate::h264::SpsInfo;

/// RTP payload type of the H.264 track.
pub const H264_PAYLOAD_TYPE: u8 = 96;
/// RTP payload type of the AAC track.
pub const AAC_PAYLOAD_TYPE: u8 = 97;
/// RTP clock rate of video.
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// A track's codec and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codec {
    /// H.264 with its current parameter sets.
    H264 {
        /// Sequence parameter set NAL unit.
        sps: Bytes,
        /// Picture parameter set NAL unit.
        pps: Bytes,
        /// What the SPS says.
        info: SpsInfo,
    },
    /// AAC (RFC 3640 AAC-hbr).
    Aac(AudioConfig),
}

impl Codec {
    /// The RTP clock rate.
    pub fn clock_rate(&self) -> u32 {
        match self {
            Codec::H264 { .. } => VIDEO_CLOCK_RATE,
            Codec::Aac(config) => config.sample_rate,
        }
    }

    /// The RTP payload type used for it.
    pub fn payload_type(&self) -> u8 {
        match self {
            Codec::H264 { .. } => H264_PAYLOAD_TYPE,
            Codec::Aac(_) => AAC_PAYLOAD_TYPE,
        }
    }

    /// An H.264 codec from its parameter sets, if the SPS parses.
    pub fn h264(sps: Bytes, pps: Bytes) -> Option<Self> {
        let info = SpsInfo::parse(&sps)?;
        Some(Codec::H264 { sps, pps, info })
    }
}

/// One track of a camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Its codec.
    pub codec: Codec,
    /// The SSRC of its packets.
    pub ssrc: u32,
}

impl Track {
    /// The control path relative to the camera URL (`trackID=0`, …).
    pub fn control(index: usize) -> String {
        format!("trackID={index}")
    }
}

/// Everything a client needs to set up a camera's streams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaDescription {
    /// The tracks, video first.
    pub tracks: Vec<Track>,
}

impl MediaDescription {
    /// The SDP for a DESCRIBE response. `session_name` is the camera's name (sanitized: no line
    /// breaks).
    pub fn sdp(&self, session_name: &str) -> String {
        let name: String = session_name.chars().filter(|c| !c.is_control()).collect();
        let session = Session {
            origin: Origin {
                username: None,
                sess_id: "0".to_owned(),
                sess_version: 0,
                nettype: NetType::In,
                addrtype: AddrType::Ip4,
                unicast_address: "0.0.0.0".to_owned(),
            },
            session_name: if name.is_empty() {
                "camrelay".to_owned()
            } else {
                name
            },
            session_description: None,
            uri: None,
            emails: Vec::new(),
            phones: Vec::new(),
            connection: Some(Connection {
                nettype: NetType::In,
                addrtype: AddrType::Ip4,
                connection_address: "0.0.0.0".to_owned(),
            }),
            bandwidths: Vec::new(),
            times: vec![Time {
                start_time: 0,
                stop_time: 0,
                repeats: Vec::new(),
            }],
            time_zones: Vec::new(),
            key: None,
            attributes: vec![
                attribute("tool", "camrelay"),
                attribute("control", "*"),
                attribute("range", "npt=now-"),
            ],
            medias: self
                .tracks
                .iter()
                .enumerate()
                .map(|(i, track)| media(i, track))
                .collect(),
        };
        session.to_string()
    }
}

fn attribute(name: &str, value: &str) -> Attribute {
    Attribute {
        attribute: name.to_owned(),
        value: Some(value.to_owned()),
    }
}

fn media(index: usize, track: &Track) -> Media {
    let pt = track.codec.payload_type();
    let (kind, rtpmap, fmtp) = match &track.codec {
        Codec::H264 { sps, pps, info } => {
            let b64 = base64::engine::general_purpose::STANDARD;
            (
                "video",
                format!("{pt} H264/{}", VIDEO_CLOCK_RATE),
                format!(
                    "{pt} packetization-mode=1;profile-level-id={};sprop-parameter-sets={},{}",
                    info.profile_level_id_hex(),
                    b64.encode(sps),
                    b64.encode(pps)
                ),
            )
        }
        Codec::Aac(config) => (
            "audio",
            format!(
                "{pt} MPEG4-GENERIC/{}/{}",
                config.sample_rate, config.channels
            ),
            format!(
                "{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;\
                 indexdeltalength=3;config={}",
                config.config_hex()
            ),
        ),
    };
    Media {
        media: kind.to_owned(),
        port: 0,
        num_ports: None,
        proto: "RTP/AVP".to_owned(),
        fmt: pt.to_string(),
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: vec![
            attribute("rtpmap", &rtpmap),
            attribute("fmtp", &fmtp),
            attribute("control", &Track::control(index)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_description() -> MediaDescription {
        let video = Bytes::from_static(include_bytes!("../../sim/fixtures/camera.h264"));
        let nals = crate::h264::nal_units_shared(&video);
        let sps = nals[1].clone();
        let pps = nals[2].clone();
        MediaDescription {
            tracks: vec![
                Track {
                    codec: Codec::h264(sps, pps).unwrap(),
                    ssrc: 1,
                },
                Track {
                    codec: Codec::Aac(AudioConfig::new(2, 48_000, 1).unwrap()),
                    ssrc: 2,
                },
            ],
        }
    }

    #[test]
    fn sdp_describes_both_tracks() {
        let sdp = fixture_description().sdp("Front\r\nDoor");
        assert!(sdp.starts_with("v=0\r\n"), "{sdp}");
        assert!(sdp.contains("s=FrontDoor\r\n"));
        assert!(sdp.contains("m=video 0 RTP/AVP 96\r\n"));
        assert!(sdp.contains("a=rtpmap:96 H264/90000\r\n"));
        assert!(
            sdp.contains("profile-level-id=42c01e;sprop-parameter-sets=Z0LA"),
            "{sdp}"
        );
        assert!(sdp.contains("a=control:trackID=0\r\n"));
        assert!(sdp.contains("m=audio 0 RTP/AVP 97\r\n"));
        assert!(sdp.contains("a=rtpmap:97 MPEG4-GENERIC/48000/1\r\n"));
        assert!(sdp.contains("config=1188\r\n"));
        assert!(sdp.contains("a=control:trackID=1\r\n"));
        // What we write, sdp-types reads back.
        let parsed = Session::parse(sdp.as_bytes()).expect("valid SDP");
        assert_eq!(parsed.medias.len(), 2);
    }
}
