//! AAC-LC → Opus for the WebRTC publisher.
//!
//! Browsers play Opus and G.711 over WebRTC (RFC 7874 §3), not AAC, so a camera's AAC-LC track
//! is decoded ([symphonia]), brought to a rate libopus accepts ([rubato], only when it is not
//! one already) and encoded as 20 ms Opus frames (libopus through the `opus` crate).
//!
//! **Rates.** libopus encodes 8, 12, 16, 24 and 48 kHz natively; those are fed as they are (the
//! common camera rates 8 and 16 kHz cost no resampling). Anything else (44.1, 32, 22.05 kHz, …)
//! is resampled to 48 kHz with rubato's synchronous FFT resampler. Whatever the encoder's rate,
//! Opus RTP timestamps tick at 48 kHz (RFC 7587 §4.1), so a 20 ms frame is always 960 ticks.
//!
//! **Time.** Output timestamps are the input's, mapped to 48 kHz, so audio stays in step with the
//! video of the same session. Within a run of contiguous input they advance by exactly 960 per
//! packet (the samples are counted, so jitter in the input timestamps of up to
//! [`TIMESTAMP_SLACK`] does not move them). A frame that arrives later than expected by more than
//! the slack but at most [`MAX_SILENCE_FILL_MS`] (a lost or corrupt frame) has the hole filled
//! with silence, which keeps the audio in sync without a timestamp jump. Anything else — a
//! backward step, a longer gap, a new upstream session — starts a new run at the new input
//! timestamp: the partial frame still buffered is dropped (less than 20 ms) and the output jumps
//! with the input, which the receiver's jitter buffer conceals. Call [`AacToOpus::reset`] when
//! the upstream session changes.
//!
//! **Limits** (symphonia's AAC decoder): AAC-LC (audio object type 2) only, mono or stereo, 1024
//! samples per frame. HE-AAC (SBR, object type 5; PS, 29, also when an LC config signals SBR
//! explicitly) is refused up front. A stream whose config says plain LC but whose frames carry
//! SBR anyway (implicit signalling) decodes as its LC core, with half the bandwidth; if its RTP
//! clock runs at the SBR output rate, its timestamps advance twice as fast as the decoded
//! samples and half of what comes out is the silence that fills the gaps.

use std::fmt;

use bytes::{Bytes, BytesMut};
use camrelay_rtsp::aac::{AudioConfig, SAMPLES_PER_FRAME};
use opus::{Application, Bitrate, Channels as OpusChannels, Encoder};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use symphonia::core::audio::{Audio, GenericAudioBufferRef};
use symphonia::core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::packet::PacketRef;
use symphonia::core::units::{Duration as SymphoniaDuration, Timestamp};
use symphonia::default::codecs::AacDecoder;

/// The RTP clock rate of Opus, whatever rate the encoder runs at (RFC 7587 §4.1).
pub const OPUS_CLOCK_RATE: u32 = 48_000;

/// Duration of one Opus frame, and so of one packet. 20 ms is what browsers send and expect;
/// shorter frames cost more CPU and header overhead, longer ones add latency and make each loss
/// longer.
pub const FRAME_DURATION_MS: u32 = 20;

/// One frame on the 48 kHz RTP clock: 960 ticks.
pub const FRAME_TICKS: u32 = OPUS_CLOCK_RATE / 1000 * FRAME_DURATION_MS;

/// Input rates libopus encodes without resampling (`opus_encoder_create` accepts 8, 12, 16, 24
/// or 48 kHz). Other rates are resampled to [`OPUS_CLOCK_RATE`].
pub const OPUS_NATIVE_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// `OPUS_APPLICATION_RESTRICTED_LOWDELAY`: CELT only, full-band (20 kHz audio bandwidth). Chosen
/// by measurement (`examples/transcode_bench.rs`, docs/BENCHMARKS.md): on a 2-core EPYC VM the
/// whole transcoder (AAC decode included) costs about 0.3% of one core for 48 kHz mono, against
/// about 0.5% for `VOIP`, whose SILK and hybrid modes (the only ones with in-band FEC) also
/// resample to 16 kHz and code wide-band only. The product budget is 1% of one core per camera,
/// video included. CELT's price: no in-band FEC and no DTX; a lost packet is concealed by the
/// browser's decoder (packet loss concealment), which covers a single 20 ms gap well.
pub const OPUS_APPLICATION: Application = Application::LowDelay;

/// Target bitrate per channel (32 kb/s mono, 64 kb/s stereo), variable bitrate: ample for
/// full-band CELT on speech and room sound.
pub const OPUS_BITRATE_PER_CHANNEL: i32 = 32_000;

/// Encoder complexity (0–10). In CELT-only mode it costs little (0.27% of a core at 0, 0.32%
/// at 5, 0.48% at 10 in the benchmark), and 5 is the lowest that runs CELT's pitch pre-filter
/// analysis, which helps voiced speech.
pub const OPUS_COMPLEXITY: i32 = 5;

/// In-band forward error correction (LBRR, RFC 6716 §2.1.7). It exists only in SILK and hybrid
/// modes, which [`OPUS_APPLICATION`] does not use, so it is off (see there for the trade).
pub const OPUS_INBAND_FEC: bool = false;

/// The packet loss the encoder plans for. In CELT mode a non-zero value makes frames lean less
/// on the previous one (less inter-frame energy prediction), so a loss spoils less of what
/// follows; 10% suits Wi-Fi viewers.
pub const OPUS_EXPECTED_LOSS_PERCENT: i32 = 10;

/// The largest Opus packet of one frame: a one-byte TOC and at most 1275 bytes of frame
/// (RFC 6716 §3.2.1). The encoder is given this much room and never needs more.
pub const MAX_OPUS_PACKET_BYTES: usize = 1276;

/// How far (in input ticks) an input timestamp may differ from where the samples so far put it
/// and still count as contiguous: half an AAC frame. Cameras that stamp audio from a jittery
/// clock stay on one run; a single lost frame (1024 ticks) is still seen as a gap.
pub const TIMESTAMP_SLACK: u32 = SAMPLES_PER_FRAME / 2;

/// The longest gap in the input that is filled with silence (lost or corrupt frames) instead of
/// starting a new run. Beyond it the output jumps with the input: filling seconds of silence
/// would send a burst of packets at once.
pub const MAX_SILENCE_FILL_MS: u32 = 200;

/// Input frames per resampler call. The FFT resampler then works in sub-chunks of about 256
/// frames, which keeps its delay near 3 ms at 44.1 → 48 kHz.
const RESAMPLER_CHUNK: usize = SAMPLES_PER_FRAME as usize;

/// Bytes allocated at a time for output packets: each packet's `Bytes` is split off one shared
/// buffer, so a 16 KiB block serves some 200 packets at 32 kb/s.
const PACKET_ARENA_BYTES: usize = 16 * 1024;

/// Silence for filling gaps, per call.
const ZEROS: [f32; 2 * SAMPLES_PER_FRAME as usize] = [0.0; 2 * SAMPLES_PER_FRAME as usize];

/// Why audio could not be transcoded.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The stream is HE-AAC (SBR or parametric stereo), which the decoder does not implement.
    #[error(
        "HE-AAC is not supported, audio not published (audio object type {object_type}, SBR/PS)"
    )]
    HeAac {
        /// 5 (SBR) or 29 (PS).
        object_type: u8,
    },
    /// The stream is not AAC-LC (Main, SSR, LTP, ER, …).
    #[error(
        "AAC audio object type {object_type} is not supported (only 2, AAC-LC), audio not published"
    )]
    UnsupportedObjectType {
        /// The audio object type of the AudioSpecificConfig.
        object_type: u8,
    },
    /// More than two channels, or a layout only a program config element describes.
    #[error(
        "AAC channel configuration {channels} is not supported (only mono and stereo), audio not published"
    )]
    UnsupportedChannels {
        /// The channel configuration of the AudioSpecificConfig.
        channels: u8,
    },
    /// The decoder refused the AudioSpecificConfig (a corrupt or unusual config).
    #[error("AAC decoder refused AudioSpecificConfig {config_hex}, audio not published: {source}")]
    Config {
        /// The AudioSpecificConfig, in hex as in the SDP.
        config_hex: String,
        /// What symphonia said.
        #[source]
        source: symphonia::core::errors::Error,
    },
    /// One AAC frame did not decode. It is skipped; the next frame decodes as usual and the
    /// frame's time is filled with silence.
    #[error("corrupt AAC frame at input timestamp {timestamp} ({len} bytes): {reason}")]
    CorruptFrame {
        /// The frame's RTP timestamp (input clock).
        timestamp: u32,
        /// Its length in bytes.
        len: usize,
        /// Why it did not decode.
        reason: String,
    },
    /// The resampler failed (an internal sizing error; the frame is dropped).
    #[error("resampling {rate} Hz to 48 kHz: {reason}")]
    Resample {
        /// The input rate.
        rate: u32,
        /// What rubato said.
        reason: String,
    },
    /// libopus failed to create the encoder or to encode a frame (the frame is dropped).
    #[error("Opus encoder: {0}")]
    Opus(#[from] opus::Error),
}

/// One 20 ms Opus packet for RTP (RFC 7587).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusPacket {
    /// The Opus packet (one frame).
    pub data: Bytes,
    /// RTP timestamp on the 48 kHz clock: the input timestamp of its first sample, mapped.
    pub timestamp: u32,
    /// Duration on the 48 kHz clock ([`FRAME_TICKS`]).
    pub duration_samples_48k: u32,
}

/// What the transcoder has done, for `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranscodeStats {
    /// AAC frames decoded.
    pub frames_decoded: u64,
    /// AAC frames that did not decode and were skipped.
    pub frames_corrupt: u64,
    /// Opus packets produced.
    pub packets: u64,
    /// Silence inserted for missing or corrupt frames, in 48 kHz ticks.
    pub silence_filled_ticks: u64,
    /// Times the output restarted at a new input timestamp (a jump in the input, not counting
    /// [`AacToOpus::reset`]).
    pub discontinuities: u64,
}

/// Transcodes one camera's AAC-LC track to Opus. Owned by the camera's media task; not shared.
pub struct AacToOpus {
    decoder: AacDecoder,
    channels: usize,
    input_rate: u32,
    encoder_rate: u32,
    resampler: Option<Resample>,
    encoder: Encoder,
    /// Interleaved samples in one Opus frame at the encoder's rate.
    frame_samples: usize,
    /// Decoded, interleaved PCM of the current frame (reused).
    decoded: Vec<f32>,
    /// PCM waiting for the encoder: interleaved, at the encoder's rate.
    pcm: Vec<f32>,
    /// The 48 kHz RTP timestamp of `pcm[0]`.
    pcm_timestamp: u32,
    /// The last input timestamp and its extension to 64 bits (unwrapped).
    last_input: Option<(u32, i64)>,
    /// The extended input timestamp the next frame has if the input is contiguous; `None`
    /// before the first frame of a run.
    expected_input: Option<i64>,
    /// Where output packets are split off.
    arena: BytesMut,
    stats: TranscodeStats,
}

impl fmt::Debug for AacToOpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AacToOpus")
            .field("channels", &self.channels)
            .field("input_rate", &self.input_rate)
            .field("encoder_rate", &self.encoder_rate)
            .field("buffered", &(self.pcm.len() / self.channels))
            .field("pcm_timestamp", &self.pcm_timestamp)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl AacToOpus {
    /// A transcoder for the stream `config` describes, with [`OPUS_COMPLEXITY`].
    ///
    /// Refuses HE-AAC and anything but AAC-LC, and more than two channels.
    pub fn new(config: &AudioConfig) -> Result<Self, TranscodeError> {
        Self::with_complexity(config, OPUS_COMPLEXITY)
    }

    /// As [`AacToOpus::new`], with another Opus encoder complexity (0–10; for benchmarks).
    pub fn with_complexity(config: &AudioConfig, complexity: i32) -> Result<Self, TranscodeError> {
        match config.object_type {
            2 => {}
            5 | 29 => {
                return Err(TranscodeError::HeAac {
                    object_type: config.object_type,
                });
            }
            object_type => return Err(TranscodeError::UnsupportedObjectType { object_type }),
        }
        if let Some(object_type) = explicit_sbr(&config.specific_config) {
            return Err(TranscodeError::HeAac { object_type });
        }
        let opus_channels = match config.channels {
            1 => OpusChannels::Mono,
            2 => OpusChannels::Stereo,
            channels => return Err(TranscodeError::UnsupportedChannels { channels }),
        };
        let channels = usize::from(config.channels);

        let mut params = AudioCodecParameters::new();
        params
            .for_codec(CODEC_ID_AAC)
            .with_sample_rate(config.sample_rate)
            .with_extra_data(config.specific_config.to_vec().into_boxed_slice());
        let decoder =
            AacDecoder::try_new(&params, &AudioDecoderOptions::default()).map_err(|source| {
                TranscodeError::Config {
                    config_hex: config.config_hex(),
                    source,
                }
            })?;
        // The AudioSpecificConfig is the truth; `config`'s fields were parsed from it.
        let decoded = decoder.codec_params();
        let input_rate = decoded.sample_rate.unwrap_or(config.sample_rate);
        if decoded.channels.as_ref().map(|c| c.count()) != Some(channels) {
            return Err(TranscodeError::UnsupportedChannels {
                channels: config.channels,
            });
        }

        let (encoder_rate, resampler) = if OPUS_NATIVE_RATES.contains(&input_rate) {
            (input_rate, None)
        } else {
            (OPUS_CLOCK_RATE, Some(Resample::new(input_rate, channels)?))
        };
        let mut encoder = Encoder::new(encoder_rate, opus_channels, OPUS_APPLICATION)?;
        encoder.set_bitrate(Bitrate::Bits(
            OPUS_BITRATE_PER_CHANNEL * i32::from(config.channels),
        ))?;
        encoder.set_complexity(complexity)?;
        encoder.set_inband_fec(OPUS_INBAND_FEC)?;
        encoder.set_packet_loss_perc(OPUS_EXPECTED_LOSS_PERCENT)?;

        // 20 ms at every native rate is a whole number of samples (160 at 8 kHz).
        let frame_samples = (encoder_rate / 1000 * FRAME_DURATION_MS) as usize * channels;
        Ok(Self {
            decoder,
            channels,
            input_rate,
            encoder_rate,
            resampler,
            encoder,
            frame_samples,
            decoded: Vec::with_capacity(RESAMPLER_CHUNK * channels),
            pcm: Vec::with_capacity(2 * frame_samples + 2 * RESAMPLER_CHUNK * channels),
            pcm_timestamp: 0,
            last_input: None,
            expected_input: None,
            arena: BytesMut::with_capacity(PACKET_ARENA_BYTES),
            stats: TranscodeStats::default(),
        })
    }

    /// Decodes one raw AAC access unit whose RTP timestamp is `rtp_timestamp` (at the AAC
    /// sample rate) and appends the Opus packets that are now complete to `out`, returning how
    /// many: an AAC frame is 1024 samples, 21 ms at 48 kHz (one or two packets) and 128 ms at
    /// 8 kHz (six or seven); more after a gap filled with silence.
    ///
    /// A frame that does not decode is an error ([`TranscodeError::CorruptFrame`]); nothing is
    /// lost beyond it, and the next frame is pushed as usual.
    pub fn push(
        &mut self,
        aac_frame: &[u8],
        rtp_timestamp: u32,
        out: &mut Vec<OpusPacket>,
    ) -> Result<usize, TranscodeError> {
        let input = self.extend(rtp_timestamp);
        if let Err(e) = self.decode(aac_frame, rtp_timestamp) {
            self.stats.frames_corrupt += 1;
            return Err(e);
        }
        self.stats.frames_decoded += 1;
        self.place(input)?;
        let frames = self.decoded.len() / self.channels;
        if let Some(resampler) = &mut self.resampler {
            resampler.push(&self.decoded, self.channels, &mut self.pcm)?;
        } else {
            self.pcm.extend_from_slice(&self.decoded);
        }
        self.expected_input = Some(input + frames as i64);
        let before = out.len();
        self.encode_ready(out)?;
        Ok(out.len() - before)
    }

    /// Forgets the stream: decoder and resampler state, buffered PCM (less than one frame) and
    /// the input timeline. Call it when the upstream session changes; the next frame starts the
    /// output at its own timestamp.
    pub fn reset(&mut self) {
        self.decoder.reset();
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
        // Resetting libopus's state cannot fail for a valid encoder; if it did, the encoder
        // carries on from its old state, which only costs a few milliseconds of blend.
        let _ = self.encoder.reset_state();
        self.pcm.clear();
        self.last_input = None;
        self.expected_input = None;
    }

    /// What the transcoder has done so far.
    pub fn stats(&self) -> TranscodeStats {
        self.stats
    }

    /// Channels in and out (1 or 2).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The AAC sample rate.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// The rate the Opus encoder runs at: the input's when libopus takes it, else 48 kHz.
    pub fn encoder_rate(&self) -> u32 {
        self.encoder_rate
    }

    /// Unwraps a 32-bit input timestamp against the previous one (RFC 3550 §5.1: timestamps
    /// wrap; a step of less than 2^31 either way is taken as the shorter one).
    fn extend(&mut self, timestamp: u32) -> i64 {
        let extended = match self.last_input {
            None => i64::from(timestamp),
            // Reinterpreting the wrapped difference as signed is the point.
            #[allow(clippy::cast_possible_wrap)]
            Some((last, extended)) => extended + i64::from(timestamp.wrapping_sub(last) as i32),
        };
        self.last_input = Some((timestamp, extended));
        extended
    }

    /// The 48 kHz RTP timestamp of an extended input timestamp.
    // RTP timestamps are modulo 2^32: keeping the low 32 bits is the wrap.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn to_clock(&self, input: i64) -> u32 {
        let ticks = (i128::from(input) * i128::from(OPUS_CLOCK_RATE))
            .div_euclid(i128::from(self.input_rate));
        ticks as u32
    }

    /// Decodes `frame` into `self.decoded` (interleaved).
    fn decode(&mut self, frame: &[u8], timestamp: u32) -> Result<(), TranscodeError> {
        let corrupt = |reason: String| TranscodeError::CorruptFrame {
            timestamp,
            len: frame.len(),
            reason,
        };
        if frame.is_empty() {
            return Err(corrupt("empty frame".to_owned()));
        }
        let packet = PacketRef::new(
            0,
            Timestamp::from(0i64),
            SymphoniaDuration::from(SAMPLES_PER_FRAME),
            frame,
        );
        let decoded = self
            .decoder
            .decode_ref(&packet)
            .map_err(|e| corrupt(e.to_string()))?;
        let GenericAudioBufferRef::F32(buffer) = decoded else {
            return Err(corrupt(
                "decoder produced a sample format other than f32".to_owned(),
            ));
        };
        self.decoded.clear();
        match (buffer.plane(0), buffer.plane(1)) {
            (Some(mono), None) if self.channels == 1 => self.decoded.extend_from_slice(mono),
            (Some(left), Some(right)) if self.channels == 2 => {
                self.decoded
                    .extend(left.iter().zip(right).flat_map(|(l, r)| [*l, *r]));
            }
            _ => {
                return Err(corrupt(format!(
                    "decoded {} channels, expected {}",
                    buffer.num_planes(),
                    self.channels
                )));
            }
        }
        Ok(())
    }

    /// Decides where a frame at extended input timestamp `input` goes: on the current run
    /// (after silence for a short gap) or at the start of a new one.
    fn place(&mut self, input: i64) -> Result<(), TranscodeError> {
        let Some(expected) = self.expected_input else {
            self.start_run(input);
            return Ok(());
        };
        let drift = input - expected;
        let max_fill = i64::from(self.input_rate) * i64::from(MAX_SILENCE_FILL_MS) / 1000;
        if drift.abs() <= i64::from(TIMESTAMP_SLACK) {
            Ok(())
        } else if drift > 0 && drift <= max_fill {
            self.fill_silence(drift)
        } else {
            self.stats.discontinuities += 1;
            self.start_run(input);
            Ok(())
        }
    }

    /// A new run: drops the partial frame buffered and anchors the output at `input`.
    fn start_run(&mut self, input: i64) {
        self.pcm.clear();
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
        self.pcm_timestamp = self.to_clock(input);
        self.expected_input = Some(input);
    }

    /// Appends `frames` input frames of silence (`frames` is at most [`MAX_SILENCE_FILL_MS`]).
    fn fill_silence(&mut self, frames: i64) -> Result<(), TranscodeError> {
        let mut left = usize::try_from(frames).unwrap_or(0) * self.channels;
        let ticks = self.to_clock(frames);
        self.stats.silence_filled_ticks += u64::from(ticks);
        while left > 0 {
            let n = left.min(ZEROS.len() / self.channels * self.channels);
            match &mut self.resampler {
                Some(resampler) => resampler.push(&ZEROS[..n], self.channels, &mut self.pcm)?,
                None => self.pcm.extend_from_slice(&ZEROS[..n]),
            }
            left -= n;
        }
        if let Some(expected) = &mut self.expected_input {
            *expected += frames;
        }
        Ok(())
    }

    /// Encodes every whole frame buffered.
    fn encode_ready(&mut self, out: &mut Vec<OpusPacket>) -> Result<(), TranscodeError> {
        let n = self.frame_samples;
        while self.pcm.len() >= n {
            if self.arena.capacity() < MAX_OPUS_PACKET_BYTES {
                self.arena.reserve(PACKET_ARENA_BYTES);
            }
            self.arena.resize(MAX_OPUS_PACKET_BYTES, 0);
            let encoded = self.encoder.encode_float(&self.pcm[..n], &mut self.arena);
            // The frame is consumed and its time passes whether or not it encoded, so a
            // failure cannot repeat forever or shift the timeline.
            self.pcm.drain(..n);
            let timestamp = self.pcm_timestamp;
            self.pcm_timestamp = self.pcm_timestamp.wrapping_add(FRAME_TICKS);
            let len = match encoded {
                Ok(len) => len,
                Err(e) => {
                    self.arena.clear();
                    return Err(e.into());
                }
            };
            self.arena.truncate(len);
            out.push(OpusPacket {
                data: self.arena.split().freeze(),
                timestamp,
                duration_samples_48k: FRAME_TICKS,
            });
            self.stats.packets += 1;
        }
        Ok(())
    }
}

/// The extension object type (5, SBR, or 29, PS) if an AAC-LC AudioSpecificConfig signals SBR
/// explicitly, in the backward-compatible way (ISO/IEC 14496-3 §1.6.2.1: sync extension 0x2b7
/// after the GASpecificConfig). symphonia ignores that signalling and would decode the LC core
/// alone, at half the output rate, which is usually the rate the RTP clock runs at.
fn explicit_sbr(asc: &[u8]) -> Option<u8> {
    let bits = |at: usize, n: usize| -> Option<u32> {
        (at..at + n).try_fold(0u32, |v, bit| {
            let byte = asc.get(bit / 8)?;
            Some((v << 1) | u32::from((byte >> (7 - bit % 8)) & 1))
        })
    };
    // 5 bits object type, 4 frequency index, 4 channels, then GASpecificConfig:
    // frameLengthFlag, dependsOnCoreCoder (0 for cameras; 14 more bits otherwise), extensionFlag.
    if bits(14, 1)? != 0 || bits(16, 11)? != 0x2b7 {
        return None;
    }
    let object_type = u8::try_from(bits(27, 5)?).ok()?;
    ((object_type == 5 || object_type == 29) && bits(32, 1)? == 1).then_some(object_type)
}

/// Resampling to 48 kHz for rates libopus does not take.
struct Resample {
    fft: Fft<f32>,
    rate: u32,
    /// Input waiting for a whole chunk: interleaved, at the input rate.
    input: Vec<f32>,
    /// One call's output (reused).
    output: Vec<f32>,
    /// Output frames still to drop at the start of a run: the resampler's delay, so the first
    /// sample out is the first sample in and timestamps carry over unchanged.
    skip: usize,
}

impl Resample {
    fn new(rate: u32, channels: usize) -> Result<Self, TranscodeError> {
        let error = |reason: String| TranscodeError::Resample { rate, reason };
        let fft = Fft::new(
            rate as usize,
            OPUS_CLOCK_RATE as usize,
            RESAMPLER_CHUNK,
            channels,
            FixedSync::Input,
        )
        .map_err(|e| error(e.to_string()))?;
        let output = vec![0.0; fft.output_frames_max() * channels];
        let skip = fft.output_delay();
        Ok(Self {
            input: Vec::with_capacity(2 * fft.input_frames_max() * channels),
            fft,
            rate,
            output,
            skip,
        })
    }

    /// Resamples `samples` (interleaved) and appends what comes out to `pcm`.
    fn push(
        &mut self,
        samples: &[f32],
        channels: usize,
        pcm: &mut Vec<f32>,
    ) -> Result<(), TranscodeError> {
        let error = |reason: String| TranscodeError::Resample {
            rate: self.rate,
            reason,
        };
        self.input.extend_from_slice(samples);
        loop {
            let needed = self.fft.input_frames_next();
            if self.input.len() < needed * channels {
                return Ok(());
            }
            let input = InterleavedSlice::new(&self.input[..needed * channels], channels, needed)
                .map_err(|e| error(e.to_string()))?;
            let capacity = self.output.len() / channels;
            let mut output = InterleavedSlice::new_mut(&mut self.output, channels, capacity)
                .map_err(|e| error(e.to_string()))?;
            let result = self.fft.process_into_buffer(&input, &mut output, None);
            self.input.drain(..needed * channels);
            let (_, written) = result.map_err(|e| error(e.to_string()))?;
            let skip = self.skip.min(written);
            self.skip -= skip;
            pcm.extend_from_slice(&self.output[skip * channels..written * channels]);
        }
    }

    fn reset(&mut self) {
        self.fft.reset();
        self.input.clear();
        self.skip = self.fft.output_delay();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use camrelay_rtsp::aac::{AdtsFrame, adts_frames};
    use camrelay_sim::camera::Fixture;

    fn assert_send<T: Send>() {}

    #[test]
    fn is_send() {
        assert_send::<AacToOpus>();
    }

    /// Pushes `frames` with timestamps `base + i * 1024`, expecting every one to decode.
    fn transcode(t: &mut AacToOpus, frames: &[Bytes], base: u32) -> Vec<OpusPacket> {
        let mut out = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let ts = base.wrapping_add(i as u32 * SAMPLES_PER_FRAME);
            t.push(frame, ts, &mut out).unwrap();
        }
        out
    }

    /// Decodes AAC frames with symphonia directly: the reference signal (interleaved).
    fn reference_pcm(config: &AudioConfig, frames: &[Bytes]) -> Vec<f32> {
        let mut params = AudioCodecParameters::new();
        params
            .for_codec(CODEC_ID_AAC)
            .with_extra_data(config.specific_config.to_vec().into_boxed_slice());
        let mut decoder = AacDecoder::try_new(&params, &AudioDecoderOptions::default()).unwrap();
        let mut pcm = Vec::new();
        let mut scratch = Vec::new();
        for frame in frames {
            let packet = PacketRef::new(0, Timestamp::from(0i64), 1024u64.into(), frame);
            let buffer = decoder.decode_ref(&packet).unwrap();
            buffer.copy_to_vec_interleaved::<f32>(&mut scratch);
            pcm.extend_from_slice(&scratch);
        }
        pcm
    }

    /// Decodes Opus packets to 48 kHz PCM (interleaved), checking each is 20 ms.
    fn decode_opus(packets: &[OpusPacket], channels: usize) -> Vec<f32> {
        let layout = if channels == 1 {
            OpusChannels::Mono
        } else {
            OpusChannels::Stereo
        };
        let mut decoder = opus::Decoder::new(48_000, layout).unwrap();
        let mut pcm = Vec::new();
        let mut frame = vec![0.0f32; 5760 * channels];
        for p in packets {
            let n = decoder.decode_float(&p.data, &mut frame, false).unwrap();
            assert_eq!(n, 960);
            pcm.extend_from_slice(&frame[..n * channels]);
        }
        pcm
    }

    /// The first channel of interleaved PCM.
    fn first_channel(pcm: &[f32], channels: usize) -> Vec<f32> {
        pcm.iter().step_by(channels).copied().collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Signal power at `freq` (Goertzel).
    fn goertzel(x: &[f32], rate: f64, freq: f64) -> f64 {
        let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / rate).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for v in x {
            let s = f64::from(*v) + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f64).powi(2)
    }

    /// The strongest frequency between 100 Hz and 4 kHz, in 10 Hz steps.
    fn dominant_frequency(x: &[f32], rate: f64) -> f64 {
        (10..400)
            .map(|f| f64::from(f) * 10.0)
            .max_by(|a, b| goertzel(x, rate, *a).total_cmp(&goertzel(x, rate, *b)))
            .unwrap()
    }

    /// Seconds from the start of `x` to the start of each beep (ffmpeg's `sine` source puts a
    /// 40 ms burst at four times the tone's frequency at every whole second).
    fn beep_onsets(x: &[f32], rate: f64, beep: f64) -> Vec<f64> {
        let window = (rate / 200.0) as usize; // 5 ms
        let step = (rate / 4000.0).max(1.0) as usize; // 0.25 ms
        let powers: Vec<(usize, f64)> = (0..x.len().saturating_sub(window))
            .step_by(step)
            .map(|at| (at, goertzel(&x[at..at + window], rate, beep)))
            .collect();
        let max = powers.iter().map(|p| p.1).fold(0.0, f64::max);
        let mut onsets: Vec<f64> = Vec::new();
        for (at, p) in powers {
            // The window's middle is a symmetric estimate for a rising edge. Beeps are a second
            // apart: what follows within half a second is the same beep, however it wobbles.
            let t = (at + window / 2) as f64 / rate;
            if p > max / 4.0 && onsets.last().is_none_or(|last| t - last > 0.5) {
                onsets.push(t);
            }
        }
        onsets
    }

    /// Checks what a transcoded stream must satisfy against its source: one packet per 20 ms,
    /// timestamps 960 apart starting at the input's, the source's tone and level, and beeps at
    /// the same instants on both clocks.
    fn check_stream(config: &AudioConfig, frames: &[Bytes], base: u32) {
        let channels = usize::from(config.channels);
        let rate = f64::from(config.sample_rate);
        let mut t = AacToOpus::new(config).unwrap();
        let packets = transcode(&mut t, frames, base);

        let input_samples = frames.len() as u64 * u64::from(SAMPLES_PER_FRAME);
        let expected = input_samples * 48_000 / u64::from(config.sample_rate) / 960;
        assert!(
            packets.len() as u64 + 1 >= expected && packets.len() as u64 <= expected + 1,
            "{} packets for {expected} frames of 20 ms",
            packets.len()
        );
        let first = (i128::from(base) * 48_000 / i128::from(config.sample_rate)) as u32;
        assert_eq!(packets[0].timestamp, first);
        for (i, p) in packets.iter().enumerate() {
            assert_eq!(
                p.timestamp,
                first.wrapping_add(960 * i as u32),
                "packet {i}"
            );
            assert_eq!(p.duration_samples_48k, 960);
            assert!(!p.data.is_empty() && p.data.len() <= MAX_OPUS_PACKET_BYTES);
        }
        assert_eq!(t.stats().packets, packets.len() as u64);
        assert_eq!(t.stats().frames_decoded, frames.len() as u64);
        assert_eq!(t.stats().discontinuities, 0);
        assert_eq!(t.stats().silence_filled_ticks, 0);

        let source = first_channel(&reference_pcm(config, frames), channels);
        let output = first_channel(&decode_opus(&packets, channels), channels);
        // Skip the first second (codec start-up); compare the rest.
        let (src, out) = (
            &source[rate as usize..],
            &output[48_000..output.len().min(48_000 * source.len() / rate as usize)],
        );
        let (rms_src, rms_out) = (rms(src), rms(out));
        assert!(rms_src > 0.05, "source RMS {rms_src}");
        assert!(
            (rms_out / rms_src - 1.0).abs() < 0.15,
            "RMS {rms_out} after Opus, {rms_src} before"
        );
        // Between beeps: 0.2–0.8 s into the second second.
        let tone = &output[48_000 + 9_600..48_000 + 38_400];
        let f = dominant_frequency(tone, 48_000.0);
        assert!((f - 440.0).abs() <= 10.0, "dominant frequency {f} Hz");

        // Sync: a beep is at the same input-clock instant in the source and in the output
        // (the output's timeline is its timestamps, less the Opus encoder's look-ahead).
        let lookahead = f64::from(t.encoder.get_lookahead().unwrap()) / f64::from(t.encoder_rate);
        let src_onsets = beep_onsets(&source, rate, 1760.0);
        let out_onsets = beep_onsets(&output, 48_000.0, 1760.0);
        assert!(src_onsets.len() >= 2, "{src_onsets:?}");
        assert_eq!(
            src_onsets.len(),
            out_onsets.len(),
            "{src_onsets:?} {out_onsets:?}"
        );
        let mut offsets: Vec<f64> = src_onsets
            .iter()
            .zip(&out_onsets)
            .map(|(s, o)| {
                let s = f64::from(base) / rate + s;
                let o = f64::from(first) / 48_000.0 + o - lookahead;
                o - s
            })
            .collect();
        // Opus's pre-echo can move one onset by a few milliseconds; a timing error (a resampler
        // delay, a frame) would move them all.
        offsets.sort_by(f64::total_cmp);
        let median = offsets[offsets.len() / 2];
        assert!(median.abs() < 0.001, "beeps {median} s late: {offsets:?}");
        assert!(offsets.iter().all(|o| o.abs() < 0.005), "{offsets:?}");
    }

    #[test]
    fn transcodes_the_fixture() {
        let fixture = Fixture::load();
        let frames: Vec<Bytes> = (0..5).flat_map(|_| fixture.audio.clone()).collect();
        // Starting near the top of the 32-bit range also crosses the wrap.
        check_stream(&fixture.audio_config, &frames, u32::MAX - 100_000);
    }

    /// Encodes `seconds` of ffmpeg's beeping 440 Hz sine as AAC-LC ADTS at `rate` with
    /// `channels`, or `None` if there is no ffmpeg.
    fn ffmpeg_aac(rate: u32, channels: u8, seconds: u32) -> Option<Vec<AdtsFrame>> {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "camrelay-transcode-{}-{rate}-{channels}.aac",
            std::process::id()
        ));
        let status = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!(
                "sine=frequency=440:sample_rate={rate}:beep_factor=4"
            ))
            .args([
                "-t",
                &seconds.to_string(),
                "-c:a",
                "aac",
                "-profile:a",
                "aac_low",
            ])
            .args(["-ac", &channels.to_string(), "-b:a", "64k", "-f", "adts"])
            .arg(&path)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("ffmpeg failed: {s}"),
            Err(e) => {
                println!("ffmpeg not runnable ({e}): skipping the {rate} Hz test");
                return None;
            }
        }
        let data = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let frames = adts_frames(&Bytes::from(data));
        assert!(!frames.is_empty());
        Some(frames)
    }

    #[test]
    fn resamples_44_1_khz() {
        let Some(adts) = ffmpeg_aac(44_100, 1, 4) else {
            return;
        };
        let config = adts[0].config.clone();
        assert_eq!((config.sample_rate, config.channels), (44_100, 1));
        let t = AacToOpus::new(&config).unwrap();
        assert_eq!(t.encoder_rate(), 48_000);
        let frames: Vec<Bytes> = adts.into_iter().map(|f| f.payload).collect();
        check_stream(&config, &frames, 123_456);
    }

    #[test]
    fn encodes_16_khz_stereo_without_resampling() {
        let Some(adts) = ffmpeg_aac(16_000, 2, 4) else {
            return;
        };
        let config = adts[0].config.clone();
        let t = AacToOpus::new(&config).unwrap();
        assert_eq!((t.encoder_rate(), t.channels()), (16_000, 2));
        let frames: Vec<Bytes> = adts.into_iter().map(|f| f.payload).collect();
        check_stream(&config, &frames, 7);
    }

    #[test]
    fn refuses_what_it_cannot_decode() {
        for object_type in [5, 29] {
            let config = AudioConfig::new(object_type, 24_000, 2).unwrap();
            let e = AacToOpus::new(&config).unwrap_err();
            assert!(matches!(e, TranscodeError::HeAac { .. }), "{e:?}");
            assert!(
                e.to_string()
                    .starts_with("HE-AAC is not supported, audio not published"),
                "{e}"
            );
        }
        let main = AudioConfig::new(1, 48_000, 1).unwrap();
        assert!(matches!(
            AacToOpus::new(&main),
            Err(TranscodeError::UnsupportedObjectType { object_type: 1 })
        ));
        for channels in [0, 3, 6] {
            let config = AudioConfig::new(2, 48_000, channels).unwrap();
            assert!(matches!(
                AacToOpus::new(&config),
                Err(TranscodeError::UnsupportedChannels { .. })
            ));
        }
        // LC with explicitly signalled SBR (sync extension 0x2b7).
        let explicit_sbr = AudioConfig::parse(&[0x13, 0x10, 0x56, 0xe5, 0x98]).unwrap();
        assert_eq!(explicit_sbr.object_type, 2);
        assert!(matches!(
            AacToOpus::new(&explicit_sbr),
            Err(TranscodeError::HeAac { object_type: 5 })
        ));
        // The flag cleared: no SBR after all.
        let no_sbr = AudioConfig::parse(&[0x13, 0x10, 0x56, 0xe5, 0x18]).unwrap();
        assert_eq!(AacToOpus::new(&no_sbr).unwrap().encoder_rate(), 24_000);
    }

    #[test]
    fn survives_corrupt_frames() {
        let fixture = Fixture::load();
        let good = &fixture.audio;
        let mut t = AacToOpus::new(&fixture.audio_config).unwrap();
        let mut out = Vec::new();
        let mut ts = 0u32;
        let mut push = |t: &mut AacToOpus, frame: &[u8], out: &mut Vec<OpusPacket>| {
            let r = t.push(frame, ts, out);
            ts = ts.wrapping_add(SAMPLES_PER_FRAME);
            r
        };
        for frame in &good[..10] {
            push(&mut t, frame, &mut out).unwrap();
        }
        let garbage: [&[u8]; 4] = [
            &[],
            &good[10][..4],
            &[0x40, 0x12, 0x34, 0x56, 0x78],
            &[0x5a; 300],
        ];
        for (i, bad) in garbage.iter().enumerate() {
            let e = push(&mut t, bad, &mut out).unwrap_err();
            assert!(matches!(e, TranscodeError::CorruptFrame { .. }), "{e:?}");
            push(&mut t, &good[11 + i], &mut out).unwrap();
        }
        assert_eq!(t.stats().frames_corrupt, 4);
        // Each lost frame's time was filled with silence: no jump, timestamps still 960 apart.
        assert_eq!(t.stats().discontinuities, 0);
        assert_eq!(t.stats().silence_filled_ticks, 4 * 1024);
        for (i, p) in out.iter().enumerate() {
            assert_eq!(p.timestamp, 960 * i as u32);
        }
        assert_eq!(out.len(), 18 * 1024 / 960);

        // Random damage to real frames: errors or noise, never a panic, and the stream goes on.
        let mut rng = fastrand::Rng::with_seed(7);
        let mut errors = 0;
        for round in 0..3000 {
            let mut frame = good[round % good.len()].to_vec();
            match round % 3 {
                0 => {
                    for _ in 0..rng.usize(1..8) {
                        let at = rng.usize(..frame.len());
                        frame[at] ^= 1 << rng.u8(..8);
                    }
                }
                1 => frame.truncate(rng.usize(..frame.len())),
                _ => rng.fill(&mut frame),
            }
            errors += usize::from(push(&mut t, &frame, &mut out).is_err());
        }
        assert!(errors > 500, "{errors} errors");
        let before = out.len();
        for frame in &good[..5] {
            push(&mut t, frame, &mut out).unwrap();
        }
        assert!(out.len() > before);
    }

    #[test]
    fn timestamps_follow_input_jumps_and_resets() {
        let fixture = Fixture::load();
        let frames = &fixture.audio;
        let mut t = AacToOpus::new(&fixture.audio_config).unwrap();
        let mut out = transcode(&mut t, &frames[..30], 1_000);
        assert_eq!(out.last().unwrap().timestamp, 1_000 + 960 * 31);

        // The camera's timestamps jump 10 s ahead: the output jumps with them.
        let jumped = 1_000 + 30 * 1024 + 480_000;
        let before = out.len();
        out.extend(transcode(&mut t, &frames[30..60], jumped));
        assert_eq!(out[before].timestamp, jumped);
        assert_eq!(t.stats().discontinuities, 1);
        // Backwards by a minute.
        let back = jumped - 48_000 * 60;
        let before = out.len();
        out.extend(transcode(&mut t, &frames[60..], back));
        assert_eq!(out[before].timestamp, back);
        assert_eq!(t.stats().discontinuities, 2);

        // An upstream reconnect: a new session with unrelated timestamps.
        t.reset();
        let reconnect = 3_000_000_000;
        let after = transcode(&mut t, &frames[..20], reconnect);
        assert_eq!(after[0].timestamp, reconnect);
        for (i, p) in after.iter().enumerate() {
            assert_eq!(p.timestamp, reconnect + 960 * i as u32);
        }
        assert_eq!(t.stats().discontinuities, 2);

        // Jitter within the slack does not move the output.
        let mut t = AacToOpus::new(&fixture.audio_config).unwrap();
        let mut out = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let jitter = [0, 300, -200, 100][i % 4];
            let ts = (i as i64 * 1024 + 5_000 + jitter) as u32;
            t.push(frame, ts, &mut out).unwrap();
        }
        for (i, p) in out.iter().enumerate() {
            assert_eq!(p.timestamp, 5_000 + 960 * i as u32);
        }
    }

    #[test]
    fn resampled_timestamps_follow_the_input_clock() {
        // The resampler's timeline across a gap and a jump, on a synthetic 44.1 kHz config:
        // the AAC frames' content does not matter for timestamps, so silence frames from the
        // encoder are not needed; a 44.1 kHz fixture is only used when ffmpeg is there.
        let Some(adts) = ffmpeg_aac(44_100, 1, 2) else {
            return;
        };
        let frames: Vec<Bytes> = adts.iter().map(|f| f.payload.clone()).collect();
        let mut t = AacToOpus::new(&adts[0].config).unwrap();
        let mut out = transcode(&mut t, &frames[..40], 0);
        // 40 frames of 1024 at 44.1 kHz are 44_582 ticks at 48 kHz; 46 whole packets.
        assert_eq!(out.len(), 40 * 1024 * 48_000 / 44_100 / 960);
        // One frame lost: silence keeps the packets contiguous.
        let before = out.len();
        out.extend(transcode(&mut t, &frames[41..60], 41 * 1024));
        assert!(out.len() > before);
        for (i, p) in out.iter().enumerate() {
            assert_eq!(p.timestamp, 960 * i as u32);
        }
        assert_eq!(t.stats().discontinuities, 0);
        // A jump of an hour.
        let jump = 60 * 1024 + 44_100 * 3600;
        let before = out.len();
        out.extend(transcode(&mut t, &frames[60..], jump));
        assert_eq!(
            out[before].timestamp,
            (i64::from(jump) * 48_000 / 44_100) as u32
        );
    }
}
