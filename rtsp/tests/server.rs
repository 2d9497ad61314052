//! The RTSP server at the protocol level, against streams the test feeds: every method clients
//! use, both transports, the session and connection timeouts, the limits, authentication and
//! malformed input. Real clients (ffmpeg, GStreamer) play through the whole relay in the
//! workspace's tests; these pin down the server's answers themselves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use camrelay_rtsp::aac::AudioConfig;
use camrelay_rtsp::auth::{Authenticator, User};
use camrelay_rtsp::bus::{Bus, MAX_GOP_BYTES, RING_CAPACITY, Subscriber};
use camrelay_rtsp::media::{AAC_PAYLOAD_TYPE, Codec, H264_PAYLOAD_TYPE, MediaDescription, Track};
use camrelay_rtsp::rtp::{Packet, RTP_HEADER_LEN};
use camrelay_rtsp::server::{
    BoxFuture, Mounts, OpenError, Server, ServerConfig, Source, UdpSockets,
};
use md5::{Digest, Md5};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bound on every wait for the server: generous, never reached when it works.
const PATIENCE: Duration = Duration::from_secs(10);
/// Between two synthetic frames (one video and one audio packet each).
const FRAME_INTERVAL: Duration = Duration::from_millis(5);
/// Every this many frames is a keyframe.
const GOP: u64 = 10;
/// The session timeout of the timeout tests: short, so that they take a few seconds, and far
/// above [`KEEPALIVE_INTERVAL`], so that a loaded machine does not miss a keepalive.
const SHORT_TIMEOUT: Duration = Duration::from_millis(800);
/// How often the clients that keep their session alive do so in the timeout tests.
const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(150);
/// How long an on-demand open may take in these tests before 503.
const OPEN_TIMEOUT: Duration = Duration::from_millis(300);
/// Payload bytes of a packet of `/heavy`; the other streams' packets carry 40.
const HEAVY_PAYLOAD: usize = 1300;
/// Realm and user of the authentication test.
const REALM: &str = "camrelay";
const USER: &str = "viewer";
const PASSWORD: &str = "pa:ss w0rd";

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: nothing within {PATIENCE:?}"),
    }
}

// ------------------------------------------------------------------------ the streams

/// A stream the test feeds with synthetic frames.
struct TestStream {
    description: MediaDescription,
    bus: Bus<Packet>,
    /// Packets published so far.
    published: AtomicU64,
}

impl Source for TestStream {
    fn name(&self) -> String {
        "test".into()
    }

    fn description(&self) -> MediaDescription {
        self.description.clone()
    }

    fn subscribe(&self) -> Subscriber<Packet> {
        self.bus.subscribe()
    }
}

fn description() -> MediaDescription {
    let video = Bytes::from_static(include_bytes!("../../sim/fixtures/camera.h264"));
    let nals = camrelay_rtsp::h264::nal_units_shared(&video);
    MediaDescription {
        tracks: vec![
            Track {
                codec: Codec::h264(nals[1].clone(), nals[2].clone()).unwrap(),
                ssrc: 0x1111,
            },
            Track {
                codec: Codec::Aac(AudioConfig::new(2, 48_000, 1).unwrap()),
                ssrc: 0x2222,
            },
        ],
    }
}

/// One RTP packet: video carries an IDR (5) or non-IDR (1) NAL header byte, so a client can
/// tell keyframes.
fn rtp(track: usize, seq: u16, timestamp: u32, keyframe: bool, payload: usize) -> Packet {
    let payload_type = if track == 0 {
        H264_PAYLOAD_TYPE
    } else {
        AAC_PAYLOAD_TYPE
    };
    let mut data = vec![0x80, 0x80 | payload_type];
    data.extend(seq.to_be_bytes());
    data.extend(timestamp.to_be_bytes());
    data.extend((track as u32 + 1).to_be_bytes());
    data.push(if keyframe { 0x65 } else { 0x41 });
    data.resize(data.len() + payload, 0);
    Packet::new(track, &data, keyframe).unwrap()
}

async fn feed(stream: Arc<TestStream>, payload: usize, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(FRAME_INTERVAL);
    for frame in 0u64.. {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let seq = frame as u16;
        let timestamp = (frame * 3000) as u32;
        let keyframe = frame % GOP == 0;
        stream
            .bus
            .publish(rtp(0, seq, timestamp, keyframe, payload));
        stream.bus.publish(rtp(1, seq, timestamp, false, payload));
        stream.published.fetch_add(2, Ordering::Relaxed);
    }
}

/// `/a`, `/b`, `/c` and `/heavy` are streams; `/busy` is refused as the relay refuses a camera the API
/// budget cannot start; `/slow` never starts.
struct TestMounts {
    streams: HashMap<String, Arc<TestStream>>,
}

impl Mounts for TestMounts {
    fn open(
        &self,
        path: &str,
        _query: Option<&str>,
    ) -> BoxFuture<Result<Arc<dyn Source>, OpenError>> {
        let result = match path {
            "/busy" => Err(OpenError::Unavailable {
                reason: "the API budget is full".into(),
                retry_after: Some(Duration::from_secs(7)),
            }),
            "/slow" => return Box::pin(std::future::pending()),
            path => match self.streams.get(path) {
                Some(stream) => Ok(Arc::clone(stream) as Arc<dyn Source>),
                None => Err(OpenError::NotFound),
            },
        };
        Box::pin(std::future::ready(result))
    }
}

struct Harness {
    server: Server,
    /// Where clients connect: the listener's address, or loopback when it listens on all.
    addr: SocketAddr,
    streams: HashMap<String, Arc<TestStream>>,
    shutdown: CancellationToken,
}

impl Harness {
    async fn start(config: ServerConfig) -> Self {
        Self::start_on(config, "127.0.0.1:0", "127.0.0.1:0").await
    }

    /// Listens for RTSP on `tcp` and sends and receives RTP and RTCP on `udp` (port 0 each).
    async fn start_on(config: ServerConfig, tcp: &str, udp: &str) -> Self {
        let shutdown = CancellationToken::new();
        let mut streams = HashMap::new();
        for path in ["/a", "/b", "/c", "/heavy"] {
            let stream = Arc::new(TestStream {
                description: description(),
                bus: Bus::new(RING_CAPACITY, MAX_GOP_BYTES),
                published: AtomicU64::new(0),
            });
            let payload = if path == "/heavy" { HEAVY_PAYLOAD } else { 40 };
            tokio::spawn(feed(Arc::clone(&stream), payload, shutdown.clone()));
            streams.insert(path.to_owned(), stream);
        }
        let udp = UdpSockets {
            rtp: UdpSocket::bind(udp).await.unwrap(),
            rtcp: UdpSocket::bind(udp).await.unwrap(),
        };
        let server = Server::start(
            TcpListener::bind(tcp).await.unwrap(),
            Some(udp),
            Arc::new(TestMounts {
                streams: streams.clone(),
            }),
            ServerConfig {
                open_timeout: OPEN_TIMEOUT,
                ..config
            },
            shutdown.clone(),
        )
        .unwrap();
        let mut addr = server.local_addr();
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        Self {
            server,
            addr,
            streams,
            shutdown,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("rtsp://{}{path}", self.addr)
    }

    async fn connect(&self) -> Client {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (reader, writer) = stream.into_split();
        Client {
            reader: BufReader::new(reader),
            writer,
            cseq: 0,
        }
    }

    fn sessions_open(&self) -> usize {
        self.server.stats().sessions_open.load(Ordering::Relaxed)
    }

    /// Waits until stream `path` has published `more` packets beyond what it has now.
    async fn published(&self, path: &str, more: u64) {
        let stream = &self.streams[path];
        let target = stream.published.load(Ordering::Relaxed) + more;
        within("the stream publishes", async {
            while stream.published.load(Ordering::Relaxed) < target {
                tokio::time::sleep(FRAME_INTERVAL).await;
            }
        })
        .await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

// ------------------------------------------------------------------------ the client

/// A response, and how many interleaved frames came before it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    frames_before: usize,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The session id (without its timeout parameter).
    fn session(&self) -> String {
        let value = self.header("Session").expect("a Session header");
        value.split(';').next().unwrap().to_owned()
    }
}

/// An interleaved frame: its channel and bytes.
struct Frame {
    channel: u8,
    data: Vec<u8>,
}

impl Frame {
    fn payload_type(&self) -> u8 {
        self.data[1] & 0x7f
    }

    fn is_keyframe(&self) -> bool {
        self.payload_type() == H264_PAYLOAD_TYPE && self.data[RTP_HEADER_LEN] & 0x1f == 5
    }
}

enum Incoming {
    Frame(Frame),
    Reply(Reply),
    Closed,
}

struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    cseq: u32,
}

impl Client {
    /// Sends `method url` with the next CSeq and `headers`, and returns the response.
    async fn request(&mut self, method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.cseq += 1;
        let mut text = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        self.send(text.as_bytes()).await;
        let reply = self.reply().await;
        assert_eq!(
            reply.header("CSeq"),
            Some(self.cseq.to_string().as_str()),
            "{method}: the CSeq is echoed"
        );
        reply
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// The next response, skipping (and counting) interleaved frames before it.
    async fn reply(&mut self) -> Reply {
        let mut frames = 0;
        loop {
            match within("a response", self.next()).await {
                Incoming::Frame(_) => frames += 1,
                Incoming::Reply(mut reply) => {
                    reply.frames_before = frames;
                    return reply;
                }
                Incoming::Closed => panic!("the connection closed before a response"),
            }
        }
    }

    /// The next interleaved frame; a response or the end of the connection fails the test.
    async fn frame(&mut self) -> Frame {
        match within("an interleaved frame", self.next()).await {
            Incoming::Frame(frame) => frame,
            Incoming::Reply(reply) => panic!("a response instead of a frame: {reply:?}"),
            Incoming::Closed => panic!("the connection closed"),
        }
    }

    /// Reads (and drops) frames until the server closes the connection; a response fails the
    /// test.
    async fn until_closed(&mut self) {
        within("the server closes the connection", async {
            loop {
                match self.next().await {
                    Incoming::Frame(_) => {}
                    Incoming::Reply(reply) => panic!("a response instead of the end: {reply:?}"),
                    Incoming::Closed => return,
                }
            }
        })
        .await;
    }

    async fn next(&mut self) -> Incoming {
        let first = match self.reader.fill_buf().await {
            Ok([]) | Err(_) => return Incoming::Closed,
            Ok(buf) => buf[0],
        };
        if first == b'$' {
            let mut prefix = [0u8; 4];
            self.reader.read_exact(&mut prefix).await.unwrap();
            let mut data = vec![0; usize::from(u16::from_be_bytes([prefix[2], prefix[3]]))];
            self.reader.read_exact(&mut data).await.unwrap();
            return Incoming::Frame(Frame {
                channel: prefix[1],
                data,
            });
        }
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).await.unwrap();
        let status = status_line
            .strip_prefix("RTSP/1.0 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header line");
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
            frames_before: 0,
        };
        let length = reply
            .header("Content-Length")
            .map_or(0, |n| n.parse().unwrap());
        reply.body = vec![0; length];
        self.reader.read_exact(&mut reply.body).await.unwrap();
        Incoming::Reply(reply)
    }

    /// SETUP of track `track` of `url` over TCP on its usual channels (`2 * track` and the
    /// next), in `session` if given.
    async fn setup_track(&mut self, url: &str, track: u8, session: Option<&str>) -> Reply {
        let transport = format!(
            "RTP/AVP/TCP;unicast;interleaved={}-{}",
            2 * track,
            2 * track + 1
        );
        let mut headers = vec![("Transport", transport.as_str())];
        if let Some(session) = session {
            headers.push(("Session", session));
        }
        self.request("SETUP", &format!("{url}/trackID={track}"), &headers)
            .await
    }

    /// SETUP of both tracks of `url` over TCP on channels 0-1 and 2-3;
    /// returns the session id.
    async fn setup_tcp(&mut self, url: &str) -> String {
        let video = self.setup_track(url, 0, None).await;
        assert_eq!(video.status, 200, "{video:?}");
        let session = video.session();
        let audio = self.setup_track(url, 1, Some(&session)).await;
        assert_eq!(audio.status, 200, "{audio:?}");
        assert_eq!(audio.session(), session);
        session
    }

    async fn play(&mut self, url: &str, session: &str) -> Reply {
        let reply = self.request("PLAY", url, &[("Session", session)]).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply
    }

    /// SETUP of `url`'s video track over UDP to two fresh loopback ports, then PLAY; returns
    /// the session id and the client's RTP and RTCP sockets.
    async fn play_video_over_udp(&mut self, url: &str) -> (String, UdpSocket, UdpSocket) {
        let (rtp, rtcp, ports) = udp_client_ports().await;
        let transport = format!("RTP/AVP;unicast;client_port={ports}");
        let setup = self
            .request(
                "SETUP",
                &format!("{url}/trackID=0"),
                &[("Transport", &transport)],
            )
            .await;
        assert_eq!(setup.status, 200, "{setup:?}");
        let session = setup.session();
        self.play(url, &session).await;
        (session, rtp, rtcp)
    }
}

/// A UDP client's RTP and RTCP sockets on fresh loopback ports, and their `client_port`
/// value (`rtp-rtcp`).
async fn udp_client_ports() -> (UdpSocket, UdpSocket, String) {
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ports = format!(
        "{}-{}",
        rtp.local_addr().unwrap().port(),
        rtcp.local_addr().unwrap().port()
    );
    (rtp, rtcp, ports)
}

/// Sends empty RTCP receiver reports (RFC 3550 §6.4.2) from `rtcp` to the server's RTCP port
/// on loopback until `until`, and nothing else.
async fn send_udp_rtcp_until(rtcp: &UdpSocket, server_rtcp: u16, until: Instant) {
    let report = [0x80, 201, 0, 1, 0, 0, 0, 1];
    while Instant::now() < until {
        rtcp.send_to(&report, ("127.0.0.1", server_rtcp))
            .await
            .unwrap();
        tokio::time::sleep(KEEPALIVE_INTERVAL).await;
    }
}

// ------------------------------------------------------------------------ the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_and_describe_answer_and_unknown_or_unavailable_streams_are_refused() {
    let harness = Harness::start(ServerConfig::default()).await;
    let url = harness.url("/a");
    let mut client = harness.connect().await;

    let options = client.request("OPTIONS", "*", &[]).await;
    assert_eq!(options.status, 200);
    let public = options.header("Public").unwrap();
    for method in [
        "OPTIONS",
        "DESCRIBE",
        "SETUP",
        "PLAY",
        "PAUSE",
        "TEARDOWN",
        "GET_PARAMETER",
    ] {
        assert!(public.contains(method), "{public}");
    }
    assert!(options.header("Server").unwrap().starts_with("camrelay/"));

    let describe = client.request("DESCRIBE", &url, &[]).await;
    assert_eq!(describe.status, 200, "{describe:?}");
    assert_eq!(describe.header("Content-Type"), Some("application/sdp"));
    assert_eq!(
        describe.header("Content-Base"),
        Some(format!("{url}/").as_str())
    );
    let sdp = String::from_utf8(describe.body.clone()).unwrap();
    for line in [
        "m=video 0 RTP/AVP 96",
        "a=control:trackID=0",
        "m=audio 0 RTP/AVP 97",
        "a=control:trackID=1",
    ] {
        assert!(sdp.contains(line), "{sdp}");
    }

    let missing = client.request("DESCRIBE", &harness.url("/nope"), &[]).await;
    assert_eq!(missing.status, 404);

    // What an RTSP client of a Nest camera sees when the API budget is full.
    let busy = client.request("DESCRIBE", &harness.url("/busy"), &[]).await;
    assert_eq!(busy.status, 503);
    assert_eq!(busy.header("Retry-After"), Some("7"));

    // A camera that does not start in time is a 503 after the open timeout, not a hang.
    let started = Instant::now();
    let slow = client.request("DESCRIBE", &harness.url("/slow"), &[]).await;
    assert_eq!(slow.status, 503);
    assert!(started.elapsed() >= OPEN_TIMEOUT, "{:?}", started.elapsed());

    // None of it closed the connection.
    assert_eq!(client.request("OPTIONS", "*", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_pause_play_and_teardown_over_tcp() {
    let harness = Harness::start(ServerConfig::default()).await;
    let url = harness.url("/a");
    // A keyframe is cached, so PLAY can tell where the client starts.
    harness.published("/a", 2).await;
    let mut client = harness.connect().await;
    assert_eq!(client.request("DESCRIBE", &url, &[]).await.status, 200);

    let video = client.setup_track(&url, 0, None).await;
    assert_eq!(video.status, 200, "{video:?}");
    let session_header = video.header("Session").unwrap();
    assert!(session_header.ends_with(";timeout=60"), "{session_header}");
    let transport = video.header("Transport").unwrap();
    assert!(transport.contains("interleaved=0-1"), "{transport}");
    assert!(transport.contains("ssrc=00001111"), "{transport}");
    let session = video.session();
    let audio = client.setup_track(&url, 1, Some(&session)).await;
    assert_eq!(audio.status, 200, "{audio:?}");
    assert_eq!(harness.sessions_open(), 1);

    let play = client.play(&url, &session).await;
    assert_eq!(play.header("Range"), Some("npt=0.000-"));
    let rtp_info = play.header("RTP-Info").unwrap();
    assert!(
        rtp_info.contains(&format!("url={url}/trackID=0;seq=")),
        "{rtp_info}"
    );
    assert!(rtp_info.contains("rtptime="), "{rtp_info}");

    // A new client starts on a keyframe, and each channel carries its own track.
    let first = client.frame().await;
    assert_eq!(first.channel, 0);
    assert!(first.is_keyframe(), "the first packet is a keyframe");
    for _ in 0..50 {
        let frame = client.frame().await;
        let want = match frame.channel {
            0 => H264_PAYLOAD_TYPE,
            2 => AAC_PAYLOAD_TYPE,
            other => panic!("a frame on channel {other}"),
        };
        assert_eq!(frame.data[0] >> 6, 2, "RTP version 2");
        assert_eq!(frame.payload_type(), want);
    }

    // Paused: once the answer is out, nothing more is sent although the stream goes on.
    let pause = client
        .request("PAUSE", &url, &[("Session", &session)])
        .await;
    assert_eq!(pause.status, 200);
    harness.published("/a", 40).await;
    let alive = client
        .request("GET_PARAMETER", &url, &[("Session", &session)])
        .await;
    assert_eq!(alive.status, 200);
    assert_eq!(alive.frames_before, 0, "no packet after PAUSE");

    // Playing again starts on a keyframe again.
    client.play(&url, &session).await;
    let first = client.frame().await;
    assert!(
        first.is_keyframe(),
        "after PAUSE, play resumes on a keyframe"
    );

    let teardown = client
        .request("TEARDOWN", &url, &[("Session", &session)])
        .await;
    assert_eq!(teardown.status, 200);
    assert_eq!(harness.sessions_open(), 0);
    // The session is gone; the connection stays and sends nothing more.
    let after = client.request("PLAY", &url, &[("Session", &session)]).await;
    assert_eq!(after.status, 454, "{after:?}");
    assert_eq!(after.frames_before, 0);
    assert_eq!(client.request("OPTIONS", "*", &[]).await.status, 200);
    assert_eq!(harness.server.stats().sessions.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_delivery_sends_each_track_to_its_client_ports() {
    let harness = Harness::start(ServerConfig::default()).await;
    let url = harness.url("/b");
    let (server_rtp, server_rtcp) = harness.server.udp_ports().unwrap();
    let mut client = harness.connect().await;
    let mut sockets = Vec::new();
    let mut session = String::new();
    for track in 0..2 {
        let (rtp, _rtcp, ports) = udp_client_ports().await;
        let transport = format!("RTP/AVP;unicast;client_port={ports}");
        let mut headers = vec![("Transport", transport.as_str())];
        if !session.is_empty() {
            headers.push(("Session", &session));
        }
        let setup = client
            .request("SETUP", &format!("{url}/trackID={track}"), &headers)
            .await;
        assert_eq!(setup.status, 200, "{setup:?}");
        let answer = setup.header("Transport").unwrap();
        assert!(answer.contains(&format!("client_port={ports}")), "{answer}");
        assert!(
            answer.contains(&format!("server_port={server_rtp}-{server_rtcp}")),
            "{answer}"
        );
        session = setup.session();
        sockets.push(rtp);
    }
    client.play(&url, &session).await;

    let mut buf = [0u8; 1500];
    for (track, socket) in sockets.iter().enumerate() {
        let (len, from) = within("RTP over UDP", socket.recv_from(&mut buf))
            .await
            .unwrap();
        assert_eq!(
            from.port(),
            server_rtp,
            "RTP comes from the server's RTP port"
        );
        let want = [H264_PAYLOAD_TYPE, AAC_PAYLOAD_TYPE][track];
        assert!(len > RTP_HEADER_LEN);
        assert_eq!(buf[1] & 0x7f, want, "track {track} on its own ports");
        if track == 0 {
            assert_eq!(buf[RTP_HEADER_LEN] & 0x1f, 5, "video starts on a keyframe");
        }
    }
    // Nothing goes over the connection itself.
    let alive = client
        .request("GET_PARAMETER", &url, &[("Session", &session)])
        .await;
    assert_eq!(alive.status, 200);
    assert_eq!(alive.frames_before, 0);
}

/// A server listening on all addresses of both families sees an IPv4 client's TCP connection as
/// v4-mapped IPv6 (`::ffff:127.0.0.1`), and a UDP socket of the other family sees its datagrams
/// the other way round. Either way the client's RTP reaches it and its RTCP over UDP keeps its
/// session alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_clients_of_a_dual_stack_server_are_recognised_by_their_rtcp() {
    if std::net::UdpSocket::bind("[::]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 sockets");
        return;
    }
    for (tcp, udp) in [("[::]:0", "127.0.0.1:0"), ("127.0.0.1:0", "[::]:0")] {
        let harness = Harness::start_on(
            ServerConfig {
                session_timeout: SHORT_TIMEOUT,
                ..ServerConfig::default()
            },
            tcp,
            udp,
        )
        .await;
        let url = harness.url("/a");
        let (_, server_rtcp) = harness.server.udp_ports().unwrap();
        let mut client = harness.connect().await;
        let (session, rtp, rtcp) = client.play_video_over_udp(&url).await;
        let mut buf = [0u8; 1500];
        let (len, _) = within("RTP over UDP", rtp.recv_from(&mut buf))
            .await
            .unwrap();
        assert!(len > RTP_HEADER_LEN, "TCP on {tcp}, UDP on {udp}");

        // RTCP receiver reports only, for three timeouts.
        send_udp_rtcp_until(&rtcp, server_rtcp, Instant::now() + SHORT_TIMEOUT * 3).await;
        let reply = client
            .request("GET_PARAMETER", &url, &[("Session", &session)])
            .await;
        assert_eq!(reply.status, 200, "TCP on {tcp}, UDP on {udp}: {reply:?}");
        assert_eq!(harness.sessions_open(), 1);
    }
}

/// Keeps `client`'s session alive with GET_PARAMETER naming it until `until`, or with OPTIONS
/// that does not, reading what it is sent.
async fn keep_alive_with_requests(client: &mut Client, url: &str, session: &str, until: Instant) {
    while Instant::now() < until {
        let reply = if session.is_empty() {
            client.request("OPTIONS", "*", &[]).await
        } else {
            client
                .request("GET_PARAMETER", url, &[("Session", session)])
                .await
        };
        assert_eq!(reply.status, 200, "{reply:?}");
        tokio::time::sleep(KEEPALIVE_INTERVAL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sessions_and_connections_time_out_and_keepalives_hold_them() {
    let harness = Harness::start(ServerConfig {
        session_timeout: SHORT_TIMEOUT,
        ..ServerConfig::default()
    })
    .await;
    let url = harness.url("/a");
    let until = Instant::now() + SHORT_TIMEOUT * 3;

    // Kept alive with GET_PARAMETER (VLC, GStreamer).
    let mut by_request = harness.connect().await;
    let session = by_request.setup_tcp(&url).await;
    by_request.play(&url, &session).await;
    let requests = {
        let url = url.clone();
        tokio::spawn(async move {
            keep_alive_with_requests(&mut by_request, &url, &session, until).await;
            (by_request, session)
        })
    };

    // Kept alive with OPTIONS that names no session (some clients' keepalive).
    let mut by_options = harness.connect().await;
    let options_session = by_options.setup_tcp(&url).await;
    by_options.play(&url, &options_session).await;
    let options = {
        let url = url.clone();
        tokio::spawn(async move {
            keep_alive_with_requests(&mut by_options, &url, "", until).await;
            (by_options, options_session)
        })
    };

    // Kept alive with RTCP receiver reports on its interleaved RTCP channel (ffmpeg).
    let mut by_rtcp = harness.connect().await;
    let rtcp_session = by_rtcp.setup_tcp(&url).await;
    by_rtcp.play(&url, &rtcp_session).await;
    let interleaved_rtcp = tokio::spawn(async move {
        // An empty receiver report (RFC 3550 §6.4.2), on channel 1.
        // What it is sent meanwhile waits in its socket (a few dozen KiB), read below.
        let report = [b'$', 1, 0, 8, 0x80, 201, 0, 1, 0, 0, 0, 1];
        while Instant::now() < until {
            by_rtcp.send(&report).await;
            tokio::time::sleep(KEEPALIVE_INTERVAL).await;
        }
        (by_rtcp, rtcp_session)
    });

    // Kept alive with RTCP over UDP, and no request at all.
    let mut by_udp = harness.connect().await;
    let (udp_session, rtp, rtcp) = by_udp.play_video_over_udp(&url).await;
    let (_, server_rtcp) = harness.server.udp_ports().unwrap();
    let udp_rtcp = tokio::spawn(async move {
        send_udp_rtcp_until(&rtcp, server_rtcp, until).await;
        (by_udp, udp_session, rtp)
    });

    // Silent: a player that stops sending anything, a client that only described a stream
    // (which keeps the stream wanted), and a connection that never says a word.
    let mut silent = harness.connect().await;
    let silent_session = silent.setup_tcp(&url).await;
    silent.play(&url, &silent_session).await;
    let silent_since = Instant::now();
    let mut described = harness.connect().await;
    assert_eq!(described.request("DESCRIBE", &url, &[]).await.status, 200);
    let described_since = Instant::now();
    let mut mute = harness.connect().await;
    let mute_since = Instant::now();

    silent.until_closed().await;
    let slack = Duration::from_millis(100);
    assert!(silent_since.elapsed() + slack >= SHORT_TIMEOUT);
    described.until_closed().await;
    assert!(described_since.elapsed() + slack >= SHORT_TIMEOUT);
    mute.until_closed().await;
    assert!(mute_since.elapsed() + slack >= SHORT_TIMEOUT);

    // The others outlived three timeouts and still have their sessions.
    let (mut by_request, session) = within("keepalives", requests).await.unwrap();
    let (mut by_options, options_session) = within("OPTIONS", options).await.unwrap();
    let (mut by_rtcp, rtcp_session) = within("RTCP", interleaved_rtcp).await.unwrap();
    let (mut by_udp, udp_session, _rtp) = within("UDP RTCP", udp_rtcp).await.unwrap();
    for (client, session) in [
        (&mut by_request, &session),
        (&mut by_options, &options_session),
        (&mut by_rtcp, &rtcp_session),
        (&mut by_udp, &udp_session),
    ] {
        let reply = client
            .request("GET_PARAMETER", &url, &[("Session", session)])
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    assert_eq!(harness.sessions_open(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_after_the_session_timeout() {
    // Alive but taking nothing (a hung or stopped player): the server's write waits on its
    // full socket, where neither its requests nor the session timer can be seen; the wait
    // itself is bounded.
    let harness = Harness::start(ServerConfig {
        session_timeout: SHORT_TIMEOUT,
        ..ServerConfig::default()
    })
    .await;
    let url = harness.url("/heavy");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(harness.server.local_addr()).await.unwrap();
    let (reader, writer) = stream.into_split();
    let mut client = Client {
        reader: BufReader::new(reader),
        writer,
        cseq: 0,
    };
    let session = client.setup_tcp(&url).await;
    client.play(&url, &session).await;
    assert_eq!(harness.sessions_open(), 1);
    // It keeps asking, but never reads again.
    let keepalive =
        format!("GET_PARAMETER {url} RTSP/1.0\r\nCSeq: 9\r\nSession: {session}\r\n\r\n");
    let asking = tokio::spawn(async move {
        loop {
            if client.writer.write_all(keepalive.as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(KEEPALIVE_INTERVAL).await;
        }
    });
    within("the stalled session ends", async {
        while harness.sessions_open() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    asking.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_limits_per_stream_and_in_all_answer_453_and_free_up() {
    let harness = Harness::start(ServerConfig {
        max_sessions: 3,
        max_sessions_per_stream: 2,
        ..ServerConfig::default()
    })
    .await;
    async fn setup(client: &mut Client, harness: &Harness, path: &str) -> Reply {
        client.setup_track(&harness.url(path), 0, None).await
    }
    let mut first = harness.connect().await;
    let mut second = harness.connect().await;
    let mut third = harness.connect().await;
    let mut fourth = harness.connect().await;
    let first_session = setup(&mut first, &harness, "/a").await;
    assert_eq!(first_session.status, 200);
    assert_eq!(setup(&mut second, &harness, "/a").await.status, 200);
    // Two on /a already.
    assert_eq!(setup(&mut third, &harness, "/a").await.status, 453);
    assert_eq!(setup(&mut third, &harness, "/b").await.status, 200);
    // Three in all.
    assert_eq!(setup(&mut fourth, &harness, "/c").await.status, 453);
    assert_eq!(
        harness.server.stats().refused_limit.load(Ordering::Relaxed),
        2
    );

    // A TEARDOWN frees its place at once.
    let teardown = first
        .request(
            "TEARDOWN",
            &harness.url("/a"),
            &[("Session", &first_session.session())],
        )
        .await;
    assert_eq!(teardown.status, 200);
    assert_eq!(setup(&mut fourth, &harness, "/c").await.status, 200);

    // So does a client that just closes its connection.
    drop(second);
    within("the closed connection's session ends", async {
        while harness.sessions_open() > 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(setup(&mut first, &harness, "/a").await.status, 200);
}

/// The `Digest` response of RFC 2617 with `qop=auth`.
fn digest(method: &str, uri: &str, nonce: &str, password: &str) -> String {
    let md5 = |text: String| {
        Md5::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let ha1 = md5(format!("{USER}:{REALM}:{password}"));
    let ha2 = md5(format!("{method}:{uri}"));
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let response = md5(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Digest username=\"{USER}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\", algorithm=MD5"
    )
}

fn basic(password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    format!("Basic {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_authenticate_with_basic_or_digest() {
    let harness = Harness::start(ServerConfig {
        auth: Some(Arc::new(Authenticator::new(
            REALM,
            vec![User {
                name: USER.into(),
                password: SecretString::from(PASSWORD.to_owned()),
            }],
        ))),
        ..ServerConfig::default()
    })
    .await;
    let url = harness.url("/a");
    let mut client = harness.connect().await;

    // OPTIONS needs no credentials (clients ask before they know they need any).
    assert_eq!(client.request("OPTIONS", "*", &[]).await.status, 200);
    let challenge = client.request("DESCRIBE", &url, &[]).await;
    assert_eq!(challenge.status, 401);
    let offers = challenge.all("WWW-Authenticate");
    assert_eq!(offers.len(), 2, "{offers:?}");
    let digest_offer = offers
        .iter()
        .find(|o| o.starts_with("Digest "))
        .expect("a Digest challenge");
    assert!(digest_offer.contains(&format!("realm=\"{REALM}\"")));
    assert!(digest_offer.contains("qop=\"auth\""));
    assert!(offers.contains(&format!("Basic realm=\"{REALM}\"").as_str()));
    let nonce = digest_offer
        .split("nonce=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();

    let wrong = basic("guess");
    let refused = client
        .request("DESCRIBE", &url, &[("Authorization", &wrong)])
        .await;
    assert_eq!(refused.status, 401);
    let right = basic(PASSWORD);
    let basic_ok = client
        .request("DESCRIBE", &url, &[("Authorization", &right)])
        .await;
    assert_eq!(basic_ok.status, 200, "{basic_ok:?}");

    let mut client = harness.connect().await;
    let wrong = digest("DESCRIBE", &url, &nonce, "guess");
    let refused = client
        .request("DESCRIBE", &url, &[("Authorization", &wrong)])
        .await;
    assert_eq!(refused.status, 401);
    let right = digest("DESCRIBE", &url, &nonce, PASSWORD);
    let digest_ok = client
        .request("DESCRIBE", &url, &[("Authorization", &right)])
        .await;
    assert_eq!(digest_ok.status, 200, "{digest_ok:?}");
    // Each request carries its own response, for its own method.
    let track = format!("{url}/trackID=0");
    let setup = client
        .request(
            "SETUP",
            &track,
            &[
                ("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1"),
                ("Authorization", &digest("SETUP", &track, &nonce, PASSWORD)),
            ],
        )
        .await;
    assert_eq!(setup.status, 200, "{setup:?}");
    let replayed = client
        .request(
            "PLAY",
            &url,
            &[("Session", &setup.session()), ("Authorization", &right)],
        )
        .await;
    assert_eq!(
        replayed.status, 401,
        "DESCRIBE's response does not let PLAY in"
    );

    assert_eq!(
        harness.server.stats().unauthorized.load(Ordering::Relaxed),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_answered_and_never_stop_the_server() {
    let harness = Harness::start(ServerConfig::default()).await;
    let url = harness.url("/a");

    // Answered, and the connection serves on.
    let mut client = harness.connect().await;
    client.send(b"OPTIONS * RTSP/1.0\r\n\r\n").await;
    let reply = client.reply().await;
    assert_eq!(reply.status, 400, "no CSeq: {reply:?}");
    client
        .send(format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 99999999999\r\n\r\n").as_bytes())
        .await;
    assert_eq!(client.reply().await.status, 400, "a CSeq out of range");
    let record = client.request("RECORD", &url, &[]).await;
    assert_eq!(record.status, 405);
    assert!(record.header("Allow").unwrap().contains("DESCRIBE"));
    let http = client
        .request("DESCRIBE", "http://example.com/a", &[])
        .await;
    assert_eq!(http.status, 400, "not an rtsp URL");
    let track = format!("{url}/trackID=0");
    for transport in [
        "RTP/AVP;multicast",
        "RTP/SAVP/TCP;interleaved=0-1",
        "nonsense",
    ] {
        let setup = client
            .request("SETUP", &track, &[("Transport", transport)])
            .await;
        assert_eq!(setup.status, 461, "{transport}: {setup:?}");
    }
    let no_transport = client.request("SETUP", &track, &[]).await;
    assert_eq!(no_transport.status, 461);
    let no_track = client
        .request(
            "SETUP",
            &format!("{url}/trackID=9"),
            &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
        )
        .await;
    assert_eq!(no_track.status, 404);
    let no_session = client.request("PLAY", &url, &[("Session", "123")]).await;
    assert_eq!(no_session.status, 454);
    let session = client.setup_tcp(&url).await;
    let other = client
        .request(
            "SETUP",
            &format!("{}/trackID=0", harness.url("/b")),
            &[
                ("Transport", "RTP/AVP/TCP;unicast;interleaved=4-5"),
                ("Session", &session),
            ],
        )
        .await;
    assert_eq!(other.status, 459, "one session per connection");
    assert_eq!(client.request("OPTIONS", "*", &[]).await.status, 200);

    // Unreadable input is answered with 400 and the connection closed.
    let mut tls = harness.connect().await;
    tls.send(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n")
        .await;
    assert_eq!(tls.reply().await.status, 400);
    tls.until_closed().await;

    // So is a request larger than anything a client sends.
    let mut huge = harness.connect().await;
    let mut request = format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n").into_bytes();
    while request.len() <= camrelay_rtsp::server::DEFAULT_MAX_REQUEST_BYTES {
        request.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    huge.send(&request).await;
    assert_eq!(huge.reply().await.status, 413);
    huge.until_closed().await;

    let stats = harness.server.stats();
    assert!(stats.bad_requests.load(Ordering::Relaxed) >= 9);
    // The server serves on.
    let mut fresh = harness.connect().await;
    assert_eq!(fresh.request("DESCRIBE", &url, &[]).await.status, 200);
}
