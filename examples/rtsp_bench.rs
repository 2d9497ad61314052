//! RTSP relay benchmark: camrelay against GStreamer's gst-rtsp-server on the same camera.
//!
//! One simulated 1080p30 ~4 Mbps H.264 + AAC camera runs in this process; each relay runs as a
//! child process (a fresh one per client count, so its peak RSS belongs to that count) and
//! pulls the camera over RTSP/TCP; N lightweight in-process RTSP clients (TCP interleaved,
//! every track) play it from the relay. For each relay and count it measures the relay
//! process's CPU seconds over a fixed window, its RSS and peak RSS, what each client received,
//! and the latency the relay adds: every video frame is reassembled and fingerprinted both on a
//! client reading the camera directly and on one reading the relay, and the relay's copy of
//! each frame is matched to the direct copy. Last, camrelay relays ten cameras (one client
//! each) to measure what one more camera costs, apart from what the first one pages in once.
//!
//! ```text
//! cargo run --release --example rtsp_bench                         # 1,10,50,200 clients, both
//! cargo run --release --example rtsp_bench -- 1 50 --seconds 30    # counts, measurement window
//! cargo run --release --example rtsp_bench -- 50 --relay camrelay  # one relay (or gst)
//! cargo run --release --example rtsp_bench -- --gst-video-only     # gst relays H.264 only
//! cargo run --release --example rtsp_bench -- 1 --cameras 20       # memory phase size (0: skip)
//! ```
//!
//! Needs ffmpeg and ffprobe (the fixture is generated into `target/bench-fixtures/` on first
//! use, and one ffprobe checks each relay's stream decodes) and Debian's
//! `python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good` for the GStreamer relay
//! (`tests/support/gst_relay.py`). It builds `target/release/camrelay` itself unless told
//! `--no-build`. Results and the machine they came from are recorded in docs/BENCHMARKS.md.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hasher};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use camrelay_sim::camera::{Fixture, SimCamera, SimCameraConfig};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

#[path = "support/bench.rs"]
mod bench;
use bench::{
    FPS, LOOP_SECONDS, ProcSample, build_relay, clock_ticks, fixture_files, free_port,
    load_average, root, sample, target_dir,
};

/// AAC frames in one loop.
const AUDIO_FRAMES: usize = 375;
/// Client counts measured by default.
const DEFAULT_LEVELS: [usize; 4] = [1, 10, 50, 200];
/// Default measurement window: three loops of the fixture, so the camera's bitrate over the
/// window is the fixture's.
const DEFAULT_WINDOW: Duration = Duration::from_secs(3 * LOOP_SECONDS as u64);
/// Time between the last client playing and the start of the window: new clients get the
/// cached group of pictures as a burst, which must be over before anything is measured.
const DEFAULT_WARMUP: Duration = Duration::from_secs(5);
/// Clients setting up at once (the rest wait their turn).
const SETUP_PARALLELISM: usize = 25;
/// How long all clients together may take to reach PLAY before the level runs with fewer.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// One RTSP request's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// GET_PARAMETER keepalive interval (relays time sessions out after 60 s).
const KEEPALIVE: Duration = Duration::from_secs(20);
/// Client read buffer; an interleaved frame is at most 4 + 65535 bytes.
const READ_BUFFER: usize = 256 * 1024;
/// Slice bytes fingerprinted per frame.
const FINGERPRINT_BYTES: usize = 64;
/// How long a relay may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The relayed camera's id, so its path on both relays.
const RELAY_PATH: &str = "cam";
/// Cameras in the memory phase (`--cameras N`, 0 or 1 skips it): camrelay relays this many
/// cameras, one client each, so that the cost of one more camera is measured apart from what
/// the first one pages in once (code, thread arenas).
const DEFAULT_MEMORY_CAMERAS: usize = 10;
/// A client that received less than this share of what the camera sent in the window fell
/// behind.
const BEHIND_RATIO: f64 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Camrelay,
    Gst,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Camrelay => "camrelay",
            Kind::Gst => "gst-rtsp-server",
        }
    }
}

#[derive(Debug)]
struct Options {
    levels: Vec<usize>,
    kinds: Vec<Kind>,
    window: Duration,
    warmup: Duration,
    build: bool,
    gst_video_only: bool,
    memory_cameras: usize,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut levels = Vec::new();
        let mut kinds = Vec::new();
        let mut window = DEFAULT_WINDOW;
        let mut warmup = DEFAULT_WARMUP;
        let mut build = true;
        let mut gst_video_only = false;
        let mut memory_cameras = DEFAULT_MEMORY_CAMERAS;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--seconds" | "--warmup" => {
                    let value: u64 = args
                        .next()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| anyhow!("{arg} needs a number of seconds"))?;
                    let value = Duration::from_secs(value.max(1));
                    if arg == "--seconds" {
                        window = value;
                    } else {
                        warmup = value;
                    }
                }
                "--relay" => match args.next().as_deref() {
                    Some("camrelay") => kinds.push(Kind::Camrelay),
                    Some("gst") => kinds.push(Kind::Gst),
                    other => bail!("--relay camrelay|gst, not {other:?}"),
                },
                "--cameras" => {
                    memory_cameras = args
                        .next()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| anyhow!("--cameras needs a number"))?;
                }
                "--no-build" => build = false,
                "--gst-video-only" => gst_video_only = true,
                "-h" | "--help" => {
                    println!(
                        "usage: rtsp_bench [CLIENTS...] [--seconds N] [--warmup N] [--relay camrelay|gst]... [--cameras N] [--no-build] [--gst-video-only]"
                    );
                    std::process::exit(0);
                }
                counts => {
                    for n in counts.split(',').filter(|n| !n.is_empty()) {
                        let n: usize = n
                            .parse()
                            .with_context(|| format!("not a client count: {n}"))?;
                        levels.push(n.max(1));
                    }
                }
            }
        }
        if levels.is_empty() {
            levels = DEFAULT_LEVELS.to_vec();
        }
        if kinds.is_empty() {
            kinds = vec![Kind::Camrelay, Kind::Gst];
        }
        Ok(Self {
            levels,
            kinds,
            window,
            warmup,
            build,
            gst_video_only,
            memory_cameras,
        })
    }
}

// ------------------------------------------------------------------ set-up

// ------------------------------------------------------------------ relays

struct RelayProcess {
    child: Child,
    pid: String,
    /// The camera every level reads.
    url: String,
    /// `rtsp://host:port`, for the memory phase's further cameras.
    base: String,
    log: PathBuf,
}

async fn start_relay(
    kind: Kind,
    camera_url: &str,
    camrelay_ids: &[String],
    log_name: &str,
    opts: &Options,
) -> Result<RelayProcess> {
    let logs = target_dir().join("bench-fixtures/logs");
    std::fs::create_dir_all(&logs)?;
    let log = logs.join(log_name);
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let (mut child, port) = match kind {
        Kind::Camrelay => {
            let port = free_port()?;
            let mut command = Command::new(target_dir().join("release/camrelay"));
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("CAMRELAY_") {
                    command.env_remove(key);
                }
            }
            let child = command
                .arg("run")
                .env(
                    "CAMRELAY_CAMERAS",
                    camrelay_ids
                        .iter()
                        .map(|id| format!("{id}={camera_url}"))
                        .collect::<Vec<_>>()
                        .join(";"),
                )
                .env("CAMRELAY_RTSP_ADDR", format!("127.0.0.1:{port}"))
                .env("CAMRELAY_HTTP_ADDR", "127.0.0.1:0")
                .env("CAMRELAY_RTSP_UDP", "false")
                .env("CAMRELAY_RTSP_MAX_CLIENTS", "1000")
                .env("CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA", "1000")
                .env("CAMRELAY_LOG", "warn")
                .env("CAMRELAY_SFU", "off")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .kill_on_drop(true)
                .spawn()
                .context("starting target/release/camrelay")?;
            let deadline = Instant::now() + START_TIMEOUT;
            while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                if Instant::now() > deadline {
                    bail!("camrelay did not listen on {port}; see {}", log.display());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (child, port)
        }
        Kind::Gst => {
            let mut command = Command::new("/usr/bin/python3");
            command
                .arg(root().join("tests/support/gst_relay.py"))
                .args(["--camera", camera_url]);
            if opts.gst_video_only {
                command.arg("--video-only");
            }
            let mut child = command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log_file)
                .kill_on_drop(true)
                .spawn()
                .context("starting tests/support/gst_relay.py with /usr/bin/python3")?;
            let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
            let mut lines = BufReader::new(stdout).lines();
            let ready = tokio::time::timeout(START_TIMEOUT, async {
                while let Some(line) = lines.next_line().await? {
                    if let Some(port) = line.strip_prefix("READY ") {
                        return Ok(port.trim().parse::<u16>()?);
                    }
                }
                Err(anyhow!("exited before READY"))
            })
            .await
            .map_err(|_| anyhow!("no READY line"))
            .and_then(|r| r)
            .with_context(|| format!("gst_relay.py; see {}", log.display()))?;
            (child, ready)
        }
    };
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("{} exited at once", kind.name()))?
        .to_string();
    if let Ok(Some(status)) = child.try_wait() {
        bail!("{} exited: {status}", kind.name());
    }
    Ok(RelayProcess {
        child,
        pid,
        url: format!("rtsp://127.0.0.1:{port}/{RELAY_PATH}"),
        base: format!("rtsp://127.0.0.1:{port}"),
        log,
    })
}

// ------------------------------------------------------------------ RTSP client

/// What one client received.
#[derive(Debug, Default)]
struct ClientStats {
    /// RTP bytes (interleaved frame payloads on RTP channels).
    bytes: AtomicU64,
    packets: AtomicU64,
    /// Packets missing from the RTP sequence numbers.
    lost: AtomicU64,
    playing: AtomicBool,
    error: Mutex<Option<String>>,
}

impl ClientStats {
    fn fail(&self, e: &anyhow::Error) {
        *self.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(format!("{e:#}"));
    }

    fn error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Item<'a> {
    Data { channel: u8, payload: &'a [u8] },
    Reply(Reply),
}

/// The next interleaved frame or RTSP response at the start of `buf`, and its length.
fn next_item(buf: &[u8]) -> Result<Option<(Item<'_>, usize)>> {
    match buf.first() {
        None => Ok(None),
        Some(b'$') => {
            if buf.len() < 4 {
                return Ok(None);
            }
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            if buf.len() < 4 + len {
                return Ok(None);
            }
            Ok(Some((
                Item::Data {
                    channel: buf[1],
                    payload: &buf[4..4 + len],
                },
                4 + len,
            )))
        }
        Some(b'R') => {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if !buf.starts_with(&b"RTSP/1.0"[..buf.len().min(8)]) {
                    bail!(
                        "lost framing: {:?}",
                        String::from_utf8_lossy(&buf[..buf.len().min(40)])
                    );
                }
                return Ok(None);
            };
            let head = std::str::from_utf8(&buf[..end]).context("response head not UTF-8")?;
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let body_len = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            let total = end + 4 + body_len;
            if buf.len() < total {
                return Ok(None);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..total]).into_owned();
            Ok(Some((
                Item::Reply(Reply {
                    status,
                    headers,
                    body,
                }),
                total,
            )))
        }
        Some(_) => bail!(
            "lost framing: {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(40)])
        ),
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    filled: usize,
    cseq: u32,
    session: Option<String>,
}

impl Conn {
    async fn connect(url: &url::Url) -> Result<Self> {
        let host = url.host_str().ok_or_else(|| anyhow!("no host in {url}"))?;
        let port = url.port().unwrap_or(554);
        let stream = TcpStream::connect((host, port))
            .await
            .with_context(|| format!("connecting to {url}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: vec![0; READ_BUFFER],
            filled: 0,
            cseq: 0,
            session: None,
        })
    }

    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    async fn send(&mut self, method: &str, url: &str, headers: &[(&str, &str)]) -> Result<u32> {
        self.cseq += 1;
        let mut request = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: camrelay-rtsp-bench\r\n",
            self.cseq
        );
        if let Some(session) = &self.session {
            let _ = write!(request, "Session: {session}\r\n");
        }
        for (key, value) in headers {
            let _ = write!(request, "{key}: {value}\r\n");
        }
        request.push_str("\r\n");
        self.stream.write_all(request.as_bytes()).await?;
        Ok(self.cseq)
    }

    /// Sends a request and waits for its answer (interleaved data before it is skipped).
    async fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply> {
        let cseq = self.send(method, url, headers).await?.to_string();
        loop {
            while let Some((item, used)) = next_item(&self.buf[..self.filled])? {
                let reply = match item {
                    Item::Reply(reply) => Some(reply),
                    Item::Data { .. } => None,
                };
                self.consume(used);
                if let Some(reply) = reply
                    && reply.header("CSeq") == Some(cseq.as_str())
                {
                    if reply.status != 200 {
                        bail!("{method} {url}: {}", reply.status);
                    }
                    return Ok(reply);
                }
            }
            let filled = self.filled;
            let n =
                tokio::time::timeout(REQUEST_TIMEOUT, self.stream.read(&mut self.buf[filled..]))
                    .await
                    .map_err(|_| anyhow!("{method} {url}: no answer"))??;
            if n == 0 {
                bail!("{method} {url}: connection closed");
            }
            self.filled += n;
        }
    }
}

/// The media sections of an SDP: (is video, control attribute).
fn sdp_tracks(sdp: &str) -> Vec<(bool, Option<String>)> {
    let mut tracks: Vec<(bool, Option<String>)> = Vec::new();
    for line in sdp.lines() {
        if let Some(media) = line.strip_prefix("m=") {
            tracks.push((media.starts_with("video"), None));
        } else if let Some(control) = line.strip_prefix("a=control:")
            && let Some(track) = tracks.last_mut()
        {
            track.1 = Some(control.trim().to_owned());
        }
    }
    tracks
}

fn control_url(base: &str, control: Option<&str>) -> String {
    match control {
        None | Some("*") => base.to_owned(),
        Some(c) if c.starts_with("rtsp://") || c.starts_with("rtsps://") => c.to_owned(),
        Some(c) if base.ends_with('/') => format!("{base}{c}"),
        Some(c) => format!("{base}/{c}"),
    }
}

/// Plays `url` until `cancel` (or an error, recorded in `stats`): OPTIONS, DESCRIBE, SETUP of
/// every track interleaved on the connection, PLAY, then reads and counts. `gate` bounds how
/// many clients set up at once; `tap` fingerprints the video frames.
async fn client(
    url: String,
    stats: Arc<ClientStats>,
    mut tap: Option<Tap>,
    gate: Arc<Semaphore>,
    cancel: CancellationToken,
) {
    let run = async {
        let permit = gate.acquire().await?;
        let parsed = url::Url::parse(&url)?;
        let mut conn = Conn::connect(&parsed).await?;
        conn.request("OPTIONS", &url, &[]).await?;
        let described = conn
            .request("DESCRIBE", &url, &[("Accept", "application/sdp")])
            .await?;
        let base = described.header("Content-Base").unwrap_or(&url).to_owned();
        let tracks = sdp_tracks(&described.body);
        if tracks.is_empty() {
            bail!("DESCRIBE {url}: no media in SDP");
        }
        let mut video_channel = None;
        for (i, (video, control)) in tracks.iter().enumerate() {
            let channel = u8::try_from(2 * i)?;
            let transport = format!("RTP/AVP/TCP;unicast;interleaved={channel}-{}", channel + 1);
            let reply = conn
                .request(
                    "SETUP",
                    &control_url(&base, control.as_deref()),
                    &[("Transport", &transport)],
                )
                .await?;
            if conn.session.is_none() {
                let session = reply
                    .header("Session")
                    .and_then(|s| s.split(';').next())
                    .ok_or_else(|| anyhow!("SETUP without Session"))?;
                conn.session = Some(session.trim().to_owned());
            }
            if *video && video_channel.is_none() {
                video_channel = Some(channel);
            }
        }
        conn.request("PLAY", &base, &[("Range", "npt=0.000-")])
            .await?;
        stats.playing.store(true, Ordering::Relaxed);
        drop(permit);
        if let Some(tap) = &mut tap {
            tap.channel = video_channel;
        }
        let mut last_seq: [Option<u16>; 8] = [None; 8];
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            let filled = conn.filled;
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                _ = keepalive.tick() => {
                    conn.send("GET_PARAMETER", &base, &[]).await?;
                }
                read = conn.stream.read(&mut conn.buf[filled..]) => {
                    let n = read?;
                    if n == 0 {
                        bail!("closed by the server");
                    }
                    let now = Instant::now();
                    conn.filled += n;
                    let mut pos = 0;
                    let (mut bytes, mut packets, mut lost) = (0, 0, 0);
                    while let Some((item, used)) = next_item(&conn.buf[pos..conn.filled])? {
                        pos += used;
                        let Item::Data { channel, payload } = item else { continue };
                        // Odd channels carry RTCP.
                        if channel % 2 == 1 || payload.len() < 12 {
                            continue;
                        }
                        bytes += payload.len() as u64;
                        packets += 1;
                        let seq = u16::from_be_bytes([payload[2], payload[3]]);
                        if let Some(last) = last_seq.get_mut(usize::from(channel / 2)) {
                            if let Some(prev) = *last {
                                let gap = seq.wrapping_sub(prev.wrapping_add(1));
                                if gap < 0x8000 {
                                    lost += u64::from(gap);
                                }
                            }
                            *last = Some(seq);
                        }
                        if let Some(tap) = &mut tap
                            && tap.channel == Some(channel)
                        {
                            tap.packet(payload, now);
                        }
                    }
                    conn.consume(pos);
                    stats.bytes.fetch_add(bytes, Ordering::Relaxed);
                    stats.packets.fetch_add(packets, Ordering::Relaxed);
                    stats.lost.fetch_add(lost, Ordering::Relaxed);
                }
            }
        }
    };
    let result: Result<()> = run.await;
    if let Err(e) = result {
        stats.fail(&e);
    }
}

// ------------------------------------------------------------------ frame fingerprints

/// Reassembles H.264 access units from RTP (RFC 6184: single NAL unit, STAP-A, FU-A packets)
/// and records, for each, a fingerprint of its slices and when its last packet arrived. Only
/// slices count, so parameter sets a relay inserts or drops do not change the fingerprint.
struct Tap {
    channel: Option<u8>,
    timestamp: Option<u32>,
    slice_bytes: u64,
    head: Vec<u8>,
    last_arrival: Option<Instant>,
    frames: Arc<Mutex<Vec<(u64, Instant)>>>,
}

impl Tap {
    fn new(frames: Arc<Mutex<Vec<(u64, Instant)>>>) -> Self {
        Self {
            channel: None,
            timestamp: None,
            slice_bytes: 0,
            head: Vec::with_capacity(FINGERPRINT_BYTES),
            last_arrival: None,
            frames,
        }
    }

    fn add(&mut self, data: &[u8]) {
        self.slice_bytes += data.len() as u64;
        let room = FINGERPRINT_BYTES - self.head.len();
        self.head.extend_from_slice(&data[..data.len().min(room)]);
    }

    fn finish(&mut self) {
        if let Some(at) = self.last_arrival
            && self.slice_bytes > 0
        {
            let mut hasher = DefaultHasher::new();
            hasher.write_u64(self.slice_bytes);
            hasher.write(&self.head);
            self.frames
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((hasher.finish(), at));
        }
        self.slice_bytes = 0;
        self.head.clear();
        self.last_arrival = None;
    }

    fn packet(&mut self, rtp: &[u8], now: Instant) {
        let Some((marker, timestamp, payload)) = rtp_payload(rtp) else {
            return;
        };
        if self.timestamp != Some(timestamp) {
            self.finish();
            self.timestamp = Some(timestamp);
        }
        let is_slice = |header: u8| matches!(header & 0x1f, 1 | 5);
        match payload.first().map(|h| h & 0x1f) {
            Some(1..=23) if is_slice(payload[0]) => self.add(payload),
            Some(24) => {
                let mut rest = &payload[1..];
                while rest.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    let Some(nal) = rest.get(2..2 + len) else {
                        break;
                    };
                    if nal.first().is_some_and(|h| is_slice(*h)) {
                        self.add(nal);
                    }
                    rest = &rest[2 + len..];
                }
            }
            Some(28) if payload.len() > 2 && is_slice(payload[1]) => {
                if payload[1] & 0x80 != 0 {
                    self.add(&[(payload[0] & 0xe0) | (payload[1] & 0x1f)]);
                }
                self.add(&payload[2..]);
            }
            _ => {}
        }
        self.last_arrival = Some(now);
        if marker {
            self.finish();
        }
    }
}

/// An RTP packet's marker bit, timestamp and payload.
fn rtp_payload(rtp: &[u8]) -> Option<(bool, u32, &[u8])> {
    if rtp.len() < 12 || rtp[0] >> 6 != 2 {
        return None;
    }
    let mut start = 12 + 4 * usize::from(rtp[0] & 0x0f);
    if rtp[0] & 0x10 != 0 {
        let words = rtp.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let mut end = rtp.len();
    if rtp[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*rtp.last()?))?;
    }
    let timestamp = u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]);
    Some((rtp[1] & 0x80 != 0, timestamp, rtp.get(start..end)?))
}

#[derive(Debug, Default, Clone, Copy)]
struct Latency {
    frames: usize,
    unmatched: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    min_ms: f64,
}

/// Matches each relayed frame that arrived in `window` to the direct copy of the same frame
/// nearest in time (the fixture loops, so a fingerprint recurs every loop; the nearest copy is
/// this loop's while the delay stays under half a loop).
fn latency(
    direct: &[(u64, Instant)],
    relayed: &[(u64, Instant)],
    window: (Instant, Instant),
) -> Latency {
    let mut by_key: HashMap<u64, Vec<Instant>> = HashMap::new();
    for &(key, at) in direct {
        by_key.entry(key).or_default().push(at);
    }
    let mut delays = Vec::new();
    let mut unmatched = 0;
    for &(key, at) in relayed {
        if at < window.0 || at > window.1 {
            continue;
        }
        let nearest = by_key.get(&key).and_then(|times| {
            times
                .iter()
                .map(|&t| {
                    if at >= t {
                        (at - t).as_secs_f64() * 1e3
                    } else {
                        -(t - at).as_secs_f64() * 1e3
                    }
                })
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
        });
        match nearest {
            Some(ms) if ms.abs() < f64::from(LOOP_SECONDS) * 500.0 => delays.push(ms),
            _ => unmatched += 1,
        }
    }
    delays.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        if delays.is_empty() {
            f64::NAN
        } else {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = ((delays.len() as f64 - 1.0) * q).round() as usize;
            delays[i]
        }
    };
    Latency {
        frames: delays.len(),
        unmatched,
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        max_ms: pick(1.0),
        min_ms: pick(0.0),
    }
}

// ------------------------------------------------------------------ one level

#[derive(Debug)]
struct LevelResult {
    kind: Kind,
    clients: usize,
    playing: usize,
    window_s: f64,
    cpu_s: f64,
    sys_s: f64,
    idle_rss_kib: u64,
    rss_kib: u64,
    hwm_kib: u64,
    bench_cpu_s: f64,
    load_before: String,
    camera_mbps: f64,
    client_mbps_min: f64,
    client_mbps_median: f64,
    lost_packets: u64,
    behind: usize,
    failed: Vec<String>,
    latency: Latency,
    ffprobe: Option<String>,
    log_lines: usize,
}

struct Runtimes {
    camera: Handle,
    taps: Handle,
}

#[allow(clippy::too_many_lines)]
async fn run_level(
    kind: Kind,
    clients: usize,
    camera_url: &str,
    runtimes: &Runtimes,
    opts: &Options,
    ticks: f64,
) -> Result<LevelResult> {
    let load_before = load_average();
    let log = format!("{}-{clients}.log", kind.name());
    let mut relay = start_relay(kind, camera_url, &[RELAY_PATH.to_owned()], &log, opts).await?;
    // Idle: listening, camera not pulled yet (both relays pull on demand).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = sample(&relay.pid)?;

    let cancel = CancellationToken::new();
    let gate = Arc::new(Semaphore::new(SETUP_PARALLELISM));
    let direct_frames = Arc::new(Mutex::new(Vec::new()));
    let relayed_frames = Arc::new(Mutex::new(Vec::new()));
    let direct_stats = Arc::new(ClientStats::default());
    let mut tasks = Vec::new();
    // The fingerprinting clients run on their own thread, away from the load.
    tasks.push(runtimes.taps.spawn(client(
        camera_url.to_owned(),
        Arc::clone(&direct_stats),
        Some(Tap::new(Arc::clone(&direct_frames))),
        Arc::new(Semaphore::new(1)),
        cancel.clone(),
    )));
    let stats: Vec<Arc<ClientStats>> = (0..clients)
        .map(|_| Arc::new(ClientStats::default()))
        .collect();
    for (i, s) in stats.iter().enumerate() {
        let task = client(
            relay.url.clone(),
            Arc::clone(s),
            (i == 0).then(|| Tap::new(Arc::clone(&relayed_frames))),
            Arc::clone(&gate),
            cancel.clone(),
        );
        // Client 0 is the relay-side fingerprinting client; the rest are load.
        tasks.push(if i == 0 {
            runtimes.taps.spawn(task)
        } else {
            tokio::spawn(task)
        });
    }
    let setup_deadline = Instant::now() + SETUP_TIMEOUT;
    let playing = || {
        stats
            .iter()
            .filter(|s| s.playing.load(Ordering::Relaxed))
            .count()
    };
    let failed = || stats.iter().filter(|s| s.error().is_some()).count();
    while playing() + failed() < clients && Instant::now() < setup_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(opts.warmup).await;

    let snapshot = |s: &[Arc<ClientStats>]| -> Vec<u64> {
        s.iter().map(|c| c.bytes.load(Ordering::Relaxed)).collect()
    };
    let start = Instant::now();
    let relay_0 = sample(&relay.pid)?;
    let bench_0 = sample("self")?;
    let bytes_0 = snapshot(&stats);
    let direct_0 = direct_stats.bytes.load(Ordering::Relaxed);
    let lost_0: u64 = stats.iter().map(|s| s.lost.load(Ordering::Relaxed)).sum();
    tokio::time::sleep(opts.window).await;
    let relay_1 = sample(&relay.pid)?;
    let bench_1 = sample("self")?;
    let end = Instant::now();
    let bytes_1 = snapshot(&stats);
    let direct_1 = direct_stats.bytes.load(Ordering::Relaxed);
    let lost_1: u64 = stats.iter().map(|s| s.lost.load(Ordering::Relaxed)).sum();
    let window_s = (end - start).as_secs_f64();

    let mbps = |bytes: u64| bytes as f64 * 8.0 / window_s / 1e6;
    let camera_mbps = mbps(direct_1 - direct_0);
    let mut client_mbps: Vec<f64> = bytes_0
        .iter()
        .zip(&bytes_1)
        .map(|(a, b)| mbps(b - a))
        .collect();
    client_mbps.sort_by(f64::total_cmp);
    let behind = client_mbps
        .iter()
        .filter(|m| **m < camera_mbps * BEHIND_RATIO)
        .count();
    let latency = {
        let direct = direct_frames.lock().unwrap_or_else(PoisonError::into_inner);
        let relayed = relayed_frames
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        latency(&direct, &relayed, (start, end))
    };
    let ffprobe = if clients == 1 {
        Some(ffprobe(&relay.url).await)
    } else {
        None
    };

    cancel.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let mut failed: Vec<String> = stats.iter().filter_map(|s| s.error()).collect();
    if let Some(e) = direct_stats.error() {
        failed.push(format!("direct camera client: {e}"));
    }
    failed.sort();
    failed.dedup();
    let _ = relay.child.start_kill();
    let _ = relay.child.wait().await;
    let log_lines = std::fs::read_to_string(&relay.log)
        .map(|l| l.lines().count())
        .unwrap_or(0);
    // Let the camera notice its sessions are gone before the next level.
    tokio::time::sleep(Duration::from_secs(1)).await;

    Ok(LevelResult {
        kind,
        clients,
        playing: stats
            .iter()
            .filter(|s| s.playing.load(Ordering::Relaxed))
            .count(),
        window_s,
        cpu_s: (relay_1.cpu_ticks - relay_0.cpu_ticks) as f64 / ticks,
        sys_s: (relay_1.sys_ticks - relay_0.sys_ticks) as f64 / ticks,
        idle_rss_kib: idle.rss_kib,
        rss_kib: relay_1.rss_kib,
        hwm_kib: relay_1.hwm_kib,
        bench_cpu_s: (bench_1.cpu_ticks - bench_0.cpu_ticks) as f64 / ticks,
        load_before,
        camera_mbps,
        client_mbps_min: client_mbps.first().copied().unwrap_or(0.0),
        client_mbps_median: client_mbps
            .get(client_mbps.len() / 2)
            .copied()
            .unwrap_or(0.0),
        lost_packets: lost_1 - lost_0,
        behind,
        failed,
        latency,
        ffprobe,
        log_lines,
    })
}

/// camrelay's memory with one camera relayed and with `cameras`, one client each.
#[derive(Debug)]
struct CameraMemory {
    cameras: usize,
    idle: ProcSample,
    one: ProcSample,
    all: ProcSample,
}

impl CameraMemory {
    /// What each camera after the first adds, its one client included: (RSS, private) KiB.
    fn per_further_camera(&self) -> (f64, f64) {
        let further = self.cameras.saturating_sub(1).max(1) as f64;
        (
            (self.all.rss_kib as f64 - self.one.rss_kib as f64) / further,
            (self.all.anon_kib as f64 - self.one.anon_kib as f64) / further,
        )
    }
}

/// Starts camrelay with `cameras` cameras (all reading the simulated camera), plays one, then
/// all of them, and samples its memory idle, with one and with all.
async fn camera_memory(cameras: usize, camera_url: &str, opts: &Options) -> Result<CameraMemory> {
    let ids: Vec<String> = std::iter::once(RELAY_PATH.to_owned())
        .chain((1..cameras).map(|i| format!("{RELAY_PATH}{i}")))
        .collect();
    let log = format!("camrelay-{cameras}-cameras.log");
    let mut relay = start_relay(Kind::Camrelay, camera_url, &ids, &log, opts).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = sample(&relay.pid)?;

    let cancel = CancellationToken::new();
    let gate = Arc::new(Semaphore::new(SETUP_PARALLELISM));
    let stats: Vec<Arc<ClientStats>> = ids.iter().map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    let mut samples = Vec::new();
    for range in [0..1, 1..ids.len()] {
        for i in range.clone() {
            tasks.push(tokio::spawn(client(
                format!("{}/{}", relay.base, ids[i]),
                Arc::clone(&stats[i]),
                None,
                Arc::clone(&gate),
                cancel.clone(),
            )));
        }
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let started = &stats[..range.end];
        while !started.iter().all(|s| s.playing.load(Ordering::Relaxed)) {
            if let Some(e) = started.iter().find_map(|s| s.error()) {
                bail!("a client of the memory phase failed: {e}");
            }
            if Instant::now() > deadline {
                bail!("the memory phase's clients did not all play");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(opts.warmup).await;
        samples.push(sample(&relay.pid)?);
    }
    cancel.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let _ = relay.child.start_kill();
    let _ = relay.child.wait().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let [one, all] = samples[..] else {
        bail!("the memory phase took {} samples", samples.len());
    };
    Ok(CameraMemory {
        cameras,
        idle,
        one,
        all,
    })
}

fn print_camera_memory(m: &CameraMemory) -> serde_json::Value {
    let mib = |kib: f64| kib / 1024.0;
    let (rss, anon) = m.per_further_camera();
    println!(
        "camrelay with {} cameras, one client each: RSS idle {:.1} MiB (private {:.1}), one camera {:.1} ({:.1}), all {:.1} ({:.1}); \
         the first camera {:+.2} MiB (private {:+.2}); each further camera {:+.2} MiB (private {:+.2}), its client included",
        m.cameras,
        mib(m.idle.rss_kib as f64),
        mib(m.idle.anon_kib as f64),
        mib(m.one.rss_kib as f64),
        mib(m.one.anon_kib as f64),
        mib(m.all.rss_kib as f64),
        mib(m.all.anon_kib as f64),
        mib(m.one.rss_kib as f64 - m.idle.rss_kib as f64),
        mib(m.one.anon_kib as f64 - m.idle.anon_kib as f64),
        mib(rss),
        mib(anon),
    );
    json!({
        "cameras": m.cameras,
        "idle": {"rss_kib": m.idle.rss_kib, "anon_kib": m.idle.anon_kib},
        "one": {"rss_kib": m.one.rss_kib, "anon_kib": m.one.anon_kib},
        "all": {"rss_kib": m.all.rss_kib, "anon_kib": m.all.anon_kib},
        "per_further_camera_kib": rss,
        "per_further_camera_anon_kib": anon,
    })
}

/// One real client: ffprobe decodes three seconds over TCP. Returns what it saw.
async fn ffprobe(url: &str) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(40),
        Command::new("ffprobe")
            .args(["-v", "error", "-rtsp_transport", "tcp", "-count_frames"])
            .args([
                "-show_entries",
                "stream=codec_name,codec_type,width,height,nb_read_frames,sample_rate",
                "-read_intervals",
                "%+3",
                "-of",
                "json",
                url,
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let output = match output {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return format!("ffprobe did not run: {e}"),
        Err(_) => return "ffprobe timed out".into(),
    };
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    let streams: Vec<String> = report["streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .map(|s| {
                    let frames = s["nb_read_frames"].as_str().unwrap_or("?");
                    match s["codec_type"].as_str() {
                        Some("video") => format!(
                            "{} {}x{} {frames} frames",
                            s["codec_name"].as_str().unwrap_or("?"),
                            s["width"],
                            s["height"]
                        ),
                        _ => format!(
                            "{} {} Hz {frames} frames",
                            s["codec_name"].as_str().unwrap_or("?"),
                            s["sample_rate"].as_str().unwrap_or("?")
                        ),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors = stderr.lines().count();
    format!(
        "{} ({}; {errors} error lines{})",
        if output.status.success() && errors == 0 {
            "ok"
        } else {
            "FAILED"
        },
        streams.join(", "),
        stderr
            .lines()
            .next()
            .map(|l| format!(": {l}"))
            .unwrap_or_default()
    )
}

// ------------------------------------------------------------------ main

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.2}")
    }
}

fn print_level(r: &LevelResult) {
    println!(
        "{:>15} {:>4} clients ({} playing): CPU {:.2} s ({:.2} in the kernel; {:.1}% of a core), RSS {:.1} MiB (idle {:.1}), peak {:.1} MiB; \
         camera {:.2} Mbit/s, clients min {:.2} median {:.2}, {} behind, {} lost; \
         latency p50 {} p99 {} max {} ms ({} frames, {} unmatched); bench CPU {:.1}%; load before {}",
        r.kind.name(),
        r.clients,
        r.playing,
        r.cpu_s,
        r.sys_s,
        r.cpu_s / r.window_s * 100.0,
        mib(r.rss_kib),
        mib(r.idle_rss_kib),
        mib(r.hwm_kib),
        r.camera_mbps,
        r.client_mbps_min,
        r.client_mbps_median,
        r.behind,
        r.lost_packets,
        ms(r.latency.p50_ms),
        ms(r.latency.p99_ms),
        ms(r.latency.max_ms),
        r.latency.frames,
        r.latency.unmatched,
        r.bench_cpu_s / r.window_s * 100.0,
        r.load_before,
    );
    if let Some(probe) = &r.ffprobe {
        println!("{:>15} ffprobe: {probe}", "");
    }
    for e in r.failed.iter().take(3) {
        println!("{:>15} client error: {e}", "");
    }
    if r.log_lines > 0 {
        println!(
            "{:>15} {} log lines (target/bench-fixtures/logs)",
            "", r.log_lines
        );
    }
}

fn summary(results: &[LevelResult], opts: &Options, camera_memory: Option<serde_json::Value>) {
    println!();
    println!(
        "| relay | clients | playing | CPU s in {:.0} s (kernel) | % of a core | peak RSS MiB | RSS MiB | client Mbit/s min / median | behind | lost pkts | latency p50 / p99 / max ms |",
        opts.window.as_secs_f64()
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        println!(
            "| {} | {} | {} | {:.2} ({:.2}) | {:.1}% | {:.1} | {:.1} | {:.2} / {:.2} | {} | {} | {} / {} / {} |",
            r.kind.name(),
            r.clients,
            r.playing,
            r.cpu_s,
            r.sys_s,
            r.cpu_s / r.window_s * 100.0,
            mib(r.hwm_kib),
            mib(r.rss_kib),
            r.client_mbps_min,
            r.client_mbps_median,
            r.behind,
            r.lost_packets,
            ms(r.latency.p50_ms),
            ms(r.latency.p99_ms),
            ms(r.latency.max_ms),
        );
    }
    println!();
    let mut memory = Vec::new();
    for kind in &opts.kinds {
        let of = |n: usize| results.iter().find(|r| r.kind == *kind && r.clients == n);
        let per_camera = of(1).map(|r| r.rss_kib as f64 - r.idle_rss_kib as f64);
        let (lo, hi) = (
            opts.levels.iter().min().copied().unwrap_or(1),
            opts.levels.iter().max().copied().unwrap_or(1),
        );
        let per_client = match (of(lo), of(hi)) {
            (Some(a), Some(b)) if hi > lo => {
                Some((b.rss_kib as f64 - a.rss_kib as f64) / (hi - lo) as f64)
            }
            _ => None,
        };
        println!(
            "{}: memory per camera (RSS at 1 client - idle RSS) {}; per client ((RSS at {hi} - RSS at {lo}) / {}) {}",
            kind.name(),
            per_camera.map_or_else(|| "-".into(), |k| format!("{:.2} MiB", k / 1024.0)),
            hi.saturating_sub(lo),
            per_client.map_or_else(|| "-".into(), |k| format!("{k:.1} KiB")),
        );
        memory.push(json!({
            "relay": kind.name(),
            "per_camera_kib": per_camera,
            "per_client_kib": per_client,
        }));
    }
    let levels: Vec<_> = results
        .iter()
        .map(|r| {
            json!({
                "relay": r.kind.name(),
                "clients": r.clients,
                "playing": r.playing,
                "window_s": r.window_s,
                "cpu_s": r.cpu_s,
                "cpu_kernel_s": r.sys_s,
                "idle_rss_kib": r.idle_rss_kib,
                "rss_kib": r.rss_kib,
                "peak_rss_kib": r.hwm_kib,
                "bench_cpu_s": r.bench_cpu_s,
                "load_before": r.load_before,
                "camera_mbps": r.camera_mbps,
                "client_mbps_min": r.client_mbps_min,
                "client_mbps_median": r.client_mbps_median,
                "clients_behind": r.behind,
                "lost_packets": r.lost_packets,
                "client_errors": r.failed,
                "latency_ms": {
                    "frames": r.latency.frames,
                    "unmatched": r.latency.unmatched,
                    "min": r.latency.min_ms,
                    "p50": r.latency.p50_ms,
                    "p99": r.latency.p99_ms,
                    "max": r.latency.max_ms,
                },
                "ffprobe": r.ffprobe,
            })
        })
        .collect();
    println!();
    println!(
        "SUMMARY {}",
        json!({
            "levels": levels,
            "memory": memory,
            "camera_memory": camera_memory,
            "gst_video_only": opts.gst_video_only,
        })
    );
}

async fn bench(opts: Options, fixture: Arc<Fixture>, runtimes: Runtimes, ticks: f64) -> Result<()> {
    let camera = runtimes
        .camera
        .spawn(SimCamera::start(SimCameraConfig {
            paths: vec!["/cam".into()],
            fixture: Some(fixture),
            ..SimCameraConfig::default()
        }))
        .await??;
    let camera_url = camera.url("/cam");
    println!(
        "camera {camera_url}; window {} s after {} s warm-up; load average {}",
        opts.window.as_secs(),
        opts.warmup.as_secs(),
        load_average()
    );
    let mut results = Vec::new();
    for &clients in &opts.levels {
        for &kind in &opts.kinds {
            let result = run_level(kind, clients, &camera_url, &runtimes, &opts, ticks)
                .await
                .with_context(|| format!("{} at {clients} clients", kind.name()))?;
            print_level(&result);
            results.push(result);
        }
    }
    let camera_memory = if opts.memory_cameras > 1 && opts.kinds.contains(&Kind::Camrelay) {
        let m = camera_memory(opts.memory_cameras, &camera_url, &opts)
            .await
            .context("the memory phase")?;
        Some(print_camera_memory(&m))
    } else {
        None
    };
    summary(&results, &opts, camera_memory);
    let dropped = camera
        .server()
        .stats()
        .packets_dropped
        .load(Ordering::Relaxed);
    println!(
        "camera: packets its own clients (the relays, the direct client) lost by falling behind: {dropped}"
    );
    Ok(())
}

fn main() -> Result<()> {
    let opts = Options::parse()?;
    if opts.build {
        build_relay()?;
    }
    let (video, audio) = fixture_files()?;
    let fixture = Fixture::parse(&video, &audio, FPS, AUDIO_FRAMES);
    let loop_s = fixture.video.len() as f64 / f64::from(FPS);
    let video_bytes: usize = fixture.video.iter().map(Bytes::len).sum();
    let audio_bytes: usize = fixture.audio.iter().map(Bytes::len).sum();
    println!(
        "fixture: {} video frames ({} keyframes) = {loop_s:.2} s, H.264 {:.2} Mbit/s; {} AAC frames, {:.0} kbit/s",
        fixture.video.len(),
        fixture.keyframes.iter().filter(|k| **k).count(),
        video_bytes as f64 * 8.0 / loop_s / 1e6,
        fixture.audio.len(),
        audio_bytes as f64 * 8.0 / loop_s / 1e3,
    );
    if fixture.audio.len() != AUDIO_FRAMES {
        bail!(
            "fixture audio has {} frames, want {AUDIO_FRAMES}",
            fixture.audio.len()
        );
    }
    let ticks = clock_ticks();

    // The camera and the fingerprinting clients get their own threads, so that the load
    // clients' reading delays neither the camera's sending nor the latency measurement.
    let camera_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("camera")
        .enable_all()
        .build()?;
    let taps_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let taps = taps_rt.handle().clone();
    let (stop_taps, taps_stopped) = tokio::sync::oneshot::channel::<()>();
    let taps_thread = std::thread::Builder::new()
        .name("taps".into())
        .spawn(move || {
            taps_rt.block_on(async {
                let _ = taps_stopped.await;
            });
        })?;
    let main_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = main_rt.block_on(bench(
        opts,
        Arc::new(fixture),
        Runtimes {
            camera: camera_rt.handle().clone(),
            taps,
        },
        ticks,
    ));
    let _ = stop_taps.send(());
    let _ = taps_thread.join();
    main_rt.shutdown_background();
    camera_rt.shutdown_background();
    result
}
