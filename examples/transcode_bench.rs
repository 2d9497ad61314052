//! AAC-LC → Opus transcoder benchmark: the CPU one camera's audio costs the WebRTC publisher.
//!
//! Transcodes the simulator fixture's audio (AAC-LC, 48 kHz mono, a beeping 440 Hz tone) — or
//! any ADTS file — as fast as it goes, for N seconds of media at each Opus complexity, and
//! prints the CPU time this thread spent per second of audio: the share of one core a camera
//! needs to keep up in real time. A decode-only line (symphonia alone) shows how the cost
//! splits between decoder and encoder.
//!
//! ```text
//! cargo run --release --example transcode_bench                     # 300 s, complexity 0..=10
//! cargo run --release --example transcode_bench -- 600 3,5          # seconds, complexities
//! cargo run --release --example transcode_bench -- 300 5 in.aac     # another ADTS file
//! cargo run --release --example transcode_bench -- 60 0,5 --cold    # caches flushed per frame
//! ```
//!
//! Run hot, the transcoder keeps its code and tables in the caches from one frame to the next,
//! which a relay never does: `--cold` flushes the caches before every frame and gives the figure
//! that matches what the transcoder costs inside a publishing relay.
//!
//! CPU time is the thread's own (`/proc/thread-self/schedstat`), so other load on the machine
//! does not inflate it; elsewhere it falls back to wall time. With `--cold` each frame is timed
//! on the wall clock (reading /proc per frame would cost more than a frame), so run it on an
//! idle machine. Results and the machine they came
//! from are recorded in docs/BENCHMARKS.md.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use camrelay::media::transcode::{AacToOpus, OPUS_COMPLEXITY, OpusPacket};
use camrelay_rtsp::aac::{AudioConfig, SAMPLES_PER_FRAME, adts_frames};
use camrelay_sim::camera::Fixture;
use symphonia::core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::packet::PacketRef;
use symphonia::core::units::Timestamp;
use symphonia::default::codecs::AacDecoder;

/// CPU time this thread has used, or `None` where /proc does not say.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Runs `work` and returns the CPU time it took (wall time where CPU time is unknown).
fn measure(work: impl FnOnce()) -> Duration {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    work();
    match (cpu, thread_cpu()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => wall.elapsed(),
    }
}

/// Frames with their RTP timestamps, looped to `seconds` of media.
fn frames_for(audio: &[Bytes], config: &AudioConfig, seconds: u32) -> Vec<(Bytes, u32)> {
    let count = (u64::from(seconds) * u64::from(config.sample_rate) / u64::from(SAMPLES_PER_FRAME))
        as usize;
    (0..count)
        .map(|i| {
            let ts = (i as u32).wrapping_mul(SAMPLES_PER_FRAME);
            (audio[i % audio.len()].clone(), ts)
        })
        .collect()
}

/// `--cold`: bytes written between two frames, more than the L2 and L3 caches of the machines we
/// measure on (1 MiB and 8 MiB), so each frame starts with none of the decoder's or encoder's
/// code and state cached — as in a relay, where each 21 ms audio frame follows video, other
/// cameras and other processes.
const EVICT_BYTES: usize = 32 << 20;

/// Runs `work` on every frame and returns the CPU time it took. With `evict`, the caches are
/// flushed before each frame (by writing a line of every 64 bytes of it) and each frame is timed
/// on the wall clock alone, so the flushing is not counted.
fn time_frames(
    input: &[(Bytes, u32)],
    evict: Option<&mut [u8]>,
    mut work: impl FnMut(&Bytes, u32),
) -> Duration {
    let Some(evict) = evict else {
        return measure(|| {
            for (frame, ts) in input {
                work(frame, *ts);
            }
        });
    };
    let mut total = Duration::ZERO;
    for (frame, ts) in input {
        for line in evict.chunks_mut(64) {
            line[0] = line[0].wrapping_add(1);
        }
        std::hint::black_box(&mut *evict);
        let started = Instant::now();
        work(frame, *ts);
        total += started.elapsed();
    }
    total
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let cold = args.iter().any(|a| a == "--cold");
    args.retain(|a| a != "--cold");
    let mut evict = cold.then(|| vec![0u8; EVICT_BYTES]);
    let seconds: u32 = args.first().map_or(300, |s| s.parse().unwrap());
    let complexities: Vec<i32> = args.get(1).map_or_else(
        || (0..=10).collect(),
        |s| s.split(',').map(|c| c.parse().unwrap()).collect(),
    );
    let (audio, config, source) = match args.get(2) {
        Some(path) => {
            let frames = adts_frames(&Bytes::from(std::fs::read(path).unwrap()));
            assert!(!frames.is_empty(), "{path}: no ADTS frames");
            let config = frames[0].config.clone();
            let audio = frames.into_iter().map(|f| f.payload).collect();
            (audio, config, path.clone())
        }
        None => {
            let f = Fixture::load();
            (f.audio, f.audio_config, "the simulator fixture".to_owned())
        }
    };
    let input = frames_for(&audio, &config, seconds);
    println!(
        "{seconds} s of {source}: AAC-LC {} Hz, {} channel(s), {} frames; CPU measured as {}",
        config.sample_rate,
        config.channels,
        input.len(),
        if thread_cpu().is_some() {
            "this thread's CPU time"
        } else {
            "wall time"
        }
    );
    let media = f64::from(seconds);

    // Decoding alone.
    let mut params = AudioCodecParameters::new();
    params
        .for_codec(CODEC_ID_AAC)
        .with_extra_data(config.specific_config.to_vec().into_boxed_slice());
    let mut decoder = AacDecoder::try_new(&params, &AudioDecoderOptions::default()).unwrap();
    let decode = time_frames(&input, evict.as_deref_mut(), |frame, _| {
        let packet = PacketRef::new(0, Timestamp::from(0i64), 1024u64.into(), frame);
        std::hint::black_box(decoder.decode_ref(&packet).unwrap().frames());
    });
    println!();
    println!(
        "| Opus complexity | CPU per second of audio | % of one core | packets | average packet | bitrate |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| (AAC decode only) | {:.2} ms | {:.3}% | | | |",
        decode.as_secs_f64() * 1000.0 / media,
        decode.as_secs_f64() * 100.0 / media
    );

    for complexity in complexities {
        let mut transcoder = AacToOpus::with_complexity(&config, complexity).unwrap();
        let mut out: Vec<OpusPacket> = Vec::with_capacity(4);
        let (mut packets, mut bytes) = (0u64, 0u64);
        let cpu = time_frames(&input, evict.as_deref_mut(), |frame, ts| {
            out.clear();
            transcoder.push(frame, ts, &mut out).unwrap();
            packets += out.len() as u64;
            bytes += out.iter().map(|p| p.data.len() as u64).sum::<u64>();
        });
        let marker = if complexity == OPUS_COMPLEXITY {
            " (default)"
        } else {
            ""
        };
        println!(
            "| {complexity}{marker} | {:.2} ms | {:.3}% | {packets} | {:.0} B | {:.1} kb/s |",
            cpu.as_secs_f64() * 1000.0 / media,
            cpu.as_secs_f64() * 100.0 / media,
            bytes as f64 / packets.max(1) as f64,
            bytes as f64 * 8.0 / media / 1000.0
        );
    }
}
