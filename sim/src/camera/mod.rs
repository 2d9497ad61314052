//! A simulated camera: an RTSP server that loops a short H.264 + AAC fixture in real time,
//! built from the same packetizers, bus and server the relay serves its clients with.
//!
//! It stands in for a LAN camera (optionally behind Basic/Digest authentication) and for
//! Google's Nest stream servers: in Nest mode its paths are `/sdm_live_stream/{token}` and a
//! client must present the stream's current `?auth=` token, checked against the fake SDM API,
//! or get 404 as from Google.

mod fixture;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use camrelay_rtsp::auth::{Authenticator, User};
use camrelay_rtsp::bus::{Bus, Subscriber};
use camrelay_rtsp::media::{
    AAC_PAYLOAD_TYPE, Codec, H264_PAYLOAD_TYPE, MediaDescription, Track, VIDEO_CLOCK_RATE,
};
use camrelay_rtsp::rtp::{AacPacketizer, H264Packetizer, Packet};
use camrelay_rtsp::server::{BoxFuture, Mounts, OpenError, Server, ServerConfig, Source};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use fixture::{AUDIO_FRAMES_PER_LOOP, FRAME_RATE, Fixture};

use crate::sdm::FakeSdm;

/// Path prefix of Nest-style stream URLs.
pub const NEST_PATH_PREFIX: &str = "/sdm_live_stream/";

/// What to simulate.
#[derive(Debug, Clone, Default)]
pub struct SimCameraConfig {
    /// Camera paths served (e.g. `/cam`); ignored in Nest mode.
    pub paths: Vec<String>,
    /// Require these credentials (Basic or Digest).
    pub credentials: Option<(String, String)>,
    /// Nest mode: serve `/sdm_live_stream/{token}?auth=…` for the fake SDM's live streams.
    pub nest: Option<FakeSdm>,
    /// Serve `rtsps://` (TLS over TCP, as Google does) with the test certificate
    /// ([`TEST_CERT_PEM`], issued by [`TEST_CA_PEM`] for `127.0.0.1` and `localhost`).
    pub tls: bool,
    /// Listen here instead of a free port on 127.0.0.1 (to come back on the same port after
    /// [`SimCamera::stop`]).
    pub addr: Option<SocketAddr>,
    /// Loop this instead of the built-in fixture (e.g. 1080p for benchmarks).
    pub fixture: Option<Arc<Fixture>>,
}

/// The CA that issued the simulated camera's certificate (PEM): trust it with
/// `CAMRELAY_EXTRA_CA_FILE` (see [`TEST_CA_FILE`]).
pub const TEST_CA_PEM: &str = include_str!("../../fixtures/tls/ca.pem");
/// The simulated camera's certificate (PEM), for `127.0.0.1` and `localhost`, valid to 2126.
pub const TEST_CERT_PEM: &str = include_str!("../../fixtures/tls/cert.pem");
/// Its private key (PEM). A test fixture, public on purpose: it protects nothing.
pub const TEST_KEY_PEM: &str = include_str!("../../fixtures/tls/key.pem");
/// Path of [`TEST_CA_PEM`] in the source tree.
pub const TEST_CA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls/ca.pem");

/// One simulated stream: its bus, fed by a task that loops the fixture. A Nest stream's bus is
/// closed when Google's side ends the stream, which ends its clients' sessions.
#[derive(Debug)]
struct SimStream {
    name: String,
    description: MediaDescription,
    bus: Mutex<Option<Bus<Packet>>>,
}

impl SimStream {
    fn bus(&self) -> Option<Bus<Packet>> {
        self.bus
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn is_open(&self) -> bool {
        self.bus().is_some()
    }

    /// Ends the stream: once the play task lets go too, subscribers see the bus close.
    fn close(&self) {
        self.bus
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl Source for SimStream {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn description(&self) -> MediaDescription {
        self.description.clone()
    }

    fn subscribe(&self) -> Subscriber<Packet> {
        // A closed stream hands out a subscriber of a bus that is already gone.
        self.bus().unwrap_or_default().subscribe()
    }
}

struct SimMounts {
    fixture: Arc<Fixture>,
    paths: Vec<String>,
    nest: Option<FakeSdm>,
    streams: Mutex<HashMap<String, Arc<SimStream>>>,
    shutdown: CancellationToken,
}

impl SimMounts {
    /// The stream for `key`, started on first use.
    fn stream(&self, key: &str, name: &str) -> Arc<SimStream> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        match streams.get(key).filter(|s| s.is_open()) {
            Some(stream) => Arc::clone(stream),
            None => self.start(&mut streams, key, name, None),
        }
    }

    /// `key`'s stream for a client that must be its only one: `None` if someone other than
    /// the mounts and the play task holds it (checked and taken under one lock).
    fn stream_alone(
        &self,
        key: &str,
        name: &str,
        alive: Option<(FakeSdm, String)>,
    ) -> Option<Arc<SimStream>> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        match streams.get(key).filter(|s| s.is_open()) {
            Some(stream) => {
                (Arc::strong_count(stream) <= STREAM_OWNERS).then(|| Arc::clone(stream))
            }
            None => Some(self.start(&mut streams, key, name, alive)),
        }
    }

    /// Starts `key`'s stream and its play task (see [`play`] for `alive`).
    fn start(
        &self,
        streams: &mut HashMap<String, Arc<SimStream>>,
        key: &str,
        name: &str,
        alive: Option<(FakeSdm, String)>,
    ) -> Arc<SimStream> {
        let stream = Arc::new(new_stream(&self.fixture, name));
        tokio::spawn(play(
            Arc::clone(&self.fixture),
            Arc::clone(&stream),
            alive,
            self.shutdown.clone(),
        ));
        streams.insert(key.to_owned(), Arc::clone(&stream));
        stream
    }
}

/// References a live stream has with no client: the mounts' map and its play task.
const STREAM_OWNERS: usize = 2;

impl Mounts for SimMounts {
    fn open(
        &self,
        path: &str,
        query: Option<&str>,
    ) -> BoxFuture<Result<Arc<dyn Source>, OpenError>> {
        let result = match &self.nest {
            Some(sdm) => {
                let token = path.strip_prefix(NEST_PATH_PREFIX).unwrap_or_default();
                let auth = query
                    .into_iter()
                    .flat_map(|q| q.split('&'))
                    .find_map(|pair| pair.strip_prefix("auth="))
                    .unwrap_or_default();
                match sdm.check_rtsp_access(token, auth) {
                    // "A stream URL can only be used by one client at a time": a second
                    // opener gets 404, as from Google.
                    Ok(device) => match self.stream_alone(
                        token,
                        &device,
                        Some((sdm.clone(), token.to_owned())),
                    ) {
                        Some(stream) => Ok(stream as Arc<dyn Source>),
                        None => {
                            tracing::debug!("simulated Nest stream refused: already in use");
                            Err(OpenError::NotFound)
                        }
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "simulated Nest stream refused");
                        Err(OpenError::NotFound)
                    }
                }
            }
            None => {
                if self.paths.iter().any(|p| p == path) {
                    Ok(self.stream(path, path.trim_start_matches('/')) as Arc<dyn Source>)
                } else {
                    Err(OpenError::NotFound)
                }
            }
        };
        Box::pin(async move { result })
    }
}

fn new_stream(fixture: &Fixture, name: &str) -> SimStream {
    let description = MediaDescription {
        tracks: vec![
            Track {
                codec: Codec::h264(fixture.sps.clone(), fixture.pps.clone())
                    .unwrap_or_else(|| Codec::Aac(fixture.audio_config.clone())),
                ssrc: fastrand::u32(..),
            },
            Track {
                codec: Codec::Aac(fixture.audio_config.clone()),
                ssrc: fastrand::u32(..),
            },
        ],
    };
    SimStream {
        name: name.to_owned(),
        description,
        bus: Mutex::new(Some(Bus::default())),
    }
}

/// Plays the fixture on `stream`'s bus in real time: video at its frame rate, audio every 1024
/// samples, timestamps continuous across loops, with the SSRCs its description announces.
/// Runs until shutdown, or for a Nest stream (`alive`) until the fake SDM ends it.
async fn play(
    fixture: Arc<Fixture>,
    stream: Arc<SimStream>,
    alive: Option<(FakeSdm, String)>,
    shutdown: CancellationToken,
) {
    let Some(bus) = stream.bus() else { return };
    let video_ssrc = stream.description.tracks[0].ssrc;
    let audio_ssrc = stream.description.tracks[1].ssrc;
    let mut video = H264Packetizer::new(0, H264_PAYLOAD_TYPE, video_ssrc, fastrand::u16(..));
    video.set_parameter_sets(fixture.sps.clone(), fixture.pps.clone());
    let mut audio = AacPacketizer::new(1, AAC_PAYLOAD_TYPE, audio_ssrc, fastrand::u16(..));
    let video_base = fastrand::u32(..);
    let audio_base = fastrand::u32(..);
    let sample_rate = u64::from(fixture.audio_config.sample_rate);
    let start = tokio::time::Instant::now();
    let (mut v, mut a) = (0u64, 0u64);
    loop {
        // Whichever of the next video and audio frame is due first.
        let video_at = Duration::from_micros(v * 1_000_000 / u64::from(fixture.frame_rate));
        let audio_at = Duration::from_micros(a * 1024 * 1_000_000 / sample_rate);
        let (at, is_video) = if video_at <= audio_at {
            (video_at, true)
        } else {
            (audio_at, false)
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(start + at) => {}
        }
        if let Some((sdm, token)) = &alive
            && !sdm.rtsp_stream_live(token)
        {
            tracing::debug!(stream = %stream.name, "simulated Nest stream ended");
            stream.close();
            return;
        }
        if is_video {
            let unit = &fixture.video[(v % fixture.video.len() as u64) as usize];
            let ts = video_base.wrapping_add(
                (v * u64::from(VIDEO_CLOCK_RATE) / u64::from(fixture.frame_rate)) as u32,
            );
            for packet in video.packetize(unit, ts) {
                bus.publish(packet);
            }
            v += 1;
        } else {
            let frame = &fixture.audio[(a % fixture.audio.len() as u64) as usize];
            let ts = audio_base.wrapping_add((a * 1024) as u32);
            for packet in audio.packetize(frame, ts) {
                bus.publish(packet);
            }
            a += 1;
        }
    }
}

/// A running simulated camera.
#[derive(Debug)]
pub struct SimCamera {
    server: Server,
    /// The TLS front's address, with TLS.
    tls_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
}

impl SimCamera {
    /// Starts serving on 127.0.0.1 (a free port, unless [`SimCameraConfig::addr`] is set).
    pub async fn start(config: SimCameraConfig) -> std::io::Result<Self> {
        let public = config
            .addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let public = TcpListener::bind(public).await?;
        let shutdown = CancellationToken::new();
        // With TLS the RTSP server listens on a private port behind a TLS front.
        let (listener, tls_addr) = if config.tls {
            let inner = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
            let inner_addr = inner.local_addr()?;
            let addr = public.local_addr()?;
            tokio::spawn(tls::front(public, inner_addr, shutdown.clone())?);
            (inner, Some(addr))
        } else {
            (public, None)
        };
        let mounts = Arc::new(SimMounts {
            fixture: config.fixture.unwrap_or_else(|| Arc::new(Fixture::load())),
            paths: config.paths,
            nest: config.nest,
            streams: Mutex::new(HashMap::new()),
            shutdown: shutdown.clone(),
        });
        // Strict as MediaMTX: a Digest `uri` must name the request's URL.
        let auth = config.credentials.map(|(name, password)| {
            Arc::new(
                Authenticator::new(
                    "camrelay-sim",
                    vec![User {
                        name,
                        password: SecretString::from(password),
                    }],
                )
                .checking_request_uri(),
            )
        });
        let server = Server::start(
            listener,
            None,
            mounts,
            ServerConfig {
                auth,
                ..ServerConfig::default()
            },
            shutdown.clone(),
        )?;
        Ok(Self {
            server,
            tls_addr,
            shutdown,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.tls_addr.unwrap_or_else(|| self.server.local_addr())
    }

    /// `rtsp://127.0.0.1:PORT{path}` (`rtsps://` with TLS).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls_addr.is_some() {
            "rtsps"
        } else {
            "rtsp"
        };
        format!("{scheme}://{}{path}", self.addr())
    }

    /// Server counters.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Stops serving (connections close).
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for SimCamera {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
