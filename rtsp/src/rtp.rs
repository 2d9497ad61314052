//! RTP packets (RFC 3550 §5.1) and the packetizers that turn frames into them, once per
//! camera: every client of the camera is sent the same `Bytes`.
//!
//! - H.264: RFC 6184 packetization-mode 1. A NAL unit that fits is sent as is (§5.6); a larger
//!   one is split into FU-A fragments (§5.8). Access unit delimiters and filler data are dropped.
//!   Every IDR access unit is preceded by the stream's SPS and PPS when it lacks them, so that a
//!   client can start at any keyframe.
//! - AAC: RFC 3640 `mpeg4-generic` in AAC-hbr mode (§3.3.6): a 16-bit AU-headers-length, one
//!   AU-header of 13-bit size and 3-bit index, then the frame. A frame larger than a packet is
//!   fragmented (§3.2.3), the marker bit on its last fragment only.

use bytes::{BufMut, Bytes, BytesMut};

use crate::h264::{self, NAL_AUD, NAL_FILLER, NAL_IDR, NAL_PPS, NAL_SPS};

/// Size of the fixed RTP header (no CSRCs, no extension).
pub const RTP_HEADER_LEN: usize = 12;

/// Largest RTP payload sent. 1400 bytes of payload keep the packet, with IP, UDP and RTP
/// headers, under a 1500-byte Ethernet MTU; the same packets go over TCP.
pub const MAX_PAYLOAD: usize = 1400;

/// FU-A NAL unit type.
const FU_A: u8 = 28;

/// One RTP packet of a camera, shared by every client that receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Which track of the camera (its index in the description).
    pub track: usize,
    /// The whole packet: header and payload.
    pub data: Bytes,
    /// The first packet of a video access unit a decoder can start at (an IDR with its
    /// parameter sets). New clients and lagging ones start at such a packet.
    pub keyframe: bool,
}

impl Packet {
    /// The sequence number in the header.
    pub fn seq(&self) -> u16 {
        u16::from_be_bytes([self.data[2], self.data[3]])
    }

    /// The timestamp in the header.
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.data[4], self.data[5], self.data[6], self.data[7]])
    }

    /// Whether the marker bit is set (last packet of an access unit).
    pub fn marker(&self) -> bool {
        self.data[1] & 0x80 != 0
    }
}

/// The header fields of one track's packets.
#[derive(Debug, Clone)]
struct Header {
    payload_type: u8,
    ssrc: u32,
    next_seq: u16,
}

impl Header {
    fn new(payload_type: u8, ssrc: u32, first_seq: u16) -> Self {
        Self {
            payload_type: payload_type & 0x7f,
            ssrc,
            next_seq: first_seq,
        }
    }

    /// Appends a header for the next packet to `buf`.
    fn write(&mut self, buf: &mut BytesMut, marker: bool, timestamp: u32) {
        buf.put_u8(0x80);
        buf.put_u8(if marker { 0x80 } else { 0 } | self.payload_type);
        buf.put_u16(self.next_seq);
        buf.put_u32(timestamp);
        buf.put_u32(self.ssrc);
        self.next_seq = self.next_seq.wrapping_add(1);
    }
}

/// Turns H.264 access units into RTP packets.
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    track: usize,
    header: Header,
    max_payload: usize,
    parameter_sets: Option<(Bytes, Bytes)>,
}

impl H264Packetizer {
    /// A packetizer for `track` with the given payload type, SSRC and first sequence number.
    pub fn new(track: usize, payload_type: u8, ssrc: u32, first_seq: u16) -> Self {
        Self {
            track,
            header: Header::new(payload_type, ssrc, first_seq),
            max_payload: MAX_PAYLOAD,
            parameter_sets: None,
        }
    }

    /// Uses `max_payload` instead of [`MAX_PAYLOAD`] (at least 64 bytes).
    pub fn with_max_payload(mut self, max_payload: usize) -> Self {
        self.max_payload = max_payload.max(64);
        self
    }

    /// The SPS and PPS to send before IDR access units that lack them.
    pub fn set_parameter_sets(&mut self, sps: Bytes, pps: Bytes) {
        self.parameter_sets = Some((sps, pps));
    }

    /// The sequence number the next packet will carry.
    pub fn next_seq(&self) -> u16 {
        self.header.next_seq
    }

    /// Packetizes one access unit (Annex B) with RTP timestamp `timestamp`. Parameter sets found
    /// in it are remembered. Returns no packets for an access unit without slices.
    pub fn packetize(&mut self, access_unit: &Bytes, timestamp: u32) -> Vec<Packet> {
        self.packetize_nals(&h264::nal_units_shared(access_unit), timestamp)
    }

    /// [`H264Packetizer::packetize`] for an access unit already split into its NAL units (a
    /// caller that needs them too scans the access unit once).
    pub fn packetize_nals(&mut self, nals: &[Bytes], timestamp: u32) -> Vec<Packet> {
        let mut packets = Vec::new();
        let mut header = self.header.clone();
        let idr = self.payloads(nals, |prefix, body, marker| {
            let mut buf = BytesMut::with_capacity(RTP_HEADER_LEN + prefix.len() + body.len());
            header.write(&mut buf, marker, timestamp);
            buf.put_slice(prefix);
            buf.put_slice(body);
            packets.push(buf.freeze());
        });
        self.header = header;
        packets
            .into_iter()
            .enumerate()
            .map(|(i, data)| Packet {
                track: self.track,
                data,
                keyframe: idr == Some(true) && i == 0,
            })
            .collect()
    }

    /// The RTP payloads of one access unit (its NAL units), for a sender that writes its own headers
    /// (the WebRTC publisher): `emit(prefix, body, marker)` is called once per packet, whose
    /// payload is `prefix` followed by `body` (the prefix is empty for a single NAL unit and the
    /// two FU-A bytes for a fragment), `marker` on the access unit's last packet. Parameter sets
    /// are remembered and inserted as in [`H264Packetizer::packetize`]. Returns whether the
    /// access unit is an IDR, or `None` (and emits nothing) when it holds no slice.
    pub fn payloads(
        &mut self,
        nals: &[Bytes],
        mut emit: impl FnMut(&[u8], &[u8], bool),
    ) -> Option<bool> {
        let mut nals: Vec<&Bytes> = nals
            .iter()
            .filter(|n| !matches!(h264::nal_type(n), Some(NAL_AUD | NAL_FILLER)))
            .collect();
        let sps = nals.iter().find(|n| h264::nal_type(n) == Some(NAL_SPS));
        let pps = nals.iter().find(|n| h264::nal_type(n) == Some(NAL_PPS));
        let has_sps = sps.is_some();
        if let (Some(sps), Some(pps)) = (sps, pps)
            && self
                .parameter_sets
                .as_ref()
                .is_none_or(|(s, p)| s != *sps || p != *pps)
        {
            self.parameter_sets = Some(((*sps).clone(), (*pps).clone()));
        }
        let idr = nals.iter().any(|n| h264::nal_type(n) == Some(NAL_IDR));
        if idr
            && !has_sps
            && let Some((sps, pps)) = &self.parameter_sets
        {
            nals.insert(0, pps);
            nals.insert(0, sps);
        }
        if !nals
            .iter()
            .any(|n| matches!(h264::nal_type(n), Some(1..=5)))
        {
            return None;
        }
        let last_nal = nals.len() - 1;
        for (i, nal) in nals.iter().enumerate() {
            let last = i == last_nal;
            if nal.len() <= self.max_payload {
                emit(&[], nal, last);
            } else {
                let indicator = (nal[0] & 0xe0) | FU_A;
                let kind = nal[0] & 0x1f;
                let mut chunks = nal[1..].chunks(self.max_payload - 2).peekable();
                let mut start = 0x80;
                while let Some(chunk) = chunks.next() {
                    let final_chunk = chunks.peek().is_none();
                    let end = if final_chunk { 0x40 } else { 0 };
                    emit(&[indicator, start | end | kind], chunk, last && final_chunk);
                    start = 0;
                }
            }
        }
        Some(idr)
    }
}

/// Turns raw AAC frames into RTP packets.
#[derive(Debug, Clone)]
pub struct AacPacketizer {
    track: usize,
    header: Header,
    max_payload: usize,
}

impl AacPacketizer {
    /// A packetizer for `track` with the given payload type, SSRC and first sequence number.
    pub fn new(track: usize, payload_type: u8, ssrc: u32, first_seq: u16) -> Self {
        Self {
            track,
            header: Header::new(payload_type, ssrc, first_seq),
            max_payload: MAX_PAYLOAD,
        }
    }

    /// Uses `max_payload` instead of [`MAX_PAYLOAD`] (at least 64 bytes).
    pub fn with_max_payload(mut self, max_payload: usize) -> Self {
        self.max_payload = max_payload.max(64);
        self
    }

    /// The sequence number the next packet will carry.
    pub fn next_seq(&self) -> u16 {
        self.header.next_seq
    }

    /// Packetizes one raw AAC frame with RTP timestamp `timestamp`. A frame beyond the 13-bit
    /// size field (8191 bytes) cannot be described and yields no packets.
    pub fn packetize(&mut self, frame: &[u8], timestamp: u32) -> Vec<Packet> {
        let Ok(size) = u16::try_from(frame.len()) else {
            return Vec::new();
        };
        if frame.is_empty() || size > 0x1fff {
            return Vec::new();
        }
        let chunks: Vec<&[u8]> = frame.chunks(self.max_payload - 4).collect();
        let last_chunk = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(k, chunk)| {
                let mut buf = BytesMut::with_capacity(RTP_HEADER_LEN + 4 + chunk.len());
                self.header.write(&mut buf, k == last_chunk, timestamp);
                buf.put_u16(16); // AU-headers-length in bits: one 16-bit AU-header.
                buf.put_u16(size << 3); // AU-size (13 bits) and AU-index 0 (3 bits).
                buf.put_slice(chunk);
                Packet {
                    track: self.track,
                    data: buf.freeze(),
                    keyframe: false,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reassembles the NAL units of one access unit from RFC 6184 packets.
    fn depacketize_h264(packets: &[Packet]) -> Vec<Vec<u8>> {
        let mut nals = Vec::new();
        let mut fragment: Vec<u8> = Vec::new();
        for p in packets {
            let payload = &p.data[RTP_HEADER_LEN..];
            match payload[0] & 0x1f {
                FU_A => {
                    let (indicator, header) = (payload[0], payload[1]);
                    if header & 0x80 != 0 {
                        fragment = vec![(indicator & 0xe0) | (header & 0x1f)];
                    }
                    fragment.extend_from_slice(&payload[2..]);
                    if header & 0x40 != 0 {
                        nals.push(std::mem::take(&mut fragment));
                    }
                }
                _ => nals.push(payload.to_vec()),
            }
        }
        nals
    }

    fn annex_b(nals: &[&[u8]]) -> Bytes {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
        Bytes::from(out)
    }

    #[test]
    fn small_nals_go_alone_large_ones_in_fragments() {
        let mut p = H264Packetizer::new(0, 96, 0x1234_5678, 65_534).with_max_payload(100);
        let big: Vec<u8> = std::iter::once(0x65)
            .chain((0..250).map(|i| i as u8))
            .collect();
        let au = annex_b(&[&[9, 0xf0], &[0x67, 1, 2, 3], &[0x68, 4], &big]);
        let packets = p.packetize(&au, 90_000);
        // AUD dropped; SPS, PPS alone; the 251-byte IDR in three fragments of ≤ 98 bytes.
        assert_eq!(packets.len(), 5);
        assert_eq!(
            depacketize_h264(&packets),
            vec![vec![0x67, 1, 2, 3], vec![0x68, 4], big]
        );
        let seqs: Vec<u16> = packets.iter().map(Packet::seq).collect();
        assert_eq!(seqs, vec![65_534, 65_535, 0, 1, 2]);
        assert!(
            packets
                .iter()
                .all(|p| p.timestamp() == 90_000 && p.data.len() <= 112)
        );
        let markers: Vec<bool> = packets.iter().map(Packet::marker).collect();
        assert_eq!(markers, vec![false, false, false, false, true]);
        assert!(packets[0].keyframe && !packets[1].keyframe);
        assert_eq!(packets[0].data[1] & 0x7f, 96);
        assert_eq!(&packets[0].data[8..12], &0x1234_5678u32.to_be_bytes());
    }

    #[test]
    fn parameter_sets_precede_every_idr() {
        let mut p = H264Packetizer::new(0, 96, 1, 0);
        p.set_parameter_sets(
            Bytes::from_static(&[0x67, 9]),
            Bytes::from_static(&[0x68, 8]),
        );
        let packets = p.packetize(&annex_b(&[&[0x65, 1, 2]]), 0);
        assert_eq!(
            depacketize_h264(&packets),
            vec![vec![0x67, 9], vec![0x68, 8], vec![0x65, 1, 2]]
        );
        assert!(packets[0].keyframe);
        let packets = p.packetize(&annex_b(&[&[0x41, 1]]), 3000);
        assert_eq!(packets.len(), 1);
        assert!(!packets[0].keyframe);
        // Nothing to show, nothing sent.
        assert!(p.packetize(&annex_b(&[&[9, 0xf0]]), 6000).is_empty());
        assert!(
            p.packetize(&Bytes::from_static(b"garbage"), 6000)
                .is_empty()
        );
    }

    #[test]
    fn aac_frames_carry_rfc3640_au_headers() {
        let mut p = AacPacketizer::new(1, 97, 7, 10);
        let frame = vec![0xab; 300];
        let packets = p.packetize(&frame, 1024);
        assert_eq!(packets.len(), 1);
        let payload = &packets[0].data[RTP_HEADER_LEN..];
        assert_eq!(
            &payload[..4],
            &[0x00, 0x10, (300u16 << 3 >> 8) as u8, (300u16 << 3) as u8]
        );
        assert_eq!(&payload[4..], &frame[..]);
        assert!(packets[0].marker() && !packets[0].keyframe);
        assert_eq!(packets[0].track, 1);
        // A frame larger than a packet: fragments, each with the whole AU size, marker last.
        let mut p = p.with_max_payload(100);
        let packets = p.packetize(&frame, 2048);
        assert_eq!(packets.len(), 4);
        assert!(
            packets
                .iter()
                .all(|q| q.data[RTP_HEADER_LEN + 2..RTP_HEADER_LEN + 4]
                    == [(300u16 << 3 >> 8) as u8, (300u16 << 3) as u8])
        );
        let markers: Vec<bool> = packets.iter().map(Packet::marker).collect();
        assert_eq!(markers, vec![false, false, false, true]);
        assert!(p.packetize(&[], 0).is_empty());
        assert!(p.packetize(&vec![0; 9000], 0).is_empty());
    }
}
