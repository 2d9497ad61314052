//! The RTSP server (RFC 2326): one task per client connection, which answers requests and, once
//! playing, forwards the camera's packets from its bus subscription, either interleaved in the
//! connection (§10.12) or over UDP from two shared sockets.
//!
//! Streams are resolved through [`Mounts`]; opening one may start the camera (on demand), and
//! the returned [`Source`] keeps it wanted until the session ends. A slow client never slows the
//! camera: its subscription falls behind and skips to the next keyframe.

use std::collections::HashMap;
use std::future::Future;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use rtsp_types::headers;
use rtsp_types::{Message, Method, ParseError, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::auth::Authenticator;
use crate::bus::Subscriber;
use crate::media::{MediaDescription, Track};
use crate::request::{self, Delivery, Parsed, Refusal};
use crate::rtp::Packet;

/// A boxed future, for the object-safe [`Mounts`] trait.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A stream being served: what it sends and how to receive it. Dropping the last reference lets
/// the camera go idle.
pub trait Source: Send + Sync + 'static {
    /// The stream's name (the SDP session name).
    fn name(&self) -> String;
    /// Its tracks and codec parameters now.
    fn description(&self) -> MediaDescription;
    /// A subscription to its packets.
    fn subscribe(&self) -> Subscriber<Packet>;
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// No stream at that path (404).
    #[error("no such stream")]
    NotFound,
    /// The stream exists but cannot be served now (503, with `Retry-After` if known).
    #[error("{reason}")]
    Unavailable {
        /// Why, in words a person understands (sent as the reason phrase's detail in logs).
        reason: String,
        /// When to try again.
        retry_after: Option<Duration>,
    },
}

/// Finds streams by path.
pub trait Mounts: Send + Sync + 'static {
    /// Opens the stream at `path` (e.g. `/front-door`) with the request's `query`, for one
    /// client. May take a while (an on-demand camera starts); the server bounds the wait.
    fn open(
        &self,
        path: &str,
        query: Option<&str>,
    ) -> BoxFuture<Result<Arc<dyn Source>, OpenError>>;
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// A session with no request and no RTCP for this long is closed (announced to clients as
    /// the `Session` timeout; they send keepalives well within it). So is a connection without
    /// a session that sends no request for this long (one that only described a camera would
    /// otherwise keep it wanted), and one that takes no data for this long while its write
    /// waits (a vanished peer would otherwise hold its session until TCP gives up, minutes
    /// later).
    pub session_timeout: Duration,
    /// Most sessions in all (453 Not Enough Bandwidth beyond).
    pub max_sessions: usize,
    /// Most sessions on one stream (453 beyond).
    pub max_sessions_per_stream: usize,
    /// Largest request accepted, headers and body; a larger one closes the connection.
    pub max_request_bytes: usize,
    /// How long opening a stream may take (an on-demand start) before 503.
    pub open_timeout: Duration,
    /// Client authentication, if required.
    pub auth: Option<Arc<Authenticator>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_stream: DEFAULT_MAX_SESSIONS_PER_STREAM,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            auth: None,
        }
    }
}

/// Default [`ServerConfig::session_timeout`].
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`ServerConfig::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 1000;
/// Default [`ServerConfig::max_sessions_per_stream`].
pub const DEFAULT_MAX_SESSIONS_PER_STREAM: usize = 500;
/// Default [`ServerConfig::max_request_bytes`]: far above any real request (a few hundred
/// bytes), small enough that a client cannot make us buffer much.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Default [`ServerConfig::open_timeout`]: long enough for an on-demand Nest camera (generate a
/// stream, connect, wait for a keyframe).
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Initial capacity of a connection's own outgoing buffer: responses, and packets framed for a
/// client that chose unusual interleaved channels (it grows to the largest batch). Clients on
/// the usual channels are sent the camera's buffers themselves.
const WRITE_BUFFER: usize = 2 * 1024;
/// Packets a playing connection takes from its subscription per wake-up before flushing: a
/// whole keyframe of a 1080p camera (about 100 packets at 4 Mbit/s) goes out in one write.
/// With 32, such a keyframe took four wake-ups and writes per client, and at 200 clients the
/// p99 added latency was 7.4–9.8 ms against 6.2–7.0 ms with 128 (docs/BENCHMARKS.md); the
/// price is about 10 KiB more per client once a keyframe has passed.
const PACKETS_PER_FLUSH: usize = 128;

/// Server counters (all since start).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicUsize,
    /// Sessions set up.
    pub sessions: AtomicU64,
    /// Sessions open now.
    pub sessions_open: AtomicUsize,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Requests refused as malformed (400) or with an unsupported transport (461).
    pub bad_requests: AtomicU64,
    /// Requests refused for authentication (401).
    pub unauthorized: AtomicU64,
    /// Sessions refused for a limit (453).
    pub refused_limit: AtomicU64,
    /// RTP packets sent.
    pub packets_sent: AtomicU64,
    /// Bytes of RTP sent.
    pub bytes_sent: AtomicU64,
    /// Packets clients lost by falling behind.
    pub packets_dropped: AtomicU64,
}

/// The two UDP sockets of UDP delivery.
#[derive(Debug)]
pub struct UdpSockets {
    /// RTP goes out from here.
    pub rtp: UdpSocket,
    /// RTCP comes in here.
    pub rtcp: UdpSocket,
}

struct Shared {
    mounts: Arc<dyn Mounts>,
    config: ServerConfig,
    stats: Arc<ServerStats>,
    udp: Option<Arc<UdpSockets>>,
    /// Sessions per stream path.
    per_stream: Mutex<HashMap<String, usize>>,
    /// Last RTCP seen from each UDP client address.
    rtcp_seen: Mutex<HashMap<SocketAddr, Instant>>,
}

/// A running RTSP server.
#[derive(Debug, Clone)]
pub struct Server {
    stats: Arc<ServerStats>,
    local_addr: SocketAddr,
    udp_ports: Option<(u16, u16)>,
}

impl Server {
    /// Starts serving `listener` (and UDP delivery on `udp`, if given) until `shutdown`.
    pub fn start(
        listener: TcpListener,
        udp: Option<UdpSockets>,
        mounts: Arc<dyn Mounts>,
        config: ServerConfig,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let udp_ports = match &udp {
            Some(u) => Some((u.rtp.local_addr()?.port(), u.rtcp.local_addr()?.port())),
            None => None,
        };
        let stats = Arc::new(ServerStats::default());
        let shared = Arc::new(Shared {
            mounts,
            config,
            stats: Arc::clone(&stats),
            udp: udp.map(Arc::new),
            per_stream: Mutex::new(HashMap::new()),
            rtcp_seen: Mutex::new(HashMap::new()),
        });
        if let Some(udp) = shared.udp.clone() {
            tokio::spawn(receive_rtcp(udp, Arc::clone(&shared), shutdown.clone()));
        }
        tokio::spawn(accept(listener, shared, shutdown));
        Ok(Self {
            stats,
            local_addr,
            udp_ports,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's UDP RTP and RTCP ports, if UDP delivery is on.
    pub fn udp_ports(&self) -> Option<(u16, u16)> {
        self.udp_ports
    }

    /// Its counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                let shared = Arc::clone(&shared);
                let shutdown = shutdown.clone();
                // One span per client: everything logged for it names its address and, once
                // the mounts know the stream asked for, its camera (the path itself is not
                // logged: it is the client's input, and a stream URL's path can be a token).
                let span =
                    tracing::info_span!("rtsp_client", %peer, camera = tracing::field::Empty);
                tokio::spawn(tracing::Instrument::instrument(
                    async move {
                        shared
                            .stats
                            .connections_open
                            .fetch_add(1, Ordering::Relaxed);
                        Connection::new(peer, Arc::clone(&shared))
                            .run(stream, shutdown)
                            .await;
                        shared
                            .stats
                            .connections_open
                            .fetch_sub(1, Ordering::Relaxed);
                    },
                    span,
                ));
            }
            Err(e) => {
                // Out of file descriptors or similar: back off briefly instead of spinning.
                tracing::warn!(error = %e, "RTSP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn receive_rtcp(udp: Arc<UdpSockets>, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut buf = [0u8; 1500];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = udp.rtcp.recv_from(&mut buf) => received,
        };
        if let Ok((_, from)) = received {
            let from = SocketAddr::new(client_ip(from.ip()), from.port());
            let mut seen = shared
                .rtcp_seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Only clients with a session are tracked (see `Session` setup); others are ignored.
            if let Some(at) = seen.get_mut(&from) {
                *at = Instant::now();
            }
        }
    }
}

/// Holds a stream's session count while a session lives.
struct Slot {
    shared: Arc<Shared>,
    path: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_stream = self
            .shared
            .per_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_stream.get_mut(&self.path) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_stream.remove(&self.path);
            }
        }
        self.shared
            .stats
            .sessions_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

struct Session {
    id: String,
    path: String,
    source: Arc<dyn Source>,
    description: MediaDescription,
    tracks: Vec<Option<Delivery>>,
    playing: Option<Subscriber<Packet>>,
    last_activity: Instant,
    udp_clients: Vec<SocketAddr>,
    _slot: Slot,
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.udp_clients.is_empty() {
            let mut seen = self
                ._slot
                .shared
                .rtcp_seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for addr in &self.udp_clients {
                seen.remove(addr);
            }
        }
    }
}

/// One client connection.
struct Connection {
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// Streams opened by DESCRIBE on this connection, by path, until SETUP uses them.
    described: HashMap<String, Arc<dyn Source>>,
    session: Option<Session>,
    /// When the last request arrived (or the connection opened): without a session, the
    /// connection is closed [`ServerConfig::session_timeout`] after it.
    last_request: Instant,
    /// `WWW-Authenticate` challenges for the response being built, one header line each (the
    /// response type would join them into one line, which some clients misread).
    challenges: Vec<String>,
    close: bool,
}

impl Connection {
    fn new(peer: SocketAddr, shared: Arc<Shared>) -> Self {
        Self {
            peer,
            shared,
            described: HashMap::new(),
            session: None,
            last_request: Instant::now(),
            challenges: Vec::new(),
            close: false,
        }
    }

    async fn run(mut self, stream: TcpStream, shutdown: CancellationToken) {
        // No BufWriter: `out` already gathers a whole batch for one write, and a second buffer
        // would copy every packet once more.
        let (mut reader, mut writer) = stream.into_split();
        let mut input = BytesMut::with_capacity(4096);
        let mut out = BytesMut::with_capacity(WRITE_BUFFER);
        let mut batch = Vec::with_capacity(PACKETS_PER_FLUSH);
        let mut pieces = Vec::with_capacity(PACKETS_PER_FLUSH);
        loop {
            let deadline = self.session_deadline();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                read = reader.read_buf(&mut input) => {
                    match read {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if let Err(()) = self.take_messages(&mut input, &mut out).await {
                        let _ = self.write_within_timeout(writer.write_all(&out)).await;
                        break;
                    }
                    if self.write_within_timeout(writer.write_all(&out)).await.is_err() {
                        break;
                    }
                    out.clear();
                    if self.close {
                        break;
                    }
                }
                packet = next_packet(&mut self.session) => {
                    let Some(packet) = packet else {
                        // The camera's bus is gone (camera removed).
                        break;
                    };
                    batch.push(packet);
                    // Take what else is ready, then write once.
                    while batch.len() < PACKETS_PER_FLUSH {
                        let Some(more) = try_next_packet(&mut self.session) else { break };
                        batch.push(more);
                    }
                    let result = self.send_batch(&batch, &mut writer, &mut out, &mut pieces).await;
                    // Released now, not at the next wake-up: the camera's ring owns them.
                    batch.clear();
                    if result.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    if self.timed_out() {
                        tracing::debug!(
                            session = self.session.is_some(),
                            "RTSP connection timed out"
                        );
                        break;
                    }
                }
            }
        }
        if let Some(session) = &self.session
            && let Some(sub) = &session.playing
        {
            self.shared
                .stats
                .packets_dropped
                .fetch_add(sub.dropped(), Ordering::Relaxed);
            tracing::info!(dropped = sub.dropped(), "RTSP client left");
        }
    }

    /// When the connection is closed unless something happens first: the session's timeout
    /// after its last activity, or without a session, after the last request.
    fn session_deadline(&self) -> Instant {
        let since = self
            .session
            .as_ref()
            .map_or(self.last_request, |s| s.last_activity);
        since + self.shared.config.session_timeout
    }

    fn timed_out(&mut self) -> bool {
        let Some(session) = &mut self.session else {
            return Instant::now() >= self.session_deadline();
        };
        // RTCP from UDP clients counts as activity.
        let seen = self
            .shared
            .rtcp_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for addr in &session.udp_clients {
            if let Some(&at) = seen.get(addr) {
                session.last_activity = session.last_activity.max(at);
            }
        }
        Instant::now() >= session.last_activity + self.shared.config.session_timeout
    }

    /// Handles every complete message in `input`, appending responses to `out`. `Err` means
    /// the connection must close (unparseable input or an oversized request).
    async fn take_messages(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<(), ()> {
        loop {
            if input.is_empty() {
                return Ok(());
            }
            let parsed = Message::<Vec<u8>>::parse(&input[..]);
            let (message, consumed) = match parsed {
                Ok(ok) => ok,
                Err(ParseError::Incomplete(_)) => {
                    if input.len() > self.shared.config.max_request_bytes {
                        self.shared
                            .stats
                            .bad_requests
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(bytes = input.len(), "RTSP request too large");
                        write_response(
                            out,
                            &request::response(StatusCode::RequestMessageBodyTooLarge, None)
                                .build(Vec::new()),
                            &[],
                        );
                        return Err(());
                    }
                    return Ok(());
                }
                Err(ParseError::Error) => {
                    self.shared
                        .stats
                        .bad_requests
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("malformed RTSP input");
                    write_response(
                        out,
                        &request::response(StatusCode::BadRequest, None).build(Vec::new()),
                        &[],
                    );
                    return Err(());
                }
            };
            let _ = input.split_to(consumed);
            match message {
                Message::Request(req) => {
                    // Any request keeps the connection's session alive, with its id or not
                    // (some clients send OPTIONS without one as their keepalive): one session
                    // per connection, so the connection says whose it is.
                    self.last_request = Instant::now();
                    if let Some(session) = &mut self.session {
                        session.last_activity = self.last_request;
                    }
                    let response = self.handle(&req).await;
                    self.shared.stats.requests.fetch_add(1, Ordering::Relaxed);
                    let challenges = std::mem::take(&mut self.challenges);
                    write_response(out, &response, &challenges);
                    if self.close {
                        return Ok(());
                    }
                }
                // RTCP (or anything) from the client on an interleaved channel: it is alive.
                Message::Data(_) => {
                    if let Some(session) = &mut self.session {
                        session.last_activity = Instant::now();
                    }
                }
                // A client does not send responses to a server that sends no requests.
                Message::Response(_) => {}
            }
        }
    }

    async fn handle(&mut self, req: &rtsp_types::Request<Vec<u8>>) -> Response<Vec<u8>> {
        let parsed = match request::parse(req) {
            Ok(parsed) => parsed,
            Err(refusal) => {
                self.shared
                    .stats
                    .bad_requests
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(reason = refusal.reason, "RTSP request refused");
                return request::refusal(&refusal);
            }
        };
        let method = parsed.method.clone();
        if method == Method::Options {
            return request::response(StatusCode::Ok, Some(parsed.cseq))
                .header(headers::PUBLIC, request::PUBLIC_METHODS)
                .build(Vec::new());
        }
        if let Some(auth) = &self.shared.config.auth
            && let Err(challenge) = auth.check(
                &method_name(&method),
                parsed.url.as_ref(),
                parsed.authorization.as_deref(),
                Instant::now().into_std(),
            )
        {
            self.shared
                .stats
                .unauthorized
                .fetch_add(1, Ordering::Relaxed);
            self.challenges = challenge.headers;
            return request::response(StatusCode::Unauthorized, Some(parsed.cseq))
                .build(Vec::new());
        }
        let result = match method {
            Method::Describe => self.describe(&parsed).await,
            Method::Setup => self.setup(&parsed, req).await,
            Method::Play => self.play(&parsed),
            Method::Pause => self.pause(&parsed),
            Method::Teardown => self.teardown(&parsed),
            Method::GetParameter | Method::SetParameter => self.keepalive(&parsed),
            _ => Err(Refusal {
                status: StatusCode::MethodNotAllowed,
                cseq: Some(parsed.cseq),
                reason: "method not implemented",
            }),
        };
        match result {
            Ok(response) => response,
            Err(refusal) => {
                tracing::debug!(status = ?refusal.status, reason = refusal.reason, "RTSP request refused");
                request::refusal(&refusal)
            }
        }
    }

    async fn open(
        &self,
        parsed: &Parsed,
        path: &str,
    ) -> Result<Arc<dyn Source>, Response<Vec<u8>>> {
        let url = parsed.url.as_ref();
        let query = url.and_then(Url::query);
        let opening = self.shared.mounts.open(path, query);
        match tokio::time::timeout(self.shared.config.open_timeout, opening).await {
            Ok(Ok(source)) => Ok(source),
            Ok(Err(OpenError::NotFound)) => Err(request::refusal(&Refusal {
                status: StatusCode::NotFound,
                cseq: Some(parsed.cseq),
                reason: "no such stream",
            })),
            Ok(Err(OpenError::Unavailable {
                reason,
                retry_after,
            })) => {
                tracing::info!(%reason, "RTSP stream unavailable");
                let mut builder =
                    request::response(StatusCode::ServiceUnavailable, Some(parsed.cseq));
                if let Some(after) = retry_after {
                    builder =
                        builder.header(headers::RETRY_AFTER, after.as_secs().max(1).to_string());
                }
                Err(builder.build(Vec::new()))
            }
            Err(_) => {
                tracing::info!("RTSP stream did not start in time");
                Err(
                    request::response(StatusCode::ServiceUnavailable, Some(parsed.cseq))
                        .build(Vec::new()),
                )
            }
        }
    }

    async fn describe(&mut self, parsed: &Parsed) -> Result<Response<Vec<u8>>, Refusal> {
        let Some(url) = &parsed.url else {
            return Err(bad(parsed, "DESCRIBE without URL"));
        };
        let (path, _) = request::stream_and_track(url);
        let source = match self.open(parsed, &path).await {
            Ok(source) => source,
            Err(response) => return Ok(response),
        };
        let description = source.description();
        let sdp = description.sdp(&source.name());
        let mut base = url.clone();
        base.set_query(None);
        base.set_path(&format!("{path}/"));
        self.described.insert(path, source);
        Ok(request::response(StatusCode::Ok, Some(parsed.cseq))
            .header(headers::CONTENT_TYPE, "application/sdp")
            .header(headers::CONTENT_BASE, base.to_string())
            .build(sdp.into_bytes()))
    }

    async fn setup(
        &mut self,
        parsed: &Parsed,
        req: &rtsp_types::Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, Refusal> {
        let Some(url) = &parsed.url else {
            return Err(bad(parsed, "SETUP without URL"));
        };
        let (path, track) = request::stream_and_track(url);
        // A new session's stream is opened (or taken from DESCRIBE) first, but the session is
        // only made once the request proves valid: a refused SETUP leaves none behind.
        let mut opened = None;
        if let Some(session) = &self.session {
            if parsed.session.as_deref() != Some(session.id.as_str()) || session.path != path {
                return Err(Refusal {
                    status: StatusCode::AggregateOperationNotAllowed,
                    cseq: Some(parsed.cseq),
                    reason: "one session per connection",
                });
            }
        } else {
            opened = Some(match self.described.remove(&path) {
                Some(source) => source,
                None => match self.open(parsed, &path).await {
                    Ok(source) => source,
                    Err(response) => return Ok(response),
                },
            });
        }
        let description = match (&opened, &self.session) {
            (Some(source), _) => source.description(),
            (None, Some(session)) => session.description.clone(),
            (None, None) => return Err(bad(parsed, "no session")),
        };
        let checked = self.check_setup(parsed, req, track, description.tracks.len());
        let (index, delivery) = match checked {
            Ok(checked) => checked,
            Err(refusal) => {
                // Kept for the client's next try, as DESCRIBE keeps it.
                if let Some(source) = opened {
                    self.described.insert(path, source);
                }
                return Err(refusal);
            }
        };
        if let Some(source) = opened {
            let Some(slot) = self.take_slot(&path) else {
                self.described.insert(path, source);
                return Err(Refusal {
                    status: StatusCode::NotEnoughBandwidth,
                    cseq: Some(parsed.cseq),
                    reason: "session limit reached",
                });
            };
            let tracks = vec![None; description.tracks.len()];
            self.session = Some(Session {
                id: format!("{:016x}", fastrand::u64(..)),
                path: path.clone(),
                source,
                description,
                tracks,
                playing: None,
                last_activity: Instant::now(),
                udp_clients: Vec::new(),
                _slot: slot,
            });
            self.shared.stats.sessions.fetch_add(1, Ordering::Relaxed);
        }
        let udp = self.shared.udp.clone();
        let peer = self.peer;
        let timeout = self.shared.config.session_timeout.as_secs();
        let Some(session) = &mut self.session else {
            return Err(bad(parsed, "no session"));
        };
        session.tracks[index] = Some(delivery);
        let ssrc = session.description.tracks[index].ssrc;
        let transport = match (delivery, &udp) {
            (Delivery::Interleaved { rtp, rtcp }, _) => {
                format!("RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp};ssrc={ssrc:08X}")
            }
            (
                Delivery::Udp {
                    rtp_port,
                    rtcp_port,
                },
                Some(udp),
            ) => {
                // Keyed by the canonical address: a dual-stack listener sees IPv4 clients as
                // v4-mapped IPv6, a UDP socket of the other family sees them as they are.
                let rtcp_addr = SocketAddr::new(client_ip(peer.ip()), rtcp_port);
                session.udp_clients.push(rtcp_addr);
                self.shared
                    .rtcp_seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(rtcp_addr, Instant::now());
                let server_rtp = udp.rtp.local_addr().map(|a| a.port()).unwrap_or_default();
                let server_rtcp = udp.rtcp.local_addr().map(|a| a.port()).unwrap_or_default();
                format!(
                    "RTP/AVP;unicast;client_port={rtp_port}-{rtcp_port};server_port={server_rtp}-{server_rtcp};ssrc={ssrc:08X}"
                )
            }
            (Delivery::Udp { .. }, None) => return Err(bad(parsed, "UDP not available")),
        };
        Ok(request::response(StatusCode::Ok, Some(parsed.cseq))
            .header(
                headers::SESSION,
                format!("{};timeout={timeout}", session.id),
            )
            .header(headers::TRANSPORT, transport)
            .build(Vec::new()))
    }

    /// The track a SETUP names (of `tracks`) and the first transport it offers that the server
    /// can serve.
    fn check_setup(
        &self,
        parsed: &Parsed,
        req: &rtsp_types::Request<Vec<u8>>,
        track: Option<usize>,
        tracks: usize,
    ) -> Result<(usize, Delivery), Refusal> {
        let index = match track {
            Some(index) if index < tracks => index,
            None if tracks == 1 => 0,
            _ => {
                return Err(Refusal {
                    status: StatusCode::NotFound,
                    cseq: Some(parsed.cseq),
                    reason: "no such track",
                });
            }
        };
        let udp = self.shared.udp.is_some();
        let delivery =
            request::choose_transport(req, udp, self.next_channel()).map_err(|status| {
                self.shared
                    .stats
                    .bad_requests
                    .fetch_add(1, Ordering::Relaxed);
                Refusal {
                    status,
                    cseq: Some(parsed.cseq),
                    reason: "no supported transport offered",
                }
            })?;
        Ok((index, delivery))
    }

    /// The first interleaved channel pair not used by this session's tracks yet.
    fn next_channel(&self) -> u8 {
        self.session.as_ref().map_or(0, |s| {
            s.tracks
                .iter()
                .flatten()
                .filter_map(|d| match d {
                    Delivery::Interleaved { rtcp, .. } => Some(rtcp.saturating_add(1)),
                    Delivery::Udp { .. } => None,
                })
                .max()
                .unwrap_or(0)
        })
    }

    fn take_slot(&self, path: &str) -> Option<Slot> {
        let config = &self.shared.config;
        let mut per_stream = self
            .shared
            .per_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let total = self.shared.stats.sessions_open.load(Ordering::Relaxed);
        let count = per_stream.entry(path.to_owned()).or_insert(0);
        if total >= config.max_sessions || *count >= config.max_sessions_per_stream {
            self.shared
                .stats
                .refused_limit
                .fetch_add(1, Ordering::Relaxed);
            if *count == 0 {
                per_stream.remove(path);
            }
            return None;
        }
        *count += 1;
        self.shared
            .stats
            .sessions_open
            .fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            shared: Arc::clone(&self.shared),
            path: path.to_owned(),
        })
    }

    fn session_for(&mut self, parsed: &Parsed) -> Result<&mut Session, Refusal> {
        match &mut self.session {
            Some(session) if parsed.session.as_deref() == Some(session.id.as_str()) => Ok(session),
            _ => Err(Refusal {
                status: StatusCode::SessionNotFound,
                cseq: Some(parsed.cseq),
                reason: "unknown session",
            }),
        }
    }

    fn play(&mut self, parsed: &Parsed) -> Result<Response<Vec<u8>>, Refusal> {
        let cseq = parsed.cseq;
        let url = parsed.url.clone();
        let session = self.session_for(parsed)?;
        if session.tracks.iter().all(Option::is_none) {
            return Err(Refusal {
                status: StatusCode::MethodNotValidInThisState,
                cseq: Some(cseq),
                reason: "PLAY before SETUP",
            });
        }
        if session.playing.is_none() {
            session.playing = Some(session.source.subscribe());
            let udp = session
                .tracks
                .iter()
                .flatten()
                .any(|d| matches!(d, Delivery::Udp { .. }));
            tracing::info!(
                transport = if udp { "udp" } else { "tcp" },
                "RTSP client playing"
            );
        }
        let base = url.map(|mut u| {
            u.set_query(None);
            u.set_path(&format!("{}/", session.path));
            u
        });
        let mut infos = Vec::new();
        for (i, delivery) in session.tracks.iter().enumerate() {
            if delivery.is_none() {
                continue;
            }
            let Some(base) = &base else { continue };
            let mut info = format!("url={base}{}", Track::control(i));
            if let Some(first) = session
                .playing
                .as_ref()
                .and_then(|sub| sub.backlog().find(|p| p.track == i))
            {
                info.push_str(&format!(
                    ";seq={};rtptime={}",
                    first.seq(),
                    first.timestamp()
                ));
            }
            infos.push(info);
        }
        let mut builder = request::response(StatusCode::Ok, Some(cseq))
            .header(headers::SESSION, session.id.clone())
            .header(headers::RANGE, "npt=0.000-");
        if !infos.is_empty() {
            builder = builder.header(headers::RTP_INFO, infos.join(","));
        }
        Ok(builder.build(Vec::new()))
    }

    fn pause(&mut self, parsed: &Parsed) -> Result<Response<Vec<u8>>, Refusal> {
        let cseq = parsed.cseq;
        let dropped = {
            let session = self.session_for(parsed)?;
            let dropped = session.playing.take().map_or(0, |s| s.dropped());
            (dropped, session.id.clone())
        };
        self.shared
            .stats
            .packets_dropped
            .fetch_add(dropped.0, Ordering::Relaxed);
        Ok(request::response(StatusCode::Ok, Some(cseq))
            .header(headers::SESSION, dropped.1)
            .build(Vec::new()))
    }

    fn teardown(&mut self, parsed: &Parsed) -> Result<Response<Vec<u8>>, Refusal> {
        let cseq = parsed.cseq;
        self.session_for(parsed)?;
        if let Some(session) = self.session.take()
            && let Some(sub) = &session.playing
        {
            self.shared
                .stats
                .packets_dropped
                .fetch_add(sub.dropped(), Ordering::Relaxed);
        }
        // RFC 2326 §10.7: the session ends; the connection may stay (some clients reuse it).
        Ok(request::response(StatusCode::Ok, Some(cseq)).build(Vec::new()))
    }

    fn keepalive(&mut self, parsed: &Parsed) -> Result<Response<Vec<u8>>, Refusal> {
        let cseq = parsed.cseq;
        let mut builder = request::response(StatusCode::Ok, Some(cseq));
        if parsed.session.is_some() {
            let session = self.session_for(parsed)?;
            builder = builder.header(headers::SESSION, session.id.clone());
        }
        Ok(builder.build(Vec::new()))
    }

    /// Sends a batch of packets the way each one's track was set up: over TCP in one vectored
    /// write, where a frame's packets go out as one slice of the camera's buffer when the
    /// client uses the usual channels ([`crate::rtp::usual_channel`]; no copy, no work per
    /// packet) and are framed into `out` when it does not; over UDP a datagram each.
    async fn send_batch(
        &self,
        batch: &[Packet],
        writer: &mut OwnedWriteHalf,
        out: &mut BytesMut,
        pieces: &mut Vec<Piece>,
    ) -> Result<(), ()> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        out.clear();
        pieces.clear();
        let mut sent = Sent::default();
        for (i, packet) in batch.iter().enumerate() {
            let Some(Some(delivery)) = session.tracks.get(packet.track) else {
                continue;
            };
            let data = packet.data();
            sent.packets += 1;
            sent.bytes += data.len() as u64;
            match *delivery {
                Delivery::Interleaved { rtp, .. } if rtp == packet.framed_channel() => {
                    match pieces.last_mut() {
                        Some(Piece::Shared { last, .. }) if packet.follows(&batch[*last]) => {
                            *last = i;
                        }
                        _ => pieces.push(Piece::Shared { first: i, last: i }),
                    }
                }
                Delivery::Interleaved { rtp, .. } => {
                    let Ok(len) = u16::try_from(data.len()) else {
                        continue;
                    };
                    let start = out.len();
                    out.reserve(4 + data.len());
                    out.put_u8(b'$');
                    out.put_u8(rtp);
                    out.put_u16(len);
                    out.put_slice(data);
                    match pieces.last_mut() {
                        Some(Piece::Copied { end, .. }) if *end == start => *end = out.len(),
                        _ => pieces.push(Piece::Copied {
                            start,
                            end: out.len(),
                        }),
                    }
                }
                Delivery::Udp { rtp_port, .. } => {
                    let Some(udp) = &self.shared.udp else {
                        continue;
                    };
                    let to = SocketAddr::new(client_ip(self.peer.ip()), rtp_port);
                    // A UDP send error (an ICMP unreachable from a client that left) is not
                    // fatal: the session timeout ends it.
                    let _ = udp.rtp.send_to(data, to).await;
                }
            }
        }
        // The server's counters are shared by every connection: once per batch.
        let stats = &self.shared.stats;
        stats
            .packets_sent
            .fetch_add(sent.packets, Ordering::Relaxed);
        stats.bytes_sent.fetch_add(sent.bytes, Ordering::Relaxed);
        // At most one piece per packet, and a batch is at most PACKETS_PER_FLUSH packets.
        let mut slices = [IoSlice::new(&[]); PACKETS_PER_FLUSH];
        for (slot, piece) in slices.iter_mut().zip(pieces.iter()) {
            *slot = match *piece {
                Piece::Shared { first, last } => {
                    let (buffer, from) = batch[first].framed();
                    IoSlice::new(&buffer[from.start..batch[last].framed().1.end])
                }
                Piece::Copied { start, end } => IoSlice::new(&out[start..end]),
            };
        }
        let n = pieces.len().min(PACKETS_PER_FLUSH);
        let written = self
            .write_within_timeout(write_all_vectored(writer, &mut slices[..n]))
            .await;
        // `out` also carries responses: nothing of this batch may stay in it.
        out.clear();
        written
    }

    /// Runs a write on the client's socket, failing if it cannot finish within the session
    /// timeout: a client that takes nothing for that long has stopped reading or vanished
    /// without closing (its requests and RTCP cannot be read while the write waits).
    async fn write_within_timeout(
        &self,
        write: impl Future<Output = std::io::Result<()>>,
    ) -> Result<(), ()> {
        match tokio::time::timeout(self.shared.config.session_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(()),
            Err(_) => {
                tracing::debug!("RTSP client took nothing for the session timeout");
                Err(())
            }
        }
    }
}

/// Where one slice of a batch's write comes from.
#[derive(Debug, Clone, Copy)]
enum Piece {
    /// Packets `first..=last` of the batch, back to back in one camera buffer, already framed:
    /// from the first one's framing to the last one's end.
    Shared { first: usize, last: usize },
    /// `start..end` of the connection's own buffer (packets framed for other channels).
    Copied { start: usize, end: usize },
}

/// Writes all of `slices`, as few system calls as the socket allows.
async fn write_all_vectored(
    writer: &mut OwnedWriteHalf,
    mut slices: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = writer.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// What one batch sent, for the server's counters.
#[derive(Debug, Default)]
struct Sent {
    packets: u64,
    bytes: u64,
}

fn client_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn bad(parsed: &Parsed, reason: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::BadRequest,
        cseq: Some(parsed.cseq),
        reason,
    }
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Describe => "DESCRIBE".into(),
        Method::GetParameter => "GET_PARAMETER".into(),
        Method::Options => "OPTIONS".into(),
        Method::Pause => "PAUSE".into(),
        Method::Play => "PLAY".into(),
        Method::PlayNotify => "PLAY_NOTIFY".into(),
        Method::Redirect => "REDIRECT".into(),
        Method::Setup => "SETUP".into(),
        Method::SetParameter => "SET_PARAMETER".into(),
        Method::Announce => "ANNOUNCE".into(),
        Method::Record => "RECORD".into(),
        Method::Teardown => "TEARDOWN".into(),
        Method::Extension(name) => name.clone(),
    }
}

/// Writes `response`, with one `WWW-Authenticate` line per challenge added to its head.
fn write_response(out: &mut BytesMut, response: &Response<Vec<u8>>, challenges: &[String]) {
    let mut bytes = Vec::with_capacity(256 + response.body().len());
    if response.write(&mut bytes).is_err() {
        return;
    }
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |at| at + 2);
    out.extend_from_slice(&bytes[..head_end]);
    for challenge in challenges {
        // The server's own text; a line break would end the head early.
        if !challenge.contains(['\r', '\n']) {
            out.extend_from_slice(format!("WWW-Authenticate: {challenge}\r\n").as_bytes());
        }
    }
    out.extend_from_slice(&bytes[head_end..]);
}

async fn next_packet(session: &mut Option<Session>) -> Option<Packet> {
    match session.as_mut().and_then(|s| s.playing.as_mut()) {
        Some(sub) => sub.recv().await,
        None => std::future::pending().await,
    }
}

fn try_next_packet(session: &mut Option<Session>) -> Option<Packet> {
    session
        .as_mut()
        .and_then(|s| s.playing.as_mut())
        .and_then(Subscriber::try_recv)
}
