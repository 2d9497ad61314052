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

/// Bytes of RTSP interleaved framing before a packet on a TCP connection (RFC 2326 §10.12):
/// `$`, the channel, and the packet's length in 16 bits.
pub const INTERLEAVED_PREFIX_LEN: usize = 4;

/// The largest payload a packetizer is set to: with the RTP header, the AAC AU header and the
/// interleaved framing, a packet must fit the framing's 16-bit length.
const MAX_SETTABLE_PAYLOAD: usize = u16::MAX as usize - RTP_HEADER_LEN - 4;

/// The interleaved channel a track's RTP goes on when a client takes the usual numbering (the
/// first track on 0–1, the second on 2–3, as ffmpeg, VLC and GStreamer ask in SETUP).
pub fn usual_channel(track: usize) -> u8 {
    u8::try_from(track * 2).unwrap_or(u8::MAX)
}

/// One RTP packet of a camera, shared by every client that receives it.
///
/// The packets of one frame live in one buffer, each already framed for an RTSP/TCP client on
/// the usual channel ([`usual_channel`]): a client that uses those channels is sent a frame's
/// packets as one contiguous slice of that buffer, without copying them or looping over them
/// ([`Packet::framed`]). Other clients frame them themselves; UDP clients send [`Packet::data`].
#[derive(Debug, Clone)]
pub struct Packet {
    /// Which track of the camera (its index in the description).
    pub track: usize,
    /// The frame's buffer: its packets, each behind its interleaved framing.
    frame: Bytes,
    /// Where this packet's framing starts in `frame`.
    at: usize,
    /// The packet's length (without framing).
    len: usize,
    /// The first packet of a video access unit a decoder can start at (an IDR with its
    /// parameter sets). New clients and lagging ones start at such a packet.
    pub keyframe: bool,
}

impl PartialEq for Packet {
    fn eq(&self, other: &Self) -> bool {
        self.track == other.track && self.keyframe == other.keyframe && self.data() == other.data()
    }
}

impl Eq for Packet {}

impl Packet {
    /// A packet of `track` from a whole RTP packet, copied into its own framed buffer; `None`
    /// if it is shorter than an RTP header or longer than interleaved framing can carry
    /// (65535 bytes).
    pub fn new(track: usize, data: &[u8], keyframe: bool) -> Option<Self> {
        if data.len() < RTP_HEADER_LEN || data.len() > usize::from(u16::MAX) {
            return None;
        }
        let mut frame = FrameBuffer::new(track, INTERLEAVED_PREFIX_LEN + data.len());
        let start = frame.begin();
        frame.buf.put_slice(data);
        frame.end(start);
        frame.finish(keyframe).into_iter().next()
    }

    /// The whole packet: header and payload.
    pub fn data(&self) -> &[u8] {
        let start = self.at + INTERLEAVED_PREFIX_LEN;
        &self.frame[start..start + self.len]
    }

    /// The packet behind its interleaved framing on channel [`usual_channel`] of its track: the
    /// frame's buffer and the range in it. Consecutive packets of one frame have adjacent
    /// ranges in the same buffer (see [`Packet::follows`]).
    pub fn framed(&self) -> (&Bytes, std::ops::Range<usize>) {
        (
            &self.frame,
            self.at..self.at + INTERLEAVED_PREFIX_LEN + self.len,
        )
    }

    /// The interleaved channel the framing in [`Packet::framed`] names.
    pub fn framed_channel(&self) -> u8 {
        self.frame[self.at + 1]
    }

    /// Whether this packet's framing starts right where `previous`'s packet ends, in the same
    /// buffer, so that both go out as one slice.
    pub fn follows(&self, previous: &Self) -> bool {
        self.frame.as_ptr() == previous.frame.as_ptr()
            && self.at == previous.at + INTERLEAVED_PREFIX_LEN + previous.len
    }

    /// The sequence number in the header.
    pub fn seq(&self) -> u16 {
        let d = self.data();
        u16::from_be_bytes([d[2], d[3]])
    }

    /// The timestamp in the header.
    pub fn timestamp(&self) -> u32 {
        let d = self.data();
        u32::from_be_bytes([d[4], d[5], d[6], d[7]])
    }

    /// Whether the marker bit is set (last packet of an access unit).
    pub fn marker(&self) -> bool {
        self.data()[1] & 0x80 != 0
    }
}

/// Builds one frame's packets in one buffer, each behind its interleaved framing.
struct FrameBuffer {
    track: usize,
    channel: u8,
    buf: BytesMut,
    /// (framing start, packet length) of each packet written.
    packets: Vec<(usize, usize)>,
}

impl FrameBuffer {
    fn new(track: usize, capacity: usize) -> Self {
        Self {
            track,
            channel: usual_channel(track),
            buf: BytesMut::with_capacity(capacity),
            packets: Vec::new(),
        }
    }

    /// Starts a packet: writes its framing with the length left blank; returns where it starts.
    fn begin(&mut self) -> usize {
        let start = self.buf.len();
        self.buf.put_u8(b'$');
        self.buf.put_u8(self.channel);
        self.buf.put_u16(0);
        start
    }

    /// Ends the packet begun at `start`, filling in its length.
    fn end(&mut self, start: usize) {
        let len = self.buf.len() - start - INTERLEAVED_PREFIX_LEN;
        // Packetizers keep packets within the 16-bit length (MAX_SETTABLE_PAYLOAD).
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        self.buf[start + 2..start + 4].copy_from_slice(&len16.to_be_bytes());
        self.packets.push((start, len));
    }

    /// The packets, the first marked `keyframe`.
    fn finish(self, keyframe: bool) -> Vec<Packet> {
        let frame = self.buf.freeze();
        let track = self.track;
        self.packets
            .into_iter()
            .enumerate()
            .map(|(i, (at, len))| Packet {
                track,
                frame: frame.clone(),
                at,
                len,
                keyframe: keyframe && i == 0,
            })
            .collect()
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

    /// Uses `max_payload` instead of [`MAX_PAYLOAD`] (at least 64 bytes, at most what
    /// interleaved framing can carry).
    pub fn with_max_payload(mut self, max_payload: usize) -> Self {
        self.max_payload = max_payload.clamp(64, MAX_SETTABLE_PAYLOAD);
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
        // Room for the slices plus, per packet, its framing, header and FU-A bytes.
        let bytes: usize = nals.iter().map(Bytes::len).sum();
        let packets = bytes / self.max_payload + nals.len() + 2;
        let mut frame = FrameBuffer::new(
            self.track,
            bytes + packets * (INTERLEAVED_PREFIX_LEN + RTP_HEADER_LEN + 2),
        );
        let mut header = self.header.clone();
        let idr = self.payloads(nals, |prefix, body, marker| {
            let start = frame.begin();
            header.write(&mut frame.buf, marker, timestamp);
            frame.buf.put_slice(prefix);
            frame.buf.put_slice(body);
            frame.end(start);
        });
        self.header = header;
        frame.finish(idr == Some(true))
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

    /// Uses `max_payload` instead of [`MAX_PAYLOAD`] (at least 64 bytes, at most what
    /// interleaved framing can carry).
    pub fn with_max_payload(mut self, max_payload: usize) -> Self {
        self.max_payload = max_payload.clamp(64, MAX_SETTABLE_PAYLOAD);
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
        let chunks = frame.len().div_ceil(self.max_payload - 4);
        let mut out = FrameBuffer::new(
            self.track,
            frame.len() + chunks * (INTERLEAVED_PREFIX_LEN + RTP_HEADER_LEN + 4),
        );
        for (k, chunk) in frame.chunks(self.max_payload - 4).enumerate() {
            let start = out.begin();
            self.header.write(&mut out.buf, k + 1 == chunks, timestamp);
            out.buf.put_u16(16); // AU-headers-length in bits: one 16-bit AU-header.
            out.buf.put_u16(size << 3); // AU-size (13 bits) and AU-index 0 (3 bits).
            out.buf.put_slice(chunk);
            out.end(start);
        }
        out.finish(false)
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
            let payload = &p.data()[RTP_HEADER_LEN..];
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
                .all(|p| p.timestamp() == 90_000 && p.data().len() <= 112)
        );
        let markers: Vec<bool> = packets.iter().map(Packet::marker).collect();
        assert_eq!(markers, vec![false, false, false, false, true]);
        assert!(packets[0].keyframe && !packets[1].keyframe);
        assert_eq!(packets[0].data()[1] & 0x7f, 96);
        assert_eq!(&packets[0].data()[8..12], &0x1234_5678u32.to_be_bytes());
    }

    #[test]
    fn a_frames_packets_lie_framed_back_to_back_in_one_buffer() {
        let mut p = H264Packetizer::new(1, 96, 1, 0).with_max_payload(100);
        let big: Vec<u8> = std::iter::once(0x65)
            .chain((0..250).map(|i| i as u8))
            .collect();
        let packets = p.packetize(&annex_b(&[&[0x67, 1], &[0x68, 2], &big]), 0);
        assert_eq!(packets.len(), 5);
        let (buffer, first) = packets[0].framed();
        let (_, last) = packets[4].framed();
        // One slice holds the whole frame, as an RTSP/TCP client on channel 2 reads it.
        let mut wire = &buffer[first.start..last.end];
        for packet in &packets {
            assert_eq!(packet.framed_channel(), 2);
            let len = usize::from(u16::from_be_bytes([wire[2], wire[3]]));
            assert_eq!(&wire[..2], &[b'$', 2]);
            assert_eq!(&wire[4..4 + len], packet.data());
            wire = &wire[4 + len..];
        }
        assert!(wire.is_empty());
        assert!(packets.windows(2).all(|w| w[1].follows(&w[0])));
        let next = p.packetize(&annex_b(&[&[0x41, 1]]), 3000);
        assert!(
            !next[0].follows(&packets[4]),
            "another frame, another buffer"
        );
        let single = Packet::new(0, packets[1].data(), false).unwrap();
        assert_eq!(
            single,
            Packet {
                track: 0,
                ..packets[1].clone()
            }
        );
        assert_eq!(single.framed_channel(), 0);
        assert!(Packet::new(0, &vec![0; 65_536], false).is_none());
        assert!(Packet::new(0, &[0x80; RTP_HEADER_LEN - 1], false).is_none());
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
        let payload = &packets[0].data()[RTP_HEADER_LEN..];
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
                .all(|q| q.data()[RTP_HEADER_LEN + 2..RTP_HEADER_LEN + 4]
                    == [(300u16 << 3 >> 8) as u8, (300u16 << 3) as u8])
        );
        let markers: Vec<bool> = packets.iter().map(Packet::marker).collect();
        assert_eq!(markers, vec![false, false, false, true]);
        assert!(p.packetize(&[], 0).is_empty());
        assert!(p.packetize(&vec![0; 9000], 0).is_empty());
    }
}
