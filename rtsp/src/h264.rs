//! H.264 access units in Annex B form (ITU-T H.264 Annex B): start-code splitting, NAL unit
//! types, and what the SDP needs from the sequence parameter set.

use bytes::Bytes;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{BitReader, decode_nal};

/// NAL unit type of a coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a coded slice of a non-IDR picture.
pub const NAL_SLICE: u8 = 1;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;
/// NAL unit type of filler data.
pub const NAL_FILLER: u8 = 12;

/// The type of a NAL unit (its low five bits), or `None` for an empty one.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// The NAL units of an Annex B byte stream, without start codes. Bytes before the first start
/// code are ignored; empty NAL units (two start codes in a row) are skipped. Trailing zero
/// bytes that belong to the next start code are not part of a NAL unit.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        match data[i + 2] {
            // No start code can begin at i, i + 1 or i + 2: each would need a zero there. This
            // skip makes the scan look at about a third of the bytes of slice data.
            2.. => i += 3,
            1 if data[i] == 0 && data[i + 1] == 0 => {
                starts.push(i + 3);
                i += 3;
            }
            _ => i += 1,
        }
    }
    let mut units = Vec::with_capacity(starts.len());
    for (k, &start) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |&next| next - 3);
        // A four-byte start code leaves a zero before the three-byte one; trailing_zero_8bits
        // are allowed too.
        while end > start && data[end - 1] == 0 && starts.get(k + 1).is_some() {
            end -= 1;
        }
        if end > start {
            units.push(&data[start..end]);
        }
    }
    units.into_iter()
}

/// The NAL units of `data` as shared slices of the same buffer.
pub fn nal_units_shared(data: &Bytes) -> Vec<Bytes> {
    nal_units(data).map(|nal| data.slice_ref(nal)).collect()
}

/// Whether an access unit holds an IDR slice (a decoder can start there).
pub fn is_idr(access_unit: &[u8]) -> bool {
    nal_units(access_unit).any(|nal| nal_type(nal) == Some(NAL_IDR))
}

/// What the SDP and the stats need from a sequence parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    /// `profile_idc`, `constraint_set` flags and `level_idc`: the `profile-level-id` of RFC 6184.
    pub profile_level_id: [u8; 3],
    /// Width in pixels after cropping.
    pub width: u32,
    /// Height in pixels after cropping.
    pub height: u32,
}

impl SpsInfo {
    /// `profile-level-id` as six hex digits, as SDP writes it.
    pub fn profile_level_id_hex(&self) -> String {
        let [p, c, l] = self.profile_level_id;
        format!("{p:02x}{c:02x}{l:02x}")
    }

    /// Parses a sequence parameter set NAL unit (with its one-byte header).
    pub fn parse(sps: &[u8]) -> Option<Self> {
        if nal_type(sps) != Some(NAL_SPS) || sps.len() < 4 {
            return None;
        }
        let rbsp = decode_nal(sps).ok()?;
        let parsed = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).ok()?;
        let (width, height) = parsed.pixel_dimensions().ok()?;
        Some(Self {
            profile_level_id: [sps[1], sps[2], sps[3]],
            width,
            height,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start-code positions by brute force.
    fn naive_starts(data: &[u8]) -> Vec<usize> {
        (0..data.len().saturating_sub(2))
            .filter(|&i| data[i..i + 3] == [0, 0, 1])
            .map(|i| i + 3)
            .collect()
    }

    #[test]
    fn the_skipping_scan_finds_what_a_brute_force_one_finds() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let len = rng.usize(0..64);
            // Mostly zeros and ones, so start codes and near misses are common.
            let data: Vec<u8> = (0..len)
                .map(|_| [0, 0, 0, 1, 2, 255][rng.usize(..6)])
                .collect();
            let found: Vec<usize> = nal_units(&data)
                .map(|nal| nal.as_ptr() as usize - data.as_ptr() as usize)
                .collect();
            let starts = naive_starts(&data);
            // Every unit begins right after a start code, and no non-empty unit is missed.
            for start in &found {
                assert!(starts.contains(start), "{data:?}");
            }
            for (k, &start) in starts.iter().enumerate() {
                let end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
                let has_data = data[start..end.max(start)].iter().any(|&b| b != 0);
                if has_data {
                    assert!(found.contains(&start), "{data:?}");
                }
            }
        }
    }

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 0, 0,
        ];
        let units: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(
            units,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5, 0, 0][..]]
        );
        assert!(is_idr(&data));
        assert_eq!(nal_type(units[0]), Some(NAL_SPS));
    }

    #[test]
    fn garbage_yields_no_units_and_never_panics() {
        assert_eq!(nal_units(&[]).count(), 0);
        assert_eq!(nal_units(&[1, 2, 3, 4]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1, 0, 0, 1]).count(), 0);
        assert_eq!(SpsInfo::parse(&[0x67]), None);
        assert_eq!(SpsInfo::parse(&[0x67, 0xff, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn reads_the_fixture_sps() {
        // Constrained Baseline 3.0, 640x360 (from sim/fixtures/camera.h264).
        let data = include_bytes!("../../sim/fixtures/camera.h264");
        let sps = nal_units(data)
            .find(|n| nal_type(n) == Some(NAL_SPS))
            .expect("the fixture starts with an SPS");
        let info = SpsInfo::parse(sps).expect("parses");
        assert_eq!((info.width, info.height), (640, 360));
        assert_eq!(info.profile_level_id_hex(), "42c01e");
    }
}
